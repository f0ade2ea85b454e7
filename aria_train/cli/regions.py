"""Partition a prompt pool into K regions by k-means on the teacher's pooled text embeddings.

Every prompt of --prompts is embedded once with the frozen text encoder of the --teacher folder
(FOLDER/tokenizer, FOLDER/text_encoder; an embedded-world teacher or a Stable Diffusion folder;
for Stable Diffusion XL, FOLDER/tokenizer_2 and FOLDER/text_encoder_2, whose projected pooled
vector is what the SDXL UNet is conditioned on: docs/design.md §3) into OUT/embeddings, a tensor
cache that a killed run resumes and a rerun with --overwrite (say, another --k) reuses. The cache
records a hash of the prompts' texts and of the text encoder's files: embeddings of other prompts
(even at the same path with as many rows) or of another teacher are never reused: refused, or
with --overwrite deleted and computed again. Then batched k-means (k-means++ seeding) assigns
each prompt a region. Outputs in OUT:

  regions.parquet  the pool's columns with `region` set to the k-means region (a region column
                   the pool already had is kept as `region_given`); a valid --prompts file
  regions.npy      region per prompt, int64 (N,)
  centroids.npy    region centroids in embedding space, float32 (K, D)
  regions.json     the settings and the number of prompts per region (written last)

OUT must be new, empty or an earlier `aria regions` output: a killed run (no regions.json yet)
is resumed; finished results are replaced only with --overwrite, and only once the new ones are
made (a refused or failed run leaves them as they were).

With --centroids FILE (the centroids.npy of an earlier run) no k-means is run: each prompt goes
to its nearest given centroid. That is how held-out prompts get the region ids of the pool they
are evaluated against (`aria eval --heldout`, `aria distill --heldout`). Centroids must be
finite and distinct, and made with the same text encoder when their folder's regions.json says which.

Embedding runs at the GPU's speed: the text encoder in --dtype (auto = bfloat16 on CUDA, float32
on the CPU), prompts tokenized by the Rust tokenizer in a background thread ahead of the encoder,
the next batch queued on the GPU while the last one is copied back, and cache shards written by
another thread (a CLIP-L-size encoder on one H200: ~23,800 prompts/s in bfloat16, against 2,430
for the float32 loop of tokenize, encode, wait; bench/regions_embed.py). Half precision moves few
prompts to another region: assigned to the centroids of the float32 run, 99.89% keep their region
at CLIP-L size in bfloat16, and 99.6% of the tests' 4000 prompts (99.98% in float16;
tests/train/data/test_regions_fast.py); in float32 the fast path gives exactly the regions of
encoding prompt batch by batch. The cache records the dtype, so embeddings of another --dtype are
never mixed or reused (refused, or computed again with --overwrite).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

RESULTS = ("regions.parquet", "regions.npy", "centroids.npy", "regions.json")  # regions.json last: it marks them done
EMBEDDINGS = "embeddings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aria_train.diffusion.precision import DTYPES

    parser.add_argument("--teacher", required=True, metavar="FOLDER",
                        help="model folder holding tokenizer/ and text_encoder/ (Stable Diffusion XL: tokenizer_2/ and "
                        "text_encoder_2/, whose pooled projection is clustered) (required)")
    parser.add_argument("--prompts", required=True, metavar="FILE",
                        help="prompt pool: .txt (one per line), .jsonl, .csv, .parquet or .arrow (required)")
    parser.add_argument("--k", type=int, default=None, help="number of regions, 1 <= K <= number of prompts (required without --centroids)")
    parser.add_argument("--centroids", metavar="FILE", default=None,
                        help="centroids.npy of an earlier run: assign each prompt to the nearest of these instead of "
                        "running k-means (default: none)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder, created if missing; an existing one "
                        "must be empty or an earlier `aria regions` output (required)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out, "
                        "reusing its embeddings when they are of the same prompts, text encoder and --dtype, else "
                        "computing them again (default: refuse)")
    parser.add_argument("--text-column", default="text", help="column holding the prompts (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=100,
                        help="maximum Lloyd iterations; stops earlier when no label changes (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="torch device; auto = cuda if available, else cpu (default: %(default)s)")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto", help="dtype the text encoder runs in; "
                        "auto = bfloat16 on CUDA, float32 on the CPU; embeddings cached in another dtype are refused "
                        "(computed again with --overwrite) (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1024, help="prompts per text-encoder batch (default: %(default)s)")
    parser.add_argument("--kmeans-batch-size", type=int, default=65536,
                        help="embeddings per k-means distance batch (default: %(default)s)")
    parser.add_argument("--shard-rows", type=int, default=65536,
                        help="embeddings per cache shard file (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar over the embedded prompts (default: a bar)")


def check_out(out: Path, overwrite: bool) -> None:
    """ValueError unless ``out`` is free for this run: missing, empty, a killed run of this command
    (embeddings but no regions.json), or finished results with ``overwrite``."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    names = {p.name for p in out.iterdir() if not (p.name.startswith(".") and ".tmp" in p.name)}
    foreign = sorted(names - {*RESULTS, EMBEDDINGS})
    if foreign:
        raise ValueError(f"output {out} already exists and is not an `aria regions` output (it holds "
                         f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}): choose another --out")
    if names & set(RESULTS) and not overwrite:
        raise ValueError(f"output {out} already holds regions (pass --overwrite to replace them, or choose another --out)")


