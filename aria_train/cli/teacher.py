"""Train the embedded world's teacher (a text-conditioned pixel UNet) and write its folder.

What is trained and written: aria_train.teacher.train. Run it on a GPU with `accelerate launch
--mixed_precision bf16 -m aria_cli teacher --out DIR` or plainly `aria teacher --out DIR`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aria_train.options import add_options, from_args
from aria_train.teacher.config import TeacherConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="teacher folder to write (must not exist or be empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    add_options(parser, TeacherConfig)


def run(args: argparse.Namespace) -> int:
    from aria_train.console import quiet_libraries
    from aria_train.runs.atomic import check_free
    from aria_train.teacher.train import train_teacher

    quiet_libraries()
    config = from_args(TeacherConfig, args)
    check_free(args.out, args.overwrite)
    report = train_teacher(config, Path(args.out), overwrite=args.overwrite, progress=not args.no_progress)
    if report is not None:
        groups = ", ".join(f"{g['group']} {g['mean']:.3f} (worst {g['worst_region']} {g['worst']:.3f})"
                           for g in report["accuracy"]["groups"])
        print(f"teacher written to {args.out}: held-out denoising loss {report['eval_loss']['all']:.4f}; "
              f"attribute accuracy (all attributes right) {groups or 'not measured'}")
    return 0
