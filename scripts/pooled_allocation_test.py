"""The paired test of `aria experiment` (allocation_test.csv) over the seeds of several experiment
folders of one cell: e.g. the 3 seeds of a committed cell and more seeds run later in another folder.

Usage: python scripts/pooled_allocation_test.py DIR [DIR ...] [--out CSV] [--teachers] [--against METHOD]
                                                 [--part ratio|offset|split] [--compare DIR [DIR ...]]

Reads DIR/allocation_split.csv (per policy and seed, the ratio to region-uniform of the same seed),
refuses a (policy, seed) found in two folders, and prints per policy the test of
aria_train.evaluation.allocation_split.paired_test over all seeds, then per folder beside it.
The folders must be runs of one cell (the same world, teacher and options but the seeds); the script
compares their experiment.json files without the seeds and says where they differ.
--teachers: the folders are one world's cell with a different teacher each; a (teacher, seed) pair is then one
replicate (its ratio is paired within the teacher), so the same seed may appear in several folders. One teacher's
seeds spread over several folders (more seeds run later) are named as one argument, the folders joined by '+'
(DIR+DIR): one teacher for the teacher-means row, the analysis of variance and --compare, its folders' seeds then
distinct. The pooled test then treats teachers as independent draws of the same cell, which holds only if a
teacher has no effect of its own; so a further row (folders "teacher means: ...") tests the teachers' own ratios
(each the geometric mean over its seeds) with one replicate per teacher: a teacher's own effect is then part of
the noise, and the test keeps its 5% level whatever that effect is (at the price of few replicates). The column
`unit` says what one replicate is: seed, teacher-seed or teacher. With --teachers a second table asks whether the
teachers do have effects of their own (aria_train.evaluation.allocation_split.teacher_effect: a one-way analysis
of variance of ln ratio over the teachers, the sd of the teachers' effects, and the teachers a comparison of two
cells would need); --out writes it beside the first as OUT_teacher_effect.csv.
--against METHOD: each policy against METHOD (e.g. aria beta 2 against aria beta 1) instead of region-uniform:
its ratio on a seed is divided by METHOD's ratio on the same seed of the same folder (region-uniform cancels),
the method is named "POLICY / METHOD", and rows without a METHOD run on their seed are left out (counted).
--part offset|split: test a part of each ratio instead of the whole (allocation_split.csv's fit, per seed): offset,
the factor every region shares whatever the policy's draws did, or split, ratio / offset, the part that follows the
draws the policy moved.
--compare DIR [DIR ...] (with --teachers): a second cell's folders, one teacher each (e.g. the next point of a map):
whether the two cells' gains differ, by Welch's t-test on the teachers' mean ln ratios
(aria_train.evaluation.allocation_split.cell_difference; --part and --against apply to both cells); --out writes
it as OUT_compare.csv.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from aria_train.evaluation.allocation_split import cell_difference, paired_test, teacher_effect, teacher_means


def flat(config: dict, prefix: str = "") -> dict:
    """``config`` with nested dicts as dotted keys ("distill.steps")."""
    items = {}
    for key, value in config.items():
        items.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return items


def against(split: pd.DataFrame, method: str, parser: argparse.ArgumentParser) -> pd.DataFrame:
    """``split``'s other policies as ratios to ``method`` on the same (folder, seed): both are ratios to the
    same region-uniform run, so their quotient is the policy over ``method``."""
    base = split[split["method"] == method].set_index(["folder", "seed"])["ratio"]
    if base.empty:
        parser.error(f"--against {method}: no {method} runs in these folders (methods: {sorted(set(split['method']))})")
    others = split[split["method"] != method]
    keys = pd.MultiIndex.from_frame(others[["folder", "seed"]])
    paired = keys.isin(base.index)
    if (~paired).any():
        print(f"note: {int((~paired).sum())} runs without a run of {method} on their seed left out")
    others = others[paired]
    return others.assign(ratio=others["ratio"].to_numpy() / base.reindex(keys[paired]).to_numpy(),
                         method=others["method"] + f" / {method}")


def teacher_folders(argument: Path) -> list[Path]:
    """The folders of one command-line argument: DIR, or DIR+DIR+... for one teacher's seeds in several."""
    return [Path(part) for part in str(argument).split("+")]


def joined_names(arguments: list[Path]) -> str:
    """The names of the arguments' folders, joined by '+'."""
    return "+".join(folder.name for argument in arguments for folder in teacher_folders(argument))


