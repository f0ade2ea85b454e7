"""Bad input to `aria world / regions / cache / experiment / pool`: one `error:` line on stderr, exit 2,
and the output folder exactly as before (issue 15: clobbered, stale and half-written outputs).

Everything runs in this process through `aria_cli.main` on tiny inputs (a random-weight teacher
of fixtures_train, a 3 x 3 world of 8 px); no subprocess.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

import aria_cli
from aria_train.data.cache import MANIFEST, TensorCacheWriter, folder_fingerprint, read_manifest
from aria_train.data.pool import PromptPool
from aria_train.data.regions import regions_from_column
from aria_train.diffusion.text import build_text_encoder, build_tokenizer, save_text_stack
from aria_train.worlds import WorldConfig, load_world_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fixtures_train import COLORS, SHAPES, make_teacher, pool_frame  # noqa: E402
from cli_errors import refused, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = {"image_size": 8, "colours": ["red", "green", "blue"], "shapes": ["circle", "square", "triangle"],
         "unseen": ["red triangle"], "under": ["green circle"], "pool_per_region": 4, "pool_per_under_region": 2,
         "paired_per_region": 2, "paired_per_under_region": 1, "heldout_per_region": 1}
WORLD_FAST = ["--check", "0", "--sheet-per-region", "1"]


def ok(argv: list) -> None:
    assert aria_cli.main([str(a) for a in argv]) == 0




# ---------------------------------------------------------------- aria world


def world_config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / f"world-{len(list(tmp_path.glob('world-*.json')))}.json"
    path.write_text(json.dumps({**WORLD, **changes}))
    return path


def test_world_refuses_another_world_and_other_folders_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "world"
    first = world_config(tmp_path)
    ok(["world", "--out", out, "--config", first, *WORLD_FAST])
    before = snapshot(out)
    ok(["world", "--out", out, "--config", first, *WORLD_FAST])  # the same world again: written identically
    assert snapshot(out) == before

    other = world_config(tmp_path, seed=5)
    refused(["world", "--out", out, "--config", other, *WORLD_FAST], capsys, "holds another world", "--overwrite")
    refused(["world", "--out", out, "--config", first, "--seed", "3", *WORLD_FAST], capsys, "another world")
    assert snapshot(out) == before
    ok(["world", "--out", out, "--config", other, "--overwrite", *WORLD_FAST])
    assert load_world_config(out / "world.json").seed == 5 and not list(tmp_path.glob(".world.*"))

    run = tmp_path / "run"  # e.g. a distillation run: never written into
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    run_before = snapshot(run)
    refused(["world", "--out", run, "--config", first, *WORLD_FAST], capsys, "holds other files")
    (out / "notes.txt").write_text("mine")  # a world folder with a file of the user's is not "the same world"
    refused(["world", "--out", out, "--config", other, *WORLD_FAST], capsys, "--overwrite")
    assert snapshot(run) == run_before and (out / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    refused(["world", "--out", tmp_path / "file", "--config", first, *WORLD_FAST], capsys, "is not a folder")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("change, needle", [
    ({"image_size": "24"}, "image_size must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"pool_per_region": None}, "pool_per_region must be an integer"),
    ({"shapes": "circle"}, "shapes must be a list"),
    ({"colours": ["red", 3]}, "colours must be a list"),
    ({"colors": ["red"]}, "unknown WorldConfig fields"),
])
def test_world_config_of_wrong_types_is_one_line(tmp_path, capsys, change, needle):
    config = world_config(tmp_path, **change)
    refused(["world", "--out", tmp_path / "out", "--config", config, *WORLD_FAST], capsys, needle)
    refused(["teacher", "--out", tmp_path / "teacher", "--world", config, "--no-progress"], capsys, needle)
    assert not (tmp_path / "out").exists() and not (tmp_path / "teacher").exists()
    assert list(tmp_path.iterdir()) == [config]


def test_world_config_type_checks_keep_its_json_format(tmp_path):
    config = WorldConfig(**WORLD)
    config.save(tmp_path / "w.json")
    assert json.loads((tmp_path / "w.json").read_text()) == {**WorldConfig().to_dict(), **WORLD}  # no new keys
    assert WorldConfig.load(tmp_path / "w.json") == config
    with pytest.raises(ValueError, match="image_size must be an integer"):
        WorldConfig(image_size=32.0)
    with pytest.raises(ValueError, match="JSON object"):
        WorldConfig.from_dict(["image_size"])


def test_world_command_lives_in_the_cli_package():
    assert aria_cli.COMMANDS[(None, "world")] == "aria_train.cli.world"
    assert importlib.util.find_spec("aria_train.worlds.cli") is None


# ---------------------------------------------------------------- aria pool: region ids


@pytest.mark.parametrize("region, needle", [(-1, "negative region id"), (2**40, "out of range")])
def test_pool_region_ids_out_of_bounds_are_refused(tmp_path, capsys, region, needle):
    frame = pool_frame()
    frame.loc[5, "region"] = region
    frame.to_parquet(tmp_path / "pool.parquet")
    refused(["pool", tmp_path / "pool.parquet", "--out", tmp_path / "pool.arrow"], capsys, needle, "row 5")
    assert not (tmp_path / "pool.arrow").exists()


def test_a_region_id_beyond_the_prompts_is_refused_before_counting():
    frame = pool_frame()
    frame.loc[0, "region"] = 2**39  # in range for a pool, but a region per id up to it would need TiBs
    with pytest.raises(ValueError, match="more than the 12 prompts"):
        regions_from_column(PromptPool.from_frame(frame))


def test_pool_fingerprint_depends_on_the_texts_only():
    frame = pool_frame()
    pool = PromptPool.from_frame(frame)
    chunked = PromptPool(pa.Table.from_batches(pa.Table.from_pandas(frame).to_batches(max_chunksize=5)))
    assert chunked.table.column("text").num_chunks == 3 and chunked.fingerprint() == pool.fingerprint()
    regions = frame.assign(region=0)
    assert PromptPool.from_frame(regions).fingerprint() == pool.fingerprint()
    joined = frame.assign(text=[frame.text[0] + frame.text[1], ""] + frame.text[2:].tolist())  # same bytes, other split
    assert PromptPool.from_frame(joined).fingerprint() != pool.fingerprint()


# ---------------------------------------------------------------- aria regions


def text_teacher(folder: Path, seed: int = 0) -> Path:
    tokenizer = build_tokenizer(["a", *COLORS, *SHAPES], 6)
    save_text_stack(folder, tokenizer, build_text_encoder(len(tokenizer), hidden=16, layers=1, heads=2,
                                                          max_length=6, seed=seed))
    return folder


@pytest.fixture(scope="module")
def regions_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    text_teacher(root / "teacher")
    text_teacher(root / "other_teacher", seed=1)
    pool_frame().to_parquet(root / "pool.parquet")
    return root


def regions_argv(root: Path, out: Path, *extra) -> list:
    return ["regions", "--teacher", root / "teacher", "--prompts", root / "pool.parquet", "--out", out,
            "--batch-size", "5", "--shard-rows", "5", *extra]


def test_regions_refuse_a_negative_seed_before_writing(regions_inputs, tmp_path, capsys):
    refused(regions_argv(regions_inputs, tmp_path / "r", "--k", "2", "--seed", "-1"), capsys,
            "--seed must be in [0, 2^63), got -1")  # once: accepted
    assert not (tmp_path / "r").exists()


def test_regions_refuse_foreign_folders_and_finished_results_unless_overwrite(regions_inputs, tmp_path, capsys):
    root = regions_inputs
    world = tmp_path / "world"
    world.mkdir()
    (world / "pool.parquet").write_bytes(b"a world's pool")
    refused(regions_argv(root, world, "--k", "3"), capsys, "not an `aria regions` output", "pool.parquet")
    refused(regions_argv(root, world, "--k", "3", "--overwrite"), capsys, "not an `aria regions` output")
    assert snapshot(world) == {"pool.parquet": b"a world's pool"}

    out = tmp_path / "regions"
    ok(regions_argv(root, out, "--k", "3"))
    before = snapshot(out)
    refused(regions_argv(root, out, "--k", "2"), capsys, "already holds regions", "--overwrite")
    assert snapshot(out) == before
    # --overwrite: new results, the same embeddings (reused, not recomputed)
    ok(regions_argv(root, out, "--k", "2", "--overwrite"))
    after = snapshot(out)
    assert json.loads(after["regions.json"])["k"] == 2 and after["centroids.npy"] != before["centroids.npy"]
    assert {k: v for k, v in after.items() if k.startswith("embeddings")} == \
        {k: v for k, v in before.items() if k.startswith("embeddings")}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    # a killed run (embeddings, no results yet) is resumed without --overwrite
    for name in ("regions.parquet", "regions.npy", "centroids.npy", "regions.json"):
        (out / name).unlink()
    ok(regions_argv(root, out, "--k", "2"))
    assert snapshot(out) == after


def test_regions_replace_embeddings_of_other_prompts_or_another_teacher_only_with_overwrite(regions_inputs, tmp_path,
                                                                                           capsys, monkeypatch):
    import shutil

    root = regions_inputs
    prompts = tmp_path / "pool.parquet"
    pool_frame().to_parquet(prompts)
    out = tmp_path / "regions"
    argv = ["regions", "--teacher", root / "teacher", "--prompts", prompts, "--out", out, "--k", "3"]
    ok(argv)
    before = snapshot(out)
    # the same path and row count, other texts: the cached embeddings are stale
    frame = pool_frame()
    frame["text"] = frame["text"].str.replace("red", "blue")
    frame.to_parquet(prompts)
    results = ("regions.parquet", "regions.npy", "centroids.npy", "regions.json")
    killed = tmp_path / "killed"  # a killed run of the old prompts: embeddings, no results
    shutil.copytree(out, killed, ignore=shutil.ignore_patterns(*results))
    refused(argv[:-3] + [killed, "--k", "3"], capsys, "holds embeddings of other inputs", "the prompts' texts",
            "--overwrite")
    assert snapshot(killed) == {k: v for k, v in before.items() if k not in results}

    # --overwrite: the stale embeddings are computed again; the old results stay until the new ones are made
    def no_kmeans(*args, **kwargs):
        raise ValueError("k-means failed")

    with monkeypatch.context() as patch:
        patch.setattr("aria_train.data.regions.kmeans_regions", no_kmeans)
        assert aria_cli.main([str(a) for a in argv + ["--overwrite"]]) == 2  # after the embedding's progress bar
    assert capsys.readouterr().err.splitlines()[-1] == "aria: error: k-means failed"
    assert {k: v for k, v in snapshot(out).items() if k in results} == {k: before[k] for k in results}
    ok(argv + ["--overwrite"])
    ok(argv[:-3] + [tmp_path / "fresh", "--k", "3"])
    assert snapshot(out) == snapshot(tmp_path / "fresh") != before  # as a run in a new folder makes
    ok(argv[:-3] + [killed, "--k", "3", "--overwrite"])
    assert snapshot(killed) == snapshot(tmp_path / "fresh")

    other = ["regions", "--teacher", root / "other_teacher", "--prompts", prompts, "--out", out, "--k", "3"]
    refused(other, capsys, "already holds regions", "--overwrite")
    ok(other + ["--overwrite"])
    ok(other[:-3] + [tmp_path / "other", "--k", "3"])
    assert snapshot(out) == snapshot(tmp_path / "other")
    # moving the inputs keeps the embeddings: only their content counts
    frame.to_parquet(tmp_path / "moved.parquet")
    kept = snapshot(out)
    ok(["regions", "--teacher", root / "other_teacher", "--prompts", tmp_path / "moved.parquet", "--out", out,
        "--k", "3", "--overwrite"])
    assert {k: v for k, v in snapshot(out).items() if k.startswith("embeddings/shard")} == \
        {k: v for k, v in kept.items() if k.startswith("embeddings/shard")}


def test_regions_refuse_non_finite_centroids_and_centroids_of_another_teacher(regions_inputs, tmp_path, capsys):
    root = regions_inputs
    ok(regions_argv(root, tmp_path / "made", "--k", "3"))
    centroids = np.load(tmp_path / "made" / "centroids.npy")
    bad = centroids.copy()
    bad[1, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    bad[1, 4] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    for name in ("nan.npy", "inf.npy"):
        refused(regions_argv(root, tmp_path / "out", "--centroids", tmp_path / name), capsys,
                "NaN or infinite", "row 1")
    np.save(tmp_path / "repeated.npy", centroids[[0, 1, 2, 1]])  # the copy's region would stay empty
    refused(regions_argv(root, tmp_path / "out", "--centroids", tmp_path / "repeated.npy"), capsys,
            "1 centroid(s) repeat an earlier one (first: row 3)")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    refused(regions_argv(root, tmp_path / "out", "--centroids", tmp_path / "text.npy"), capsys, "expected numbers")
    (tmp_path / "plain.txt").write_text("0.1 0.2\n0.3 0.4\n")  # once: "Cannot load file containing pickled data"
    refused(regions_argv(root, tmp_path / "out", "--centroids", tmp_path / "plain.txt"), capsys, "is not a .npy file")
    # centroids.npy beside a regions.json of another text encoder: another embedding space
    other = ["regions", "--teacher", root / "other_teacher", "--prompts", root / "pool.parquet", "--out",
             tmp_path / "out", "--centroids", tmp_path / "made" / "centroids.npy"]
    refused(other, capsys, "another text encoder")
    refused(regions_argv(root, tmp_path / "out", "--centroids", tmp_path / "made" / "centroids.npy",
                         "--device", "bogus"), capsys, "--device")
    assert not (tmp_path / "out").exists()
    ok(regions_argv(root, tmp_path / "out", "--centroids", tmp_path / "made" / "centroids.npy"))


def test_regions_with_more_regions_than_distinct_prompts_keep_the_embeddings_for_a_rerun(regions_inputs, tmp_path,
                                                                                         capsys):
    frame = pool_frame()
    frame.assign(text=frame.text[:2].tolist() * (len(frame) // 2) + frame.text[:len(frame) % 2].tolist()).to_parquet(
        tmp_path / "two.parquet")  # two distinct prompts
    argv = ["regions", "--teacher", regions_inputs / "teacher", "--prompts", tmp_path / "two.parquet", "--out",
            tmp_path / "out"]
    assert aria_cli.main([str(a) for a in argv + ["--k", "3"]]) == 2  # after the embedding's progress bar
    assert capsys.readouterr().err.splitlines()[-1] == (
        "aria: error: fewer than k = 3 distinct embeddings: use fewer regions (the embeddings stay in "
        f"{tmp_path / 'out' / 'embeddings'}: a rerun with a smaller --k reuses them)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["embeddings"]
    embeddings = snapshot(tmp_path / "out")
    ok(argv + ["--k", "2"])
    assert {k: v for k, v in snapshot(tmp_path / "out").items() if k.startswith("embeddings")} == embeddings


@pytest.mark.parametrize("bar", [True, False], ids=["bar", "no-progress"])
def test_regions_show_the_embedding_bar_unless_told_not_to(regions_inputs, tmp_path, capsys, bar):
    capsys.readouterr()
    ok(regions_argv(regions_inputs, tmp_path / "out", "--k", "2", *([] if bar else ["--no-progress"])))
    printed = capsys.readouterr()
    assert ("embedding: 100%" in printed.err) == bar and "prompts per region" in printed.out


def test_regions_refuse_an_unloadable_text_encoder(regions_inputs, tmp_path, capsys):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(regions_inputs / "teacher", teacher)
    weights = teacher / "text_encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    argv = ["regions", "--teacher", teacher, "--prompts", regions_inputs / "pool.parquet", "--out", tmp_path / "out",
            "--k", "3"]
    refused(argv, capsys, "cannot load the text encoder")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- aria cache


@pytest.fixture(scope="module")
def cache_inputs(tmp_path_factory):
    """A random-weight teacher, the 12-prompt pool, 4 paired prompts and their finished cache."""
    root = tmp_path_factory.mktemp("cache")
    make_teacher(root / "teacher")
    frame = pool_frame()
    frame.to_parquet(root / "pool.parquet")
    frame.iloc[[0, 4, 5, 9]][["text"]].to_parquet(root / "paired.parquet")
    ok(cache_argv(root, root / "cache"))
    return root


def cache_argv(root: Path, out: Path, *extra, paired: Path | None = None) -> list:
    return ["cache", "--teacher", root / "teacher", "--paired", paired or root / "paired.parquet", "--pool",
            root / "pool.parquet", "--out", out, "--steps", "1", "--batch-size", "4", "--shard-rows", "2",
            "--guidance", "1", "--no-progress", *extra]


def test_cache_refuses_folders_it_did_not_make(cache_inputs, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    before = snapshot(run)
    refused(cache_argv(cache_inputs, run), capsys, "not an `aria cache` folder", "checkpoints, config.json")
    assert snapshot(run) == before
    (tmp_path / "file").write_text("x")
    refused(cache_argv(cache_inputs, tmp_path / "file"), capsys, "is not a folder")


def test_cache_says_a_folder_is_not_a_teacher(cache_inputs, tmp_path, capsys):
    argv = cache_argv(cache_inputs, tmp_path / "out")
    argv[argv.index("--teacher") + 1] = tmp_path  # once: "holds no files to fingerprint"
    refused(argv, capsys, f"teacher folder {tmp_path} lacks unet/, scheduler/, tokenizer/, text_encoder/")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--guidance", "nan"], "--guidance must be a finite number"),  # was: a complete cache of NaN samples
    (["--guidance", "-1"], "--guidance must be a finite number"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--device", "bogus"], "is not a torch device"),
    pytest.param(["--device", "cuda"], "this torch has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")),
    (["--dtype", "float64"], "invalid choice: 'float64'"),
    (["--seed", "-1"], "--seed must be in [0, 2^63), got -1"),  # once: accepted
])
def test_cache_refuses_bad_values_before_writing(cache_inputs, tmp_path, capsys, extra, needle):
    refused(cache_argv(cache_inputs, tmp_path / "out", *extra), capsys, needle)
    assert not (tmp_path / "out").exists()


def test_a_refused_cache_run_leaves_the_finished_cache_as_it_was(cache_inputs, capsys):
    out = cache_inputs / "cache"
    before = snapshot(out)
    manifest = read_manifest(out / "paired")
    assert manifest["complete"] and sorted(p.name for p in out.iterdir()) == ["paired"]  # no file beside the cache
    assert {"paired_fingerprint", "pool_fingerprint", "teacher_fingerprint"} <= manifest["metadata"].keys()
    assert manifest["metadata"]["dtype"] == "float32"  # --dtype auto on the CPU
    refused(cache_argv(cache_inputs, out, "--steps", "2"), capsys, "other settings", "steps")
    refused(cache_argv(cache_inputs, out, "--guidance", "3"), capsys, "other settings", "guidance")
    refused(cache_argv(cache_inputs, out, "--dtype", "bfloat16"), capsys, "other settings",
            "dtype: 'float32' -> 'bfloat16'")
    refused(cache_argv(cache_inputs, out, "--device", "bogus"), capsys, "--device")
    assert snapshot(out) == before
    ok(cache_argv(cache_inputs, out))  # the same command again: left as it is
    assert snapshot(out) == before


def test_rerunning_cache_computes_damaged_shards_again(cache_inputs, tmp_path, capsys):
    import shutil

    out = tmp_path / "cache"
    shutil.copytree(cache_inputs / "cache", out)
    before = snapshot(out)
    with open(out / "paired" / "shard-00000.safetensors", "r+b") as f:
        f.truncate(200)  # a cut copy: its header no longer fits
    flipped = bytearray(before["paired/shard-00001.safetensors"])
    flipped[-1] ^= 0x01  # a flipped byte: only its SHA-256 tells
    (out / "paired" / "shard-00001.safetensors").write_bytes(bytes(flipped))
    capsys.readouterr()
    ok(cache_argv(cache_inputs, out))
    said = capsys.readouterr().out
    assert "shard-00000.safetensors does not match the cache's manifest: computing its rows 0-1 again" in said
    assert "shard-00001.safetensors does not match the cache's manifest: computing its rows 2-3 again" in said
    assert snapshot(out) == before  # the same samples again, the cache finished


def test_cache_refuses_changed_inputs_at_the_same_paths(cache_inputs, tmp_path, capsys):
    import shutil

    root = tmp_path / "inputs"
    shutil.copytree(cache_inputs, root, ignore=shutil.ignore_patterns("cache"))
    out = tmp_path / "cache"
    ok(cache_argv(root, out))
    before = snapshot(out)
    # the paired file rewritten with other prompts, as many rows
    paired = pd.read_parquet(root / "paired.parquet")
    pd.DataFrame({"text": paired["text"][::-1].tolist()}).to_parquet(root / "paired.parquet")
    refused(cache_argv(root, out), capsys, "made from other inputs", "the paired prompts' texts changed")
    paired.to_parquet(root / "paired.parquet")
    # the pool rewritten with the same rows in another order: the cache's prompt_id would point elsewhere
    pool = pd.read_parquet(root / "pool.parquet")
    pool.iloc[::-1].to_parquet(root / "pool.parquet")
    refused(cache_argv(root, out), capsys, "made from other inputs", "the pool's texts changed")
    pool.to_parquet(root / "pool.parquet")
    # the teacher retrained in place (same folder, same architecture, other weights)
    shutil.rmtree(root / "teacher")
    make_teacher(root / "teacher", seed=1)
    refused(cache_argv(root, out), capsys, "made from other inputs", "the teacher folder's files changed")
    assert snapshot(out) == before


def test_a_cache_made_before_fingerprints_were_recorded_is_refused(cache_inputs, tmp_path, capsys):
    import shutil

    out = tmp_path / "old"
    shutil.copytree(cache_inputs / "cache", out)
    manifest = read_manifest(out / "paired")
    for key in ("paired_fingerprint", "pool_fingerprint", "teacher_fingerprint"):
        del manifest["metadata"][key]  # as written when sources.json held them
    (out / "paired" / MANIFEST).write_text(json.dumps(manifest))
    (out / "sources.json").write_text("{}")
    before = snapshot(out)
    refused(cache_argv(cache_inputs, out), capsys, "older `aria cache`", "choose another --out")
    assert snapshot(out) == before


def test_resuming_a_cache_writer_does_not_touch_its_manifest(tmp_path):
    with TensorCacheWriter(tmp_path / "c", shard_rows=2, metadata={"m": 1}) as writer:
        writer.append(x=torch.zeros(3, 2))
    before = (tmp_path / "c" / MANIFEST).read_bytes()
    TensorCacheWriter.resume(tmp_path / "c")  # opened, then abandoned (e.g. a run refused for its settings)
    assert (tmp_path / "c" / MANIFEST).read_bytes() == before
    writer = TensorCacheWriter.resume(tmp_path / "c")
    writer.append(x=torch.ones(2, 2))  # a new shard: incomplete until closed
    assert not read_manifest(tmp_path / "c")["complete"] and read_manifest(tmp_path / "c")["rows"] == 5
    writer.close()
    assert read_manifest(tmp_path / "c")["complete"]


def test_folder_fingerprint_sees_content_not_times(tmp_path):
    import os

    folder = tmp_path / "t"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "w.bin").write_bytes(b"\0" * 1000)
    (folder / "log.txt").write_text("a log")
    first = folder_fingerprint(folder, ("unet",))
    os.utime(folder / "unet" / "w.bin", (1, 1))
    (folder / "log.txt").write_text("another log")
    assert folder_fingerprint(folder, ("unet",)) == first
    (folder / "unet" / "w.bin").write_bytes(b"\0" * 999 + b"\1")
    assert folder_fingerprint(folder, ("unet",)) != first


# ---------------------------------------------------------------- aria experiment


def experiment_config(tmp_path: Path, **changes) -> Path:
    data = {"teacher": "teacher", "pool": "pool.parquet", "paired_cache": "cache", "heldout": "heldout.parquet",
            "seeds": [0], "methods": {"rc": {"method": "rc"}}, "distill": {"steps": 2}, **changes}
    path = tmp_path / f"experiment-{len(list(tmp_path.glob('experiment-*.json')))}.json"
    path.write_text(json.dumps(data))
    return path


def test_experiment_refuses_other_folders(tmp_path, capsys):
    config = experiment_config(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    before = snapshot(run)
    refused(["experiment", config, "--out", run], capsys, "not an experiment folder")
    assert snapshot(run) == before

    other = tmp_path / "other"  # the folder of another experiment
    other.mkdir()
    from aria_train.experiment.config import ExperimentConfig
    from aria_train.options import to_dict

    record = json.dumps(to_dict(ExperimentConfig.load(experiment_config(tmp_path, seeds=[1]))), indent=2) + "\n"
    (other / "experiment.json").write_text(record)
    refused(["experiment", config, "--out", other], capsys, "holds a different experiment",
            "none of its runs reached a checkpoint")  # what a user fixing a config that failed late needs to know
    (other / "runs" / "rc-seed1" / "checkpoints" / "step-0000002").mkdir(parents=True)
    line = refused(["experiment", config, "--out", other], capsys, "holds a different experiment")
    assert "loses no training" not in line
    shutil.rmtree(other / "runs")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "experiment.json").write_text("{not json")
    refused(["experiment", config, "--out", tmp_path / "corrupt"], capsys, "is not valid JSON")
    (tmp_path / "file").write_text("x")
    refused(["experiment", config, "--out", tmp_path / "file"], capsys, "is not a folder")
    assert snapshot(other) == {"experiment.json": record.encode()}
    assert (tmp_path / "corrupt" / "experiment.json").read_text() == "{not json"


@pytest.mark.parametrize("argv, needle", [
    (["distill", "--out", "x", "--steps", "abc"], "invalid int value: 'abc'"),
    (["sim", "allocation", "--bogus"], "unrecognized arguments: --bogus"),
    (["nosuch"], "invalid choice: 'nosuch'"),
])
def test_argparse_errors_are_one_line_without_the_usage_block(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "--help" in refused(argv, capsys, needle)
    assert not list(tmp_path.iterdir())
