"""Prompt pool at scale: open a parquet pool of 10^7 prompts, index it by region, draw, read texts.

A synthetic pool (K = 256 regions, Zipf-like region sizes, the 4 smallest of 10, 5, 2 and 1
prompts; rows in random region order, as k-means labels come) is written to a parquet file in a
temporary folder by a child process, so that this process's peak RSS counts only the pool's own
work. Then, timed here: (a) `PromptPool.from_file`, (b) `pool.regions` and `RegionIndex` over it,
(c) 10^6 prompts by region from a non-uniform pi (`sample_regions` then `draw_within`), in one
call and in calls of a training batch (256), (d) `pool.texts` of 256 drawn rows, per call, and
(e) the peak RSS (VmHWM) after each step, and the current RSS, PSS and USS
(private pages; /proc/self/smaps_rollup). `--scale` scales the pool size.

(f) The same pool as a memory-mapped .arrow file (`PromptPool.to_arrow`) against the parquet file,
each opened by two fresh processes at once: `from_file`, `pool.texts` of 256 random rows, and
every page of the table touched while both processes hold it. An .arrow pool's pages are the
file's, in the page cache once for both (USS ~ 0, PSS ~ half the RSS); a parquet pool is read
into each process's own memory (USS ~ RSS).
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import report

K = 256
ROWS = 10_000_000
DRAWS = 1_000_000
BATCH = 256
TEXT_CALLS = 500  # pool.texts calls timed per case
TINY = (10, 5, 2, 1)  # sizes of the smallest regions


def region_sizes(rows: int, k: int = K, exponent: float = 1.5) -> np.ndarray:
    """Zipf-like sizes (largest first) summing to `rows`, every region non-empty, the last ones tiny."""
    weights = np.arange(1, k + 1, dtype=np.float64) ** -exponent
    sizes = np.maximum(1, np.floor(rows * weights / weights.sum())).astype(np.int64)
    tiny = [t for t in TINY if t < rows // k][: k - 1]
    if tiny:
        sizes[-len(tiny):] = tiny
    sizes[0] += rows - sizes.sum()
    assert sizes.min() >= 1 and sizes.sum() == rows
    return sizes


def synthetic_table(rows: int, k: int = K, seed: int = 0):
    """Table(text: "prompt {i} of region {r}", region: int64), built in Arrow (no Python strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    regions = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), region_sizes(rows, k)))
    ids = pc.cast(pa.array(np.arange(rows, dtype=np.int64)), pa.string())
    text = pc.binary_join_element_wise("prompt", ids, "of region", pc.cast(pa.array(regions), pa.string()), " ")
    return pa.table({"text": text, "region": pa.array(regions)})


def _write(path: str, rows: int) -> None:
    import pyarrow.parquet as pq

    from aria_train.data.pool import PromptPool

    table = synthetic_table(rows)
    pq.write_table(table, path)
    PromptPool(table).to_arrow(Path(path).with_suffix(".arrow"))


