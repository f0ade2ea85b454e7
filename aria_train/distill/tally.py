"""Running sums over one logging interval, from the values of all processes, and the record
they turn into. Its state is part of every checkpoint, so a resumed run logs the same numbers."""
from __future__ import annotations

import numpy as np

from aria_train.conditioning.feedback import Feedback
from aria_train.distill.losses import LOSS_NAMES
from aria_train.runs.run_dir import finite_or_none


class Tally:
    def __init__(self, num_regions: int | None):
        self.num_regions = num_regions
        self.reset()

    def reset(self) -> None:
        self.loss_sums = np.zeros(len(LOSS_NAMES))
        self.finite_batches = 0  # process micro-batches whose loss entered the sums
        self.samples = self.switched = self.nulled = self.skipped = 0
        k = self.num_regions or 0
        self.region_counts = np.zeros(k, dtype=np.int64)  # non-null conditions shown, by region
        self.switched_region_counts = np.zeros(k, dtype=np.int64)  # drawn replacing prompts, by region

    def add(self, feedback: Feedback) -> None:
        """One micro-batch of all processes."""
        if feedback.finite:
            self.loss_sums += np.array([feedback.losses[name].sum() for name in LOSS_NAMES])
            self.finite_batches += len(feedback.losses[LOSS_NAMES[0]])
        regions = feedback.regions
        self.samples += regions.size
        self.switched += int(feedback.switched.sum())
        self.nulled += int(feedback.nulled.sum())
        if self.num_regions:
            shown = regions >= 0
            self.region_counts += np.bincount(regions[shown], minlength=self.num_regions)
            self.switched_region_counts += np.bincount(regions[shown & feedback.switched], minlength=self.num_regions)

    def record(self, step: int, lr: float, nonfinite: int, seconds: float, extra: dict,
               peak_memory_gib: float | None = None) -> dict:
        """The metrics record of the interval ending at ``step``, ``seconds`` of training long
        (``images_per_s``: every process's samples); ``peak_memory_gib``: the most memory this
        process's tensors have held on the device since the start (None: not on a GPU);
        ``extra`` (sampler metrics) is appended with numpy values made plain JSON."""
        means = self.loss_sums / self.finite_batches if self.finite_batches else np.full(len(LOSS_NAMES), np.nan)
        record = {"step": step, **{k: finite_or_none(float(v)) for k, v in zip(LOSS_NAMES, means)}, "lr": lr,
                  "images_per_s": self.samples / seconds if seconds > 0 else None, "peak_memory_gib": peak_memory_gib,
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
