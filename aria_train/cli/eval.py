"""Evaluate students against their teacher per region: discrepancy, samples, attribute accuracy.

The protocol and the files written: aria_train.evaluation.evaluate. --student is a UNet folder or
a distillation run directory (its newest checkpoint's student_ema/); repeat it to evaluate several
students on the very same inputs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aria_train.evaluation.config import EvalConfig
from aria_train.options import add_options, from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (default: refuse)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars, only the stages' lines and the summary (default: bars)")
    parser.add_argument("--student", action="append", metavar="PATH",
                        help="student UNet folder or distillation run directory; repeatable (required)")
    add_options(parser, EvalConfig, skip=("student",))


def run(args: argparse.Namespace) -> int:
    from aria_train.evaluation.evaluate import evaluate

    evaluate(from_args(EvalConfig, args), Path(args.out), args.overwrite, progress=not args.no_progress)
    return 0
