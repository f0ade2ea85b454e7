"""What one training micro-batch tells the condition sampler and the tally, gathered from every process.

Per sample: the region of the condition shown (-1 = null text or a pool without regions), whether
the caption was switched for a drawn prompt, whether the condition was nulled, the timestep and
the output discrepancy ||out_T - out_S||^2 / D; per process: the loss terms and whether they
were finite. The gather sends one float64 tensor -- every field exact in it (ids and timesteps
are far below 2^53) -- packed and unpacked by field name here and nowhere else, in rank order,
so every process ends with the same ``Feedback`` and feeds its sampler identically.

The tensor comes back to the host as one copy queued behind the step (``PendingFeedback``):
the loop's one wait on the device per micro-batch is ``wait()``, which also tells it whether
the step's gradients were used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from aria_train.conditioning.samplers import ConditionSampler
from aria_train.device import to_device

HOST_FIELDS = ("regions", "switched", "nulled")  # per sample, known on the host
DEVICE_FIELDS = ("timesteps", "discrepancy")  # per sample, on the device


@dataclass
class Feedback:
    regions: np.ndarray  # (n,) int64 over all processes' samples
    switched: np.ndarray  # (n,) bool
    nulled: np.ndarray  # (n,) bool
    timesteps: np.ndarray  # (n,) int64
    discrepancy: np.ndarray  # (n,) float64
    losses: dict[str, np.ndarray]  # loss name -> (P,) float64, one value per process
    finite: bool  # the loss was finite on every process (the step's gradients were used)

    def state_dict(self) -> dict:
        """Every field, exactly (float64 arrays survive the checkpoint's JSON unchanged)."""
        return {"regions": self.regions, "switched": self.switched, "nulled": self.nulled, "timesteps": self.timesteps,
                "discrepancy": self.discrepancy, "losses": self.losses, "finite": self.finite}

    @classmethod
    def from_state(cls, state: dict) -> "Feedback":
        return cls(regions=np.asarray(state["regions"], dtype=np.int64), switched=np.asarray(state["switched"], dtype=bool),
                   nulled=np.asarray(state["nulled"], dtype=bool), timesteps=np.asarray(state["timesteps"], dtype=np.int64),
                   discrepancy=np.asarray(state["discrepancy"], dtype=np.float64),
                   losses={k: np.asarray(v, dtype=np.float64) for k, v in state["losses"].items()},
                   finite=bool(state["finite"]))

    def observe(self, sampler: ConditionSampler) -> None:
        """Feed the samples with a region and a finite discrepancy to ``sampler``, and the regions
        trained on: every sample with a region (null-text samples have none; paired ones count),
        none when the loss was not finite (the micro-batch's gradients were not used)."""
        shown = self.regions >= 0
        keep = shown & np.isfinite(self.discrepancy)
        trained = self.regions[shown & self.finite]
        sampler.observe(self.regions[keep], self.discrepancy[keep], self.timesteps[keep], self.switched[keep], trained)


class PendingFeedback:
    """A gathered micro-batch's values on their way to the host; ``wait()`` gives its Feedback.

    On a CUDA device the copy goes into pinned memory without blocking and an event marks its
    end, so the host waits only when (and if) it needs the values, and only for the work
    queued before the copy.
    """

    def __init__(self, gathered: torch.Tensor, batch: int, loss_names: Sequence[str]):
        self.batch, self.loss_names = batch, tuple(loss_names)
        self._copied: torch.cuda.Event | None = None
        if gathered.device.type == "cuda":
            self._host = torch.empty(gathered.shape, dtype=gathered.dtype, pin_memory=True)
            self._host.copy_(gathered, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record(torch.cuda.current_stream(gathered.device))
        else:
            self._host = gathered.cpu()

    def wait(self) -> Feedback:
        if self._copied is not None:
            self._copied.synchronize()
        values, b = self._host.numpy(), self.batch  # (P, fields * b + losses + 1)
        fields = {name: values[:, i * b: (i + 1) * b].reshape(-1) for i, name in enumerate(HOST_FIELDS + DEVICE_FIELDS)}
        losses = values[:, len(fields) * b:]
        return Feedback(regions=fields["regions"].astype(np.int64), switched=fields["switched"] > 0,
                        nulled=fields["nulled"] > 0, timesteps=fields["timesteps"].astype(np.int64),
                        discrepancy=fields["discrepancy"],
                        losses={name: losses[:, i] for i, name in enumerate(self.loss_names)},
                        finite=bool(losses[:, -1].all()))


def gather_feedback(
    gather: Callable[[torch.Tensor], torch.Tensor],
    regions: np.ndarray,
    switched: np.ndarray,
    nulled: np.ndarray,
    timesteps: torch.Tensor,
    losses: dict[str, torch.Tensor],
    loss_names: Sequence[str],
) -> PendingFeedback:
    """One micro-batch's feedback from all processes, on its way to the host. ``gather``
    concatenates a tensor's first dimension over processes in rank order (accelerate's
    ``gather``); ``losses`` holds the loss terms ``loss_names``, ``discrepancy`` (B,) and
    ``finite`` (the same on every process). Nothing here waits for the device."""
    device = losses["discrepancy"].device
    fields = {"regions": regions, "switched": switched, "nulled": nulled}
    host = torch.from_numpy(np.concatenate([np.asarray(fields[name], dtype=np.float64) for name in HOST_FIELDS]))
    packed = torch.cat([to_device(host, device), timesteps.to(device, torch.float64),
                        losses["discrepancy"].detach().to(torch.float64),
                        torch.stack([losses[name].detach().to(torch.float64) for name in loss_names]),
                        losses["finite"].to(device, torch.float64).reshape(1)])
    return PendingFeedback(gather(packed.reshape(1, -1)), len(regions), loss_names)
