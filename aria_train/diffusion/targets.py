"""What a denoiser predicts: the training target for each scheduler ``prediction_type``.

Two parameterisations are supported, both by diffusers' DDPM/DDIM schedulers and both used by
Stable Diffusion releases: ``epsilon`` (SD v1.x: the model predicts the added noise) and
``v_prediction`` (SD 2.x: v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0, Salimans & Ho 2022).
Distillation matches the student's output to the teacher's in whichever space the teacher
predicts, so one code path serves both.

Why the embedded world's teacher predicts v: its images are flat colours, so the noisy input
reveals them at all but the very highest noise levels, and only there does the prompt matter.
An epsilon loss gives those levels almost no weight (its error is SNR times the x0 error), and
epsilon teachers trained on the world learned to ignore their prompt (attribute accuracy at
chance, docs/gpu_runs/). The v loss weights the x0 error by (1 + SNR) instead, so the prompt
carries its share of the loss.
"""
from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction")


def check_prediction_type(prediction_type: str, where: str) -> None:
    """ValueError unless ``prediction_type`` is one of PREDICTION_TYPES."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"{where}: prediction type {prediction_type!r} is not supported "
                         f"(only {' and '.join(PREDICTION_TYPES)})")


def prediction_target(prediction_type: str, alphas_cumprod: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
                      timesteps: torch.Tensor) -> torch.Tensor:
    """The exact model output for clean ``x0`` noised with ``noise`` at ``timesteps`` (N,).

    Computed in the dtype of ``x0`` (the caller picks float32 or float64); ``alphas_cumprod`` is
    the scheduler's (T,) table, on any device.
    """
    check_prediction_type(prediction_type, "prediction_target")
    if prediction_type == "epsilon":
        return noise
    abar = alphas_cumprod.to(x0.device, x0.dtype)[timesteps.to(x0.device)].view(-1, *([1] * (x0.ndim - 1)))
    return abar.sqrt() * noise.to(x0.dtype) - (1 - abar).sqrt() * x0
