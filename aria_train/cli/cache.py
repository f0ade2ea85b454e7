"""Generate the teacher's samples for the paired prompts (and embed a prompt pool) as tensor caches.

Writes DIR/paired/ (and DIR/text/ with --embed-pool); resumable; on several processes under
torchrun / accelerate launch. The layout and the seeding are described in
aria_train.data.teacher_samples.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher model folder (unet/, scheduler/, tokenizer/, text_encoder/)")
    parser.add_argument("--paired", required=True, help="prompts to sample (txt/jsonl/csv/parquet/arrow with a text column)")
    parser.add_argument("--out", required=True, help="output folder (paired/ and text/ caches inside)")
    parser.add_argument("--pool", default=None, help="prompt pool file: adds prompt_id (pool row of each paired text) "
                        "and is what --embed-pool embeds (default: none)")
    parser.add_argument("--embed-pool", action="store_true", help="also write the pool's text-embedding cache (default: off)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default: %(default)s)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the "
                        "teacher folder's sampling.json, else RC's 7.5)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; row i uses seed + i (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per sampling batch (default: %(default)s)")
    parser.add_argument("--shard-rows", type=int, default=4096, help="rows per cache shard, the unit of resumption (default: %(default)s)")
    parser.add_argument("--sample-dtype", choices=("float32", "float16"), default="float32", help="stored dtype of `sample` (default: %(default)s)")
    parser.add_argument("--text-dtype", choices=("float32", "float16"), default="float32", help="stored dtype of `hidden` (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device (default: under torchrun / accelerate launch the "
                        "process's own GPU, else cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")


def run(args: argparse.Namespace) -> int:
    from aria_train.console import quiet_libraries
    from aria_train.data.pool import PromptPool
    from aria_train.data.teacher_samples import Ranks, pool_rows, write_paired, write_text
    from aria_train.diffusion.loading import load_teacher, resolve_device
    from aria_train.diffusion.sampling import default_guidance

    quiet_libraries()
    for name in ("steps", "batch_size", "shard_rows"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.guidance is not None and not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise ValueError(f"--guidance must be a finite number >= 0, got {args.guidance}")
    if args.embed_pool and not args.pool:
        raise ValueError("--embed-pool needs --pool")
    paired = PromptPool.from_file(args.paired)
    pool = PromptPool.from_file(args.pool) if args.pool else None
    pool_ids = pool_rows(paired.table.column(paired.text_column), pool) if pool is not None else None
    ranks = Ranks()
    device = resolve_device(args.device) if args.device else (ranks.device or resolve_device(None))
    teacher, scheduler, tokenizer, text_encoder = load_teacher(Path(args.teacher))
    if args.guidance is None:
        args.guidance = default_guidance(args.teacher)
    teacher.to(device)
    text_encoder.to(device)
    paired_dir = write_paired(args, teacher, dict(scheduler.config), tokenizer, text_encoder, paired, pool_ids, device, ranks)
    if ranks.rank == 0:
        print(f"paired cache: {paired_dir} ({len(paired)} samples)")
    if args.embed_pool:
        text_dir = write_text(args, tokenizer, text_encoder, pool, device, ranks)
        if ranks.rank == 0:
            print(f"text cache: {text_dir} ({len(pool)} prompts)")
    ranks.close()
    return 0
