"""`aria regions`' embedding rate (prompts/s): the reference path against the fast one, and how
far half precision moves prompts between regions.

On a random SD folder's text stack (bench/sd_folder.py; ``--size sd14``: CLIP ViT-L/14's text
tower, hidden 768, 12 layers, 12 heads; ``--size tiny``: one layer of width 32) and a memory-mapped
.arrow pool of random prompts, each path embeds pool prompts into a tensor cache as `aria regions`
does, in batches of ``--batch`` prompts:

* reference: the path before issue 16, kept here as the baseline: per batch, transformers'
  tokenizer call, the float32 encoder, a wait for the result, the cache append, in sequence
  (`encode_prompts`); on the first ``--reference-prompts`` prompts.
* fast, per ``--dtype``: `pooled_embedding_cache`, what `aria regions` runs now: the Rust
  tokenizer in a background thread, the encoder in that dtype with the next batch queued while
  the previous one is copied back, cache shards written by another thread; on ``--prompts``.
* tokenize (transformers / rust): tokenization alone, on the reference's prompts: the ceiling
  that the host puts on either path.

Columns: prompts/s, speed-up over the reference, the largest difference of the pooled
embeddings from the reference's, and the region agreement: the share of the reference's prompts
that the fast path's embeddings put in the same region, both assigned to the centroids of a
k-means (``--k`` regions) of the reference embeddings.

``python -m bench.regions_embed [--size sd14|tiny] [--prompts N] [--batch B ...] [--dtype D ...]
[--quick] [--out DIR] [--work DIR]``; the default size is sd14 on a GPU and tiny on the CPU.
"""
from __future__ import annotations

import copy
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from aria_train.diffusion.precision import DTYPES
from bench.common import end_to_end_parser, parse_args, report, work_folder
from bench.sd_folder import SIZES, random_prompts, sd_folder

if TYPE_CHECKING:  # imported where used: `--help` starts without transformers
    from transformers import PreTrainedTokenizerBase

    from aria_train.data.pool import PromptPool

SHARD_ROWS = 65536  # `aria regions`' default


