"""The teacher's samples for the paired prompts (and the pool's text embeddings) as tensor caches (`aria cache`).

Generate the teacher's samples for the paired prompts (and embed a prompt pool) as tensor caches.

Writes, under --out DIR (aria_train.data.cache format, resumable: re-running the same command
continues after the last complete shard; a finished cache is left as it is; either way the shards
already listed are checked first and a damaged one is computed again, see `write_rows`):

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

Each cache's manifest metadata records the settings and a content fingerprint of every input it
was made from (the paired prompts' texts, the pool's texts, the teacher folder's model files) and
the dtype the teacher and text encoder ran in (--dtype). A rerun continues a cache only with the
same metadata: changed inputs at the same paths, or another dtype, are refused before anything is
written; and `aria distill` compares the paired cache's pool fingerprint with its --pool.

On several GPUs: `torchrun --nproc_per_node G -m aria_cli cache ...` (or `accelerate launch`).
The shards still to do are dealt to the processes round-robin, each on its own GPU; rank 0
assembles them in row order into the same single cache, file for file, as one process makes
(shards and sampling batches start at the same rows whatever the number of processes) and
alone shows the progress bar. A killed run, on any rank, resumes on any number of processes.
"""
from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: `aria cache --help` starts without it
    import numpy as np
    import torch

PAIRED_DIR, TEXT_DIR = "paired", "text"


POOL_SCAN_ROWS = 1 << 20  # pool rows probed per pyarrow.compute call in pool_rows


def pool_rows(paired_texts, pool) -> "np.ndarray":
    """Row of ``pool`` holding each paired text (the first such row); ValueError if one is missing.

    ``paired_texts``: a list of str or an Arrow (chunked) string array. A hash join in Arrow, with
    no Python object per pool row: the distinct paired texts are the hash table, and the pool's
    text column is probed against it (``pyarrow.compute.index_in``) in slices of POOL_SCAN_ROWS
    rows, in pool order, so a memory-mapped pool is read, never copied.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    paired = paired_texts if isinstance(paired_texts, (pa.Array, pa.ChunkedArray)) else pa.array(paired_texts, pa.large_string())
    paired = paired.cast(pa.large_string())
    distinct = pc.unique(paired)
    if isinstance(distinct, pa.ChunkedArray):
        distinct = distinct.combine_chunks()
    first = np.full(len(distinct), -1, dtype=np.int64)  # first pool row of each distinct paired text
    start = 0
    for chunk in pool.table.column(pool.text_column).chunks:
        value_set = distinct.cast(chunk.type)
        for lo in range(0, len(chunk), POOL_SCAN_ROWS):
            found = pc.index_in(chunk.slice(lo, POOL_SCAN_ROWS), value_set=value_set)
            hit = np.flatnonzero(pc.is_valid(found).to_numpy(zero_copy_only=False))
            if hit.size:
                which, at = np.unique(found.take(pa.array(hit)).to_numpy(), return_index=True)  # first hit of each
                new = first[which] < 0
                first[which[new]] = start + lo + hit[at[new]]
        start += len(chunk)
    rows = first[pc.index_in(paired, value_set=distinct).to_numpy()]
    if (rows < 0).any():
        missing = int((rows < 0).sum())
        raise ValueError(f"{missing} paired prompts are not in the pool, e.g. {paired[int(np.argmax(rows < 0))].as_py()!r}")
    return rows


# The inputs a cache's metadata fingerprints (what `aria distill` and a rerun compare), as a user names them.
INPUTS = {"paired_fingerprint": "the paired prompts' texts", "pool_fingerprint": "the pool's texts",
          "teacher_fingerprint": "the teacher folder's files"}


def paired_metadata(args: argparse.Namespace, fingerprints: dict, rows: int) -> dict:
    """The manifest metadata of the paired cache: what a rerun must match to continue it.
    ``args.guidance`` and ``args.dtype`` must already be resolved (not None / 'auto')."""
    return {"teacher": str(Path(args.teacher).resolve()), "paired": str(Path(args.paired).resolve()),
            "pool": str(Path(args.pool).resolve()) if args.pool else None, "rows": rows,
            "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "dtype": args.dtype,
            "sample_dtype": args.sample_dtype, **fingerprints,
            **({"compile": True} if args.compile else {}),  # absent when off: caches from before the option match
            "seeding": "row i starts from seeded_noise with seed + i", "sampler": "DDIM eta=0, classifier-free guidance"}


def text_metadata(args: argparse.Namespace, fingerprints: dict, rows: int) -> dict:
    """The manifest metadata of the pool's text cache (it does not depend on the paired prompts)."""
    return {"teacher": str(Path(args.teacher).resolve()), "pool": str(Path(args.pool).resolve()), "rows": rows,
            "dtype": args.dtype, "text_dtype": args.text_dtype,
            **{k: v for k, v in fingerprints.items() if k != "paired_fingerprint"}}


