"""The state that exact resume depends on besides the weights, unit by unit on tiny in-memory
objects (no training run): aria_train.distill.state (TrainingState's state_dict / load_state_dict,
RunStart.resolve), aria_train.distill.tally (Tally's sums and state) and aria_train.runs.run_dir
(the writer lock, metrics cut back on resume, distinct_names)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aria_train.conditioning.aria import AriaOptions, AriaSampler
from aria_train.conditioning.feedback import Feedback
from aria_train.distill.config import DistillConfig
from aria_train.distill.losses import LOSS_NAMES
from aria_train.distill.state import OPTIONAL_STATE_KEYS, STATE_KEYS, RunStart, TrainingState
from aria_train.distill.tally import Tally
from aria_train.runs.checkpoint import TRAINER_STATE, read_json, write_json
from aria_train.runs.run_dir import LOCK_FILE, RunDir, distinct_names
from cli_errors import snapshot

REGIONS = np.array([0, 0, 1, 2, 2, 2])  # a pool of 6 prompts in K = 3 regions
CONFIG = DistillConfig(teacher="t", paired_cache="p", pool="q", method="aria")


class Cursor:
    """BatchStream's checkpoint interface (``state`` / ``load_state``) without its inputs."""

    def __init__(self, cursor: int = 0):
        self.cursor = cursor

    def state(self) -> dict:
        return {"cursor": self.cursor}

    def load_state(self, state: dict) -> None:
        self.cursor = int(state["cursor"])


def feedback(regions, switched, nulled, losses, finite: bool = True, seed: int = 0) -> Feedback:
    """One micro-batch's Feedback; ``losses`` is (len(LOSS_NAMES), processes), in LOSS_NAMES order."""
    regions = np.asarray(regions, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return Feedback(regions=regions, switched=np.asarray(switched, dtype=bool), nulled=np.asarray(nulled, dtype=bool),
                    timesteps=rng.integers(0, 1000, regions.size), discrepancy=rng.exponential(size=regions.size),
                    losses={name: np.asarray(row, dtype=np.float64) for name, row in zip(LOSS_NAMES, losses)},
                    finite=finite)


# two micro-batches of two processes: a finite one (one null condition) and a non-finite one
FINITE = feedback([0, 2, -1, 2], switched=[1, 0, 0, 1], nulled=[0, 0, 1, 0],
                  losses=[[1.0, 3.0], [0.5, 1.5], [0.0, 1.0], [2.0, 4.0]])
NONFINITE = feedback([1, -1], switched=[1, 1], nulled=[0, 1], losses=[[np.nan, 1.0]] * 4, finite=False, seed=1)


def as_json(state) -> str:
    """A state dict as canonical JSON text, numpy arrays with their dtype: equal text, equal state."""
    def plain(value):
        if isinstance(value, np.ndarray):
            return {"dtype": str(value.dtype), "values": value.tolist()}
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"not JSON: {type(value).__name__}")
    return json.dumps(state, default=plain, sort_keys=True)


def record(tally: Tally) -> dict:
    return tally.record(step=10, lr=1e-4, nonfinite=1, seconds=2.0, extra={"pi": np.array([0.2, 0.3, 0.5])})


# ---------------------------------------------------------------- Tally


def test_tally_sums_finite_losses_and_counts_every_sample():
    tally = Tally(3)
    tally.add(FINITE)
    tally.add(NONFINITE)
    assert tally.loss_sums.tolist() == [4.0, 2.0, 1.0, 6.0]  # the finite micro-batch's processes only
    assert tally.finite_batches == 2
    assert (tally.samples, tally.switched, tally.nulled) == (6, 4, 2)
    assert tally.region_counts.tolist() == [1, 1, 2]  # null conditions (-1) show no region
    assert tally.switched_region_counts.tolist() == [1, 1, 1]
    logged = record(tally)
    assert [logged[name] for name in LOSS_NAMES] == [2.0, 1.0, 0.5, 3.0]  # means over finite process batches
    assert logged["images_per_s"] == 3.0 and logged["switched_frac"] == 4 / 6 and logged["null_frac"] == 2 / 6
    assert logged["region_counts"] == [1, 1, 2] and logged["pi"] == [0.2, 0.3, 0.5]
    json.dumps(logged, allow_nan=False)  # plain JSON
    tally.reset()
    assert as_json(tally.state_dict()) == as_json(Tally(3).state_dict())


