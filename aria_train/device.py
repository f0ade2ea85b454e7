"""Host-to-device copies that do not wait for the device."""
from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device`` without waiting for the device. A blocking host->CUDA copy
    synchronises its stream, i.e. waits until every step queued before it has run; from pinned
    memory with ``non_blocking`` the copy is queued behind them instead (PyTorch's pinned-memory
    cache keeps the staging block until the copy has run)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