def _peak_mb() -> float:
    """Peak RSS of this process, MiB: VmHWM, which exec resets (ru_maxrss keeps the forking parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _memory_mb() -> dict:
    """Current RSS, PSS, USS (private clean + dirty) and anonymous memory of this process, MiB."""
    kb = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                kb[parts[0].rstrip(":")] = int(parts[1])
    return {"rss_mb": kb["Rss"] / 1024, "pss_mb": kb["Pss"] / 1024,
            "uss_mb": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024, "anon_mb": kb["Anonymous"] / 1024}


def _row(step: str, rows: int, calls: int, items: int, wall: float, cpu: float) -> dict:
    import pyarrow as pa

    return {"step": step, "rows": rows, "calls": calls, "items_per_call": items, "wall_s": wall, "cpu_s": cpu,
            "per_call_ms": 1e3 * wall / calls, "peak_rss_mb": _peak_mb(), "arrow_mb": pa.total_allocated_bytes() / 2**20,
            **_memory_mb()}


def _two_process_child(path: str, rows_n: int, index: int, barrier, queue) -> None:
    """(f) in a fresh process: open, read 256 random texts TEXT_CALLS times, touch every page; the
    memory of the last row is measured while both processes hold the whole table."""
    from aria_train.data.pool import PromptPool

    out = []

    def step(name: str, fn, calls: int = 1, items: int = 1):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        out.append(_row(f"(f) {Path(path).suffix[1:]} {name}, process {index + 1}/2", rows_n, calls, items,
                        time.perf_counter() - wall, time.process_time() - cpu))
        return result

    step("imports only (baseline)", lambda: None)
    barrier.wait()
    pool = step("PromptPool.from_file", lambda: PromptPool.from_file(path))
    batches = np.random.default_rng(4 + index).integers(0, len(pool), (TEXT_CALLS, BATCH))
    step(f"pool.texts {BATCH} random rows", lambda: [pool.texts(b) for b in batches], TEXT_CALLS, BATCH)
    pages = [np.frombuffer(buf, np.uint8)[::4096] for column in pool.table.columns for chunk in column.chunks
             for buf in chunk.buffers() if buf is not None]
    step("every page touched", lambda: sum(int(p.sum()) for p in pages))
    barrier.wait()
    out[-1].update(_memory_mb())
    queue.put((index, out))
    barrier.wait()


def _two_processes(path: Path, rows_n: int) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    children = [context.Process(target=_two_process_child, args=(str(path), rows_n, i, barrier, queue)) for i in range(2)]
    for child in children:
        child.start()
    outs = dict(queue.get() for _ in children)
    for child in children:
        child.join()
    return [row for pair in zip(outs[0], outs[1]) for row in pair]


def main(scale: float = 1.0) -> list[dict]:
    from aria_theory.allocation import sample_regions
    from aria_train.conditioning.samplers import RegionIndex
    from aria_train.data.pool import PromptPool

    rows_n = max(K * 20, int(ROWS * scale))
    draws = max(BATCH, int(DRAWS * scale))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.parquet"
        wall = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=_write, args=(str(path), rows_n))
        child.start()
        child.join()
        if child.exitcode:
            raise RuntimeError(f"building the synthetic pool failed (exit code {child.exitcode})")
        build_s = time.perf_counter() - wall
        print(f"synthetic pool: {rows_n} rows, K = {K}, parquet {path.stat().st_size / 2**20:.0f} MiB, "
              f"built and written in {build_s:.1f} s; RSS before opening {_rss_mb():.0f} MiB")

        def step(name: str, fn, calls: int = 1, items: int = 1):
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn()
            rows.append(_row(name, rows_n, calls, items, time.perf_counter() - wall, time.process_time() - cpu))
            return out

        pool = step("(a) PromptPool.from_file", lambda: PromptPool.from_file(path))
        regions = step("(b) pool.regions", lambda: pool.regions)
        index = step("(b) RegionIndex(pool.regions)", lambda: RegionIndex(regions, pool.num_regions))
        # a non-uniform pi: ARIA-like, more mass on small (hard) regions, every region > 0
        share = index.sizes / index.sizes.sum()
        pi = 0.5 * share + 0.5 * np.random.default_rng(1).dirichlet(np.full(K, 0.3))
        pi /= pi.sum()
        rng = np.random.default_rng(2)
        drawn_regions = step(f"(c) sample_regions {draws}", lambda: sample_regions(pi, draws, rng), items=draws)
        drawn = step(f"(c) draw_within {draws}", lambda: index.draw_within(drawn_regions, rng), items=draws)
        assert np.array_equal(regions[drawn], drawn_regions)
        calls = draws // BATCH
        step(f"(c) sample_regions+draw_within x{calls}",
             lambda: [index.draw_within(sample_regions(pi, BATCH, rng), rng) for _ in range(calls)],
             calls=calls, items=BATCH)
        batches = drawn[: (draws // BATCH) * BATCH].reshape(-1, BATCH)[:TEXT_CALLS]
        texts = step(f"(d) pool.texts {BATCH} drawn rows", lambda: [pool.texts(b) for b in batches],
                     calls=len(batches), items=BATCH)
        assert texts[0][0] == f"prompt {batches[0, 0]} of region {regions[batches[0, 0]]}"
        starts = np.random.default_rng(3).integers(0, rows_n - BATCH, len(batches))
        step(f"(d) pool.texts range({BATCH})", lambda: [pool.texts(range(s, s + BATCH)) for s in starts],
             calls=len(batches), items=BATCH)
        del pool, regions, index, drawn, texts
        print(f"arrow pool {path.with_suffix('.arrow').stat().st_size / 2**20:.0f} MiB")
        for suffix in (".parquet", ".arrow"):
            rows += _two_processes(path.with_suffix(suffix), rows_n)
    report("pool_sampling", rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the default 10^7 prompts and 10^6 draws (default %(default)s)")
    main(parser.parse_args().scale)