def test_tally_without_regions_or_finite_losses_records_nulls():
    tally = Tally(None)
    tally.add(NONFINITE)
    logged = record(tally)
    assert all(logged[name] is None for name in LOSS_NAMES) and "region_counts" not in logged
    assert tally.samples == 2 and tally.region_counts.size == 0


def test_tally_state_round_trips_through_a_checkpoint_file(tmp_path):
    tally = Tally(3)
    tally.add(FINITE)
    tally.skipped = 1
    write_json(tmp_path / "tally.json", tally.state_dict())
    restored = Tally(3)
    restored.load_state_dict(read_json(tmp_path / "tally.json"))
    assert as_json(restored.state_dict()) == as_json(tally.state_dict())  # values and dtypes
    # the restored tally goes on exactly as the one that was saved
    for t in (tally, restored):
        t.add(NONFINITE)
    assert record(restored) == record(tally)


# ---------------------------------------------------------------- TrainingState


def training_state() -> TrainingState:
    return TrainingState(CONFIG, AriaSampler(REGIONS, 1000, AriaOptions(warmup=1)), Cursor(), Tally(3))


def advanced() -> TrainingState:
    """A state some steps into a run: the tracker has observed, the tally holds an interval."""
    state = training_state()
    rng = np.random.default_rng(0)
    for i in range(3):
        batch = feedback(rng.integers(-1, 3, 8), rng.random(8) < 0.5, rng.random(8) < 0.1,
                         rng.exponential(size=(len(LOSS_NAMES), 2)), seed=i)
        batch.observe(state.sampler)
        state.tally.add(batch)
    state.step, state.nonfinite, state.stream.cursor, state.tally.skipped = 7, 1, 56, 1
    # --feedback-lag 1: a micro-batch read and tallied, not yet observed (a NaN discrepancy included)
    state.unobserved = feedback(rng.integers(-1, 3, 8), rng.random(8) < 0.5, rng.random(8) < 0.1,
                                rng.exponential(size=(len(LOSS_NAMES), 2)), seed=3)
    state.unobserved.discrepancy[0] = np.nan
    return state


def test_training_state_round_trips_through_the_checkpoint_file(tmp_path):
    original = advanced()
    saved = original.state_dict(metrics_position=123)
    assert set(saved) == set(STATE_KEYS) | set(OPTIONAL_STATE_KEYS) and saved["config"] == CONFIG.to_dict()
    write_json(tmp_path / TRAINER_STATE, saved)
    loaded = read_json(tmp_path / TRAINER_STATE)

    resumed = training_state()
    assert as_json(resumed.state_dict(123)) != as_json(saved)
    resumed.load_state_dict(loaded, same_run=True)
    assert as_json(resumed.state_dict(123)) == as_json(saved)
    assert (resumed.step, resumed.nonfinite, resumed.stream.cursor, resumed.metrics_position) == (7, 1, 56, 123)
    # it continues as the original: the same pi and draws, the same record of the interval
    assert np.array_equal(resumed.sampler.probabilities(), original.sampler.probabilities())
    draws = [s.sampler.draw(16, np.random.default_rng(3)) for s in (original, resumed)]
    assert np.array_equal(*draws)
    assert record(resumed.tally) == record(original.tally)
    for s in (original, resumed):  # the pending feedback came back exactly: observing it moves both alike
        s.unobserved.observe(s.sampler)
    assert np.array_equal(resumed.sampler.probabilities(), original.sampler.probabilities())

    copied = training_state()
    copied.load_state_dict(loaded, same_run=False)
    assert copied.metrics_position is None  # a checkpoint copied into a new folder starts a new metrics file
    assert as_json(copied.state_dict(123)) == as_json(saved)


# ---------------------------------------------------------------- RunStart.resolve


def checkpoint(run: Path, step: int) -> Path:
    """RUN/checkpoints/step-N holding a trainer state (resolve reads nothing else of a checkpoint)."""
    folder = run / "checkpoints" / f"step-{step:07d}"
    folder.mkdir(parents=True)
    write_json(folder / TRAINER_STATE, {**advanced().state_dict(0), "step": step})
    return folder