RECORDED_WHEN_ON = ("compile",)  # settings in a cache's metadata only when on (older caches lack them)


def check_metadata(directory: Path, metadata: dict) -> None:
    """ValueError unless ``directory`` holds no cache yet or one made with exactly ``metadata``
    (so that a rerun continues it); reads the manifest only, writes nothing."""
    from aria_train.data.cache import MANIFEST, read_manifest

    if not (directory / MANIFEST).is_file():
        return
    recorded = read_manifest(directory)["metadata"]
    if any(key in metadata and key not in recorded for key in INPUTS):
        raise ValueError(f"{directory} was made by an older `aria cache` that did not record its inputs' "
                         "fingerprints, so it cannot be continued safely: choose another --out")
    inputs = [what for key, what in INPUTS.items() if key in metadata and recorded[key] != metadata[key]]
    if inputs:
        raise ValueError(f"{directory} holds a cache made from other inputs ({', '.join(inputs)} changed): "
                         "choose another --out")
    keys = [*metadata, *(k for k in RECORDED_WHEN_ON if k in recorded and k not in metadata)]
    changed = [f"{k}: {recorded.get(k)!r} -> {metadata.get(k)!r}" for k in keys if recorded.get(k) != metadata.get(k)]
    if changed:
        raise ValueError(f"{directory} was made with other settings ({'; '.join(changed)}): rerun with its "
                         "settings to continue it, or choose another --out")


def _open_writer(directory: Path, metadata: dict, shard_rows: int):
    """A new writer, or the resumed one of an earlier run with the same metadata."""
    from aria_train.data.cache import MANIFEST, TensorCacheWriter

    check_metadata(directory, metadata)
    if not (directory / MANIFEST).is_file():
        return TensorCacheWriter(directory, shard_rows, metadata)
    return TensorCacheWriter.resume(directory)


STAGE_TIMEOUT_S = 6 * 3600  # the ranks meet only at the start and end of a cache, where one waits up to ~a shard's time


