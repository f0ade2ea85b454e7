"""Generate the teacher's samples for the paired prompts (and embed a prompt pool) as tensor caches.

Writes DIR/paired/ (and DIR/text/ with --embed-pool); resumable; on several processes under
torchrun / accelerate launch. The layout and the seeding are described in
aria_train.data.teacher_samples.

DIR must be new, empty or a cache folder of this command: re-running the same command continues
a killed run and leaves a finished cache as it is, after checking the shards it already holds
against their manifest: every byte of paired/ against the SHA-256s (as `aria distill` does; this
reads the whole paired cache, at most ~1.5 GB/s on one core, with a progress bar), and the headers
and row counts of text/ (which can be terabytes). A shard that does not match (a truncated copy,
a flipped byte) is computed again. Each cache's manifest metadata records what it
was made from (a hash of the paired prompts' texts, of the pool's and of the teacher folder's
files) and with which settings (steps, guidance, --dtype, ...), so a rerun with changed inputs at
the same paths or other settings is refused instead of mixing stale samples in. A refused run
changes nothing in DIR.

--dtype: the teacher UNet and the text encoder run in this dtype (the DDIM update and the
guidance mix stay in float32; the conditional and null predictions are one batched forward).
auto = bfloat16 on CUDA, float32 on the CPU. Measured on a tiny random Stable Diffusion folder
(25 steps, guidance 7.5): bfloat16 samples are within 0.9% (relative L2) of the float32 ones,
float16 within 0.14%.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

# What a cache folder of this command holds; sources.json is where caches made before the
# fingerprints moved into the manifests kept them (such a folder is refused with its own message).
CACHE_ENTRIES = ("paired", "text", "sources.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aria_train.diffusion.precision import DTYPES

    parser.add_argument("--teacher", required=True, help="teacher model folder (unet/, scheduler/, tokenizer/, text_encoder/; "
                        "Stable Diffusion XL: also tokenizer_2/, text_encoder_2/)")
    parser.add_argument("--paired", required=True, help="prompts to sample (txt/jsonl/csv/parquet/arrow with a text column)")
    parser.add_argument("--out", required=True, help="output folder (paired/ and text/ caches inside): new, empty, or "
                        "one this command made from the same inputs (then continued, after its shards are checked "
                        "against their manifest: paired/ by SHA-256, reading it whole; damaged ones are computed "
                        "again)")
    parser.add_argument("--pool", default=None, help="prompt pool file: adds prompt_id (pool row of each paired text), "
                        "which `aria distill` needs and checks against its own --pool (the same texts in the same "
                        "order); what --embed-pool embeds (default: none)")
    parser.add_argument("--embed-pool", action="store_true", help="also write the pool's text-embedding cache (default: off)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default: %(default)s)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the "
                        "teacher folder's sampling.json, else RC's 7.5)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; row i uses seed + i (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per sampling batch (default: %(default)s)")
    parser.add_argument("--shard-rows", type=int, default=4096, help="rows per cache shard, the unit of resumption (default: %(default)s)")
    parser.add_argument("--sample-dtype", choices=("float32", "float16"), default="float32", help="stored dtype of `sample` (default: %(default)s)")
    parser.add_argument("--text-dtype", choices=("float32", "float16"), default="float32", help="stored dtype of `hidden` (default: %(default)s)")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto", help="dtype the teacher UNet and the text "
                        "encoder run in; auto = bfloat16 on CUDA, float32 on the CPU; a cache is continued only at the "
                        "dtype it was started with (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the teacher UNet before sampling: about a "
                        "minute of compilation for an SD-size UNet (and once more for a last, smaller batch), then 1.38x "
                        "the samples/s (9.8 vs 7.1 at batch 64, bf16, one H200): pays from ~1,300 samples per process; "
                        "it changes samples at rounding level only, but a cache is continued only with the setting it "
                        "was started with (default: off)")
    parser.add_argument("--device", default=None, help="torch device (default: under torchrun / accelerate launch the "
                        "process's own GPU, else cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")


def check_out(out: Path) -> None:
    """ValueError unless ``out`` is missing, empty or a cache folder of this command (its caches'
    inputs and settings are checked by `teacher_samples.check_metadata`)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    names = sorted(p.name for p in out.iterdir() if not (p.name.startswith(".") and ".tmp" in p.name))
    foreign = [name for name in names if name not in CACHE_ENTRIES]
    if foreign:
        raise ValueError(f"output {out} already exists and is not an `aria cache` folder (it holds "
                         f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}): choose another --out")


