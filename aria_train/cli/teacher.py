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
    parser.add_argument("--resume", action="store_true", help="continue the stopped run in --out (one written with "
                        "--checkpoint-every) exactly where its checkpoint left it; the training options are the run's "
                        "own, only run options (logging, workers, checkpoints, evaluation, save dtype) may be given")
    parser.add_argument("--finish", action="store_true", help="write the teacher of the stopped run in --out now, from "
                        "its last checkpoint (the EMA weights of that step, evaluated as a finished run's; "
                        "teacher_report.json records steps_trained), instead of training on; works on any device, "
                        "also the CPU for a run that trained on a GPU. Run options may be given as with --resume")
    add_options(parser, TeacherConfig)


def resumed_config(out: Path, args: argparse.Namespace, flag: str) -> TeacherConfig:
    """The stopped run's config in ``out`` with the run options given on the command line on top;
    ValueError (naming ``flag``) if ``out`` is no stopped run or a training option was changed."""
    from aria_train.options import load_json, to_dict
    from aria_train.teacher.checkpoint import CONFIG_FILE, RUN_OPTIONS, is_stopped_run

    if not is_stopped_run(out) or not (out / CONFIG_FILE).is_file():
        raise ValueError(f"{flag}: {out} is not a stopped teacher run (no checkpoint/ and {CONFIG_FILE} without a "
                         "finished unet/)")
    saved = load_json(TeacherConfig, out / CONFIG_FILE, TeacherConfig.WHAT)
    config = from_args(TeacherConfig, args, saved)
    before = to_dict(saved)
    changed = [k for k, v in to_dict(config).items() if k not in RUN_OPTIONS and v != before[k]]
    if changed:
        raise ValueError(f"{flag} keeps the run's training options; changed: {', '.join(changed)}")
    return config


def run(args: argparse.Namespace) -> int:
    from aria_train.console import quiet_libraries
    from aria_train.runs.atomic import check_free
    from aria_train.teacher.checkpoint import is_stopped_run
    from aria_train.teacher.train import train_teacher

    quiet_libraries()
    out = Path(args.out)
    if args.resume and args.finish:
        raise ValueError("--resume trains on, --finish stops where the checkpoint is: give one")
    if args.resume or args.finish:
        config = resumed_config(out, args, "--resume" if args.resume else "--finish")
    else:
        config = from_args(TeacherConfig, args)
        if is_stopped_run(out) and not args.overwrite:
            raise ValueError(f"{out} holds a stopped teacher run: --resume continues it, --finish writes "
                             "its teacher now, --overwrite starts again")
        check_free(out, args.overwrite)
    report = train_teacher(config, out, overwrite=args.overwrite, progress=not args.no_progress, resume=args.resume,
                           finish=args.finish)
    if report is not None:
        groups = ", ".join(f"{g['group']} {g['mean']:.3f} (worst {g['worst_region']} {g['worst']:.3f})"
                           for g in report["accuracy"]["groups"])
        print(f"teacher written to {args.out}: held-out denoising loss {report['eval_loss']['all']:.4f}; "
              f"attribute accuracy (all attributes right) {groups or 'not measured'}")
    return 0
