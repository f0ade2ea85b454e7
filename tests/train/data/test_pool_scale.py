"""The prompt pool and region sampling at scale: a 10^6-row parquet pool with region labels.

The pool is built in Arrow (no Python list of 10^6 strings) and written in several row groups;
its texts name their row and region ("p{i} r{k}"), so every drawn prompt can be checked. Region
sizes are Zipf-like, the smallest of 1, 2 and 3 prompts. Seeds are fixed, so a failure replays.
"""
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from aria_theory.allocation import sample_regions
from aria_train.data.teacher_samples import pool_rows
from aria_train.conditioning.samplers import RegionIndex
from aria_train.data import pool as pool_module
from aria_train.data import regions as R
from aria_train.data.pool import PromptPool

ROWS, K = 1_000_000, 64
TINY = {K - 1: 1, K - 2: 2, K - 3: 3}  # region -> size


def region_labels(rows: int = ROWS, k: int = K, seed: int = 0) -> np.ndarray:
    weights = np.arange(1, k + 1, dtype=np.float64) ** -1.2
    sizes = np.floor(rows * weights / weights.sum()).astype(np.int64)
    for region, size in TINY.items():
        sizes[region] = size
    sizes[0] += rows - sizes.sum()
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(k), sizes))


def expected_texts(rows: np.ndarray, labels: np.ndarray) -> list[str]:
    return [f"p{i} r{labels[i]}" for i in rows.tolist()]


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    labels = region_labels()
    ids = pc.cast(pa.array(np.arange(ROWS)), pa.string())
    text = pc.binary_join_element_wise(pc.binary_join_element_wise("p", ids, ""),
                                       pc.binary_join_element_wise("r", pc.cast(pa.array(labels), pa.string()), ""), " ")
    path = tmp_path_factory.mktemp("pool") / "pool.parquet"
    pq.write_table(pa.table({"text": text, "region": pa.array(labels)}), path, row_group_size=150_000)
    return path, labels


def test_parquet_pool_reads_back(pool_file):
    path, labels = pool_file
    pool = PromptPool.from_file(path)
    assert len(pool) == ROWS and pool.num_regions == K
    assert pool.table.column("text").num_chunks == 1  # row groups read together (>= 2^20 rows a chunk)
    assert pool.regions.dtype == np.int64 and np.array_equal(pool.regions, labels)
    rows = np.array([0, ROWS - 1, 149_999, 150_000, 150_000, 7, 0])  # row-group edges, repeats, any order
    assert pool.texts(rows) == expected_texts(rows, labels)
    assert pool.texts([]) == [] and pool.texts(range(3)) == ["p0 r%d" % labels[0], "p1 r%d" % labels[1], "p2 r%d" % labels[2]]
    with pytest.raises(IndexError):
        pool.texts([ROWS])


def test_region_index_draws_only_within_requested_regions(pool_file):
    path, labels = pool_file
    pool = PromptPool.from_file(path)
    index = RegionIndex(pool.regions)
    assert np.array_equal(index.sizes, np.bincount(labels, minlength=K))
    assert np.array_equal(index.order, np.argsort(labels, kind="stable"))  # region-major, pool order within
    rng = np.random.default_rng(1)
    pi = 0.5 * np.full(K, 1 / K) + 0.5 * np.eye(K)[K - 1]  # half the mass on the 1-prompt region
    requested = sample_regions(pi, 200_000, rng)
    drawn = index.draw_within(requested, rng)
    assert drawn.dtype == np.int64 and drawn.shape == requested.shape
    assert np.array_equal(pool.regions[drawn], requested)
    some = drawn[:2000]
    assert pool.texts(some) == expected_texts(some, labels)


def test_draws_cover_small_regions_uniformly(pool_file):
    _, labels = pool_file
    index = RegionIndex(labels)
    rng = np.random.default_rng(2)
    for region, size in TINY.items():
        n = 3000
        drawn = index.draw_within(np.full(n, region), rng)
        members = np.flatnonzero(labels == region)
        assert set(drawn.tolist()) == set(members.tolist())  # every prompt of the region, no other
        eps = math.sqrt(math.log(2 / 1e-6) / (2 * n))  # Hoeffding, false failure 1e-6 per row
        for row in members:
            assert abs((drawn == row).mean() - 1 / size) <= eps