def run(args: argparse.Namespace) -> int:
    import torch

    from aria_train.console import quiet_libraries
    from aria_train.data.cache import folder_fingerprint
    from aria_train.data.pool import PromptPool
    from aria_train.data.teacher_samples import (PAIRED_DIR, TEXT_DIR, Ranks, check_metadata, paired_metadata,
                                                 pool_rows, text_metadata, write_paired, write_text)
    from aria_train.diffusion.loading import check_teacher_folder, open_teacher, resolve_device, teacher_parts
    from aria_train.diffusion.precision import resolve_dtype
    from aria_train.diffusion.sampling import default_guidance
    from aria_train.options import check_seed

    quiet_libraries()
    for name in ("steps", "batch_size", "shard_rows"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.guidance is not None and not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise ValueError(f"--guidance must be a finite number >= 0, got {args.guidance}")
    if args.embed_pool and not args.pool:
        raise ValueError("--embed-pool needs --pool")
    check_seed("--seed", args.seed)
    out = Path(args.out)
    check_out(out)  # the folder's kind first, before reading any input
    paired = PromptPool.from_file(args.paired)
    pool = PromptPool.from_file(args.pool) if args.pool else None
    pool_ids = pool_rows(paired.table.column(paired.text_column), pool) if pool is not None else None
    device = resolve_device(args.device) if args.device else None
    teacher_dir = Path(args.teacher)
    check_teacher_folder(teacher_dir)  # before its files are fingerprinted
    if args.guidance is None:
        args.guidance = default_guidance(args.teacher)
    ranks = Ranks()
    device = device or ranks.device or resolve_device(None)
    args.dtype = resolve_dtype(args.dtype, device)
    # the parts samples depend on (not logs or reports a teacher folder may gain later)
    fingerprints = {"paired_fingerprint": paired.fingerprint(), "pool_fingerprint": pool.fingerprint() if pool else None,
                    "teacher_fingerprint": folder_fingerprint(teacher_dir, teacher_parts(teacher_dir))}
    metadata = {PAIRED_DIR: paired_metadata(args, fingerprints, len(paired))}
    if args.embed_pool:
        metadata[TEXT_DIR] = text_metadata(args, fingerprints, len(pool))
    for name, recorded in metadata.items():  # before loading the models: a refused run costs nothing
        check_metadata(out / name, recorded)
    teacher = open_teacher(teacher_dir)
    train_steps = teacher.scheduler.config.num_train_timesteps
    if args.steps > train_steps:  # before the cache folder is made: diffusers would refuse it at the first batch
        raise ValueError(f"--steps must be <= the teacher's {train_steps} training timesteps, got {args.steps}")
    dtype = getattr(torch, args.dtype)
    teacher.unet.to(device, dtype)
    teacher.prompts.to(device, dtype)
    if args.compile:
        teacher.unet.compile()  # in place: the sampling code calls the same module
    paired_dir = write_paired(args, metadata[PAIRED_DIR], teacher.unet, dict(teacher.scheduler.config), teacher.prompts,
                              paired, pool_ids, device, ranks)
    if ranks.rank == 0:
        print(f"paired cache: {paired_dir} ({len(paired)} samples)")
    if args.embed_pool:
        text_dir = write_text(args, metadata[TEXT_DIR], teacher.prompts, pool, device, ranks)
        if ranks.rank == 0:
            print(f"text cache: {text_dir} ({len(pool)} prompts)")
    ranks.close()
    return 0