def a_run(folder: Path, steps=(2, 4)) -> Path:
    """A run folder (config, metrics, log) with checkpoints at ``steps``."""
    folder.mkdir(parents=True)
    CONFIG.save(folder / "config.json")
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    (folder / "log.txt").write_text("started\n")
    for step in steps:
        checkpoint(folder, step)
    return folder




def test_fresh_run_needs_a_new_or_empty_out(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / LOCK_FILE).touch()  # left by a run that was refused, or a restart
    for out in (tmp_path / "new", tmp_path / "empty", tmp_path / "locked"):
        start = RunStart.resolve(out, None)
        assert start == RunStart() and start.checkpoint is None and start.state is None and not start.same_run
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="a fresh run has no checkpoint config"):
        RunStart().config()

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "used", a_run(tmp_path / "run")):
        with pytest.raises(ValueError, match="exists and is not empty"):
            RunStart.resolve(out, None)
    with pytest.raises(ValueError, match="is a file, not a run folder"):
        RunStart.resolve(tmp_path / "file", None)
    a_run(tmp_path / "stopped", steps=())
    with pytest.raises(ValueError, match="stopped before its first checkpoint.*--restart"):
        RunStart.resolve(tmp_path / "stopped", None)


def test_resume_latest_continues_the_newest_complete_checkpoint_of_out(tmp_path):
    run = a_run(tmp_path / "run")
    (run / "checkpoints" / "step-0000005").mkdir()  # no trainer state: incomplete, ignored
    (run / "checkpoints" / ".tmp-step-0000006").mkdir()  # debris of a killed write, ignored
    before = snapshot(run)
    start = RunStart.resolve(run, "latest")
    assert start.checkpoint == run / "checkpoints" / "step-0000004" and start.same_run
    assert start.state["step"] == 4 and set(STATE_KEYS) <= set(start.state)
    assert start.config() == CONFIG
    assert snapshot(run) == before  # resolving reads, it writes nothing
    # an own checkpoint named by its path is the same run, however the path is spelled
    own = RunStart.resolve(run, str(run / "checkpoints" / ".." / "checkpoints" / "step-0000002"))
    assert own.same_run and own.state["step"] == 2

    with pytest.raises(ValueError, match="no checkpoint in"):
        RunStart.resolve(tmp_path / "new", "latest")
    a_run(tmp_path / "stopped", steps=())
    with pytest.raises(ValueError, match="stopped before its first checkpoint.*--restart"):
        RunStart.resolve(tmp_path / "stopped", "latest")
    with pytest.raises(ValueError, match="not found"):
        RunStart.resolve(run, str(run / "checkpoints" / "step-0000009"))
    with pytest.raises(ValueError, match="is not a checkpoint"):
        RunStart.resolve(run, str(run / "checkpoints" / "step-0000005"))
    write_json(run / "checkpoints" / "step-0000004" / TRAINER_STATE, {"step": 4})
    with pytest.raises(ValueError, match="is corrupt: expected the keys"):
        RunStart.resolve(run, "latest")


def test_a_checkpoint_of_another_run_starts_a_new_out(tmp_path):
    other = a_run(tmp_path / "other")
    source = other / "checkpoints" / "step-0000002"
    before = snapshot(other)
    for out in (tmp_path / "new", tmp_path / "locked"):
        if out.name == "locked":
            out.mkdir()
            (out / LOCK_FILE).touch()
        start = RunStart.resolve(out, str(source))
        assert start.checkpoint == source and not start.same_run and start.state["step"] == 2
        assert start.config() == CONFIG
    a_run(tmp_path / "mine", steps=(6,))
    with pytest.raises(ValueError, match="exists and is not empty: it is not the run of checkpoint"):
        RunStart.resolve(tmp_path / "mine", str(source))
    with pytest.raises(ValueError, match="no checkpoint in"):  # "latest" means OUT's own checkpoints
        RunStart.resolve(tmp_path / "new", "latest")
    assert snapshot(other) == before