def load_centroids(path: str):
    """The (K, D) float32 centroids in ``path`` (ValueError if unreadable, of another shape or not finite)."""
    import numpy as np

    try:
        with open(path, "rb") as file:
            npy = file.read(6) == b"\x93NUMPY"  # anything else np.load would try to unpickle, and say so
        centroids = np.load(path) if npy else None
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"--centroids {path}: cannot read ({err})") from None
    if centroids is None:
        raise ValueError(f"--centroids {path} is not a .npy file (numpy.save writes one)")
    if not isinstance(centroids, np.ndarray) or centroids.ndim != 2 or len(centroids) < 1 or centroids.shape[1] < 1:
        raise ValueError(f"--centroids {path}: expected a (K, D) array, got shape {getattr(centroids, 'shape', None)}")
    if not (np.issubdtype(centroids.dtype, np.floating) or np.issubdtype(centroids.dtype, np.integer)):
        raise ValueError(f"--centroids {path}: expected numbers, got dtype {centroids.dtype}")
    bad = np.flatnonzero(~np.isfinite(centroids).all(axis=1))
    if bad.size:
        raise ValueError(f"--centroids {path}: {bad.size} centroid(s) hold NaN or infinite values (first: row {bad[0]})")
    distinct, first = np.unique(centroids, axis=0, return_index=True)
    if len(distinct) < len(centroids):  # the nearest-centroid rule gives a tie to the first: the copy's region stays empty
        copy = int(np.setdiff1d(np.arange(len(centroids)), first)[0])
        raise ValueError(f"--centroids {path}: {len(centroids) - len(distinct)} centroid(s) repeat an earlier one "
                         f"(first: row {copy}), whose region no prompt could be assigned to")
    return centroids.astype(np.float32, copy=False)


def check_centroid_source(path: str, text_encoder: str) -> None:
    """ValueError if the regions.json beside ``path`` records another text encoder than ``text_encoder``."""
    summary = Path(path).parent / "regions.json"
    try:
        made_with = json.loads(summary.read_text()).get("text_encoder_fingerprint")
    except (OSError, ValueError, AttributeError):
        return  # no (readable) record: nothing to compare
    if isinstance(made_with, str) and made_with != text_encoder:
        raise ValueError(f"--centroids {path} were made with another text encoder ({summary}) than --teacher's: "
                         "its embedding space differs; make them again with this teacher")


