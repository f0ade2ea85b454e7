"""Sample grids of a student beside the teacher for fixed prompts and seeds, written during training."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aria_train.diffusion.sampling import decode_latents, sample, save_grid, to_uint8_images

GRID_PROMPTS = 8  # prompts in a sample grid (one per region when the pool has regions)


class SampleGrid:
    """Sample grids of the EMA student beside the teacher for fixed prompts and seeds (main process).

    A teacher folder with vae/ is latent (samples are decoded); without, a 3-channel teacher is
    pixel-space (shown directly) and any other has nothing to show.
    """

    def __init__(self, inputs, encoder, teacher):
        self.vae_dir, self.scheduler_config = inputs.vae_dir, dict(inputs.scheduler.config)
        self.enabled = self.vae_dir is not None or teacher.config.in_channels == 3
        regions = inputs.pool.regions
        if regions is None:
            rows = np.arange(min(GRID_PROMPTS, len(inputs.pool)))
        else:
            firsts = np.unique(regions, return_index=True)[1]
            rows = np.sort(firsts)[:GRID_PROMPTS]
        self.hidden = encoder(rows)
        self.null = encoder.null
        self.seeds = list(range(len(rows)))
        self.shape = tuple(inputs.paired.shape("sample")[1:])
        self.teacher = teacher
        self.teacher_images = None
        self.vae = None

    def _images(self, unet):
        x = sample(unet, self.scheduler_config, self.hidden, self.null, self.seeds, self.shape)
        if self.vae_dir is not None:
            if self.vae is None:
                from diffusers import AutoencoderKL

                self.vae = AutoencoderKL.from_pretrained(self.vae_dir, local_files_only=True).to(unet.device, unet.dtype)
            x = decode_latents(self.vae, x)
        return to_uint8_images(x)

    def save(self, folder: Path, step: int, student_unet, ema) -> None:
        if not self.enabled:
            return
        if self.teacher_images is None:
            self.teacher_images = self._images(self.teacher)
        ema.store(student_unet.parameters())
        ema.copy_to(student_unet.parameters())
        try:
            student_unet.eval()
            student_images = self._images(student_unet)
        finally:
            student_unet.train()
            ema.restore(student_unet.parameters())
        save_grid([self.teacher_images, student_images], ["teacher", f"EMA {step}"],
                  folder / f"step-{step:07d}.png")
