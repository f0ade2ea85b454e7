"""The data path: prompt pools, the sharded tensor cache, regions and `aria regions`."""
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aria_cli
from aria_train.data.cache import MANIFEST, TensorCache, TensorCacheWriter
from aria_train.data.pool import PromptPool
from aria_train.data.regions import assign_regions, kmeans_regions, pooled_embedding_cache, regions_from_column
from aria_train.diffusion.text import build_text_encoder, build_tokenizer, encode_prompts, save_text_stack

FRAME = pd.DataFrame({
    "text": ["a red circle", "a blue, square", "123", "a green cross"],
    "region": [2, 0, 1, 0],
    "group": ["seen", "unseen", "under", "seen"],
})


# ---- prompt pool --------------------------------------------------------------------------

def write_pool(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".txt":
        path.write_text("\n\n".join(frame["text"]) + "\n")  # blank lines are skipped
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".arrow":
        PromptPool.from_frame(frame).to_arrow(path)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".parquet", ".arrow"])
def test_pool_reads_every_format(tmp_path, suffix):
    pool = PromptPool.from_file(write_pool(tmp_path / f"pool{suffix}", FRAME))
    assert len(pool) == 4
    assert pool.texts([3, 0, 2, 0]) == [FRAME.text[3], FRAME.text[0], "123", FRAME.text[0]]
    if suffix == ".txt":
        assert pool.regions is None and pool.groups is None and pool.num_regions is None
    else:
        assert pool.regions.dtype == np.int64 and pool.regions.tolist() == [2, 0, 1, 0]
        assert pool.num_regions == 3 and pool.groups.tolist() == FRAME.group.tolist()
    with pytest.raises(IndexError):
        pool.texts([4])


def test_pool_from_frame_and_custom_columns():
    frame = FRAME.rename(columns={"text": "caption", "region": "cluster"}).set_index(pd.Index([7, 8, 9, 10]))
    pool = PromptPool.from_frame(frame, text_column="caption", region_column="cluster")
    assert pool.texts([1]) == [FRAME.text[1]] and pool.regions.tolist() == [2, 0, 1, 0]
    assert pool.table.column_names == ["caption", "cluster", "group"]  # the index is dropped


BAD_POOLS = [
    ("empty.txt", "\n  \n", "empty"),
    ("empty.csv", "", "Empty CSV"),
    ("header_only.csv", "text,region\n", "empty"),
    ("no_text.csv", "prompt,region\na,1\n", "no text column 'text'"),
    ("ragged.csv", "text,region\na,1,2\n", "Expected 2 columns"),
    ("float_region.csv", "text,region\na,1.5\n", "must hold integers"),
    ("negative.csv", "text,region\na,0\nb,-1\n", "negative region id at row 1"),
    ("missing_region.csv", "text,region\na,0\nb,\n", "region column 'region' is missing at row 1"),
    ("number_text.jsonl", '{"text": "a"}\n{"text": 3}\n', "changed from string to number"),
    ("null_text.jsonl", '{"text": "a"}\n{"text": null}\n', "column 'text' is missing at row 1"),
    ("broken.jsonl", '{"text": "a"\n', "JSON parse error"),
    ("words.json", "[]", "unknown prompt file type"),
]


@pytest.mark.parametrize("name, content, message", BAD_POOLS, ids=[case[0] for case in BAD_POOLS])
def test_pool_rejects_bad_files_with_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        PromptPool.from_file(tmp_path / name)
    assert "\n" not in str(info.value) and name in str(info.value)


def test_pool_rejects_bad_frames_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        PromptPool.from_file(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="must hold strings"):
        PromptPool.from_frame(pd.DataFrame({"text": [1, 2]}))
    with pytest.raises(ValueError, match="cannot convert"):
        PromptPool.from_frame(pd.DataFrame({"text": ["a", 2]}))
    with pytest.raises(ValueError, match="missing at row 1"):
        PromptPool.from_frame(pd.DataFrame({"text": ["a", None]}))
    with pytest.raises(ValueError, match="empty"):
        PromptPool.from_frame(pd.DataFrame({"text": pd.Series([], dtype=str)}))


