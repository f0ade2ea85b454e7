"""Held-out discrepancy per region during training: the ground truth the tracker's estimates are
compared with in `aria report`.

Every ``heldout_every`` steps the main process measures, for a fixed set of held-out prompts
(the first ``heldout_per_region`` of each region of the ``heldout`` file), the teacher-student
output discrepancy at fixed timesteps and fixed noise (aria_train.evaluation.discrepancy, docs/design.md §6). The
clean input of held-out prompt i is paired sample i mod N of the paired cache: a held-out
prompt shown on a paired image, exactly like a switched training sample. Each prompt's error
at timestep t is divided by the mean error over all prompts at t, and the timesteps are then
averaged with weights p(t), RC's switch probability (``switch_weights``): the timesteps of the
switched samples the tracker observes. So a region's value is dimensionless (1 = average region)
and measures what the tracker's timestep-normalised observations measure, with t distributed as
they are. Beside it, "heldout_level": the p(t)-weighted discrepancy itself (not normalised), its mean
over all measured prompts, the one number that compares runs (of one teacher and held-out file) from
their training logs alone. Deterministic given the weights, so resumed runs log the same values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from aria_train.evaluation.discrepancy import fixed_timestep_errors, switch_weights

# Where the monitor measures: p(t) puts most of its weight on the highest of these.
MONITOR_TIMESTEPS = (100, 300, 500, 700, 900, 980)


class HeldoutMonitor:
    def __init__(self, path: str | Path, per_region: int, num_regions: int, inputs, teacher, device: torch.device,
                 blind_regions: Sequence[int] = ()):
        from aria_train.data.pool import PromptPool
        from aria_train.diffusion.prompts import blinded

        pool = PromptPool.from_file(path)
        if pool.regions is None:
            raise ValueError(f"held-out file {path} has no region column")
        if pool.regions.max() >= num_regions:
            raise ValueError(f"held-out file {path}: region {pool.regions.max()} outside the pool's {num_regions} regions")
        table = pool.table.select(["text", "region"]).to_pandas()
        table = table.groupby("region", sort=True).head(per_region)
        self.regions = table["region"].to_numpy()
        self.num_regions = num_regions
        self.hidden = inputs.prompts.encode(table["text"].tolist())  # the conditioning of the held-out prompts
        student_hidden = blinded(self.hidden, self.regions, blind_regions, inputs.prompts.null())  # as it trains
        self.student_hidden = {} if student_hidden is None else {"student": student_hidden}
        rows = np.arange(len(table)) % len(inputs.paired)
        self.x0 = inputs.paired.get("sample", rows).to(torch.float32)
        self.seeds = list(range(len(table)))
        self.teacher, self.scheduler, self.device = teacher, inputs.scheduler, device

    @torch.no_grad()
    def measure(self, student: torch.nn.Module) -> dict:
        """The metrics record's entries for ``student`` (the bare UNet): "heldout", per region (K
        entries; None for a region without held-out prompts) the mean over its prompts and the
        timesteps of the relative discrepancy, and "heldout_level", the mean over all prompts of the
        p(t)-weighted discrepancy."""
        was_training = student.training
        student.eval()
        try:
            errors = fixed_timestep_errors({"student": student}, self.scheduler, self.x0, self.hidden, self.seeds,
                                           MONITOR_TIMESTEPS, reference=self.teacher,
                                           model_hidden=self.student_hidden)["student"].numpy()
        finally:
            student.train(was_training)
        weights = switch_weights(MONITOR_TIMESTEPS, self.scheduler.config.num_train_timesteps)
        relative = (errors / errors.mean(axis=0, keepdims=True)) @ weights
        sums = np.bincount(self.regions, relative, minlength=self.num_regions)
        counts = np.bincount(self.regions, minlength=self.num_regions)
        return {"heldout": [float(s / c) if c else None for s, c in zip(sums, counts)],
                "heldout_level": float((errors @ weights).mean())}
