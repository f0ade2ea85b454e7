"""The memory-mapped .arrow prompt pool (zero copy, shared between processes) and the Arrow hash join
that maps paired texts to pool rows (`aria cache`'s prompt_id).

The zero-copy checks count Arrow's allocations (pyarrow.total_allocated_bytes) and a child
process's anonymous (private) resident memory: both stay flat when an .arrow pool is opened,
validated and read, while a parquet pool of the same rows is allocated in full.
"""
import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from aria_train.data import teacher_samples as cache_cmd
from aria_train.data.teacher_samples import pool_rows
from aria_train.data import pool as pool_module
from aria_train.data.pool import PromptPool

ROWS, K = 1_000_000, 50


def synthetic_table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    """text "p{i} r{k}", region k, group "g{k % 3}", built in Arrow (no Python strings)."""
    labels = np.random.default_rng(seed).integers(0, K, rows)
    ids = pc.cast(pa.array(np.arange(rows)), pa.string())
    k = pc.cast(pa.array(labels), pa.string())
    text = pc.binary_join_element_wise(pc.binary_join_element_wise("p", ids, ""), pc.binary_join_element_wise("r", k, ""), " ")
    group = pc.binary_join_element_wise("g", pc.cast(pa.array(labels % 3), pa.string()), "")
    return pa.table({"text": text, "region": pa.array(labels.astype(np.int32)), "group": group, "extra": pa.array(labels * 2.0)})


@pytest.fixture(scope="module")
def arrow_pool(tmp_path_factory):
    """(path of a 10^6-row .arrow pool written by to_arrow from a parquet file, its table)."""
    root = tmp_path_factory.mktemp("arrow_pool")
    table = synthetic_table()
    pq.write_table(table, root / "pool.parquet", row_group_size=300_000)
    path = PromptPool.from_file(root / "pool.parquet").to_arrow(root / "pool.arrow")
    return path, table


def test_to_arrow_round_trip_layout(arrow_pool, tmp_path):
    path, table = arrow_pool
    pool = PromptPool.from_file(path)
    assert pool.mapped == path.resolve() and len(pool) == ROWS
    assert pool.table.schema.names == ["text", "region", "group", "extra"]  # every column kept
    assert [pool.table.column(c).type for c in ("text", "region", "group")] == [pa.string(), pa.int64(), pa.string()]
    assert all(column.num_chunks == 1 for column in pool.table.columns)  # one record batch, from 4 row groups
    assert b"pandas" not in (pool.table.schema.metadata or {})
    rows = np.random.default_rng(1).integers(0, ROWS, 3000)
    assert pool.texts(rows) == table.column("text").take(pa.array(rows)).to_pylist()
    assert np.array_equal(pool.regions, table.column("region").to_numpy()) and pool.num_regions == K
    assert pool.groups[:5].tolist() == table.column("group").slice(0, 5).to_pylist()
    assert not list(path.parent.glob(".*tmp*"))  # written under a temporary name, renamed
    with pytest.raises(ValueError, match="must end in .arrow"):
        pool.to_arrow(tmp_path / "pool.feather")


def test_to_arrow_uses_64_bit_offsets_for_large_text_columns(tmp_path, monkeypatch):
    frame = pd.DataFrame({"text": ["a long prompt", "b", "c"], "group": ["g", "h", "g"], "region": np.array([1, 0, 1], np.uint8)})
    monkeypatch.setattr(pool_module, "STRING_LIMIT", 30)  # the text column (39 bytes) is "large", groups (27) not
    pool = PromptPool.from_file(PromptPool.from_frame(frame).to_arrow(tmp_path / "p.arrow"))
    assert [f.type for f in pool.table.schema] == [pa.large_string(), pa.string(), pa.int64()]
    assert pool.texts([2, 0]) == ["c", "a long prompt"] and pool.regions.tolist() == [1, 0, 1]


