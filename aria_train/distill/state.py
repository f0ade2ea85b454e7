"""The training state that exact resume restores, and where a run starts from.

``TrainingState`` gathers everything of a run besides the weights, the optimizer, the EMA and
the random generators (aria_train.runs.checkpoint stores those): the optimizer step, the count
of steps skipped for a non-finite loss, the condition sampler (ARIA's tracker), the data cursor,
the running tally of the current logging interval, the byte length of metrics.jsonl, the
config, and with ``--feedback-lag 1`` the last micro-batch's feedback, read but not yet observed
by the sampler (aria_train.distill.lagged_feedback). ``state_dict`` is what a checkpoint's trainer_state.json holds; ``load_state_dict``
restores it.

``RunStart.resolve`` decides, once per run, whether OUT starts fresh or continues a checkpoint:
it resolves ``--resume``, reads that checkpoint's trainer state (the only read of that file),
and checks that OUT may be written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aria_train.conditioning.feedback import Feedback
from aria_train.conditioning.samplers import ConditionSampler
from aria_train.distill.batches import BatchStream
from aria_train.distill.config import DistillConfig
from aria_train.distill.tally import Tally
from aria_train.runs.checkpoint import list_checkpoints, read_trainer_state, resolve_resume
from aria_train.runs.run_dir import LOCK_FILE

STATE_KEYS = ("step", "nonfinite", "sampler", "data_cursor", "tally", "metrics_position", "config")
OPTIONAL_STATE_KEYS = ("unobserved_feedback",)  # absent in checkpoints written before --feedback-lag


class NonFiniteAbort(RuntimeError):
    """More than max_nonfinite steps were skipped for a non-finite loss."""


@dataclass
class TrainingState:
    config: DistillConfig
    sampler: ConditionSampler
    stream: BatchStream
    tally: Tally
    step: int = 0  # optimizer steps done
    nonfinite: int = 0  # steps skipped for a non-finite loss
    metrics_position: int | None = None  # metrics.jsonl bytes to keep when resuming in place
    unobserved: Feedback | None = None  # --feedback-lag 1: read, to be observed at the next micro-batch

    def state_dict(self, metrics_position: int) -> dict[str, Any]:
        """The JSON state of a checkpoint; ``metrics_position`` = metrics.jsonl's length now."""
        return {"step": self.step, "nonfinite": self.nonfinite, "sampler": self.sampler.state_dict(),
                "data_cursor": self.stream.state(), "tally": self.tally.state_dict(),
                "metrics_position": metrics_position, "config": self.config.to_dict(),
                "unobserved_feedback": None if self.unobserved is None else self.unobserved.state_dict()}

    def skip_step(self, number: int, log: Callable[[str], None], checkpoints: Path) -> None:
        """Optimizer step ``number`` was skipped for a non-finite loss: count it and ``log`` it;
        NonFiniteAbort past ``max_nonfinite``, or when every step of the run was skipped."""
        self.nonfinite += 1
        self.tally.skipped += 1
        log(f"step {number}: non-finite loss, step skipped ({self.nonfinite} so far)")
        if self.nonfinite > self.config.max_nonfinite:
            raise NonFiniteAbort(f"{self.nonfinite} steps had a non-finite loss (max_nonfinite = "
                                 f"{self.config.max_nonfinite}); last good checkpoint in {checkpoints}")
        if number == self.config.steps and self.nonfinite == number:
            raise NonFiniteAbort(f"every step had a non-finite loss: the student never trained "
                                 f"(are the paired cache's samples finite? {self.config.paired_cache})")

    def load_state_dict(self, state: dict[str, Any], same_run: bool) -> None:
        """Restore from a checkpoint's state. ``same_run``: the checkpoint lies in this run's
        folder, so metrics.jsonl is cut back to its length then (a copy into a new folder
        starts a new metrics file)."""
        self.step, self.nonfinite = int(state["step"]), int(state["nonfinite"])
        self.sampler.load_state_dict(state["sampler"])
        self.stream.load_state(state["data_cursor"])
        self.tally.load_state_dict(state["tally"])
        self.metrics_position = int(state["metrics_position"]) if same_run else None
        unobserved = state.get("unobserved_feedback")
        self.unobserved = None if unobserved is None else Feedback.from_state(unobserved)


