#!/usr/bin/env bash
# The GPU benchmarks of bench/ in one device call; CSVs land in bench/results/ and are copied to $1.
# Each item has its own time limit so one slow item cannot take the others down.
set -uo pipefail
OUT=${1:?usage: gpu_bench.sh OUT_DIR}
mkdir -p "$OUT"
timeout 120 python3 -m bench.distill_step --size demo --batch 64 256 --steps 30 --name distill_step_demo_gpu
timeout 150 python3 -m bench.distill_step --size sd14 --batch 64 --steps 10 --name distill_step_sd14_eager
timeout 120 python3 -m bench.kmeans_regions --device cuda
timeout 300 python3 -m bench.distill_step --size sd14 --batch 64 --steps 10 --compile --name distill_step_sd14_compiled
cp bench/results/distill_step_*.csv "$OUT"/; cp bench/results/kmeans_regions.csv "$OUT"/kmeans_regions_gpu.csv
