"""Generate the teacher's samples for the paired prompts (and embed a prompt pool) as tensor caches.

Writes, under --out DIR (aria_train.data.cache format, resumable: re-running the same command
continues after the last complete shard; a finished cache is left as it is):

    DIR/paired/  sample       (N, C, H, W) the teacher's DDIM + classifier-free-guidance x0 in
                              the model's space (pixels in [-1, 1], or VAE latents)
                 prompt_index (N,) int64, the row of --paired the sample was made for
                 prompt_id    (N,) int64, the row of --pool with the same text (only with --pool;
                              what `aria distill` reads as the caption's pool row)
    DIR/text/    hidden       (M, L, D) the frozen text encoder's per-token embeddings of --pool,
                              row i = pool row i (only with --embed-pool)

Row i of --paired is sampled from the initial noise of seed (--seed + i), so a sample depends
only on its prompt, its row and the settings, never on the batch or the device; `aria eval`
and the distillation sample grids use the same per-row seeding.
"""
from __future__ import annotations

import argparse
from pathlib import Path

PAIRED_DIR, TEXT_DIR = "paired", "text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher model folder (unet/, scheduler/, tokenizer/, text_encoder/)")
    parser.add_argument("--paired", required=True, help="prompts to sample (txt/jsonl/csv/parquet with a text column)")
    parser.add_argument("--out", required=True, help="output folder (paired/ and text/ caches inside)")
    parser.add_argument("--pool", default=None, help="prompt pool file: adds prompt_id (pool row of each paired text) "
                        "and is what --embed-pool embeds (default: none)")
    parser.add_argument("--embed-pool", action="store_true", help="also write the pool's text-embedding cache (default: off)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default: %(default)s)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; row i uses seed + i (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per sampling batch (default: %(default)s)")
    parser.add_argument("--shard-rows", type=int, default=4096, help="rows per cache shard, the unit of resumption (default: %(default)s)")
    parser.add_argument("--sample-dtype", choices=("float32", "float16"), default="float32", help="stored dtype of `sample` (default: %(default)s)")
    parser.add_argument("--text-dtype", choices=("float32", "float16"), default="float32", help="stored dtype of `hidden` (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")


def _pool_rows(paired_texts: list[str], pool) -> "np.ndarray":
    """Row of ``pool`` holding each paired text (the first such row); ValueError if one is missing."""
    import numpy as np

    first: dict[str, int] = {}
    for i, text in enumerate(pool.texts(range(len(pool)))):
        first.setdefault(text, i)
    missing = [t for t in paired_texts if t not in first]
    if missing:
        raise ValueError(f"{len(missing)} paired prompts are not in the pool, e.g. {missing[0]!r}")
    return np.array([first[t] for t in paired_texts], dtype=np.int64)


def _open_writer(directory: Path, metadata: dict, shard_rows: int):
    """A new writer, or the resumed one of an earlier run with the same metadata."""
    from aria_train.data.cache import MANIFEST, TensorCacheWriter

    if not (directory / MANIFEST).is_file():
        return TensorCacheWriter(directory, shard_rows, metadata)
    writer = TensorCacheWriter.resume(directory)
    changed = [f"{k}: {writer.metadata.get(k)!r} -> {v!r}" for k, v in metadata.items() if writer.metadata.get(k) != v]
    if changed:
        raise ValueError(f"{directory} was made with other settings ({'; '.join(changed)}): choose another --out")
    return writer


def write_paired(args, teacher, scheduler_config: dict, tokenizer, text_encoder, paired, pool_ids, device) -> Path:
    """Sample the paired prompts from row len(cache) on; returns the cache folder."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from aria_train import sampling
    from aria_train.text import encode_prompts

    metadata = {"teacher": str(Path(args.teacher).resolve()), "paired": str(Path(args.paired).resolve()),
                "pool": str(Path(args.pool).resolve()) if args.pool else None, "rows": len(paired),
                "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "sample_dtype": args.sample_dtype,
                "seeding": "row i starts from seeded_noise with seed + i", "sampler": "DDIM eta=0, classifier-free guidance"}
    directory = Path(args.out) / PAIRED_DIR
    writer = _open_writer(directory, metadata, args.shard_rows)
    start = len(writer)
    null, _ = encode_prompts(tokenizer, text_encoder, [""], device)
    shape = sampling.sample_shape(teacher)
    with tqdm(total=len(paired), initial=start, desc="paired samples", unit="img", disable=args.no_progress) as bar:
        for lo in range(start, len(paired), args.batch_size):
            rows = np.arange(lo, min(lo + args.batch_size, len(paired)))
            cond, _ = encode_prompts(tokenizer, text_encoder, paired.texts(rows), device)
            x = sampling.sample(teacher, scheduler_config, cond, null, [args.seed + int(r) for r in rows], shape,
                                args.steps, args.guidance, args.batch_size)
            tensors = {"sample": x.to(getattr(torch, args.sample_dtype)), "prompt_index": torch.from_numpy(rows)}
            if pool_ids is not None:
                tensors["prompt_id"] = torch.from_numpy(pool_ids[rows])
            writer.append(**tensors)
            bar.update(len(rows))
    writer.close()
    return directory


def write_text(args, tokenizer, text_encoder, pool, device) -> Path:
    """Embed the pool from row len(cache) on; returns the cache folder."""
    import torch
    from tqdm.auto import tqdm

    from aria_train.text import encode_prompts

    metadata = {"teacher": str(Path(args.teacher).resolve()), "pool": str(Path(args.pool).resolve()),
                "rows": len(pool), "text_dtype": args.text_dtype}
    directory = Path(args.out) / TEXT_DIR
    writer = _open_writer(directory, metadata, args.shard_rows)
    chunk = 4096
    with tqdm(total=len(pool), initial=len(writer), desc="pool embeddings", unit="prompt", disable=args.no_progress) as bar:
        for lo in range(len(writer), len(pool), chunk):
            hidden, _ = encode_prompts(tokenizer, text_encoder, pool.texts(range(lo, min(lo + chunk, len(pool)))), device)
            writer.append(hidden=hidden.to(getattr(torch, args.text_dtype)))
            bar.update(hidden.shape[0])
    writer.close()
    return directory


def run(args: argparse.Namespace) -> int:
    import torch

    from aria_train.data.pool import PromptPool
    from aria_train.inputs import load_teacher
    from aria_train.model_io import quiet_libraries

    quiet_libraries()
    for name in ("steps", "batch_size", "shard_rows"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.embed_pool and not args.pool:
        raise ValueError("--embed-pool needs --pool")
    paired = PromptPool.from_file(args.paired)
    pool = PromptPool.from_file(args.pool) if args.pool else None
    pool_ids = _pool_rows(paired.texts(range(len(paired))), pool) if pool is not None else None
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    teacher, scheduler, tokenizer, text_encoder = load_teacher(Path(args.teacher))
    teacher.to(device)
    text_encoder.to(device)
    paired_dir = write_paired(args, teacher, dict(scheduler.config), tokenizer, text_encoder, paired, pool_ids, device)
    print(f"paired cache: {paired_dir} ({len(paired)} samples)")
    if args.embed_pool:
        text_dir = write_text(args, tokenizer, text_encoder, pool, device)
        print(f"text cache: {text_dir} ({len(pool)} prompts)")
    return 0
