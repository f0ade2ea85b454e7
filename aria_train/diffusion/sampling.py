"""DDIM sampling with classifier-free guidance, seeded per sample, plus image helpers.

Assumptions and units:
- The model predicts what its scheduler config says (``prediction_type``: epsilon or
  v_prediction); the DDIM scheduler is built from that same config, so the
  pixel-space embedded world and a latent-space Stable Diffusion folder share one code path.
- Pixel-space samples live in [-1, 1], channel-first (N, C, H, W). Latent samples are returned
  as latents; ``decode_latents`` turns them into pixels with a VAE, only for viewing.
- Determinism: sample i starts from ``randn(shape, generator=Generator().manual_seed(seeds[i]))``
  drawn on the CPU, so its initial noise does not depend on the device, the batch size or the
  other prompts in the batch; DDIM with eta = 0 is deterministic after that. The same prompt and
  seed therefore give the teacher and a student the same starting point.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from aria_train.diffusion.prompts import Conditioning, PromptEncoder, cat_conditioning, unet_inputs

DEFAULT_STEPS = 25  # RC's teacher sampling steps
DEFAULT_GUIDANCE = 7.5  # RC's classifier-free guidance scale
SAMPLING_FILE = "sampling.json"  # in a teacher folder: {"guidance": g}, the scale that teacher samples best at


def default_guidance(teacher_dir: str | Path) -> float:
    """The guidance a teacher folder recommends in sampling.json (the embedded worlds' small
    teachers sample best without guidance), else RC's 7.5 (Stable Diffusion)."""
    import json
    import math

    path = Path(teacher_dir) / SAMPLING_FILE
    if not path.is_file():
        return DEFAULT_GUIDANCE
    try:
        guidance = json.loads(path.read_text())["guidance"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} must hold {{\"guidance\": number}}: {err}") from None
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"{path}: guidance must be a finite number >= 0, got {guidance!r}")
    return float(guidance)


def make_ddim(scheduler_config: dict) -> DDIMScheduler:
    """A DDIM scheduler with the training scheduler's betas, prediction type and clipping."""
    return DDIMScheduler.from_config(scheduler_config)


def sample_shape(unet: UNet2DConditionModel) -> tuple[int, int, int]:
    """(C, H, W) of one sample in the UNet's space (pixels or latents)."""
    size = unet.config.sample_size
    return (unet.config.in_channels, size, size)


