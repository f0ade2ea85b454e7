"""Compare distillation methods at equal steps and equal paired images over seeds, then evaluate.

CONFIG is a JSON ExperimentConfig (see experiments/*.json; relative paths are relative to its
folder). What it runs and writes: aria_train.experiment.runner.

--out must be new, empty, or the folder of this same experiment (its experiment.json equal to
CONFIG's), which is then continued: finished runs and evaluations are kept. Any other folder is
refused and left as it is; there is no --overwrite (remove the folder, or choose another).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config JSON (ExperimentConfig)")
    parser.add_argument("--out", required=True, help="experiment folder: created, or continued if it holds this experiment")
    parser.add_argument("--parallel", type=int, default=None, help="distillation processes at a time (default: the config's)")
    parser.add_argument("--group", type=int, default=1,
                        help="runs trained together in one process (default: %(default)s, each run its own): runs "
                             "that differ only in method, sampler, ARIA options, seed, switch schedule and null-text "
                             "probability share one teacher forward and one vmapped student step "
                             "(aria_train.distill.group), so a GPU launches one kernel where it launched GROUP; "
                             "results equal separate runs' up to floating-point rounding unless a step is skipped "
                             "for a non-finite loss (skipped for the whole group). Runs started in a group continue "
                             "in it, whatever --group is then")
    parser.add_argument("--only", choices=("runs", "eval", "all"), default="all",
                        help="stop after the runs or after the evaluation (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars, only the stages' lines (for log files) (default: bars)")


def run(args: argparse.Namespace) -> int:
    from aria_train.experiment.config import ExperimentConfig
    from aria_train.experiment.runner import run_experiment

    from aria_train.options import read_json_object

    if args.parallel is not None and args.parallel < 1:
        raise ValueError(f"--parallel must be >= 1, got {args.parallel}")
    if args.group < 1:
        raise ValueError(f"--group must be >= 1, got {args.group}")
    config = ExperimentConfig.load(args.config)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder: choose another --out")
    if (out / "experiment.json").exists():  # the runner compares it with CONFIG; first, that it can be read
        read_json_object(out / "experiment.json", "experiment record")
    run_experiment(config, out, args.parallel, args.only, args.group, progress=not args.no_progress)
    return 0