# ---- tensor cache -------------------------------------------------------------------------

@settings(max_examples=30)
@given(
    rows=st.integers(0, 40),
    shard_rows=st.integers(1, 12),
    chunk=st.integers(1, 15),
    row_shape=st.lists(st.integers(1, 3), max_size=2),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]),
    order_seed=st.integers(0, 2**16),
)
def test_cache_round_trip_and_gather_order(rows, shard_rows, chunk, row_shape, dtype, order_seed):
    generator = torch.Generator().manual_seed(order_seed)
    values = (torch.randn(rows, *row_shape, generator=generator) * 10).to(dtype)
    ids = torch.arange(rows)
    with tempfile.TemporaryDirectory() as folder:
        with TensorCacheWriter(folder, shard_rows, metadata={"seeds": [1, 2]}) as writer:
            for start in range(0, rows, chunk):
                writer.append(values=values[start : start + chunk], ids=ids[start : start + chunk])
            assert len(writer) == rows
        cache = TensorCache(folder)
        assert len(cache) == rows and cache.metadata == {"seeds": [1, 2]}
        assert len(list(Path(folder).glob("shard-*"))) == math.ceil(rows / shard_rows)
        if rows == 0:
            assert cache.names == []
            return
        assert sorted(cache.names) == ["ids", "values"] and cache.shape("values") == (rows, *row_shape)
        assert cache.dtype("values") == dtype and torch.equal(cache.get("values"), values)
        wanted = torch.randint(rows, (2 * rows,), generator=generator).numpy()  # any order, with repeats
        assert torch.equal(cache.get("values", wanted), values[wanted])
        assert torch.equal(cache.get("ids", wanted), ids[wanted])


def test_cache_resume_after_a_killed_write_keeps_every_committed_row(tmp_path):
    data = torch.arange(30.0).reshape(15, 2)
    writer = TensorCacheWriter(tmp_path, shard_rows=4, metadata={"teacher": "t"})
    writer.append(x=data[:10])  # two shards committed, two rows buffered
    del writer  # killed: no close
    (tmp_path / "shard-00002.safetensors").write_bytes(b"half a shard")  # renamed but not yet listed
    (tmp_path / "shard-00003.safetensors.tmp").write_bytes(b"partial")
    (tmp_path / (MANIFEST + ".tmp")).write_text("{ half a manifest")
    with pytest.raises(ValueError, match="incomplete"):
        TensorCache(tmp_path)
    assert torch.equal(TensorCache(tmp_path, allow_incomplete=True).get("x"), data[:8])

    writer = TensorCacheWriter.resume(tmp_path)
    assert len(writer) == 8 and writer.metadata == {"teacher": "t"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "shard-00000.safetensors", "shard-00001.safetensors"]
    writer.append(x=data[len(writer):])
    writer.close()
    assert torch.equal(TensorCache(tmp_path).get("x"), data)

    writer = TensorCacheWriter.resume(tmp_path)  # a closed cache can grow too
    writer.append(x=data[:1])
    writer.close()
    assert torch.equal(TensorCache(tmp_path).get("x"), torch.cat([data, data[:1]]))


def test_cache_context_manager_leaves_a_resumable_cache_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with TensorCacheWriter(tmp_path, shard_rows=2) as writer:
            writer.append(x=torch.zeros(3, 1))
            raise RuntimeError("killed")
    assert len(TensorCacheWriter.resume(tmp_path)) == 2


