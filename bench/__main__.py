"""Run every benchmark: ``python -m bench [--scale S]`` (what `make bench` runs); CSVs go to bench/results/.

The end-to-end ones (embedding, the distillation loop, teacher sampling) run at SD size on a GPU
and at their tiny size on the CPU, each into a CSV named by its size; scripts/perf_bench.sh runs
them at SD size in one GPU call."""
from __future__ import annotations

import argparse

from bench import (allocation_sim_throughput, cache_vs_diffusers, distill_e2e, kmeans_regions, pool_sampling,
                   regions_embed, tracker_throughput)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of each benchmark's default steps (default %(default)s)")
    scale = parser.parse_args().scale
    for name, module in (("tracker throughput", tracker_throughput),
                         ("allocation simulator throughput", allocation_sim_throughput),
                         ("prompt pool sampling", pool_sampling),
                         ("k-means regions (CPU)", kmeans_regions),
                         ("region embedding, reference vs fast", regions_embed),
                         ("distillation loop vs its step", distill_e2e),
                         ("teacher sampling vs diffusers", cache_vs_diffusers)):
        print(f"\n== {name}")
        module.main(scale)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
