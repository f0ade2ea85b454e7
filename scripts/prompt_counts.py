"""How many real (not null) prompts each micro-batch of bench.distill_e2e's RC loop encodes, in draw
order, and where a count appears for the first time (``new``): with the text encoder compiled
(``--compile``, a dynamic batch size), each first count coincided with a 75-95 ms longer step on
the GPU (issue 16; docs/benchmarks.md). The counts come from the run's seed and sizes, not from the
teacher, so the tiny teacher on a CPU draws those of the SD-size GPU runs (same --batch, --paired,
--pool, --regions; method rc, seed 0; both schedulers have 1000 timesteps):

    python -m scripts.prompt_counts [--steps 30] [--out DIR]    # under a minute on a CPU

writes OUT/prompt_counts.csv (step, real_prompts, new) and prints the steps with a new count
(bench/results/prompt_counts.csv: `--steps 42`).
"""
from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import aria_train.distill.batches as batches
from bench import distill_e2e


def main(argv: list[str] | None = None) -> list[tuple[int, int, bool]]:
    parser = argparse.ArgumentParser(prog="python -m scripts.prompt_counts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="loop steps (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="CSV folder (default: %(default)s)")
    args = parser.parse_args(argv)
    counts: list[int] = []
    encode = batches.ConditionEncoder.__call__

    def counted(self, prompt_ids):
        counts.append(int((prompt_ids != batches.NULL_PROMPT).sum()))
        return encode(self, prompt_ids)

    batches.ConditionEncoder.__call__ = counted
    try:
        with tempfile.TemporaryDirectory() as scratch:
            distill_e2e.main(argv=["--size", "tiny", "--batch", str(args.batch), "--steps", str(args.steps),
                                   "--warmup", "8", "--step-steps", "1", "--methods", "rc", "--feedback-lags", "1",
                                   "--paired", "512", "--pool", "100000", "--regions", "256",
                                   "--out", scratch, "--work", scratch])
    finally:
        batches.ConditionEncoder.__call__ = encode
    seen: set[int] = set()
    rows = []
    for step, count in enumerate(counts[:args.steps], 1):  # one micro-batch per step; prefetched ones dropped
        rows.append((step, count, count not in seen))
        seen.add(count)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "prompt_counts.csv", "w", newline="") as f:
        csv.writer(f).writerows([("step", "real_prompts", "new"), *rows])
    print("steps with a new count of real prompts:", [step for step, _, new in rows if new])
    return rows


if __name__ == "__main__":
    main()