def test_cache_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a tensor cache"):
        TensorCache(tmp_path)
    with TensorCacheWriter(tmp_path / "c", shard_rows=2) as writer:
        writer.append(x=torch.zeros(3, 2), y=torch.zeros(3))
        with pytest.raises(ValueError, match="do not match"):
            writer.append(x=torch.zeros(1, 3), y=torch.zeros(1))
        with pytest.raises(ValueError, match="first"):
            writer.append(x=torch.zeros(2, 2), y=torch.zeros(1))
    with pytest.raises(FileExistsError):
        TensorCacheWriter(tmp_path / "c")
    cache = TensorCache(tmp_path / "c")
    with pytest.raises(KeyError, match="no tensor 'z'"):
        cache.get("z", [0])
    with pytest.raises(IndexError):
        cache.get("x", [3])

    shard = tmp_path / "c" / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.raises(ValueError, match="corrupt"):
        TensorCache(tmp_path / "c").get("x", [2])
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        TensorCache(tmp_path / "c")
    (tmp_path / "c" / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        TensorCache(tmp_path / "c")


# ---- regions ------------------------------------------------------------------------------

def test_kmeans_recovers_well_separated_clusters_exactly():
    # 10 centres at mutual distance >= ~30 (checked), unit-variance noise: a point is nearer
    # another centre only beyond ~15 sigma, so with k-means++ seeding a wrong partition is
    # practically impossible; the data and seeds are fixed, so the test is deterministic.
    rng = np.random.default_rng(0)
    k, dim = 10, 6
    centres = rng.normal(0.0, 40.0, (k, dim))
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(k) * 1e9
    assert gaps.min() > 30
    truth = rng.permutation(np.repeat(np.arange(k), 60))
    points = (centres[truth] + rng.normal(size=(len(truth), dim))).astype(np.float32)
    labels, centroids = kmeans_regions(points, k, seed=1, batch_size=97)
    assert labels.dtype == np.int64 and centroids.shape == (k, dim) and centroids.dtype == np.float32
    mapping = {}
    assert all(mapping.setdefault(t, l) == l for t, l in zip(truth, labels)) and len(set(mapping.values())) == k
    for t, l in mapping.items():
        np.testing.assert_allclose(centroids[l], points[truth == t].mean(axis=0), atol=1e-4)
    assert np.array_equal(assign_regions(points, centroids, batch_size=50), labels)
    again, _ = kmeans_regions(torch.from_numpy(points), k, seed=1, batch_size=600)
    assert np.array_equal(again, labels)


def test_kmeans_errors():
    points = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    for k in (0, 6):
        with pytest.raises(ValueError, match="k must be in"):
            kmeans_regions(points, k, seed=0)
    with pytest.raises(ValueError, match="distinct"):
        kmeans_regions(np.ones((6, 2), np.float32), 2, seed=0)
    with pytest.raises(ValueError, match="float matrix"):
        kmeans_regions(np.ones(6), 2, seed=0)


def test_regions_from_column():
    assert regions_from_column(PromptPool.from_frame(FRAME)).tolist() == [2, 0, 1, 0]
    with pytest.raises(ValueError, match=r"regions \[1\]"):
        regions_from_column(PromptPool.from_frame(FRAME.assign(region=[2, 0, 0, 0])))
    with pytest.raises(ValueError, match="no region column"):
        regions_from_column(PromptPool.from_frame(FRAME[["text"]]))


COLORS, SHAPES = ("red", "green", "blue"), ("circle", "square", "cross")


def make_text_stack(folder: Path):
    tokenizer = build_tokenizer(["a", *COLORS, *SHAPES], 6)
    encoder = build_text_encoder(len(tokenizer), hidden=16, layers=1, heads=2, max_length=6, seed=0)
    save_text_stack(folder, tokenizer, encoder)
    return tokenizer, encoder


def test_pooled_embedding_cache_is_computed_once_and_resumes(tmp_path):
    tokenizer, encoder = make_text_stack(tmp_path / "teacher")
    pool = PromptPool.from_frame(pd.DataFrame({"text": [f"a {c} {s}" for c in COLORS for s in SHAPES] * 2}))
    want = encode_prompts(tokenizer, encoder, pool.texts(range(len(pool))), "cpu")[1]
    cache = pooled_embedding_cache(pool, tokenizer, encoder, tmp_path / "e", "cpu", batch_size=4, shard_rows=5,
                                   metadata={"teacher": "t"}, progress=False)
    torch.testing.assert_close(cache.get("pooled"), want)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "e").glob("shard-*")}
    cache = pooled_embedding_cache(pool, tokenizer, encoder, tmp_path / "e", "cpu", metadata={"teacher": "t"}, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "e").glob("shard-*")} == stamps  # reused
    with pytest.raises(ValueError, match="other inputs"):
        pooled_embedding_cache(pool, tokenizer, encoder, tmp_path / "e", "cpu", metadata={"teacher": "u"}, progress=False)
    cache = pooled_embedding_cache(pool, tokenizer, encoder, tmp_path / "e", "cpu", metadata={"teacher": "u"},
                                   progress=False, replace=True)  # computed again
    assert cache.metadata["teacher"] == "u"
    torch.testing.assert_close(cache.get("pooled"), want)

    writer = TensorCacheWriter(tmp_path / "r", shard_rows=5, metadata={"rows": len(pool)})
    writer.append(pooled=want[:7])  # a killed run: one shard of 5 committed
    cache = pooled_embedding_cache(pool, tokenizer, encoder, tmp_path / "r", "cpu", progress=False)
    torch.testing.assert_close(cache.get("pooled"), want)