def test_arrow_pool_is_mapped_not_copied(arrow_pool):
    path, _ = arrow_pool
    before = pa.total_allocated_bytes()
    pool = PromptPool.from_file(path)  # validation included: types, nulls, min region
    regions, k = pool.regions, pool.num_regions
    texts = pool.texts(np.random.default_rng(2).integers(0, ROWS, 5000))
    assert len(texts) == 5000 and k == K
    assert pa.total_allocated_bytes() - before < 1 << 20  # the 10^6-row columns (~40 MB) are not in Arrow's memory
    column = pool.table.column("region").chunk(0)
    assert regions.ctypes.data == column.buffers()[1].address and not regions.flags.writeable  # a view of the map


CHILD = """
import json, sys, numpy as np
from aria_train.data.pool import PromptPool
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) * 1024
def use(path):
    pool = PromptPool.from_file(path)
    pool.regions.sum(), pool.num_regions
    pool.texts(np.random.default_rng(0).integers(0, len(pool), 20000))
    return pool
use(sys.argv[2])  # a small pool first: code and caches loaded before counting
start = anon()
pool = use(sys.argv[1])
print(json.dumps({"anon": anon() - start, "text_bytes": pool.table.column("text").nbytes}))
"""


@pytest.mark.parametrize("suffix", [".arrow", ".parquet"])
def test_private_memory_of_a_process_opening_the_pool(arrow_pool, suffix, tmp_path):
    path, _ = arrow_pool
    small = tmp_path / f"small{suffix}"
    PromptPool(synthetic_table(30_000)).to_arrow(small.with_suffix(".arrow"))
    if suffix == ".parquet":
        pq.write_table(synthetic_table(30_000), small)
    done = subprocess.run([sys.executable, "-c", CHILD, str(path.with_suffix(suffix)), str(small)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    if suffix == ".arrow":  # file pages (shared with every process mapping the file), not private memory
        assert got["anon"] < 0.25 * got["text_bytes"]
    else:  # read into this process's own memory
        assert got["anon"] > got["text_bytes"]


def test_mapped_pool_pickles_as_its_file(arrow_pool):
    path, _ = arrow_pool
    pool = PromptPool.from_file(path, group_column="extra_missing")
    blob = pickle.dumps(pool)
    assert len(blob) < 1000
    back = pickle.loads(blob)
    assert back.mapped == pool.mapped and back.group_column == "extra_missing" and back.groups is None
    assert back.texts([0, ROWS - 1]) == pool.texts([0, ROWS - 1])
    small = PromptPool.from_frame(pd.DataFrame({"text": ["a", "b"]}))
    assert pickle.loads(pickle.dumps(small)).texts([1]) == ["b"]  # an in-memory pool pickles its table


def test_arrow_stream_compressed_and_bad_files(tmp_path):
    table = pa.table({"text": ["a", "b", "c"], "region": [0, 2, 1]})
    with ipc.new_stream(tmp_path / "stream.arrow", table.schema) as writer:  # the IPC stream format
        writer.write_table(table)
    assert PromptPool.from_file(tmp_path / "stream.arrow").texts([2, 0]) == ["c", "a"]
    options = ipc.IpcWriteOptions(compression="zstd")  # read (decompressed into memory), not mapped
    with ipc.new_file(tmp_path / "zstd.arrow", table.schema, options=options) as writer:
        writer.write_table(table)
    assert PromptPool.from_file(tmp_path / "zstd.arrow").regions.tolist() == [0, 2, 1]
    (tmp_path / "junk.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(ValueError, match="cannot read arrow prompt file"):
        PromptPool.from_file(tmp_path / "junk.arrow")
    bad = pa.table({"text": ["a", None], "region": [0, -1]})
    with ipc.new_file(tmp_path / "bad.arrow", bad.schema) as writer:
        writer.write_table(bad)
    with pytest.raises(ValueError, match="column 'text' is missing at row 1"):
        PromptPool.from_file(tmp_path / "bad.arrow")


# ---- paired text -> first pool row, in Arrow -----------------------------------------------

def first_rows_oracle(paired: list[str], pool_texts: list[str]) -> np.ndarray:
    first: dict[str, int] = {}
    for i, text in enumerate(pool_texts):
        first.setdefault(text, i)
    return np.array([first[t] for t in paired], dtype=np.int64)


def test_pool_rows_takes_the_first_of_duplicates_across_chunks_and_slices(monkeypatch):
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    pool_texts = [words[i] for i in rng.integers(0, 40, 500)]  # many duplicates
    pool_texts[:40] = words[::-1][:40]  # every word present; first occurrences in reverse order
    paired = [words[i] for i in rng.integers(0, 40, 300)]
    want = first_rows_oracle(paired, pool_texts)
    one_chunk = PromptPool.from_frame(pd.DataFrame({"text": pool_texts}))
    table = pa.table({"text": pa.array(pool_texts, pa.string())})
    chunked = PromptPool(pa.concat_tables([table.slice(0, 7), table.slice(7, 0), table.slice(7, 200), table.slice(207)]))
    assert chunked.table.column("text").num_chunks == 4
    monkeypatch.setattr(cache_cmd, "POOL_SCAN_ROWS", 13)  # slices inside chunks
    for pool in (one_chunk, chunked):
        assert np.array_equal(pool_rows(paired, pool), want)
        assert np.array_equal(pool_rows(pa.chunked_array([pa.array(paired[:10]), pa.array(paired[10:])]), pool), want)
    assert pool_rows([], one_chunk).tolist() == []


def test_pool_rows_names_the_missing_prompts():
    pool = PromptPool.from_frame(pd.DataFrame({"text": ["a", "b", "a"]}))
    assert pool_rows(["a", "b", "b", "a"], pool).tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match=r"^3 paired prompts are not in the pool, e.g. 'x'$"):
        pool_rows(["b", "x", "a", "y", "x"], pool)


def test_pool_rows_on_a_mapped_pool_copies_nothing(arrow_pool):
    path, table = arrow_pool
    pool = PromptPool.from_file(path)
    rows = np.random.default_rng(4).integers(0, ROWS, 2000)
    paired = table.column("text").take(pa.array(rows))  # texts are unique: row i says "p{i}"
    before = pa.total_allocated_bytes()
    got = pool_rows(paired, pool)
    assert np.array_equal(got, rows)
    assert pa.total_allocated_bytes() - before < 1 << 20


def test_aria_pool_converts_to_a_mapped_pool_and_rejects_bad_input(tmp_path, capsys):
    import aria_cli

    frame = pd.DataFrame({"text": ["a red cat", "a blue dog", "a red dog"], "region": [0, 1, 1]})
    frame.to_csv(tmp_path / "pool.csv", index=False)
    assert aria_cli.main(["pool", str(tmp_path / "pool.csv"), "--out", str(tmp_path / "pool.arrow")]) == 0
    assert "3 prompts, 2 regions" in capsys.readouterr().out
    pool = PromptPool.from_file(tmp_path / "pool.arrow")
    assert pool.mapped is not None and pool.texts([2, 0]) == ["a red dog", "a red cat"]
    assert pool.regions.tolist() == [0, 1, 1]
    assert aria_cli.main(["pool", str(tmp_path / "pool.csv"), "--out", str(tmp_path / "pool.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aria: error:") and ".arrow" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "pool.parquet").exists()


def test_aria_pool_warns_about_blank_prompts_and_keeps_them(tmp_path, capsys):
    import aria_cli

    texts = ["a red cat", "", "   ", "a blue dog"]
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "pool.parquet")
    assert aria_cli.main(["pool", str(tmp_path / "pool.parquet"), "--out", str(tmp_path / "pool.arrow")]) == 0
    out = capsys.readouterr().out
    assert "warning: 2 of 4 prompts are empty or whitespace" in out
    assert PromptPool.from_file(tmp_path / "pool.arrow").texts(range(4)) == texts  # rows kept: caches stay aligned
    pd.DataFrame({"text": ["a red cat"]}).to_parquet(tmp_path / "clean.parquet")
    assert aria_cli.main(["pool", str(tmp_path / "clean.parquet"), "--out", str(tmp_path / "clean.arrow")]) == 0
    assert "warning" not in capsys.readouterr().out