def seeded_noise(shape: Sequence[int], seeds: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise (len(seeds), *shape) on the CPU; row i depends only on seeds[i]."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s)), dtype=torch.float32) for s in seeds]
    return torch.stack(rows).to(dtype)


def guided_prediction(
    unet: UNet2DConditionModel,
    x: torch.Tensor,
    t: torch.Tensor | int,
    cond_hidden: Conditioning,
    uncond_hidden: Conditioning,
    guidance: float,
) -> torch.Tensor:
    """Classifier-free guidance: u + g (c - u), both branches in one batched forward pass; at
    g = 1 that is the conditional prediction c, computed alone (half the work).

    ``cond_hidden`` is the conditioning of the N samples (a context (N, L, D) or SDXL's
    TextConditioning, aria_train.diffusion.prompts), ``uncond_hidden`` the null text's, one row
    or N. Returns float32 of x's shape.
    """
    if guidance == 1.0:
        return unet(x.to(unet.dtype), t, **unet_inputs(cond_hidden, unet.dtype)).sample.float()
    n = x.shape[0]
    uncond = uncond_hidden.expand(n, -1, -1) if uncond_hidden.shape[0] == 1 else uncond_hidden
    both = cat_conditioning([uncond, cond_hidden])
    out = unet(torch.cat([x, x]).to(unet.dtype), t, **unet_inputs(both, unet.dtype)).sample.float()
    pred_uncond, pred_cond = out.chunk(2)
    return pred_uncond + guidance * (pred_cond - pred_uncond)


@torch.no_grad()
def sample(
    unet: UNet2DConditionModel,
    scheduler_config: dict,
    cond_hidden: Conditioning,
    uncond_hidden: Conditioning,
    seeds: Sequence[int],
    shape: Sequence[int],
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """DDIM (eta = 0) with classifier-free guidance; returns x0 (N, *shape) float32 on the CPU.

    ``cond_hidden`` is the conditioning of the N prompts (their per-token text embeddings
    (N, L, D), or SDXL's TextConditioning), ``uncond_hidden`` the null prompt's (one row);
    ``seeds`` (N,) fix each sample's initial noise; ``shape`` is one sample's (C, H, W) in the
    model's space. Prompts are processed ``batch_size`` at a time.
    """
    if len(seeds) != cond_hidden.shape[0]:
        raise ValueError(f"got {len(seeds)} seeds for {cond_hidden.shape[0]} prompts")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = unet.device
    scheduler = make_ddim(scheduler_config)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    chunks = range(0, len(seeds), batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="DDIM", unit="batch")
    results = []
    for start in chunks:
        stop = min(start + batch_size, len(seeds))
        x = seeded_noise(shape, seeds[start:stop]).to(device) * scheduler.init_noise_sigma
        cond = cond_hidden[start:stop].to(device)
        uncond = uncond_hidden.to(device)
        for t in timesteps:
            pred = guided_prediction(unet, x, t.to(device), cond, uncond, guidance)
            x = scheduler.step(pred, t, x, eta=0.0).prev_sample
        results.append(x.float().cpu())
    return torch.cat(results)


def sample_prompts(
    unet: UNet2DConditionModel,
    scheduler_config: dict,
    prompts: PromptEncoder,
    texts: Sequence[str],
    seeds: Sequence[int],
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """``sample`` for prompt strings: encodes them and the null text with ``prompts`` (a
    teacher's PromptEncoder, on the UNet's device); one sample's shape is the UNet's
    (in_channels, sample_size, sample_size)."""
    return sample(unet, scheduler_config, prompts.encode(list(texts)), prompts.null(), seeds, sample_shape(unet),
                  steps, guidance, batch_size, progress)


def sample_texts(
    unet: UNet2DConditionModel,
    scheduler_config: dict,
    tokenizer,
    text_encoder,
    texts: Sequence[str],
    seeds: Sequence[int],
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """``sample_prompts`` for a one-encoder text stack (embedded world, SD v1/v2): encodes the
    prompts (and the null prompt "") with it; it must be on the UNet's device."""
    return sample_prompts(unet, scheduler_config, PromptEncoder([tokenizer], [text_encoder]), texts, seeds, steps,
                          guidance, batch_size, progress)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Latents -> pixels in [-1, 1] with an AutoencoderKL (Stable Diffusion folders; viewing only)."""
    scale = vae.config.scaling_factor
    out = [
        vae.decode(latents[i : i + batch_size].to(vae.device, vae.dtype) / scale).sample.float().cpu()
        for i in range(0, latents.shape[0], batch_size)
    ]
    return torch.cat(out)


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1] (the inverse of to_uint8_images)."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """Pixels in [-1, 1] (N, 3, H, W) -> uint8 (N, H, W, 3), values outside the range clipped."""
    x = ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_grid(rows: Sequence[np.ndarray], labels: Sequence[str], path: str | Path, scale: int = 2, pad: int = 2) -> None:
    """A PNG with one labelled row per entry of ``rows`` (each uint8 (N, H, W, 3), same H, W).

    Rows may hold different numbers of images; images are enlarged ``scale`` times (nearest
    neighbour) so 32x32 samples stay visible, with ``pad`` pixels of white between them.
    """
    from PIL import Image, ImageDraw

    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    if not rows:
        raise ValueError("save_grid needs at least one row")
    h, w = rows[0].shape[1] * scale, rows[0].shape[2] * scale
    label_width = 8 + 6 * max(len(s) for s in labels)  # PIL's default bitmap font is ~6 px per character
    cols = max(r.shape[0] for r in rows)
    canvas = Image.new("RGB", (label_width + cols * (w + pad) + pad, len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (images, label) in enumerate(zip(rows, labels)):
        top = pad + r * (h + pad)
        draw.text((4, top + h // 2 - 5), label, fill="black")
        for c, image in enumerate(images):
            tile = Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (label_width + pad + c * (w + pad), top))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