def test_restart_clears_a_run_that_stopped_before_its_first_checkpoint(tmp_path):
    run = a_run(tmp_path / "run", steps=())
    (run / "samples").mkdir()
    (run / "samples" / "step-0000001.png").write_bytes(b"png")
    with pytest.raises(ValueError, match="cannot be combined with --resume"):
        RunStart.resolve(run, "latest", restart=True)

    holder = RunDir(run)  # the run is still being written
    holder.lock(fresh=False)
    before = snapshot(run)
    with pytest.raises(ValueError, match="being written by another process"):
        RunStart.resolve(run, None, restart=True)
    assert snapshot(run) == before
    holder.unlock()

    assert RunStart.resolve(run, None, restart=True) == RunStart()
    assert [p.name for p in run.iterdir()] == [LOCK_FILE]
    assert RunStart.resolve(run, None) == RunStart()  # and it may start again
    assert RunStart.resolve(tmp_path / "new", None, restart=True) == RunStart()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("kind", ["has checkpoints", "not a distillation run"])
def test_restart_refuses_and_removes_nothing(tmp_path, kind):
    if kind == "has checkpoints":
        out = a_run(tmp_path / "run", steps=(2,))
    else:
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(ValueError, match=kind):
        RunStart.resolve(out, None, restart=True)
    assert snapshot(out) == before


# ---------------------------------------------------------------- the run directory


TRY_LOCK = """
import sys
from aria_train.runs.run_dir import RunDir
try:
    RunDir(sys.argv[1]).lock(fresh=False)
except ValueError as err:
    sys.exit(str(err))
"""


def test_the_writer_lock_admits_one_holder(tmp_path):
    path = tmp_path / "run"
    first = RunDir(path)
    first.lock(fresh=True)
    second = RunDir(path)
    with pytest.raises(ValueError, match=r"being written by another process \(its \.lock is locked\)"):
        second.lock(fresh=False)
    child = subprocess.run([sys.executable, "-c", TRY_LOCK, str(path)], capture_output=True, text=True, timeout=60)
    assert child.returncode == 1 and "being written by another process" in child.stderr  # nor another process
    first.unlock()
    first.unlock()  # a second unlock is harmless
    second.lock(fresh=False)  # released: the next writer may take it
    second.unlock()

    (path / "config.json").write_text("{}")  # another process filled the folder before the lock
    with pytest.raises(ValueError, match="filled by another process meanwhile"):
        first.lock(fresh=True)
    second.lock(fresh=False)  # the refused fresh lock was released
    second.unlock()


def test_open_cuts_metrics_back_to_the_checkpoints_position(tmp_path):
    path = tmp_path / "run"
    run = RunDir.open(path, CONFIG, is_main=True, metrics_position=None)
    assert DistillConfig.load(path / "config.json") == CONFIG and run.read_metrics() == []
    run.write_metrics({"step": 1, "loss": 0.5})
    position = run.metrics_position()  # stored in the checkpoint of step 1
    run.write_metrics({"step": 2, "loss": 0.25})  # logged after it, before the run was killed
    run.unlock()
    resumed = RunDir.open(path, CONFIG, is_main=True, metrics_position=position, fresh=False)
    assert resumed.read_metrics() == [{"step": 1, "loss": 0.5}]
    resumed.unlock()
    # on the other ranks a run directory writes nothing
    rank1 = RunDir.open(tmp_path / "rank1", CONFIG, is_main=False, metrics_position=None)
    rank1.write_metrics({"step": 1})
    rank1.log("hello")
    assert not (tmp_path / "rank1").exists() and rank1.metrics_position() == 0


def test_distinct_names_examples():
    assert distinct_names([]) == []
    assert distinct_names(["rc", "aria"]) == ["rc", "aria"]
    assert distinct_names(["rc", "rc", "aria", "rc"]) == ["rc", "rc-2", "aria", "rc-3"]
    assert distinct_names(["a", "a-2", "a"]) == ["a", "a-2", "a-3"]  # a suffix never repeats a given name
    assert distinct_names(["a", "a", "a-2"]) == ["a", "a-2", "a-2-2"]


@given(st.lists(st.sampled_from(["a", "b", "a-2", "b-2", "a-3", "a-2-2"]), max_size=12))
def test_distinct_names_are_distinct_keep_order_and_change_only_repeats(names):
    out = distinct_names(names)
    assert len(out) == len(names) and len(set(out)) == len(out)
    for i, (base, name) in enumerate(zip(names, out)):
        assert name == base or (base in out[:i] and name.startswith(base + "-"))
    if len(set(names)) == len(names):
        assert out == names
