"""Regions of the conditioning space: given by a column of the pool, or k-means on text embeddings.

ARIA tracks the teacher-student discrepancy per region and samples prompts region by region,
so every region id in [0, K) must own at least one prompt. Embeddings for k-means are the text
encoder's pooled outputs, computed once per pool into a `TensorCache` (`pooled_embedding_cache`),
with tokenization, the encoder and the cache's writes overlapped (`pooled_embeddings`).
"""
from __future__ import annotations

import json
import math
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from aria_train.data.cache import MANIFEST, TensorCache, TensorCacheWriter, read_manifest
from aria_train.data.pool import PromptPool
from aria_train.diffusion.text import fixed_length_tokenizer, pooled_outputs, prefetch

POOLED = "pooled"  # the tensor name of pooled embeddings in a cache


class TooFewDistinct(ValueError):
    """k-means was asked for more regions than the data has distinct points."""


def regions_from_column(pool: PromptPool) -> np.ndarray:
    """The pool's own region ids (int64 (N,)); ValueError unless every id in [0, K) has a prompt."""
    if pool.regions is None:
        raise ValueError(f"{pool.source}: no region column {pool.region_column!r}; cluster embeddings instead")
    if pool.num_regions > len(pool):  # before counting per region: a stray huge id would need a huge array
        raise ValueError(f"{pool.source}: region id {pool.num_regions - 1} needs {pool.num_regions} regions, more than "
                         f"the {len(pool)} prompts (every region id in [0, K) must have a prompt)")
    empty = np.flatnonzero(np.bincount(pool.regions) == 0)
    if empty.size:
        raise ValueError(f"{pool.source}: regions {empty[:10].tolist()} of [0, {pool.num_regions}) have no prompt")
    return pool.regions


