"""k-means of pooled text embeddings into regions (`aria_train.data.regions.kmeans_regions`).

Synthetic embeddings: a Gaussian mixture of `--true-k` (default `--k`) centres N(0, spread^2 I)
in `--dim` dimensions with unit-variance noise, mixture weights proportional to rank^-0.5 (the
largest cluster 16x the smallest at 256 centres), float32; at spread 1 a point is ~sqrt(D) from
its centre and centres ~sqrt(2 D) apart. Reported: wall and CPU time (seeding = k-means++ and
Lloyd on the subsample; lloyd = the iterations over all the data), Lloyd iterations over all
the data, whether they converged (at most tol * N labels changed), labels changed in the last
one, the squared error per point, and purity: for each found cluster, the fraction of its
points from its majority true cluster (min / median / mean, and over all points); `merged`
counts true clusters that are the majority of no found cluster (each such merge goes with a
true cluster split in two).

Target (on the 2-core CPU, torch threads = 2): 10^6 x 768 into K = 256 in under 2 minutes.
``python -m bench.kmeans_regions [--device cuda] [--n N] [--dim D] [--k K] [--restarts R]
[--seed-trials T] [--tol TOL]``; the CSV gets one row per run (the device in a column).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from bench.common import report

N, DIM, K = 1_000_000, 768, 256
SPREAD = 1.0  # centres' distance ~ sqrt(2 D) spread, points' distance to their centre ~ sqrt(D)


def gaussian_mixture(n: int, dim: int, true_k: int, spread: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(points float32 (n, dim), true cluster int64 (n,)), generated in blocks (no float64 copy)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(true_k, dim, generator=generator) * spread
    weights = torch.arange(1, true_k + 1, dtype=torch.float64) ** -0.5
    truth = torch.multinomial(weights, n, replacement=True, generator=generator)
    points = torch.empty(n, dim)
    for s in range(0, n, 65536):
        block = points[s : s + 65536]
        torch.randn(block.shape, generator=generator, out=block)
        block += centres[truth[s : s + 65536]]
    return points, truth.numpy()


def purity(labels: np.ndarray, truth: np.ndarray, k: int, true_k: int) -> dict:
    table = np.bincount(labels * true_k + truth, minlength=k * true_k).reshape(k, true_k)
    sizes = table.sum(axis=1)
    per_cluster = table.max(axis=1) / np.maximum(sizes, 1)
    majority = table.argmax(axis=1)
    return {"purity_min": float(per_cluster.min()), "purity_median": float(np.median(per_cluster)),
            "purity_mean": float(per_cluster.mean()), "purity_points": float(table.max(axis=1).sum() / labels.size),
            "merged": int(true_k - np.unique(majority).size)}


def run(n: int = N, dim: int = DIM, k: int = K, true_k: int | None = None, spread: float = SPREAD,
        device: str = "cpu", seed: int = 0, iters: int = 100, restarts: int = 1, seed_trials: int | None = None,
        tol: float = 1e-4, batch_size: int = 65536) -> list[dict]:
    from aria_train.data.regions import kmeans_regions

    true_k = true_k or k
    wall = time.perf_counter()
    points, truth = gaussian_mixture(n, dim, true_k, spread, seed)
    print(f"{n} x {dim} float32 points from {true_k} centres (spread {spread}) in {time.perf_counter() - wall:.1f} s; "
          f"k-means into {k} regions on {device}, torch threads {torch.get_num_threads()}")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    info: dict = {}
    wall, cpu = time.perf_counter(), time.process_time()
    labels, centroids = kmeans_regions(points, k, seed=seed + 1, device=device, batch_size=batch_size,
                                       iters=iters, tol=tol, restarts=restarts, seed_trials=seed_trials, info=info)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert labels.shape == (n,) and centroids.shape == (k, dim)
    row = {"device": device, "n": n, "dim": dim, "k": k, "true_k": true_k, "spread": spread,
           "restarts": restarts, "seed_trials": seed_trials or "2+log k", "tol": tol, "threads": torch.get_num_threads(),
           "wall_s": wall, "cpu_s": cpu, "seeding_s": info["seconds"]["seeding"], "lloyd_s": info["seconds"]["lloyd"],
           "iterations": info["iterations"], "converged": info["converged"],
           "last_changed": info["changed"][-1], "inertia_per_point": info["inertia"] / n,
           **purity(labels, truth, k, true_k), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    report("kmeans_regions", [row])
    return [row]


def main(scale: float = 1.0) -> list[dict]:
    """What `python -m bench` runs: the default case, with N scaled by `scale`, on the CPU."""
    return run(n=max(K * 40, int(N * scale)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default %(default)s)")
    parser.add_argument("--n", type=int, default=N, help="number of embeddings (default %(default)s)")
    parser.add_argument("--dim", type=int, default=DIM, help="embedding width (default %(default)s)")
    parser.add_argument("--k", type=int, default=K, help="number of regions (default %(default)s)")
    parser.add_argument("--true-k", type=int, default=None, help="true mixture centres (default: --k)")
    parser.add_argument("--spread", type=float, default=SPREAD,
                        help="std of the centres' coordinates, the noise's being 1 (default %(default)s)")
    parser.add_argument("--restarts", type=int, default=1, help="seedings tried on the subsample (default 1)")
    parser.add_argument("--seed-trials", type=int, default=None, help="k-means++ candidates per centroid (default 2 + log k)")
    parser.add_argument("--tol", type=float, default=1e-4, help="stop when at most tol * N labels change (default %(default)s)")
    parser.add_argument("--iters", type=int, default=100, help="most Lloyd iterations (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=65536, help="rows per distance batch (default %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run(args.n, args.dim, args.k, args.true_k, args.spread, args.device, args.seed, args.iters, args.restarts,
        args.seed_trials, args.tol, args.batch_size)
