"""`aria cache` on several processes: the same single cache, file for file, as one process makes,
and resumable after a kill on any rank, on any number of processes.

A random-weight tiny teacher (fixtures_train), 11 paired prompts in shards of 3 rows sampled in
batches of 2 (so batches restart at every shard), 2 DDIM steps, plus the text cache of a 15-row
.arrow pool with duplicate texts. The two-process runs use torchrun over gloo on the CPU with
this file as the script: the environment variable ARIA_TEST_HOOKS makes it record the seeds each
rank samples, or SIGKILL a rank after its first shard, before it runs `aria`.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import aria_cli
from aria_train.data import teacher_samples as cache_cmd
from aria_train.diffusion import sampling
from aria_train.data import cache as cache_module
from aria_train.data.cache import TensorCache, TensorCacheWriter, read_manifest, write_shard_file
from aria_train.data.pool import PromptPool

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for fixtures_train
from fixtures_train import make_teacher, pool_frame  # noqa: E402

PAIRED = [0, 3, 5, 3, 7, 11, 2, 0, 9, 4, 6]  # pool_frame rows (repeats): shards [0,3) [3,6) [6,9) [9,11)
SHARD_ROWS, BATCH = 3, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache_multi")
    make_teacher(root / "teacher")
    frame = pool_frame()
    PromptPool.from_frame(pd.concat([frame, frame.iloc[[3, 0, 5]]], ignore_index=True)).to_arrow(root / "pool.arrow")
    pd.DataFrame({"text": frame["text"].to_numpy()[PAIRED]}).to_parquet(root / "paired.parquet")
    return root


def cache_argv(root: Path, out: Path, *extra) -> list[str]:
    return [str(a) for a in ("cache", "--teacher", root / "teacher", "--paired", root / "paired.parquet", "--pool",
                             root / "pool.arrow", "--embed-pool", "--out", out, "--steps", 2, "--batch-size", BATCH,
                             "--shard-rows", SHARD_ROWS, "--no-progress", *extra)]


@pytest.fixture(scope="module")
def reference(inputs) -> Path:
    """The cache one process (this one) makes."""
    assert aria_cli.main(cache_argv(inputs, inputs / "one")) == 0
    return inputs / "one"


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def launch(argv: list[str], **hooks) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "ARIA_TEST_HOOKS": json.dumps(hooks)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_reference_layout(inputs, reference):
    paired = TensorCache(reference / "paired")
    assert [s["rows"] for s in paired.manifest["shards"]] == [3, 3, 3, 2] and paired.manifest["complete"]
    assert paired.get("prompt_index").tolist() == list(range(11))
    assert paired.get("prompt_id").tolist() == PAIRED  # the first pool row of each text (the pool repeats rows 3, 0, 5)
    assert len(TensorCache(reference / "text")) == 15 and not (reference / "paired" / cache_cmd.PENDING_DIR).exists()


@pytest.mark.slow
def test_two_processes_make_the_one_process_cache(inputs, reference, tmp_path):
    argv = cache_argv(inputs, tmp_path / "two")
    done = launch([a for a in argv if a != "--no-progress"], record=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert files(tmp_path / "two") == files(reference)  # shards and manifests, byte for byte
    seeds = {rank: (tmp_path / f"seeds-{rank}.txt").read_text().split() for rank in (0, 1)}
    assert seeds == {0: "0 1 2 6 7 8".split(), 1: "3 4 5 9 10".split()}  # shards dealt round-robin, disjoint
    assert done.stdout.count("paired cache:") == 1 and done.stdout.count("text cache:") == 1  # rank 0 reports
    for bar in ("paired samples", "pool embeddings"):  # one bar each (rank 0's), from 0 to all rows
        assert done.stderr.count(f"{bar}:   0%") == 1 and done.stderr.count(f"{bar}: 100%") >= 1


@pytest.mark.slow
def test_a_run_killed_on_one_rank_resumes_on_one_process(inputs, reference, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    done = launch(cache_argv(inputs, out), kill_rank=1)
    assert done.returncode != 0
    manifest = read_manifest(out / "paired")
    assert not manifest["complete"] and not (out / "text").exists()
    pending = sorted(p.name for p in (out / "paired" / cache_cmd.PENDING_DIR).iterdir())
    listed = manifest["rows"]
    assert listed >= 6 or "rows-000000000003-000000000006.safetensors" in pending  # rank 1's shard survived
    real, sampled = sampling.sample, []
    monkeypatch.setattr(sampling, "sample", lambda *a, **k: sampled.extend(a[4]) or real(*a, **k))
    assert aria_cli.main(cache_argv(inputs, out)) == 0
    assert not set(sampled) & {3, 4, 5} and not set(sampled) & set(range(listed))  # kept work is not redone
    assert files(out) == files(reference)


class FakeRanks:
    """Rank `rank` of `world`: rank 0's plan is kept for the others (no processes, no collectives)."""
    plan = None
    device = None

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def share(self, obj):
        if self.rank == 0:
            FakeRanks.plan = obj
        return FakeRanks.plan

    def wait(self) -> None:
        pass


