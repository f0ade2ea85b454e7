"""Two `aria distill` processes on one --out (issue 15): only one may write the run folder.

The first writer is a real `aria distill` process; the second runs in this process at the three
moments a second writer can come: a fresh start that found OUT empty just before the first took
it (the race the emptiness check alone cannot close), a `--resume latest` while the first still
runs, and a plain fresh start on the filled folder. The first is frozen (SIGSTOP) while the
second tries, so "still running" and "the folder exactly as before" are exact, not a matter of
timing; then it continues and must finish as if it had been alone. About 20 s on 2 cores, most
of it the child's start-up.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aria_train.distill.inputs
from cli_errors import refused, snapshot
from fixtures_train import make_distill_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 30
WAIT_S = 180  # for the child's first checkpoint: start-up on a loaded 2-core machine




def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert process.poll() is None, f"the first writer exited ({process.returncode}) before writing {path}"
        assert time.monotonic() < deadline, f"no {path} after {WAIT_S} s"
        time.sleep(0.02)


def test_a_second_writer_is_refused_and_the_first_finishes_intact(tmp_path, capsys, monkeypatch):
    paths = make_distill_inputs(tmp_path / "inputs")
    out = tmp_path / "run"
    first_argv = [sys.executable, "-m", "aria_cli",
                  *map(str, paths.options(out, "--steps", STEPS, "--checkpoint-every", "2", "--no-progress"))]
    first: subprocess.Popen | None = None
    frozen: dict = {}
    load_inputs = aria_train.distill.inputs.load_inputs

    def load_while_the_first_starts(config):
        """The second writer's input loading, during which the first process starts on the same
        (still absent) folder, writes its first checkpoint and is frozen there."""
        nonlocal first
        loaded = load_inputs(config)
        first = subprocess.Popen(first_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        wait_for(out / "checkpoints" / "step-0000002" / "trainer_state.json", first)
        os.kill(first.pid, signal.SIGSTOP)
        frozen.update(snapshot(out))
        return loaded

    try:
        assert not out.exists()
        monkeypatch.setattr(aria_train.distill.inputs, "load_inputs", load_while_the_first_starts)
        refused(paths.options(out, "--steps", "2"), capsys, f"{out} is being written by another process")
        monkeypatch.undo()
        assert first.poll() is None and snapshot(out) == frozen
        refused(paths.options(out, "--steps", STEPS, "--resume", "latest"), capsys,
                f"{out} is being written by another process")
        refused(paths.options(out, "--steps", "2"), capsys, f"{out} exists and is not empty")
        assert snapshot(out) == frozen
        os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=WAIT_S)
    finally:
        if first is not None and first.poll() is None:
            first.kill()  # also ends a stopped process
            first.wait()

    assert first.returncode == 0 and stderr == "", stderr
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in metrics] == list(range(1, STEPS + 1))  # every step once, in order
    log = (out / "log.txt").read_text()
    assert log.count("started at step 0") == 1 and "resumed" not in log and log == "".join(
        line + "\n" for line in stdout.splitlines())  # the log holds the first writer's lines only
    state = json.loads((out / "checkpoints" / f"step-{STEPS:07d}" / "trainer_state.json").read_text())
    assert state["step"] == STEPS
