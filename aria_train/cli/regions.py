"""Partition a prompt pool into K regions by k-means on the teacher's pooled text embeddings.

Every prompt of --prompts is embedded once with the frozen text encoder of the --teacher folder
(FOLDER/tokenizer, FOLDER/text_encoder; an embedded-world teacher or a Stable Diffusion folder)
into OUT/embeddings, a tensor cache that a killed run resumes and a rerun reuses. Then batched
k-means (k-means++ seeding) assigns each prompt a region. Outputs in OUT:

  regions.parquet  the pool's columns with `region` set to the k-means region (a region column
                   the pool already had is kept as `region_given`); a valid --prompts file
  regions.npy      region per prompt, int64 (N,)
  centroids.npy    region centroids in embedding space, float32 (K, D)
  regions.json     the settings and the number of prompts per region

With --centroids FILE (the centroids.npy of an earlier run) no k-means is run: each prompt goes
to its nearest given centroid. That is how held-out prompts get the region ids of the pool they
are evaluated against (`aria eval --heldout`, `aria distill --heldout`).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, metavar="FOLDER",
                        help="model folder holding tokenizer/ and text_encoder/ (required)")
    parser.add_argument("--prompts", required=True, metavar="FILE",
                        help="prompt pool: .txt (one per line), .jsonl, .csv or .parquet (required)")
    parser.add_argument("--k", type=int, default=None, help="number of regions, 1 <= K <= number of prompts (required without --centroids)")
    parser.add_argument("--centroids", metavar="FILE", default=None,
                        help="centroids.npy of an earlier run: assign each prompt to the nearest of these instead of "
                        "running k-means (default: none)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder, created if missing (required)")
    parser.add_argument("--text-column", default="text", help="column holding the prompts (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=100,
                        help="maximum Lloyd iterations; stops earlier when no label changes (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="torch device; auto = cuda if available, else cpu (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="prompts per text-encoder batch (default: %(default)s)")
    parser.add_argument("--kmeans-batch-size", type=int, default=65536,
                        help="embeddings per k-means distance batch (default: %(default)s)")
    parser.add_argument("--shard-rows", type=int, default=65536,
                        help="embeddings per cache shard file (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from aria_train.data.pool import PromptPool
    from aria_train.data.regions import POOLED, assign_regions, kmeans_regions, pooled_embedding_cache
    from aria_train.diffusion.text import load_text_stack

    if (args.k is None) == (args.centroids is None):
        raise ValueError("give either --k (k-means) or --centroids (nearest given centroid)")
    centroids = None
    if args.centroids is not None:
        try:
            centroids = np.load(args.centroids)
        except (OSError, ValueError) as err:
            raise ValueError(f"--centroids {args.centroids}: cannot read ({err})") from None
        if centroids.ndim != 2 or len(centroids) < 1:
            raise ValueError(f"--centroids {args.centroids}: expected a (K, D) array, got shape {centroids.shape}")
        args.k = len(centroids)
    for name in ("k", "iters", "batch_size", "kmeans_batch_size", "shard_rows"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    pool = PromptPool.from_file(args.prompts, text_column=args.text_column)
    if centroids is None and args.k > len(pool):
        raise ValueError(f"--k {args.k} is more than the {len(pool)} prompts of {args.prompts}")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    tokenizer, text_encoder = load_text_stack(args.teacher)
    text_encoder.to(device)
    if centroids is not None and centroids.shape[1] != text_encoder.config.hidden_size:
        raise ValueError(f"--centroids {args.centroids} have dimension {centroids.shape[1]}, the text encoder's "
                         f"pooled embeddings {text_encoder.config.hidden_size}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    source = {"teacher": str(Path(args.teacher).resolve()), "prompts": str(Path(args.prompts).resolve()),
              "text_column": args.text_column}
    cache = pooled_embedding_cache(pool, tokenizer, text_encoder, out / "embeddings", device,
                                   batch_size=args.batch_size, shard_rows=args.shard_rows, metadata=source)
    width = cache.shape(POOLED)[1]
    if centroids is None:
        print(f"k-means: {len(cache)} embeddings of dimension {width} into {args.k} regions on {device}")
        labels, centroids = kmeans_regions(cache.get(POOLED), args.k, args.seed, device=device,
                                           batch_size=args.kmeans_batch_size, iters=args.iters)
    else:
        print(f"assigning {len(cache)} embeddings to the nearest of {args.k} given centroids on {device}")
        labels = assign_regions(cache.get(POOLED), centroids, device=device, batch_size=args.kmeans_batch_size)

    table = pool.table
    if pool.region_column in table.column_names:
        table = table.rename_columns([f"{name}_given" if name == pool.region_column else name for name in table.column_names])
    table = table.append_column(pool.region_column, pa.array(labels))
    pq.write_table(table, out / "regions.parquet")
    np.save(out / "regions.npy", labels)
    np.save(out / "centroids.npy", centroids)
    sizes = np.bincount(labels, minlength=args.k)
    summary = {**source, "k": args.k, "seed": args.seed, "iters": args.iters,
               "centroids": str(Path(args.centroids).resolve()) if args.centroids else None,
               "prompts_per_region": sizes.tolist()}
    (out / "regions.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out}/regions.parquet, regions.npy, centroids.npy, regions.json; "
          f"prompts per region: min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()}")
    return 0