def reference_cache(pool: PromptPool, tokenizer: PreTrainedTokenizerBase, text_encoder: torch.nn.Module, directory: Path,
                    device: torch.device, batch: int, rows: int) -> None:
    """The embedding loop of `aria regions` before issue 16: encode a batch, wait, append, repeat."""
    from aria_train.data.cache import TensorCacheWriter
    from aria_train.diffusion.text import encode_prompts

    writer = TensorCacheWriter(directory, SHARD_ROWS)
    for start in range(0, rows, batch):
        _, pooled = encode_prompts(tokenizer, text_encoder, pool.texts(range(start, min(start + batch, rows))), device,
                                   batch)
        writer.append(pooled=pooled)
    writer.close()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(size: str, prompts: int, reference_prompts: int, batches: list[int], dtypes: list[str], k: int,
        device: torch.device, work: Path, out: Path) -> list[dict]:
    import pandas as pd

    from aria_train.data.cache import TensorCache
    from aria_train.data.pool import PromptPool
    from aria_train.data.regions import POOLED, assign_regions, kmeans_regions, pooled_embedding_cache, pooled_embeddings
    from aria_train.diffusion.text import fixed_length_tokenizer, load_text_stack

    reference_prompts = min(reference_prompts, prompts)
    folder = sd_folder(work, size, text_only=True)
    pool = PromptPool.from_frame(pd.DataFrame({"text": random_prompts(prompts)}))
    pool = PromptPool.from_file(pool.to_arrow(work / f"pool-{prompts}.arrow"))  # memory-mapped, as `aria pool` makes it
    tokenizer, text_encoder = load_text_stack(folder)
    text_encoder.to(device)
    label = {"size": size, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
             "width": text_encoder.config.hidden_size, "layers": text_encoder.config.num_hidden_layers}
    print(f"{label['device']}: text encoder of width {label['width']}, {label['layers']} layers; {len(pool)} prompts, "
          f"the reference on {reference_prompts}", flush=True)

    rows: list[dict] = []
    head = pool.texts(range(reference_prompts))
    for path, tokenize in (("tokenize (transformers)", lambda texts: tokenizer(
                               texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)),
                           ("tokenize (rust)", fixed_length_tokenizer(tokenizer))):
        start = time.perf_counter()
        for s in range(0, reference_prompts, batches[0]):
            tokenize(head[s : s + batches[0]])
        seconds = time.perf_counter() - start
        rows.append({**label, "path": path, "dtype": "", "batch": batches[0], "prompts": reference_prompts,
                     "seconds": seconds, "prompts_per_s": reference_prompts / seconds, "max_abs_diff": math.nan,
                     "region_agreement": math.nan})

    with tempfile.TemporaryDirectory(dir=work) as scratch:
        scratch = Path(scratch)
        reference_cache(pool, tokenizer, text_encoder, scratch / "warm-up", device, batches[0], batches[0])  # lazy inits
        sync(device)
        start = time.perf_counter()
        reference_cache(pool, tokenizer, text_encoder, scratch / "reference", device, batches[0], reference_prompts)
        seconds = time.perf_counter() - start
        reference = TensorCache(scratch / "reference").get(POOLED)
        labels, centroids = kmeans_regions(reference, k, seed=0, device=device)
        rows.append({**label, "path": "reference", "dtype": "float32", "batch": batches[0], "prompts": reference_prompts,
                     "seconds": seconds, "prompts_per_s": reference_prompts / seconds, "max_abs_diff": 0.0,
                     "region_agreement": 1.0})
        print(f"reference float32, batch {batches[0]}: {reference_prompts / seconds:,.0f} prompts/s", flush=True)

        def save(show: bool) -> None:
            for row in rows:
                row.update(speedup=row["prompts_per_s"] / rows[2]["prompts_per_s"], k=k)  # rows[2]: the reference
            report(f"regions_embed_{size}", rows, out, show)  # by size: a CPU run leaves the GPU results alone

        for dtype in dtypes:
            encoder = copy.deepcopy(text_encoder).to(dtype=getattr(torch, dtype))  # from the float32 weights
            for batch in batches:
                # the last two batches once, untimed: this dtype's and batch size's kernels are chosen
                for _ in pooled_embeddings(pool, tokenizer, encoder, device, max(0, len(pool) - 2 * batch), batch):
                    pass
                sync(device)
                start = time.perf_counter()
                cache = pooled_embedding_cache(pool, tokenizer, encoder, scratch / f"{dtype}-{batch}", device,
                                               batch_size=batch, shard_rows=SHARD_ROWS, progress=False)
                seconds = time.perf_counter() - start
                fast = cache.get(POOLED)[:reference_prompts]
                agreement = float((assign_regions(fast, centroids, device=device) == labels).mean())
                rows.append({**label, "path": "fast", "dtype": dtype, "batch": batch, "prompts": len(pool),
                             "seconds": seconds, "prompts_per_s": len(pool) / seconds,
                             "max_abs_diff": float((fast - reference).abs().max()), "region_agreement": agreement})
                print(f"fast {dtype}, batch {batch}: {len(pool) / seconds:,.0f} prompts/s, regions agree on "
                      f"{agreement:.4f}", flush=True)
                save(show=False)  # a run cut short keeps what it measured
        save(show=True)
    return rows


def main(scale: float = 1.0, argv: list[str] | None = None) -> list[dict]:
    """What `python -m bench` runs (argv None: the defaults, prompt counts times `scale`)."""
    cuda = torch.cuda.is_available()
    parser = end_to_end_parser("regions_embed", __doc__, SIZES, "text encoder")
    parser.add_argument("--prompts", type=int, default=200_000 if cuda else 20_000,
                        help="prompts the fast path embeds (default: 200000 on a GPU, 20000 on the CPU)")
    parser.add_argument("--reference-prompts", type=int, default=20_000 if cuda else 5_000,
                        help="prompts the reference path embeds (default: 20000 on a GPU, 5000 on the CPU)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1024],
                        help="prompts per encoder batch; the first also the reference's (default: %(default)s)")
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=["bfloat16", "float32"],
                        help="dtypes of the fast path (default: %(default)s)")
    parser.add_argument("--k", type=int, default=64, help="regions of the agreement check (default: %(default)s)")
    args = parse_args(parser, [] if argv is None else argv,
                      {"size": "tiny", "prompts": 3000, "reference_prompts": 1000, "k": 16})
    with work_folder(args.work) as work:
        return run(args.size, max(args.k, int(args.prompts * scale)), max(args.k, int(args.reference_prompts * scale)),
                   args.batch, args.dtype, args.k, torch.device("cuda" if cuda else "cpu"), work, args.out)


if __name__ == "__main__":
    main(argv=sys.argv[1:])
