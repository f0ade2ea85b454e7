"""Two experiment folders of one teacher and the same seeds, run differently (e.g. the students on an H100 in A and on
a CPU in B): does the difference change the verdicts?

Usage: python scripts/paired_folders.py A B

Per policy, its ratio to region-uniform in B over its ratio in A on the same seed (allocation_split.csv), tested
with aria_train.evaluation.allocation_split.paired_test: a ratio of 1 means B gives the policy the same gain as A.
Beside it ("region-uniform level"), region-uniform's own p(t)-weighted discrepancy on all regions in B over A's on
the same seed (eval/summary.csv): what the difference does to the students themselves. Only seeds and policies
found in both folders are paired; none in common is a one-line error. On two platforms one seed need not give the
same random draws (CUDA's generator is not the CPU's), so the pairing may remove less noise than within one.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from aria_train.evaluation.allocation_split import paired_test
from simulations.measured import MEASURED_METRIC

REFERENCE = "region-uniform"


def reference_levels(folder: Path) -> pd.DataFrame:
    """region-uniform's p(t)-weighted discrepancy on all regions per seed (columns seed, level)."""
    rows = pd.read_csv(folder / "eval" / "summary.csv")
    rows = rows[(rows["metric"] == MEASURED_METRIC) & (rows["group"] == "all")
                & rows["model"].str.startswith(f"{REFERENCE}-seed")]
    return pd.DataFrame({"seed": rows["model"].str.removeprefix(f"{REFERENCE}-seed").astype(int),
                         "level": rows["mean"].to_numpy()})


def paired_ratios(a: Path, b: Path) -> pd.DataFrame:
    """Per policy and seed in both folders, B's ratio to region-uniform over A's; and per seed region-uniform's
    level in B over A's (method "region-uniform level"). Columns method, seed, ratio (paired_test's input)."""
    split = pd.read_csv(a / "allocation_split.csv").merge(pd.read_csv(b / "allocation_split.csv"),
                                                          on=["method", "seed"], suffixes=("_a", "_b"))
    policies = pd.DataFrame({"method": split["method"], "seed": split["seed"],
                             "ratio": split["ratio_b"] / split["ratio_a"]})
    levels = reference_levels(a).merge(reference_levels(b), on="seed", suffixes=("_a", "_b"))
    reference = pd.DataFrame({"method": f"{REFERENCE} level", "seed": levels["seed"],
                              "ratio": levels["level_b"] / levels["level_a"]})
    return pd.concat([policies, reference], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/paired_folders.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="the first experiment folder (the baseline)")
    parser.add_argument("b", type=Path, help="the second: the same teacher and seeds, run differently")
    args = parser.parse_args(argv)
    for folder in (args.a, args.b):
        if not (folder / "allocation_split.csv").is_file() or not (folder / "eval" / "summary.csv").is_file():
            parser.error(f"{folder}: no evaluated experiment folder (allocation_split.csv, eval/summary.csv)")
    ratios = paired_ratios(args.a, args.b)
    if ratios.empty:
        parser.error("the two folders share no (policy, seed)")
    print(paired_test(ratios).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