@dataclass(frozen=True)
class RunStart:
    """Where a run starts: fresh (``checkpoint`` None) or from a checkpoint and its state."""

    checkpoint: Path | None = None
    state: dict[str, Any] | None = None
    same_run: bool = False  # the checkpoint is one of OUT's own

    @classmethod
    def resolve(cls, out: Path, resume: str | None, restart: bool = False) -> "RunStart":
        """``resume``: None, "latest" (OUT's newest checkpoint) or a checkpoint folder.

        OUT must be new or empty unless the checkpoint is OUT's own (ValueError otherwise).
        ``restart``: OUT is a run that stopped before its first checkpoint; its files are
        removed and it starts again (refused if it has a checkpoint, or is not a run)."""
        out = Path(out)
        if restart:
            if resume is not None:
                raise ValueError("--restart starts a run again from nothing: it cannot be combined with --resume")
            _clear_uncheckpointed_run(out)
            return cls()
        if resume is None:
            if (out / "config.json").is_file() and not list_checkpoints(out / "checkpoints"):
                raise ValueError(f"{out} holds a run that stopped before its first checkpoint: start it again "
                                 f"with --restart, or choose a new --out")
            _check_empty(out, "choose a new --out, or continue it with --resume latest")
            return cls()
        if resume == "latest" and (out / "config.json").is_file() and not list_checkpoints(out / "checkpoints"):
            raise ValueError(f"--resume latest: {out} stopped before its first checkpoint, there is nothing to "
                             f"resume: start it again with --restart")
        checkpoint = resolve_resume(resume, out / "checkpoints")
        state = read_trainer_state(checkpoint, STATE_KEYS)
        same_run = checkpoint.resolve().parent.parent == out.resolve()
        if not same_run:
            _check_empty(out, f"it is not the run of checkpoint {checkpoint}: choose a new --out")
        return cls(checkpoint, state, same_run)

    def config(self) -> DistillConfig:
        """The config the checkpoint was made with."""
        if self.state is None:
            raise ValueError("a fresh run has no checkpoint config")
        return DistillConfig.from_dict(self.state["config"], f"the config of checkpoint {self.checkpoint}")

    def check_continues(self, config: DistillConfig) -> None:
        """ValueError (one line) unless ``config`` continues this checkpoint exactly: only the
        RESUMABLE_CHANGES may differ, and ``steps`` may not end before the checkpoint's step. A
        fresh start accepts any config."""
        if self.state is None:
            return
        changed = config.differences(self.config())
        if changed:
            raise ValueError(f"cannot resume {self.checkpoint} exactly with a changed config: {'; '.join(changed)}")
        if config.steps < self.state["step"]:
            raise ValueError(f"--steps {config.steps} is below the checkpoint's step {self.state['step']}: "
                             f"a resumed run cannot end before where it stopped")


def _clear_uncheckpointed_run(out: Path) -> None:
    """Empty OUT, a run folder without a checkpoint and not being written (ValueError otherwise)."""
    import shutil

    from aria_train.runs.run_dir import RunDir

    if not out.exists():
        return
    if not (out / "config.json").is_file():
        raise ValueError(f"--restart: {out} is not a distillation run (no config.json); nothing was removed")
    if list_checkpoints(out / "checkpoints"):
        raise ValueError(f"--restart: {out} has checkpoints; continue it with --resume latest (nothing was removed)")
    run = RunDir(out)
    run.lock(fresh=False)  # refuses while another process writes it
    try:
        for item in out.iterdir():
            if item.name != LOCK_FILE:
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    finally:
        run.unlock()


def _check_empty(out: Path, advice: str) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a run folder: choose a new --out")
    if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise ValueError(f"{out} exists and is not empty: {advice}")