def _as_float_tensor(embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
    data = torch.as_tensor(embeddings)
    if data.dim() != 2 or not data.is_floating_point():
        raise ValueError(f"embeddings must be a float matrix (N, D), got {tuple(data.shape)} {data.dtype}")
    return data


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    """|x_i|^2 of each row (float32); vector_norm reads x once, unlike (x * x).sum(1)."""
    return torch.linalg.vector_norm(x, dim=1).square_()


def _nearest(x: torch.Tensor, centroids: torch.Tensor, centroid_sq: torch.Tensor,
             x_sq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distance, index) of each row of x to its nearest centroid, by one fused matmul
    (|c|^2 - 2 x.c); `x_sq` = |x|^2 per row when already known."""
    dist, label = torch.addmm(centroid_sq[None, :], x, centroids.T, alpha=-2.0).min(dim=1)
    return (dist + (_squared_norms(x) if x_sq is None else x_sq)).clamp_min_(0.0), label


def assign_regions(
    embeddings: torch.Tensor | np.ndarray,
    centroids: torch.Tensor | np.ndarray,
    device: str | torch.device = "cpu",
    batch_size: int = 65536,
) -> np.ndarray:
    """Region of each embedding: the nearest centroid (Euclidean), int64 (N,). Batches of `batch_size` rows."""
    data = _as_float_tensor(embeddings)
    centroids = _as_float_tensor(centroids).to(device, torch.float32)
    centroid_sq = (centroids * centroids).sum(dim=1)
    labels = [_nearest(data[s : s + batch_size].to(device, torch.float32), centroids, centroid_sq)[1].cpu()
              for s in range(0, len(data), batch_size)]
    return torch.cat(labels).numpy().astype(np.int64) if labels else np.zeros(0, dtype=np.int64)


def _fit_on_device(data: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """`data` as float32 on a CUDA `device` when that takes under half its free memory (each
    Lloyd pass then reads it there instead of copying it over again); otherwise unchanged."""
    device = torch.device(device)
    if device.type != "cuda" or data.device == device:
        return data
    free, _ = torch.cuda.mem_get_info(device)
    return data.to(device, torch.float32) if 4 * data.numel() < free // 2 else data


def _kmeans_plus_plus(sample: torch.Tensor, k: int, generator: torch.Generator, trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (as scikit-learn): of `trials` (default 2 + log k) candidates
    drawn by D^2 sampling, keep the one that lowers the total squared distance most."""
    trials = trials or 2 + int(math.log(k))
    sample_sq = _squared_norms(sample)
    first = int(torch.randint(len(sample), (1,), generator=generator))
    chosen = [first]
    d2 = ((sample - sample[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        weights = d2.double().cpu()
        if weights.sum() <= 0:
            raise TooFewDistinct(f"fewer than k = {k} distinct embeddings: use fewer regions")
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator).to(sample.device)
        # (m, trials): sample x candidates as the (m, D) x (D, trials) product, the faster layout
        cross = torch.nn.functional.linear(sample, sample[candidates])
        cand_d2 = (sample_sq[:, None] + sample_sq[None, candidates]).sub_(cross, alpha=2.0).clamp_min_(0.0)
        new_d2 = torch.minimum(d2[:, None], cand_d2)
        best = int(new_d2.sum(dim=0).argmin())
        chosen.append(int(candidates[best]))
        d2 = new_d2[:, best].contiguous()
    return sample[chosen]


def _two_nearest(x: torch.Tensor, centroids: torch.Tensor, centroid_sq: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(distance to the nearest centroid, its index, distance to the second nearest; inf when
    k = 1) of each row of x, distances (not squared) by one fused matmul."""
    d2 = torch.addmm(centroid_sq[None, :], x, centroids.T, alpha=-2.0).add_(_squared_norms(x)[:, None]).clamp_min_(0.0)
    if len(centroids) == 1:
        return d2[:, 0].sqrt(), torch.zeros(len(x), dtype=torch.int64, device=x.device), torch.full_like(d2[:, 0], math.inf)
    best, index = torch.topk(d2, 2, dim=1, largest=False)
    best = best.sqrt_()
    return best[:, 0], index[:, 0], best[:, 1]


def _rows(data: torch.Tensor, index: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """data[index] as float32 on `device` (index on any device); index_select, as a row gather
    by `data[index]` is several times slower on the CPU."""
    return data.index_select(0, index.to(data.device)).to(device, torch.float32)


def _distances_to(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """|x_i - c_labels(i)| per row (float32)."""
    return torch.linalg.vector_norm(centroids.index_select(0, labels).sub_(x), dim=1)


def _own_distances(data: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                   device: str | torch.device, batch_size: int) -> torch.Tensor:
    """|x_i - c_label(i)| of every row (float32, on `device`), one pass of O(N D)."""
    return torch.cat([_distances_to(data[s : s + batch_size].to(device, torch.float32), centroids,
                                    labels[s : s + batch_size]) for s in range(0, len(data), batch_size)])


def _lloyd(
    data: torch.Tensor,
    centroids: torch.Tensor,
    device: str | torch.device,
    batch_size: int,
    iters: int,
    tol: float,
) -> dict[str, Any]:
    """At most `iters` Lloyd iterations from `centroids` (k, D) on `device`, until at most
    tol * N labels change in an iteration (tol = 0: none). Empty clusters are re-seeded at the
    points farthest from their centroids.

    The first iteration computes every distance (one matmul pass over `data` in batches of
    `batch_size` rows). Later ones skip the points whose label cannot change (Hamerly's bounds:
    an upper bound u on the distance to the own centroid, a lower bound l on the distance to
    any other one, both moved by how far the centroids moved; a point keeps its centroid while
    u <= max(l, half the distance from that centroid to its nearest other)); only the others
    are read again. The labels are those of plain Lloyd iterations, up to float rounding of
    near-ties. Cluster sums are kept in float64 and moved with the points that change cluster.
    Returns labels (CPU int64 (N,)), counts, centroids (the means of those labels), inertia (the
    sum of squared distances to them), iterations, converged and changed (labels changed per
    iteration).
    """
    n, dim = data.shape
    k = len(centroids)
    labels = torch.empty(n, dtype=torch.int64, device=device)
    upper = torch.empty(n, dtype=torch.float32, device=device)
    lower = torch.empty(n, dtype=torch.float32, device=device)
    sums = torch.zeros(k, dim, dtype=torch.float64, device=device)
    counts = torch.zeros(k, dtype=torch.int64, device=device)
    full, converged, iteration, history = True, False, 0, []
    for iteration in range(1, iters + 1):
        centroid_sq = (centroids * centroids).sum(dim=1)
        if full:  # every distance; sums from scratch
            previous = None if iteration == 1 else labels.clone()
            sums.zero_()
            counts.zero_()
            for s in range(0, n, batch_size):
                x = data[s : s + batch_size].to(device, torch.float32)
                upper[s : s + batch_size], label, lower[s : s + batch_size] = _two_nearest(x, centroids, centroid_sq)
                labels[s : s + batch_size] = label
                sums += torch.zeros(k, dim, device=device).index_add_(0, label, x).double()  # float32 within a batch
                counts += torch.bincount(label, minlength=k)
            changed = n if previous is None else int((labels != previous).sum())
        else:  # only points whose bounds fail
            gaps = torch.cdist(centroids, centroids, compute_mode="donot_use_mm_for_euclid_dist").fill_diagonal_(math.inf)
            half_gap = gaps.min(dim=1).values / 2 if k > 1 else torch.full((1,), math.inf, device=device)
            bound = torch.maximum(half_gap[labels], lower)
            check = torch.nonzero(upper > bound).flatten()
            changed = 0
            for s in range(0, check.numel(), batch_size):
                rows = check[s : s + batch_size]
                x = _rows(data, rows, device)
                old = labels[rows]
                own = _distances_to(x, centroids, old)  # tighten u first
                upper[rows] = own
                again = torch.nonzero(own > bound[rows]).flatten()
                if not again.numel():
                    continue
                rows, x, old = rows[again], x.index_select(0, again), old[again]
                upper[rows], label, lower[rows] = _two_nearest(x, centroids, centroid_sq)
                labels[rows] = label
                moved = label != old
                if moved.any():
                    changed += int(moved.sum())
                    xd = x.index_select(0, torch.nonzero(moved).flatten()).double()
                    sums.index_add_(0, label[moved], xd).index_add_(0, old[moved], xd, alpha=-1)
                    counts += torch.bincount(label[moved], minlength=k) - torch.bincount(old[moved], minlength=k)
        history.append(changed)
        new = (sums / counts.clamp_min(1)[:, None]).float()  # the means of these labels
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            # as plain Lloyd: re-seed at the points farthest from their (this iteration's) centroids
            far_dist, far = torch.topk(_own_distances(data, labels, centroids, device, batch_size), empty.numel())
            if far_dist.min() <= 0:
                raise TooFewDistinct(f"fewer than k = {k} distinct embeddings: use fewer regions")
            new[empty] = _rows(data, far, device)
            centroids, full = new, True  # every bound is stale: compute every distance again
            continue
        shift = torch.linalg.vector_norm(new - centroids, dim=1)
        centroids, full = new, False
        if changed <= tol * n and iteration > 1:
            converged = True
            break
        upper += shift[labels]
        if k > 1:  # the largest move of a centroid other than the own one
            top, top_index = torch.topk(shift, 2)
            lower -= torch.where(labels == top_index[0], top[1], top[0])
    inertia = float(_own_distances(data, labels, centroids, device, batch_size).double().square().sum())
    return {"labels": labels.cpu(), "counts": counts, "centroids": centroids, "inertia": inertia,
            "iterations": iteration, "converged": converged, "changed": history}


def kmeans_regions(
    embeddings: torch.Tensor | np.ndarray,
    k: int,
    seed: int,
    device: str | torch.device = "cpu",
    batch_size: int = 65536,
    iters: int = 100,
    init_sample: int | None = None,
    tol: float = 1e-4,
    restarts: int = 1,
    seed_trials: int | None = None,
    info: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched k-means (Euclidean) of `embeddings` (N, D) into k regions: (labels int64 (N,), centroids float32 (k, D)).

    Seeding: greedy k-means++ (`seed_trials` candidates per centroid, default 2 + log k as in
    scikit-learn; more cost little and miss fewer clusters) on a random subsample of
    `init_sample` rows (default max(10000, 32 k), at most N), refined by Lloyd iterations on
    that subsample (cheap, and it saves passes over all the data). With `restarts` > 1, that
    many seedings are drawn and refined so, and the one of least squared error on the subsample
    is kept (restarts never pass over all the data). Then at most `iters` Lloyd iterations over
    all the data on `device`, in batches of `batch_size` rows (distances by matmul; sums in
    float64), stopping when at most `tol` * N labels change in an iteration (tol = 0: when none
    changes). After the first, an iteration reads again only the points whose label may change
    (Hamerly's bounds; see `_lloyd`). A cluster left empty is re-seeded at the points farthest
    from their centroids. On a CUDA device the embeddings are copied there once when they take
    under half its free memory, else streamed from where they are (CPU memory is fine); results
    depend only on the data, k, `seed`, `init_sample`, `tol`, `restarts`, `seed_trials` and the
    device's arithmetic. The returned centroids are the means of the returned labels; with tol = 0 (and
    convergence) each label is its point's nearest centroid, with tol > 0 all but at most
    tol * N are. `info`, when given, receives iterations (over all the data), converged,
    changed (labels changed per iteration), inertia (sum of squared distances to the returned
    centroids), restart_inertia (per restart, on the subsample) and seconds (seeding, lloyd).
    ValueError if k < 1, k > N, or a region is still empty at the end (e.g. fewer than k
    distinct points).
    """
    data = _fit_on_device(_as_float_tensor(embeddings), device)
    n, dim = data.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N = {n}], got {k}")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    if seed_trials is not None and seed_trials < 1:
        raise ValueError(f"seed_trials must be at least 1, got {seed_trials}")
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be in [0, 1), got {tol}")
    clock = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    m = min(n, init_sample or max(10_000, 32 * k))
    sample = data[torch.randperm(n, generator=generator)[:m]].to(device, torch.float32)
    best = None
    restart_inertia = []
    for _ in range(restarts):
        fit = _lloyd(sample, _kmeans_plus_plus(sample, k, generator, seed_trials), device, batch_size, iters, tol)
        restart_inertia.append(fit["inertia"])
        if best is None or fit["inertia"] < best["inertia"]:
            best = fit
    centroids = best["centroids"]
    del sample, best, fit
    seeding = time.perf_counter() - clock

    clock = time.perf_counter()
    fit = _lloyd(data, centroids, device, batch_size, iters, tol)
    empty = torch.nonzero(fit["counts"] == 0).flatten()
    if empty.numel():
        raise ValueError(f"k-means left regions {empty[:10].tolist()} empty after {iters} iterations: use fewer regions")
    if info is not None:
        info.update(iterations=fit["iterations"], converged=fit["converged"], changed=fit["changed"],
                    inertia=fit["inertia"], restart_inertia=restart_inertia,
                    seconds={"seeding": seeding, "lloyd": time.perf_counter() - clock})
    return fit["labels"].numpy(), fit["centroids"].cpu().numpy()


EMBEDDING_DTYPE = "text_encoder_dtype"  # the metadata key of the dtype the text encoder ran in


def embedding_metadata(pool: PromptPool, dtype: torch.dtype, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest metadata of `pool`'s embedding cache: `metadata` plus the pool's row count
    ("rows") and the dtype the text encoder runs in (`EMBEDDING_DTYPE`: a half-precision cache
    moves some prompts to another region, so it is not to be reused for a float32 run), as JSON
    gives it back."""
    recorded = {**(metadata or {}), "rows": len(pool), EMBEDDING_DTYPE: str(dtype).removeprefix("torch.")}
    return json.loads(json.dumps(recorded))


def check_embedding_cache(directory: str | Path, metadata: dict[str, Any], replace: bool = False) -> bool:
    """True if `directory` holds an embedding cache of `metadata` (`embedding_metadata`) to
    reuse or resume; False if it holds none, or with `replace` one of other inputs (which
    `pooled_embedding_cache` then deletes); otherwise ValueError, changing nothing, if its
    embeddings are of other inputs (every key but "paths" is compared)."""
    directory = Path(directory)
    if not (directory / MANIFEST).exists():
        return False
    # caches made before the dtype was recorded were all computed in float32
    stored = {EMBEDDING_DTYPE: "float32", **read_manifest(directory)["metadata"]}
    changed = sorted(k for k in set(stored) | set(metadata) if k != "paths" and stored.get(k) != metadata.get(k))
    if changed and not replace:
        names = {"prompts_fingerprint": "the prompts' texts", "text_encoder_fingerprint": "the text encoder's files",
                 "rows": "the number of prompts",
                 EMBEDDING_DTYPE: f"the text encoder's dtype, {stored[EMBEDDING_DTYPE]} -> {metadata.get(EMBEDDING_DTYPE)}"}
        raise ValueError(f"{directory} holds embeddings of other inputs ({', '.join(names.get(k, k) for k in changed)} "
                         f"changed): replace them (aria regions --overwrite), remove them or choose another output folder")
    return not changed


def pooled_embeddings(pool: PromptPool, tokenizer: Any, text_encoder: torch.nn.Module, device: str | torch.device,
                      start: int = 0, batch_size: int = 1024, depth: int = 4) -> Iterator[torch.Tensor]:
    """Pooled text embeddings of pool rows start, start + 1, ..., in batches of `batch_size`
    rows: float32 (n, D) on the CPU, computed by `text_encoder` in its dtype on `device`, where
    it must already be.

    The same token ids and the same encoder pass as `encode_prompts` (so in float32 the same
    embeddings, batch for batch), made faster: a background thread reads and tokenizes up to
    `depth` batches ahead of the encoder (with the Rust tokenizer, into pinned memory for a GPU),
    and the GPU gets the next batch before the previous one is copied back (`pooled_outputs`).
    """
    pinned = torch.device(device).type == "cuda"
    tokenize = fixed_length_tokenizer(tokenizer)

    def token_ids(rows: range) -> torch.Tensor:
        ids = tokenize(pool.texts(rows))
        return ids.pin_memory() if pinned else ids

    batches = (range(s, min(s + batch_size, len(pool))) for s in range(start, len(pool), batch_size))
    return pooled_outputs(text_encoder, prefetch(token_ids, batches, depth), device)


def pooled_embedding_cache(
    pool: PromptPool,
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    directory: str | Path,
    device: str | torch.device,
    batch_size: int = 1024,
    shard_rows: int = 65536,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    replace: bool = False,
) -> TensorCache:
    """Pooled text embeddings of every prompt of `pool` (tensor "pooled", float32 (N, D)), computed once.

    A complete cache in `directory` with the same metadata (`metadata` plus the pool size and the
    encoder's dtype, `embedding_metadata`) is reused as it is; an incomplete one (a killed run)
    is resumed after its last complete shard; one with other metadata is deleted and computed
    again with `replace`, else an error (`check_embedding_cache`, which changes nothing). For
    that check to catch changed inputs, `metadata` should name their content: `aria regions`
    gives the pool's `PromptPool.fingerprint` ("prompts_fingerprint") and the text encoder's
    `folder_fingerprint` ("text_encoder_fingerprint"). Metadata under "paths" (where the inputs were) is stored but not
    compared: a moved pool or teacher keeps its embeddings. The encoder runs in its dtype on
    `device`, where it must already be (`pooled_embeddings`); `batch_size` is in prompts. Shards
    hold `shard_rows` rows and are written by a background thread, at most one shard behind the
    encoder (a shard's checksum and file take long enough to idle a GPU).
    """
    directory = Path(directory)
    metadata = embedding_metadata(pool, next(text_encoder.parameters()).dtype, metadata)
    if check_embedding_cache(directory, metadata, replace):
        writer = TensorCacheWriter.resume(directory)
    else:
        if (directory / MANIFEST).exists():  # embeddings of other inputs, to be replaced
            shutil.rmtree(directory)
        writer = TensorCacheWriter(directory, shard_rows, metadata)
    with tqdm(total=len(pool), initial=len(writer), unit="prompt", desc="embedding", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer") as io:
        written: deque[tuple[Future, int]] = deque()  # appends in flight, with their rows
        waiting = 0
        for pooled in pooled_embeddings(pool, tokenizer, text_encoder, device, len(writer), batch_size):
            written.append((io.submit(writer.append, **{POOLED: pooled}), len(pooled)))
            waiting += len(pooled)
            while waiting > shard_rows:  # bounded memory: at most one shard waits for the writer
                done, rows = written.popleft()
                done.result()
                waiting -= rows
                bar.update(rows)
        for done, rows in written:
            done.result()
            bar.update(rows)
    writer.close()
    return TensorCache(directory)