class Ranks:
    """The processes of this job: one, or those of `torchrun` / `accelerate launch` (WORLD_SIZE > 1),
    joined through accelerate's PartialState (NCCL on GPUs, gloo with ACCELERATE_USE_CPU=true)."""

    def __init__(self) -> None:
        import os
        from datetime import timedelta

        self.rank, self.world, self.state = 0, int(os.environ.get("WORLD_SIZE", "1")), None
        if self.world > 1:
            from accelerate import PartialState
            from accelerate.utils import parse_flag_from_env

            # AcceleratorState reads ACCELERATE_USE_CPU, PartialState does not
            self.state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=timedelta(seconds=STAGE_TIMEOUT_S))
            if self.state.num_processes != self.world:
                raise ValueError(f"WORLD_SIZE is {self.world} but accelerate joined {self.state.num_processes} processes "
                                 "(on CPUs set ACCELERATE_USE_CPU=true)")
            self.rank = self.state.process_index

    @property
    def device(self):
        """This process's device under a launcher (its own GPU, or the CPU), else None."""
        if self.state is None:
            return None
        import torch

        return torch.device("cpu") if self.state.device.type == "cpu" else self.state.device  # not accelerate's cpu:0

    def share(self, obj):
        """Rank 0's `obj` on every rank (a broadcast; `obj` itself with one process)."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def wait(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def close(self) -> None:
        import torch.distributed as dist

        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


PENDING_DIR = "pending"  # inside a cache folder: row ranges finished by any rank, not yet listed
_PENDING = re.compile(r"rows-(\d{12})-(\d{12})\.safetensors")


def _pending(folder: Path) -> dict[int, tuple[int, Path]]:
    """{first row: (end row, file)} of the finished row ranges in `folder`."""
    found = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _PENDING.fullmatch(path.name)
        if match:
            found[int(match[1])] = (int(match[2]), path)
    return found


def _adopt(writer, folder: Path, damaged: dict[str, range]) -> None:
    """List in `writer`'s manifest the pending ranges that replace its `damaged` shards (removed
    from `damaged` once replaced), then, in row order, those that continue it."""
    pending = _pending(folder)
    for name, rows in list(damaged.items()):
        if pending.get(rows.start, (None,))[0] == rows.stop:
            writer.replace_shard(name, pending.pop(rows.start)[1])
            del damaged[name]
    while len(writer) in pending:
        writer.append_shard(pending.pop(len(writer))[1])


def write_rows(directory: Path, metadata: dict, shard_rows: int, total: int, batch: int, compute, ranks: Ranks,
               desc: str, unit: str, progress: bool, checksums: bool = True) -> Path:
    """Rows [0, total) of a tensor cache in `directory`, made by `compute(rows) -> {name: tensor}`
    (rows: int64 numpy array of at most `batch` rows), on one or several ranks; resumable.

    The shards an earlier run listed are checked first (`TensorCache.damaged_shards`: their
    headers and rows, and with `checksums` every byte against the SHA-256 in the manifest); a
    damaged one is computed again (and put in its place), as are the rows not yet in the cache,
    cut into shards of `shard_rows` rows (counted from the last listed row), each computed in
    batches from its first row, so the rows, batches and shards are the same for any number of
    ranks and any resume point. The shards still to do (those not in DIR/pending/ either) are
    dealt to the ranks round-robin; each rank writes a finished shard to
    DIR/pending/rows-LO-HI.safetensors (atomically), and rank 0 moves the pending shards into the
    cache: in place of the damaged ones (TensorCacheWriter.replace_shard), and those that continue
    it in row order (TensorCacheWriter.append_shard), during the run and after all ranks are done;
    then it closes it. A kill on any rank loses only the shards in
    progress: the next run, on any number of ranks, keeps the listed and the pending ones.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from aria_train.data.cache import TensorCache, write_shard_file

    folder = directory / PENDING_DIR
    writer, plan, damaged = None, None, {}
    if ranks.rank == 0:
        try:
            writer = _open_writer(directory, metadata, shard_rows)
            damaged = TensorCache(directory, allow_incomplete=True).damaged_shards(checksums, progress)
            for name, rows in damaged.items():
                print(f"{directory / name} does not match the cache's manifest: computing its rows "
                      f"{rows.start}-{rows.stop - 1} again")
            folder.mkdir(exist_ok=True)
            for path in folder.glob("*.tmp"):
                path.unlink()  # a write a kill interrupted
            _adopt(writer, folder, damaged)
            start, step = len(writer), writer.shard_rows
            todo = [(rows.start, rows.stop) for rows in damaged.values()]
            todo += [(lo, min(lo + step, total)) for lo in range(start, total, step)]
            pending = _pending(folder)
            for lo, (hi, path) in pending.items():
                if (lo, hi) not in todo:
                    path.unlink()  # listed already (a run killed before it removed this copy), or an edited folder
            done = [r for r in todo if pending.get(r[0], (None,))[0] == r[1]]
            plan = {"todo": [r for r in todo if r not in done],
                    "done": start - sum(map(len, damaged.values())) + sum(hi - lo for lo, hi in done)}
        except (ValueError, OSError):
            ranks.share({"error": True})
            raise
    plan = ranks.share(plan)
    if "error" in plan:
        raise SystemExit(2)  # rank 0 reports it
    show = progress and ranks.rank == 0
    with tqdm(total=total, initial=plan["done"], desc=desc, unit=unit, disable=not show) as bar:
        for lo, hi in plan["todo"][ranks.rank::ranks.world]:
            parts = []
            for b in range(lo, hi, batch):
                parts.append(compute(np.arange(b, min(b + batch, hi), dtype=np.int64)))
                if show:
                    made = (len(writer) - sum(map(len, damaged.values()))
                            + sum(h - l for l, (h, _) in _pending(folder).items()))
                    bar.update(made + min(b + batch, hi) - lo - bar.n)
            write_shard_file(folder / f"rows-{lo:012d}-{hi:012d}.safetensors",
                             {name: torch.cat([part[name] for part in parts]) for name in parts[0]})
            if writer is not None:
                _adopt(writer, folder, damaged)
        ranks.wait()
        if writer is not None:
            _adopt(writer, folder, damaged)
            missing = [f"rows {len(writer)} to {total}"] * (len(writer) != total) + [*damaged]
            if missing:
                raise ValueError(f"{directory}: {', '.join(missing)} missing after every rank finished: run again")
            writer.close()
            shutil.rmtree(folder, ignore_errors=True)
            bar.update(total - bar.n)
    return directory


