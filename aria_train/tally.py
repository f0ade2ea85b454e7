"""Running sums over one logging interval, from the values of all processes, and the record
they turn into. Its state is part of every checkpoint, so a resumed run logs the same numbers."""
from __future__ import annotations

import numpy as np

from aria_train.run_dir import finite_or_none

LOSS_KEYS = ("loss", "out", "feat", "sd")


class Tally:
    def __init__(self, num_regions: int | None):
        self.num_regions = num_regions
        self.reset()

    def reset(self) -> None:
        self.loss_sums = np.zeros(len(LOSS_KEYS))
        self.finite_batches = 0  # process micro-batches whose loss entered the sums
        self.samples = self.switched = self.nulled = self.skipped = 0
        k = self.num_regions or 0
        self.region_counts = np.zeros(k, dtype=np.int64)  # non-null conditions shown, by region
        self.switched_region_counts = np.zeros(k, dtype=np.int64)  # drawn replacing prompts, by region

    def add(self, losses: np.ndarray, finite: bool, regions: np.ndarray, switched: np.ndarray, nulled: np.ndarray) -> None:
        """One micro-batch of all processes: ``losses`` (P, 4) per process (total, out, feat, sd);
        per sample: ``regions`` (-1 = null text / no regions), ``switched``, ``nulled``."""
        if finite:
            self.loss_sums += losses.sum(0)
            self.finite_batches += losses.shape[0]
        self.samples += regions.size
        self.switched += int(switched.sum())
        self.nulled += int(nulled.sum())
        if self.num_regions:
            shown = regions >= 0
            self.region_counts += np.bincount(regions[shown], minlength=self.num_regions)
            self.switched_region_counts += np.bincount(regions[shown & switched], minlength=self.num_regions)

    def record(self, step: int, lr: float, nonfinite: int, seconds: float, extra: dict) -> dict:
        """The metrics record of the interval ending at ``step``; ``extra`` (sampler metrics) is
        appended with numpy values made plain JSON."""
        means = self.loss_sums / self.finite_batches if self.finite_batches else np.full(len(LOSS_KEYS), np.nan)
        record = {"step": step, **{k: finite_or_none(float(v)) for k, v in zip(LOSS_KEYS, means)}, "lr": lr,
                  "images_per_s": self.samples / seconds if seconds > 0 else None,
                  "nonfinite": nonfinite, "skipped": self.skipped,
                  "switched_frac": self.switched / max(self.samples, 1), "null_frac": self.nulled / max(self.samples, 1)}
        if self.num_regions:
            record["region_counts"] = self.region_counts.tolist()
            record["switched_region_counts"] = self.switched_region_counts.tolist()
        for key, value in extra.items():
            record[key] = value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
        return record

    def state_dict(self) -> dict:
        return {"loss_sums": self.loss_sums, "finite_batches": self.finite_batches, "samples": self.samples,
                "switched": self.switched, "nulled": self.nulled, "skipped": self.skipped,
                "region_counts": self.region_counts, "switched_region_counts": self.switched_region_counts}

    def load_state_dict(self, state: dict) -> None:
        self.loss_sums = np.asarray(state["loss_sums"], dtype=np.float64)
        self.region_counts = np.asarray(state["region_counts"], dtype=np.int64)
        self.switched_region_counts = np.asarray(state["switched_region_counts"], dtype=np.int64)
        for key in ("finite_batches", "samples", "switched", "nulled", "skipped"):
            setattr(self, key, int(state[key]))