def load_cell(teachers: list[Path], args: argparse.Namespace, parser: argparse.ArgumentParser) -> pd.DataFrame:
    """The folders' allocation_split.csv rows, one table with columns ``folder`` and ``teacher`` (the argument
    that named the folder, its folders' names joined by '+'), as ``args`` asks (a part of the ratio, against a
    method); notes where the folders' experiment.json differ but for the seeds."""
    splits, settings = [], {}
    for argument in teachers:
        teacher = joined_names([argument])
        for folder in teacher_folders(argument):
            path = folder / "allocation_split.csv"
            if not path.is_file():
                parser.error(f"{path}: no such file (an experiment folder with region-uniform and a policy)")
            splits.append(pd.read_csv(path).assign(folder=folder.name, teacher=teacher))
            config = json.loads((folder / "experiment.json").read_text())
            settings[folder.name] = {k: v for k, v in config.items() if k not in ("seeds", "methods", "parallel")}
    split = pd.concat(splits, ignore_index=True)
    if args.part != "ratio":  # every test below reads the column `ratio`
        split["ratio"] = split["offset"] if args.part == "offset" else split["ratio"] / split["offset"]
    # a replicate is a seed, or with --teachers a (teacher, seed) pair: paired_test reads only the ratios
    repeated = split[split.duplicated(["method", "seed"] + (["teacher"] if args.teachers else []), keep=False)]
    if not repeated.empty:
        parser.error(f"seeds found in two folders: {repeated[['method', 'seed', 'folder']].to_dict('records')}")
    if args.against is not None:
        split = against(split, args.against, parser)
    first = flat(next(iter(settings.values())))
    for name, config in settings.items():
        config = flat(config)
        differ = sorted(k for k in set(first) | set(config) if first.get(k) != config.get(k))
        if differ:
            print(f"note: {name} differs from {next(iter(settings))} in {', '.join(differ)}")
    return split


def write(table: pd.DataFrame, path: Path | None) -> None:
    if path is not None:
        table.to_csv(path, index=False)
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path,
                        help="experiment folders holding allocation_split.csv (with --teachers, DIR+DIR: one teacher's)")
    parser.add_argument("--out", type=Path, default=None, help="CSV written (default: print only)")
    parser.add_argument("--teachers", action="store_true",
                        help="one teacher per argument (DIR, or DIR+DIR for one teacher's seeds in several folders): "
                             "(teacher, seed) pairs are the replicates")
    parser.add_argument("--against", metavar="METHOD", default=None,
                        help="test each policy against METHOD on the same seeds (default: against region-uniform)")
    parser.add_argument("--part", choices=("ratio", "offset", "split"), default="ratio",
                        help="what is tested: the whole ratio (default), its shared offset, or ratio / offset")
    parser.add_argument("--compare", nargs="+", type=Path, default=None, metavar="DIR",
                        help="a second cell's folders, one teacher each (needs --teachers): do the cells' gains differ?")
    args = parser.parse_args(argv)
    if args.compare is not None and not args.teachers:
        parser.error("--compare needs --teachers (the cells are compared over their teachers)")
    if args.out is not None and not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: no folder {args.out.parent}")
    split = load_cell(args.folders, args, parser)
    second = None
    if args.compare is not None:  # read before anything is written: a bad folder leaves no CSV behind
        first, other = ({f.resolve() for a in arguments for f in teacher_folders(a)}
                        for arguments in (args.folders, args.compare))
        shared = sorted(first & other)
        if shared:
            parser.error(f"a folder in both cells: {', '.join(map(str, shared))}")
        second = load_cell(args.compare, args, parser)
    names = joined_names(args.folders)
    pooled = paired_test(split).assign(folders=names, unit="teacher-seed" if args.teachers else "seed")
    per_folder = [paired_test(part).assign(folders=name, unit="seed")
                  for name, part in split.groupby("folder", sort=False)]
    rows = [pooled, *per_folder]
    if args.teachers:
        teachers = paired_test(teacher_means(split, by="teacher"))
        rows.insert(1, teachers.assign(folders=f"teacher means: {names}", unit="teacher"))
    table = pd.concat(rows, ignore_index=True).rename(
        columns={"seeds": "replicates", "seeds_for_2pct": "replicates_for_2pct"})
    print(table.round(4).to_string(index=False))
    write(table, args.out)
    if args.teachers:
        effect = teacher_effect(split, by="teacher")
        print("\nteacher effect (one-way analysis of variance of ln ratio over the teachers):")
        print(effect.round(4).to_string(index=False))
        write(effect, args.out and args.out.with_name(f"{args.out.stem}_teacher_effect.csv"))
    if second is not None:
        difference = cell_difference(split, second, by="teacher")
        print(f"\nthe second cell ({joined_names(args.compare)}) against the first, "
              "over the teachers' means (Welch's t-test):")
        print(difference.round(4).to_string(index=False))
        write(difference, args.out and args.out.with_name(f"{args.out.stem}_compare.csv"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
