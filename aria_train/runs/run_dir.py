"""A distillation run's directory: resolved config, log, metrics, sample grids, checkpoints.

    RUN/config.json            the resolved DistillConfig
    RUN/log.txt                human-readable log (also printed)
    RUN/metrics.jsonl          one JSON record per logged step; RUN/metrics.csv its flat export
    RUN/samples/step-XXXXXXX.png
    RUN/checkpoints/step-XXXXXXX/   (aria_train.runs.checkpoint)
    RUN/.lock                  held (an OS file lock) by the one process writing the run

One writer per run: the main process takes an exclusive ``flock`` on RUN/.lock before writing
anything and holds it until it exits (the OS releases it when the process dies, so a killed
run never leaves a stale lock). A second process on the same folder -- a concurrent start or a
``--resume`` while the run is alive -- is refused with one line.

Only the main process writes; on the other ranks every method is a no-op, so callers need no
``if is_main`` of their own. The directory is created by ``RunDir.open`` only after the inputs
have been validated, so a rejected run leaves nothing behind.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

LOCK_FILE = ".lock"


class RunDir:
    def __init__(self, path: str | Path, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics_file = self.path / "metrics.jsonl"
        self._bar: tqdm | None = None
        self._lock: int | None = None

    @classmethod
    def open(cls, path: str | Path, config, is_main: bool, metrics_position: int | None,
             fresh: bool = True) -> "RunDir":
        """Create (or reopen, when resuming) the run directory, lock it, write config.json
        (``config.save(path)``).

        ``metrics_position``: None for a fresh run; when resuming, the byte length metrics.jsonl
        had at the checkpoint -- later records (from the interrupted run) are cut off so the
        resumed run appends exactly where the checkpoint left it. ``fresh``: the folder must
        hold nothing else (checked again under the lock: another process may have started).
        """
        run = cls(path, is_main)
        if is_main:
            run.lock(fresh)
            run.samples.mkdir(parents=True, exist_ok=True)
            run.checkpoints.mkdir(exist_ok=True)
            config.save(run.path / "config.json")
            if metrics_position is None:
                run.metrics_file.write_text("")
            else:
                run.truncate_metrics(metrics_position)
        return run

    def lock(self, fresh: bool) -> None:
        """Take the run's writer lock (ValueError if another process holds it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"{self.path} is being written by another process (its {LOCK_FILE} is locked)") from None
        self._lock = fd
        if fresh and any(p.name != LOCK_FILE for p in self.path.iterdir()):
            self.unlock()
            raise ValueError(f"{self.path} was filled by another process meanwhile: choose a new --out")

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def truncate_metrics(self, position: int) -> None:
        with open(self.metrics_file, "a+b") as f:
            f.truncate(position)

    def metrics_position(self) -> int:
        """Byte length of metrics.jsonl (stored in checkpoints)."""
        return self.metrics_file.stat().st_size if self.is_main else 0

    def log(self, message: str) -> None:
        if not self.is_main:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        with open(self.path / "log.txt", "a") as f:
            f.write(line + "\n")
        tqdm.write(line)

    def write_metrics(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._bar is not None:
            shown = {k: record[k] for k in ("loss", "out", "feat") if record.get(k) is not None}
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def read_metrics(self) -> list[dict]:
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line]

    def export_csv(self) -> Path:
        """metrics.csv: metrics.jsonl flattened (a list value v becomes columns v_0, v_1, ...)."""
        import pandas as pd

        rows = []
        for record in self.read_metrics() if self.is_main else []:
            row = {}
            for key, value in record.items():
                if isinstance(value, list):
                    row.update({f"{key}_{i}": v for i, v in enumerate(value)})
                else:
                    row[key] = value
            rows.append(row)
        out = self.path / "metrics.csv"
        if self.is_main:
            pd.DataFrame(rows).to_csv(out, index=False)
        return out

    def progress(self, total: int, initial: int, enabled: bool = True) -> None:
        """Start the progress bar (main process only); advance it with ``advance``."""
        self._bar = tqdm(total=total, initial=initial, desc="distill", unit="step",
                         disable=not (self.is_main and enabled), dynamic_ncols=True)

    def status(self, message: str) -> None:
        """Say what the run is doing now beside the bar (work after a step that takes a while)."""
        if self._bar is not None and not self._bar.disable:
            self._bar.set_description_str(message, refresh=True)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        """Close the bar; the lock stays until ``unlock`` or the process ends."""
        if self._bar is not None:
            self._bar.set_description_str("distill", refresh=False)
            self._bar.close()
            self._bar = None


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN/inf: such values are recorded as null."""
    return value if math.isfinite(value) else None


def distinct_names(names: list[str]) -> list[str]:
    """``names`` made distinct by suffixes -2, -3, ... (runs of one name from different places)."""
    out: list[str] = []
    for base in names:
        name, k = base, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out
