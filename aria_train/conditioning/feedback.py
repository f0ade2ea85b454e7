"""What one training micro-batch tells the condition sampler and the tally, gathered from every process.

Per sample: the region of the condition shown (-1 = null text or a pool without regions), whether
the caption was switched for a drawn prompt, whether the condition was nulled, the timestep and
the output discrepancy ||out_T - out_S||^2 / D; per process: the loss terms. The gather sends one
integer and one float tensor, packed and unpacked by field name here and nowhere else, in rank
order, so every process ends with the same ``Feedback`` and feeds its sampler identically.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from aria_train.conditioning.samplers import ConditionSampler

SAMPLE_INTS = ("regions", "switched", "nulled", "timesteps")


@dataclass
class Feedback:
    regions: np.ndarray  # (n,) int64 over all processes' samples
    switched: np.ndarray  # (n,) bool
    nulled: np.ndarray  # (n,) bool
    timesteps: np.ndarray  # (n,) int64
    discrepancy: np.ndarray  # (n,) float64
    losses: dict[str, np.ndarray]  # loss name -> (P,) float64, one value per process
    finite: bool  # the loss was finite on every process (the step's gradients were used)

    def observe(self, sampler: ConditionSampler) -> None:
        """Feed the samples with a region and a finite discrepancy to ``sampler``, and the regions
        trained on: every sample with a region (null-text samples have none; paired ones count),
        none when the loss was not finite (the micro-batch's gradients were not used)."""
        shown = self.regions >= 0
        keep = shown & np.isfinite(self.discrepancy)
        trained = self.regions[shown & self.finite]
        sampler.observe(self.regions[keep], self.discrepancy[keep], self.timesteps[keep], self.switched[keep], trained)


def gather_feedback(
    gather: Callable[[torch.Tensor], torch.Tensor],
    regions: np.ndarray,
    switched: np.ndarray,
    nulled: np.ndarray,
    timesteps: torch.Tensor,
    losses: dict[str, torch.Tensor],
    loss_names: Sequence[str],
) -> Feedback:
    """One micro-batch's Feedback from all processes. ``gather`` concatenates a tensor's first
    dimension over processes in rank order (accelerate's ``gather``); ``losses`` holds the loss
    terms ``loss_names``, ``discrepancy`` (B,) and ``finite``."""
    device = losses["discrepancy"].device
    fields = {"regions": regions, "switched": switched, "nulled": nulled}
    ints = torch.stack([torch.from_numpy(np.asarray(fields[name], dtype=np.int64)).to(device)
                        if name in fields else timesteps.to(device, torch.int64) for name in SAMPLE_INTS], dim=1)
    batch = len(regions)
    floats = torch.cat([losses["discrepancy"].detach().to(torch.float64),
                        torch.stack([losses[name].detach().to(torch.float64) for name in loss_names])]).reshape(1, -1)
    ints = gather(ints).cpu().numpy()
    floats = gather(floats).cpu().numpy()
    per_sample = {name: ints[:, i] for i, name in enumerate(SAMPLE_INTS)}
    return Feedback(regions=per_sample["regions"], switched=per_sample["switched"] > 0,
                    nulled=per_sample["nulled"] > 0, timesteps=per_sample["timesteps"],
                    discrepancy=floats[:, :batch].reshape(-1),
                    losses={name: floats[:, batch + i] for i, name in enumerate(loss_names)},
                    finite=bool(losses["finite"]))
