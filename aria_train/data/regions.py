"""Regions of the conditioning space: given by a column of the pool, or k-means on text embeddings.

ARIA tracks the teacher-student discrepancy per region and samples prompts region by region,
so every region id in [0, K) must own at least one prompt. Embeddings for k-means are the text
encoder's pooled outputs, computed once per pool into a `TensorCache` (`pooled_embedding_cache`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from aria_train.data.cache import MANIFEST, TensorCache, TensorCacheWriter, read_manifest
from aria_train.data.pool import PromptPool
from aria_train.text import encode_prompts

POOLED = "pooled"  # the tensor name of pooled embeddings in a cache


def regions_from_column(pool: PromptPool) -> np.ndarray:
    """The pool's own region ids (int64 (N,)); ValueError unless every id in [0, K) has a prompt."""
    if pool.regions is None:
        raise ValueError(f"{pool.source}: no region column {pool.region_column!r}; cluster embeddings instead")
    empty = np.flatnonzero(np.bincount(pool.regions) == 0)
    if empty.size:
        raise ValueError(f"{pool.source}: regions {empty[:10].tolist()} of [0, {pool.num_regions}) have no prompt")
    return pool.regions


def _as_float_tensor(embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
    data = torch.as_tensor(embeddings)
    if data.dim() != 2 or not data.is_floating_point():
        raise ValueError(f"embeddings must be a float matrix (N, D), got {tuple(data.shape)} {data.dtype}")
    return data


def _nearest(x: torch.Tensor, centroids: torch.Tensor, centroid_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distance, index) of each row of x to its nearest centroid, by one matmul."""
    dist, label = (centroid_sq[None, :] - 2.0 * x @ centroids.T).min(dim=1)
    return (dist + (x * x).sum(dim=1)).clamp_min_(0.0), label


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


def _kmeans_plus_plus(sample: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (as scikit-learn): of 2 + log k candidates drawn by D^2
    sampling, keep the one that lowers the total squared distance most."""
    trials = 2 + int(math.log(k))
    sample_sq = (sample * sample).sum(dim=1)
    first = int(torch.randint(len(sample), (1,), generator=generator))
    centers = [sample[first]]
    d2 = ((sample - sample[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        weights = d2.double().cpu()
        if weights.sum() <= 0:
            raise ValueError(f"fewer than k = {k} distinct embeddings: use fewer regions")
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator).to(sample.device)
        cand = sample[candidates]
        cand_d2 = (sample_sq[candidates, None] + sample_sq[None, :] - 2.0 * cand @ sample.T).clamp_min_(0.0)  # (trials, m)
        new_d2 = torch.minimum(d2[None, :], cand_d2)
        best = int(new_d2.sum(dim=1).argmin())
        centers.append(sample[candidates[best]])
        d2 = new_d2[best]
    return torch.stack(centers)


def kmeans_regions(
    embeddings: torch.Tensor | np.ndarray,
    k: int,
    seed: int,
    device: str | torch.device = "cpu",
    batch_size: int = 65536,
    iters: int = 100,
    init_sample: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched k-means (Euclidean) of `embeddings` (N, D) into k regions: (labels int64 (N,), centroids float32 (k, D)).

    Seeding: greedy k-means++ on a random subsample of `init_sample` rows (default
    max(10000, 32 k), at most N). Then at most `iters` Lloyd iterations, each one pass over the
    data in batches of `batch_size` rows moved to `device` (distances by matmul; sums in
    float64 across batches), stopping when no label changes. A cluster left empty is re-seeded at the points
    farthest from their centroids. On a CUDA device the embeddings are copied there once when
    they take under half its free memory, else streamed from where they are (CPU memory is fine);
    results depend only on the data, k, `seed` and the device's arithmetic. The returned
    centroids are the means of the returned labels. ValueError if k < 1, k > N, or a region is
    still empty at the end (e.g. fewer than k distinct points).
    """
    data = _fit_on_device(_as_float_tensor(embeddings), device)
    n, dim = data.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N = {n}], got {k}")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    generator = torch.Generator().manual_seed(seed)
    m = min(n, init_sample or max(10_000, 32 * k))
    sample = data[torch.randperm(n, generator=generator)[:m]].to(device, torch.float32)
    centroids = _kmeans_plus_plus(sample, k, generator)
    del sample

    previous = None
    for _ in range(iters):
        centroid_sq = (centroids * centroids).sum(dim=1)
        sums = torch.zeros(k, dim, dtype=torch.float64, device=device)
        counts = torch.zeros(k, dtype=torch.int64, device=device)
        labels = torch.empty(n, dtype=torch.int64)
        dists = torch.empty(n, dtype=torch.float32)
        for s in range(0, n, batch_size):
            x = data[s : s + batch_size].to(device, torch.float32)
            dist, label = _nearest(x, centroids, centroid_sq)
            # float32 sums within a batch, float64 across batches
            sums += torch.zeros(k, dim, device=device).index_add_(0, label, x).double()
            counts += torch.bincount(label, minlength=k)
            labels[s : s + batch_size], dists[s : s + batch_size] = label.cpu(), dist.cpu()
        if previous is not None and torch.equal(labels, previous):
            break  # the centroids are already the means of these labels
        previous = labels
        centroids = (sums / counts.clamp_min(1)[:, None]).float()
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            far_dist, far = torch.topk(dists, empty.numel())
            if far_dist.min() <= 0:
                raise ValueError(f"fewer than k = {k} distinct embeddings: use fewer regions")
            centroids[empty] = data[far].to(device, torch.float32)
            previous = None  # force another pass with the re-seeded centroids
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        raise ValueError(f"k-means left regions {empty[:10].tolist()} empty after {iters} iterations: use fewer regions")
    centroids = (sums / counts[:, None]).float()
    return labels.numpy(), centroids.cpu().numpy()


def pooled_embedding_cache(
    pool: PromptPool,
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    directory: str | Path,
    device: str | torch.device,
    batch_size: int = 256,
    shard_rows: int = 65536,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
) -> TensorCache:
    """Pooled text embeddings of every prompt of `pool` (tensor "pooled", float32 (N, D)), computed once.

    A complete cache in `directory` with the same metadata (`metadata` plus the pool size) is
    reused as it is; an incomplete one (a killed run) is resumed after its last complete shard;
    one with other metadata is an error. The text encoder must be on `device`; `batch_size` is
    in prompts; shards hold `shard_rows` rows.
    """
    directory = Path(directory)
    metadata = json.loads(json.dumps({**(metadata or {}), "rows": len(pool)}))
    if (directory / MANIFEST).exists():
        stored = read_manifest(directory)["metadata"]
        if stored != metadata:
            raise ValueError(f"{directory} holds embeddings made with {stored}, not {metadata}: remove it or use another folder")
        writer = TensorCacheWriter.resume(directory)
    else:
        writer = TensorCacheWriter(directory, shard_rows, metadata)
    with tqdm(total=len(pool), initial=len(writer), unit="prompt", desc="embedding", disable=not progress) as bar:
        for start in range(len(writer), len(pool), batch_size):
            stop = min(start + batch_size, len(pool))
            _, pooled = encode_prompts(tokenizer, text_encoder, pool.texts(range(start, stop)), device, batch_size)
            writer.append(**{POOLED: pooled})
            bar.update(stop - start)
    writer.close()
    return TensorCache(directory)
