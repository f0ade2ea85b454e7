"""A distillation run's directory: resolved config, log, metrics, sample grids, checkpoints.

    RUN/config.json            the resolved DistillConfig
    RUN/log.txt                human-readable log (also printed)
    RUN/metrics.jsonl          one JSON record per logged step; RUN/metrics.csv its flat export
    RUN/samples/step-XXXXXXX.png
    RUN/checkpoints/step-XXXXXXX/   (aria_train.checkpoint)

Only the main process writes; on the other ranks every method is a no-op, so callers need no
``if is_main`` of their own. The directory is created by ``RunDir.open`` only after the inputs
have been validated, so a rejected run leaves nothing behind.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tqdm.auto import tqdm

from aria_train.config import DistillConfig


class RunDir:
    def __init__(self, path: str | Path, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics_file = self.path / "metrics.jsonl"
        self._bar: tqdm | None = None

    @classmethod
    def open(cls, path: str | Path, config: DistillConfig, is_main: bool, metrics_position: int | None) -> "RunDir":
        """Create (or reopen, when resuming) the run directory and write config.json.

        ``metrics_position``: None for a fresh run; when resuming, the byte length metrics.jsonl
        had at the checkpoint -- later records (from the interrupted run) are cut off so the
        resumed run appends exactly where the checkpoint left it.
        """
        run = cls(path, is_main)
        if is_main:
            run.samples.mkdir(parents=True, exist_ok=True)
            run.checkpoints.mkdir(exist_ok=True)
            config.save(run.path / "config.json")
            if metrics_position is None:
                run.metrics_file.write_text("")
            else:
                run.truncate_metrics(metrics_position)
        return run

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

    def progress(self, total: int, initial: int) -> None:
        """Start the progress bar (main process only); advance it with ``advance``."""
        self._bar = tqdm(total=total, initial=initial, desc="distill", unit="step", disable=not self.is_main,
                         dynamic_ncols=True)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN/inf: such values are recorded as null."""
    return value if math.isfinite(value) else None
