"""Write one self-contained HTML report of distillation runs: losses, ARIA's allocation, evaluation.

The sections are described in aria_train.evaluation.report.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="distillation run directory (aria distill --out); "
                        "give several to compare them on the same plots")
    parser.add_argument("--out", required=True, type=Path, help="HTML file to write (an earlier report there is replaced; any other file is refused)")
    parser.add_argument("--eval", action="append", default=[], type=Path, metavar="EVAL_DIR",
                        help="an `aria eval` output folder to include besides each RUN_DIR/eval (repeatable; "
                        "`aria experiment` passes its OUT/eval; default: none)")


def run(args: argparse.Namespace) -> int:
    from aria_train.evaluation.report import write_report

    print(write_report(args.runs, args.out, args.eval))
    return 0