def rows_cache(folder: Path, ranks, computed: list[int], stop_at: int | None = None) -> Path:
    def compute(rows):
        if stop_at is not None and rows[0] >= stop_at:
            raise KeyboardInterrupt
        computed.extend(rows.tolist())
        return {"x": torch.from_numpy(rows * 0.5).float()[:, None].repeat(1, 2), "row": torch.from_numpy(rows)}

    return cache_cmd.write_rows(folder, {"what": "rows"}, 3, 11, 2, compute, ranks, "rows", "row", False)


def test_pending_shards_after_a_gap_are_kept_and_assembled_in_order(tmp_path):
    want = rows_cache(tmp_path / "one", cache_cmd.Ranks(), [])
    # rank 0 of 2 is killed in its first shard; rank 1 finishes its shards [3, 6) and [9, 11)
    with pytest.raises(KeyboardInterrupt):
        rows_cache(tmp_path / "two", FakeRanks(0, 2), [], stop_at=0)
    done = []
    rows_cache(tmp_path / "two", FakeRanks(1, 2), done)
    assert done == [3, 4, 5, 9, 10] and read_manifest(tmp_path / "two")["rows"] == 0
    assert sorted(p.name for p in (tmp_path / "two" / "pending").iterdir()) == [
        "rows-000000000003-000000000006.safetensors", "rows-000000000009-000000000011.safetensors"]
    (tmp_path / "two" / "pending" / "rows-000000000000-000000000003.safetensors.tmp").write_bytes(b"half")  # debris
    redo = []
    rows_cache(tmp_path / "two", cache_cmd.Ranks(), redo)  # one process finishes: only the missing shards
    assert redo == [0, 1, 2, 6, 7, 8]
    assert files(tmp_path / "two") == files(want)
    assert TensorCache(want).get("row").tolist() == list(range(11))


def test_damaged_shards_are_computed_again_by_the_ranks(tmp_path):
    want = rows_cache(tmp_path / "one", cache_cmd.Ranks(), [])
    rows_cache(tmp_path / "two", cache_cmd.Ranks(), [])
    for name in ("shard-00001.safetensors", "shard-00003.safetensors"):
        shard = tmp_path / "two" / name
        shard.write_bytes(shard.read_bytes()[:-1] + b"!")  # a changed byte: only its SHA-256 tells
    # rank 0 of 2 replaces its share, rows [3, 6); the shard of rank 1's share is still damaged
    done = []
    with pytest.raises(ValueError, match="shard-00003.safetensors missing after every rank finished"):
        rows_cache(tmp_path / "two", FakeRanks(0, 2), done)
    rows_cache(tmp_path / "two", FakeRanks(1, 2), done)  # rows [9, 11), left pending
    assert done == [3, 4, 5, 9, 10]
    redo = []
    rows_cache(tmp_path / "two", cache_cmd.Ranks(), redo)  # lists the pending shard, computes nothing
    assert redo == [] and files(tmp_path / "two") == files(want)


