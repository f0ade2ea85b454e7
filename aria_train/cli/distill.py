"""Distil a teacher UNet into a BK-SDM student by KD, random conditioning (RC) or ARIA.

Reads a teacher folder (diffusers layout), a paired cache of teacher samples (`aria cache`) and a
prompt pool; writes OUT/config.json, log.txt, metrics.jsonl (+ metrics.csv), samples/ and
checkpoints/. `--resume latest` continues a run exactly where its newest checkpoint left it.

Run it under `accelerate launch [--multi_gpu --num_processes N] [--mixed_precision bf16] -m aria_cli
distill ...` for data parallelism and mixed precision (mixed precision only comes from the
accelerator). On CPUs, `ACCELERATE_USE_CPU=true torchrun --standalone --nproc_per_node N -m aria_cli
distill ...` runs the same data-parallel code over gloo. The method: aria_train.distill.loop.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aria_train.distill.config import DistillConfig
from aria_train.options import add_options, from_args, load_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run directory: created (must be new or empty) or, with --resume, continued")
    parser.add_argument("--config", metavar="FILE", help="JSON DistillConfig to start from; options given here override it (default: none)")
    parser.add_argument("--resume", metavar="latest|PATH", help="continue from OUT's newest checkpoint or from the checkpoint "
                        "folder PATH; the config is the checkpoint's with the options given here on top (default: fresh run)")
    parser.add_argument("--restart", action="store_true", help="OUT is a run that stopped before its first checkpoint: "
                        "remove its files and start it again (refused if it has a checkpoint)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    add_options(parser, DistillConfig)


def run(args: argparse.Namespace) -> int:
    from aria_train.console import quiet_libraries
    from aria_train.distill.loop import NonFiniteAbort, train
    from aria_train.distill.state import RunStart

    quiet_libraries()  # per-file load/save bars would drown the training bar
    # the file's types are checked now; its domains with the flags on top (by from_args), since the
    # file may leave required options such as --teacher to the command line
    base = load_json(DistillConfig, args.config, DistillConfig.WHAT, validate=False) if args.config else None
    if base is not None and args.resume:
        raise ValueError("--config starts a new run; a resumed run takes its checkpoint's config (give changed options alone)")
    start = RunStart.resolve(Path(args.out), args.resume, args.restart)
    if start.state is not None:
        base = start.config()
    config = from_args(DistillConfig, args, base)
    try:
        train(config, Path(args.out), start=start, progress=not args.no_progress)
    except NonFiniteAbort as err:
        print(f"aria: error: {err}", file=sys.stderr)
        return 1
    return 0