def test_regions_command_end_to_end(tmp_path, capsys):
    make_text_stack(tmp_path / "teacher")
    rng = np.random.default_rng(0)
    texts = [f"a {COLORS[i]} {SHAPES[j]}" for i, j in rng.integers(0, 3, (120, 2))]
    write_pool(tmp_path / "pool.csv", pd.DataFrame({"text": texts, "region": rng.integers(0, 2, 120)}))
    args = ["regions", "--teacher", str(tmp_path / "teacher"), "--prompts", str(tmp_path / "pool.csv"),
            "--k", "9", "--out", str(tmp_path / "out"), "--batch-size", "16", "--shard-rows", "50"]
    assert aria_cli.main(args) == 0
    out = tmp_path / "out"
    pool = PromptPool.from_file(out / "regions.parquet")
    labels, centroids = np.load(out / "regions.npy"), np.load(out / "centroids.npy")
    assert pool.regions.tolist() == labels.tolist() and centroids.shape == (9, 16)
    assert "region_given" in pool.table.column_names and pool.texts(range(120)) == texts
    # identical prompts embed identically and the 9 distinct ones are far apart: one region each
    by_text = pd.DataFrame({"text": texts, "region": labels}).groupby("text").region
    assert by_text.nunique().max() == 1 and sorted(by_text.first()) == list(range(9))
    summary = json.loads((out / "regions.json").read_text())
    assert summary["k"] == 9 and sum(summary["prompts_per_region"]) == 120
    assert (out / "embeddings" / MANIFEST).is_file()

    assert aria_cli.main(args[:5] + ["--k", "121", "--out", str(tmp_path / "bad")]) == 2
    assert "aria: error: --k 121 is more than the 120 prompts" in capsys.readouterr().err

    # held-out prompts take the pool's region ids: nearest given centroid, no k-means
    heldout = texts[:30:3]
    write_pool(tmp_path / "heldout.csv", pd.DataFrame({"text": heldout}))
    assign = ["regions", "--teacher", str(tmp_path / "teacher"), "--prompts", str(tmp_path / "heldout.csv"),
              "--centroids", str(out / "centroids.npy"), "--out", str(tmp_path / "held")]
    assert aria_cli.main(assign) == 0
    held = PromptPool.from_file(tmp_path / "held" / "regions.parquet")
    assert held.regions.tolist() == labels[:30:3].tolist()
    np.testing.assert_array_equal(np.load(tmp_path / "held" / "centroids.npy"), centroids)
    capsys.readouterr()
    for extra in (["--k", "3"], []):  # both or neither of --k and --centroids
        bad = assign[:5] + extra + (assign[5:7] if extra else []) + ["--out", str(tmp_path / "bad2")]
        assert aria_cli.main(bad) == 2
        assert "either --k" in capsys.readouterr().err
    np.save(tmp_path / "wide.npy", np.arange(20, dtype=np.float32).reshape(4, 5))
    assert aria_cli.main(assign[:5] + ["--centroids", str(tmp_path / "wide.npy"), "--out", str(tmp_path / "bad3")]) == 2
    assert "dimension 5" in capsys.readouterr().err and not (tmp_path / "bad3").exists()


def test_regions_command_help_states_defaults(capsys):
    with pytest.raises(SystemExit):
        aria_cli.main(["regions", "--help"])
    text = capsys.readouterr().out
    assert "default: 65536" in text and "default: auto" in text and "prompts per text-encoder batch" in text