def test_texts_from_a_many_chunk_table(pool_file, monkeypatch):
    # texts takes from each chunk its own rows and puts them back in the asked order
    path, labels = pool_file
    rows = np.random.default_rng(3).integers(0, ROWS, 5000)
    table = pq.read_table(path)  # chunks of 128 Ki rows
    assert table.column("text").num_chunks > 1
    assert PromptPool(table).texts(rows) == expected_texts(rows, labels)
    monkeypatch.setattr(pool_module, "PARQUET_CHUNK_ROWS", 200_000)  # row groups of 150 000, read in pairs
    pool = PromptPool.from_file(path)
    assert [len(chunk) for chunk in pool.table.column("text").chunks] == [300_000, 300_000, 300_000, 100_000]
    assert pool.texts(rows) == expected_texts(rows, labels) and np.array_equal(pool.regions, labels)
    sliced = PromptPool(pa.concat_tables([table.slice(0, 10), table.slice(10, 0), table.slice(10, 20)]))
    assert sliced.texts([29, 0, 10, 9]) == expected_texts(np.array([29, 0, 10, 9]), labels)


def test_arrow_pool_and_pool_rows_at_scale(pool_file, tmp_path):
    # the parquet pool converted to a memory-mapped .arrow pool reads back the same; `aria cache`
    # finds the pool row of each paired text by an Arrow hash join over the mapped column
    path, labels = pool_file
    mapped = PromptPool.from_file(PromptPool.from_file(path).to_arrow(tmp_path / "pool.arrow"))
    assert mapped.mapped is not None and mapped.table.column("text").num_chunks == 1
    rows = np.random.default_rng(9).integers(0, ROWS, 5000)
    assert mapped.texts(rows) == expected_texts(rows, labels) and np.array_equal(mapped.regions, labels)
    assert np.array_equal(pool_rows(expected_texts(rows, labels), mapped), rows)  # texts are unique


@pytest.mark.parametrize("k", [3, 300, 70_000])  # uint8, uint16 and int64 sort keys
def test_region_index_order_for_any_k(k):
    labels = np.random.default_rng(4).permutation(np.arange(100_000) % k)
    index = RegionIndex(labels)
    assert index.order.dtype == np.int64 and np.array_equal(index.order, np.argsort(labels, kind="stable"))
    asked = np.random.default_rng(5).integers(0, k, 1000)
    assert np.array_equal(labels[index.draw_within(asked, np.random.default_rng(6))], asked)


# ---- k-means at scale: the bounded Lloyd iterations are plain Lloyd iterations -------------

def plain_lloyd(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, int]:
    """Lloyd iterations in float64 until no label changes: (labels, iterations)."""
    labels = None
    for iteration in range(1, 1000):
        d2 = ((points[:, None, :] - centroids[None]) ** 2).sum(-1)
        new = d2.argmin(1)
        if labels is not None and np.array_equal(new, labels):
            return labels, iteration
        labels = new
        centroids = np.stack([points[labels == j].mean(0) for j in range(len(centroids))])
    raise AssertionError("no convergence")


def test_bounded_lloyd_matches_plain_lloyd():
    # overlapping clusters, so that labels change over many iterations; ties are improbable at
    # these distances, and the data and seeds are fixed
    rng = np.random.default_rng(7)
    k, dim = 12, 8
    truth = rng.integers(0, k, 3000)
    points = (rng.normal(0.0, 1.5, (k, dim))[truth] + rng.normal(size=(3000, dim))).astype(np.float32)
    start = points[rng.choice(len(points), k, replace=False)]
    want, iterations = plain_lloyd(points.astype(np.float64), start.astype(np.float64))
    assert iterations > 5
    fit = R._lloyd(torch.from_numpy(points), torch.from_numpy(start), "cpu", 700, 1000, 0.0)
    assert fit["converged"] and np.array_equal(fit["labels"].numpy(), want)
    assert fit["iterations"] == iterations and sum(fit["changed"][1:]) > 0
    means = np.stack([points[want == j].astype(np.float64).mean(0) for j in range(k)])
    np.testing.assert_allclose(fit["centroids"].numpy(), means, atol=1e-5)
    inertia = ((points - means[want]) ** 2).sum()
    assert fit["inertia"] == pytest.approx(inertia, rel=1e-5)


def test_kmeans_restarts_and_info():
    rng = np.random.default_rng(8)
    points = (rng.normal(0.0, 6.0, (20, 5))[rng.integers(0, 20, 2000)] + rng.normal(size=(2000, 5))).astype(np.float32)
    info = {}
    labels, centroids = R.kmeans_regions(points, 20, seed=0, restarts=3, seed_trials=10, tol=0.0, info=info)
    assert len(info["restart_inertia"]) == 3 and info["converged"] and info["changed"][-1] == 0
    assert np.array_equal(R.assign_regions(points, centroids), labels)
    one = {}
    R.kmeans_regions(points, 20, seed=0, seed_trials=10, tol=0.0, info=one)
    assert one["restart_inertia"] == info["restart_inertia"][:1]  # restart 1 is the single start's seeding
    for bad in ({"restarts": 0}, {"seed_trials": 0}, {"tol": 1.0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            R.kmeans_regions(points, 20, seed=0, **bad)
