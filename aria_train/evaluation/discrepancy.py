"""Noise-prediction errors at fixed timesteps and fixed noise (docs/design.md §6), the same for every model.

For prompt i (text embedding ``hidden[i]``, clean sample ``x0[i]``, seed ``seeds[i]``) and
timestep ``t_j``, the noise is row j of ``seeded_noise((J, C, H, W), [seeds[i] + NOISE_OFFSET])``
(offset so that it differs from the initial noise of sampling prompt i from seeds[i]): it depends
only on (seeds[i], j), never on the batch size, the device or the model, so every model evaluated sees exactly the
same noisy inputs ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``. The error of a model is the
per-element mean squared difference (mean over C, H, W) between its prediction and a target:
the exact target of the scheduler's prediction type (denoising loss: the noise for epsilon
models, v for v-prediction ones) or a reference model's prediction (teacher-student
discrepancy ||out_T - out_S||^2 / (C H W), in the teacher's prediction space). Predictions are conditional (no guidance, no null text).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from aria_train.conditioning.samplers import switch_probability
from aria_train.diffusion.prompts import Conditioning, unet_inputs
from aria_train.diffusion.sampling import seeded_noise
from aria_train.diffusion.targets import prediction_target

DEFAULT_TIMESTEPS = (100, 300, 500, 700, 900)
NOISE_OFFSET = 1_000_003
TEXT_SENSITIVE_FROM = 700  # t >= this: where the teacher's output depends on the prompt (issue 11: at t = 100
# ||v(prompt) - v(null)||^2 was 0.0067 against 0.087 at t = 900 and 0.416 at t = 980 on the embedded world)
SUMMARY_KINDS = ("mean", "text", "pt")  # the views of per-timestep errors that discrepancy_views returns


def switch_weights(timesteps: Sequence[int], num_timesteps: int = 1000) -> np.ndarray:
    """Weights (J,) summing to 1 of the evaluated timesteps in proportion to RC's switch probability
    p(t) (exp schedule, lambda 5, the distillation default): the timestep distribution that the
    switched samples, the only ones a prompt sampler can change, actually see."""
    p = switch_probability(np.asarray(timesteps), num_timesteps)
    return p / p.sum()


def discrepancy_views(errors: np.ndarray, timesteps: Sequence[int], num_timesteps: int = 1000) -> dict[str, np.ndarray]:
    """Per prompt (row of ``errors`` (N, J), one column per timestep): ``mean``, the raw mean over
    the timesteps; ``text``, the mean over the text-sensitive ones (t >= TEXT_SENSITIVE_FROM; NaN
    if none was evaluated); ``pt``, the p(t)-weighted mean (``switch_weights``)."""
    errors, t = np.asarray(errors, np.float64), np.asarray(timesteps)
    text = t >= TEXT_SENSITIVE_FROM
    return {"mean": errors.mean(axis=1),
            "text": errors[:, text].mean(axis=1) if text.any() else np.full(len(errors), np.nan),
            "pt": errors @ switch_weights(t, num_timesteps)}


@torch.no_grad()
def fixed_timestep_errors(
    models: Mapping[str, UNet2DConditionModel],
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    hidden: Conditioning,
    seeds: Sequence[int],
    timesteps: Sequence[int] = DEFAULT_TIMESTEPS,
    reference: UNet2DConditionModel | None = None,
    batch_size: int = 16,
    model_hidden: Mapping[str, Conditioning] | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """{name: errors (N, J) float64 on the CPU}, J = len(timesteps), per model of ``models``.

    ``x0`` (N, C, H, W) and ``hidden`` (the N prompts' conditioning: a context (N, L, D) or
    SDXL's TextConditioning) are on the CPU or the models' device; the
    target is ``reference``'s prediction when given, else the exact target (aria_train.diffusion.targets). All models must be on
    one device; they are evaluated in their own dtype with float32 inputs cast to it.
    ``batch_size`` is in prompts: one forward pass holds batch_size x J noisy samples.
    ``model_hidden`` gives a model its own conditioning of the same prompts where it differs from
    ``hidden`` (a student trained with blind regions, DistillConfig.blind_regions). ``progress``
    shows a bar over the batches.
    """
    n, num_t = x0.shape[0], len(timesteps)
    if hidden.shape[0] != n or len(seeds) != n:
        raise ValueError(f"{n} samples but {hidden.shape[0]} text embeddings and {len(seeds)} seeds")
    limit = scheduler.config.num_train_timesteps
    if not timesteps or min(timesteps) < 0 or max(timesteps) >= limit:
        raise ValueError(f"timesteps must lie in [0, {limit}), got {list(timesteps)}")
    device = next(iter(models.values())).device if models else reference.device
    abar = scheduler.alphas_cumprod.detach().cpu().double()  # add_noise may have moved it to a GPU
    t_all = torch.tensor(list(timesteps), dtype=torch.long)
    errors = {name: torch.empty(n, num_t, dtype=torch.float64) for name in models}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="discrepancy", unit="batch")
    for start in starts:
        stop = min(start + batch_size, n)
        noise = seeded_noise((num_t, *x0.shape[1:]), [s + NOISE_OFFSET for s in seeds[start:stop]])  # (b, J, C, H, W)
        b = stop - start
        t = t_all.repeat(b)  # prompt-major: row (i, j) -> i * J + j
        a = abar[t].view(-1, 1, 1, 1)
        clean = x0[start:stop].cpu().double().repeat_interleave(num_t, dim=0)
        eps = noise.flatten(0, 1).double()
        x_t = (a.sqrt() * clean + (1 - a).sqrt() * eps).float().to(device)
        cond = hidden[start:stop].float().repeat_interleave(num_t, dim=0).to(device)
        t = t.to(device)
        if reference is None:
            truth = prediction_target(scheduler.config.prediction_type, abar, clean, eps, t.cpu())
            target = truth.to(device)
        else:
            target = _predict(reference, x_t, t, cond)
        for name, model in models.items():
            own = cond
            if model_hidden and name in model_hidden:
                own = model_hidden[name][start:stop].float().repeat_interleave(num_t, dim=0).to(device)
            diff = _predict(model, x_t, t, own) - target
            errors[name][start:stop] = diff.pow(2).flatten(1).mean(1).view(b, num_t).cpu()
    return errors


def _predict(model: UNet2DConditionModel, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    return model(x_t.to(model.dtype), t, **unet_inputs(cond, model.dtype)).sample.double()
