"""Compare distillation methods at equal steps and equal paired images over seeds, then evaluate.

CONFIG is a JSON ExperimentConfig (see experiments/*.json; relative paths are relative to its
folder). What it runs and writes: aria_train.experiment.runner.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config JSON (ExperimentConfig)")
    parser.add_argument("--out", required=True, help="experiment folder: created, or continued if it holds this experiment")
    parser.add_argument("--parallel", type=int, default=None, help="distillation processes at a time (default: the config's)")
    parser.add_argument("--only", choices=("runs", "eval", "all"), default="all",
                        help="stop after the runs or after the evaluation (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from aria_train.experiment.config import ExperimentConfig
    from aria_train.experiment.runner import run_experiment

    if args.parallel is not None and args.parallel < 1:
        raise ValueError(f"--parallel must be >= 1, got {args.parallel}")
    run_experiment(ExperimentConfig.load(args.config), Path(args.out), args.parallel, args.only)
    return 0
