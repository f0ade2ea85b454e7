"""Throughput benchmarks: `python -m bench` runs them all and writes CSVs under bench/results/."""
