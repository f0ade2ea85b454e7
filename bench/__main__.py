"""Run every benchmark: ``python -m bench [--scale S]`` (what `make bench` runs); CSVs go to bench/results/."""
from __future__ import annotations

import argparse

from bench import allocation_sim_throughput, kmeans_regions, pool_sampling, tracker_throughput


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of each benchmark's default steps (default %(default)s)")
    scale = parser.parse_args().scale
    for name, module in (("tracker throughput", tracker_throughput),
                         ("allocation simulator throughput", allocation_sim_throughput),
                         ("prompt pool sampling", pool_sampling),
                         ("k-means regions (CPU)", kmeans_regions)):
        print(f"\n== {name}")
        module.main(scale)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