def test_other_settings_stop_every_rank(tmp_path):
    rows_cache(tmp_path / "c", cache_cmd.Ranks(), [])
    with pytest.raises(ValueError, match="other settings"):
        cache_cmd.write_rows(tmp_path / "c", {"what": "else"}, 3, 11, 2, None, FakeRanks(0, 2), "", "", False)
    with pytest.raises(SystemExit) as info:  # the other ranks exit quietly; rank 0 reports
        cache_cmd.write_rows(tmp_path / "c", {"what": "else"}, 3, 11, 2, None, FakeRanks(1, 2), "", "", False)
    assert info.value.code == 2


def test_shard_files_make_the_same_cache_as_the_writer(tmp_path):
    rows = {"a": torch.arange(10.0).reshape(5, 2), "b": torch.arange(5)}
    with TensorCacheWriter(tmp_path / "w", shard_rows=3, metadata={"m": 1}) as writer:
        writer.append(**rows)
    writer = TensorCacheWriter(tmp_path / "s", shard_rows=3, metadata={"m": 1})
    for lo, hi in ((0, 3), (3, 5)):
        writer.append_shard(write_shard_file(tmp_path / f"part{lo}.safetensors", {k: v[lo:hi] for k, v in rows.items()}))
    writer.close()
    assert files(tmp_path / "s") == files(tmp_path / "w") and not list(tmp_path.glob("part*"))
    resumed = TensorCacheWriter.resume(tmp_path / "s")
    for bad in ({"a": torch.zeros(2, 3), "b": torch.arange(2)}, {"a": torch.zeros(2, 2)}):
        with pytest.raises(ValueError, match="does not fit"):
            resumed.append_shard(write_shard_file(tmp_path / "bad.safetensors", bad))
    resumed.append(a=torch.zeros(1, 2), b=torch.zeros(1, dtype=torch.int64))
    with pytest.raises(ValueError, match="buffered"):
        resumed.append_shard(write_shard_file(tmp_path / "ok.safetensors", {k: v[:1] for k, v in rows.items()}))
    with pytest.raises(ValueError, match="first"):
        write_shard_file(tmp_path / "x.safetensors", {"a": torch.zeros(2), "b": torch.zeros(3)})


def test_a_shard_adoption_killed_before_its_listing_keeps_the_shard(tmp_path, monkeypatch):
    """append_shard removes the shard file only once the manifest lists it: killed in between, the
    file is still where it was, and a resumed writer adopts it again (its unlisted copy deleted)."""
    rows = {"a": torch.arange(10.0).reshape(5, 2)}
    with TensorCacheWriter(tmp_path / "w", shard_rows=3) as writer:
        writer.append(**rows)
    writer = TensorCacheWriter(tmp_path / "s", shard_rows=3)
    writer.append_shard(write_shard_file(tmp_path / "part0.safetensors", {"a": rows["a"][:3]}))
    part = write_shard_file(tmp_path / "part3.safetensors", {"a": rows["a"][3:]})

    def killed(self, complete: bool) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(TensorCacheWriter, "_write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.append_shard(part)
    monkeypatch.undo()
    assert part.is_file()
    resumed = TensorCacheWriter.resume(tmp_path / "s")
    assert len(resumed) == 3
    resumed.append_shard(part)
    resumed.close()
    assert files(tmp_path / "s") == files(tmp_path / "w") and not part.exists()


def _main_with_hooks() -> int:
    """torchrun entry point of the two-process tests: apply ARIA_TEST_HOOKS, then run `aria`."""
    hooks = json.loads(os.environ.get("ARIA_TEST_HOOKS", "{}"))
    rank = int(os.environ["RANK"])
    if "record" in hooks:
        real_sample = sampling.sample

        def recording(*args, **kwargs):
            with open(Path(hooks["record"]) / f"seeds-{rank}.txt", "a") as f:
                f.write("".join(f"{s} " for s in args[4]))
            return real_sample(*args, **kwargs)

        sampling.sample = recording
    if hooks.get("kill_rank") == rank:
        real_write = cache_module.write_shard_file

        def write_then_die(*args, **kwargs):
            real_write(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        cache_module.write_shard_file = write_then_die
    return aria_cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main_with_hooks())