def _write_results(out: Path, table, labels, centroids, summary: dict, overwrite: bool) -> None:
    """The result files, each written under a temporary name and renamed into place, regions.json
    last; an earlier run's regions.json is removed first, so that a crash in between leaves a
    resumable (unfinished) folder, never old and new results under one regions.json."""
    import numpy as np
    import pyarrow.parquet as pq

    tmp = {name: out / f".{name}.tmp-{os.getpid()}" for name in RESULTS}
    try:
        pq.write_table(table, tmp["regions.parquet"])
        with open(tmp["regions.npy"], "wb") as f:
            np.save(f, labels)
        with open(tmp["centroids.npy"], "wb") as f:
            np.save(f, centroids)
        tmp["regions.json"].write_text(json.dumps(summary, indent=1) + "\n")
        if overwrite:
            (out / "regions.json").unlink(missing_ok=True)
        for name in RESULTS:
            os.replace(tmp[name], out / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa
    import torch

    from aria_train.console import first_line, quiet_libraries
    from aria_train.data.cache import folder_fingerprint
    from aria_train.data.pool import PromptPool
    from aria_train.data.regions import (EMBEDDING_DTYPE, POOLED, TooFewDistinct, assign_regions,
                                         check_embedding_cache, embedding_metadata, kmeans_regions,
                                         pooled_embedding_cache)
    from aria_train.diffusion.loading import load_region_encoder, resolve_device
    from aria_train.diffusion.precision import resolve_dtype
    from aria_train.diffusion.text import pooled_width
    from aria_train.options import check_seed

    quiet_libraries()  # the encoder's load bar would print before our own progress and errors

    if (args.k is None) == (args.centroids is None):
        raise ValueError("give either --k (k-means) or --centroids (nearest given centroid)")
    centroids = None
    if args.centroids is not None:
        centroids = load_centroids(args.centroids)
        args.k = len(centroids)
    for name in ("k", "iters", "batch_size", "kmeans_batch_size", "shard_rows"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    check_seed("--seed", args.seed)
    out = Path(args.out)
    check_out(out, args.overwrite)
    pool = PromptPool.from_file(args.prompts, text_column=args.text_column)
    if centroids is None and args.k > len(pool):
        raise ValueError(f"--k {args.k} is more than the {len(pool)} prompts of {args.prompts}")
    device = resolve_device(None if args.device == "auto" else args.device)
    dtype = getattr(torch, resolve_dtype(args.dtype, device))
    try:
        tokenizer, text_encoder, text_parts = load_region_encoder(args.teacher)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # transformers/safetensors raise many types for bad files
        raise ValueError(f"cannot load the text encoder of teacher {args.teacher}: {first_line(err)}") from None
    width = pooled_width(text_encoder)
    if centroids is not None and centroids.shape[1] != width:
        raise ValueError(f"--centroids {args.centroids} have dimension {centroids.shape[1]}, the text encoder's "
                         f"pooled embeddings {width}")
    encoder_print = folder_fingerprint(args.teacher, text_parts)
    if centroids is not None:
        check_centroid_source(args.centroids, encoder_print)
    paths = {"teacher": str(Path(args.teacher).resolve()), "prompts": str(Path(args.prompts).resolve())}
    source = {"prompts_fingerprint": pool.fingerprint(), "text_encoder_fingerprint": encoder_print,
              "text_column": args.text_column}
    metadata = embedding_metadata(pool, dtype, {**source, "paths": paths})
    # embeddings of other inputs: refused before anything is written, or (--overwrite) computed again
    check_embedding_cache(out / EMBEDDINGS, metadata, replace=args.overwrite)
    text_encoder.to(device, dtype)
    out.mkdir(parents=True, exist_ok=True)

    cache = pooled_embedding_cache(pool, tokenizer, text_encoder, out / EMBEDDINGS, device,
                                   batch_size=args.batch_size, shard_rows=args.shard_rows, metadata=metadata,
                                   replace=args.overwrite, progress=not args.no_progress)
    if centroids is None:
        print(f"k-means: {len(cache)} embeddings of dimension {width} into {args.k} regions on {device}")
        try:
            labels, centroids = kmeans_regions(cache.get(POOLED), args.k, args.seed, device=device,
                                               batch_size=args.kmeans_batch_size, iters=args.iters)
        except TooFewDistinct as err:  # known only once the prompts are embedded
            raise ValueError(f"{err} (the embeddings stay in {out / EMBEDDINGS}: a rerun with a smaller --k "
                             "reuses them)") from None
    else:
        print(f"assigning {len(cache)} embeddings to the nearest of {args.k} given centroids on {device}")
        labels = assign_regions(cache.get(POOLED), centroids, device=device, batch_size=args.kmeans_batch_size)

    table = pool.table
    if pool.region_column in table.column_names:
        table = table.rename_columns([f"{name}_given" if name == pool.region_column else name for name in table.column_names])
    table = table.append_column(pool.region_column, pa.array(labels))
    sizes = np.bincount(labels, minlength=args.k)
    summary = {**paths, **source, EMBEDDING_DTYPE: metadata[EMBEDDING_DTYPE], "k": args.k, "seed": args.seed,
               "iters": args.iters,
               "centroids": str(Path(args.centroids).resolve()) if args.centroids else None,
               "prompts_per_region": sizes.tolist()}
    _write_results(out, table, labels, centroids, summary, args.overwrite)
    print(f"wrote {out}/regions.parquet, regions.npy, centroids.npy, regions.json; "
          f"prompts per region: min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()}")
    return 0
