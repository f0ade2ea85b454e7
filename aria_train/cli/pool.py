"""Convert a prompt pool to an .arrow file that every process maps without copying (pools of millions).

A .txt / .jsonl / .csv / .parquet pool is read into each process's own memory: under data
parallelism every rank holds a private copy (about 450 MB per rank for 10^7 short prompts). An
.arrow pool (Arrow IPC, uncompressed) is opened with a memory map instead: opening takes
milliseconds, and all ranks share the file's pages through the OS page cache. Pass the .arrow
file wherever a pool file is taken (`aria distill --pool`, `aria cache --pool`, ...).

    aria pool regions/regions.parquet --out pool.arrow
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="pool file to convert (txt/jsonl/csv/parquet/arrow)")
    parser.add_argument("--out", required=True, help="the .arrow file to write (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file (atomically: a "
                        "process that has it open keeps reading the old one) (default: refuse)")
    parser.add_argument("--text-column", default="text", help="column holding the prompts (default: %(default)s)")
    parser.add_argument("--region-column", default=None, help="column of region ids; given, the source must have it "
                        "(default: 'region' if the source has that column, else none)")


def run(args: argparse.Namespace) -> int:
    from aria_train.data.pool import PromptPool
    from aria_train.runs.atomic import check_free

    check_free(args.out, args.overwrite, [args.source])  # before reading a pool of millions
    pool = PromptPool.from_file(args.source, text_column=args.text_column, region_column=args.region_column or "region")
    if args.region_column is not None and pool.regions is None:
        raise ValueError(f"{args.source} has no column {args.region_column!r} (--region-column)")
    path = pool.to_arrow(args.out)
    regions = f", {pool.num_regions} regions" if pool.regions is not None else ""
    print(f"wrote {path}: {len(pool)} prompts{regions}")
    blank = pool.count_blank()
    if blank:  # kept, but rarely meant: RC and ARIA draws of them train the null text's output
        print(f"warning: {blank} of {len(pool)} prompts are empty or whitespace; they are kept and act as the null "
              f"text when drawn (drop them from {args.source} if that is not meant)")
    return 0