def write_paired(args: argparse.Namespace, metadata: dict, teacher, scheduler_config: dict, prompts, paired,
                 pool_ids, device, ranks: Ranks | None = None) -> Path:
    """Sample the paired prompts not yet in the cache (this rank's share of them) with the teacher
    UNet and its PromptEncoder as given (device and dtype); ``metadata``: `paired_metadata`.
    Returns the cache folder."""
    import numpy as np
    import torch

    from aria_train.diffusion import sampling

    null = prompts.null()
    shape = sampling.sample_shape(teacher)

    def compute(rows: np.ndarray) -> dict:
        cond = prompts.encode(paired.texts(rows))
        x = sampling.sample(teacher, scheduler_config, cond, null, [args.seed + int(r) for r in rows], shape,
                            args.steps, args.guidance, args.batch_size).to(getattr(torch, args.sample_dtype))
        if not torch.isfinite(x).all():  # never written: a cache of NaN would only fail in distillation
            raise ValueError(f"the teacher's samples of rows {rows[0]}..{rows[-1]} are not finite (guidance "
                             f"{args.guidance:g}, --sample-dtype {args.sample_dtype}); remove {args.out} to start again")
        tensors = {"sample": x, "prompt_index": torch.from_numpy(rows)}
        if pool_ids is not None:
            tensors["prompt_id"] = torch.from_numpy(pool_ids[rows])
        return tensors

    return write_rows(Path(args.out) / PAIRED_DIR, metadata, args.shard_rows, len(paired), args.batch_size, compute,
                      ranks or Ranks(), "paired samples", "img", not args.no_progress, checksums=True)


def write_text(args: argparse.Namespace, metadata: dict, prompts, pool, device, ranks: Ranks | None = None) -> Path:
    """Embed the pool rows not yet in the cache (this rank's share of them) with a teacher's
    PromptEncoder: the context "hidden" and, for SDXL, the pooled projection "text_embeds"
    (`prompts.cache_tensors`); ``metadata``: `text_metadata`. Returns the cache folder."""
    import torch

    from aria_train.diffusion.prompts import cache_tensors

    def compute(rows) -> dict:
        tensors = cache_tensors(prompts.encode(pool.texts(rows)))
        return {name: tensor.to(getattr(torch, args.text_dtype)) for name, tensor in tensors.items()}

    # as `aria distill`, whose --pool text cache is not re-read whole: it can be terabytes
    return write_rows(Path(args.out) / TEXT_DIR, metadata, args.shard_rows, len(pool), 4096, compute,
                      ranks or Ranks(), "pool embeddings", "prompt", not args.no_progress, checksums=False)
