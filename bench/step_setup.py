"""The models and inputs of bench.distill_step: a teacher of a given size with its student, set
up as the trainer sets them up, and random micro-batches of the teacher's input shapes.

Sizes: ``sd14`` and ``sdxl`` are SD v1.4's and SDXL base's UNets with random weights (from
aria_train.diffusion.models.configs), ``sdxl-tiny`` the tiny SDXL-shaped UNet of the tests (a CPU
smoke test of the SDXL path), ``sd-tiny`` a tiny UNet with SD v1.4's four stages (three with
cross-attention; 32x32 latents, the CPU's stand-in for the SD-size step's graph), ``demo`` the shipped embedded-world teacher, anything else a teacher
folder (SD or SDXL, read by the trainer's ``open_teacher``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CONFIG_SIZES = ("sd14", "sdxl", "sdxl-tiny", "sd-tiny")  # teachers built from a UNet config with random weights


@dataclass(frozen=True)
class Inputs:
    """The shapes of one sample's inputs: (C, H, W), the context (L, D), and for SDXL the pooled
    projection's width and the six time ids (None for SD)."""

    sample: tuple[int, int, int]
    text: tuple[int, int]
    pooled: int | None = None
    time_ids: tuple[int, ...] | None = None


def config_teacher(size: str):
    """(UNet config, DDPM scheduler, Inputs) of a teacher built from a config with random weights."""
    from diffusers import DDPMScheduler

    from aria_train.diffusion.models.configs import (SD_V1_4_UNET_CONFIG, SDXL_BASE_UNET_CONFIG, tiny_sdxl_unet_config,
                                                     tiny_unet_config)

    config = {"sd14": SD_V1_4_UNET_CONFIG, "sdxl": SDXL_BASE_UNET_CONFIG, "sdxl-tiny": tiny_sdxl_unet_config(),
              "sd-tiny": tiny_unet_config(sample_size=32, in_channels=4, block_out_channels=(32, 64, 128, 128),
                                          cross_attention_dim=16, attention_heads=2, norm_num_groups=8)}[size]
    # SD's and SDXL's training noise schedule (the trainer turns SDXL's Euler config into this DDPM)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    sample = (config["in_channels"], config["sample_size"], config["sample_size"])
    if config.get("addition_embed_type") != "text_time":
        return config, scheduler, Inputs(sample, (77, config["cross_attention_dim"]))
    pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    # the pipeline's default time ids at the native size, as loading.sdxl_time_ids gives them (VAE factor 8)
    size_px = config["sample_size"] * 8
    return config, scheduler, Inputs(sample, (77, config["cross_attention_dim"]), pooled,
                                     (size_px, size_px, 0, 0, size_px, size_px))


def build(size: str, variant: str, feature_kd: str, device: torch.device, speed: dict):
    """(StepModels, Inputs): the teacher of ``size`` held in bf16 on a GPU (fp32 on the CPU)
    without gradients, its ``variant`` student from ``make_student`` as the trainer makes it."""
    from diffusers import UNet2DConditionModel

    from aria_train.diffusion.models.students import feature_layer_map, make_student
    from aria_train.distill.speed import prepare_unets
    from aria_train.distill.step import StepModels, Student

    if size in CONFIG_SIZES:
        config, scheduler, inputs = config_teacher(size)
        with torch.device(device):  # random weights drawn where they are used: seconds, not minutes, at SDXL size
            teacher = UNet2DConditionModel(**config)
    else:  # the shipped demo teacher, or any teacher folder (bench.distill_e2e times its loop on the same one)
        from aria_train.assets import default_teacher_path
        from aria_train.diffusion.loading import open_teacher
        from aria_train.diffusion.sampling import sample_shape

        loaded = open_teacher(default_teacher_path() if size == "demo" else Path(size))
        teacher, scheduler, prompts = loaded.unet, loaded.scheduler, loaded.prompts
        inputs = Inputs(sample_shape(teacher), (prompts.length, prompts.width),
                        prompts.pooled_width if prompts.sdxl else None, prompts.time_ids)
    student_unet = make_student(teacher, variant)
    layer_map = feature_layer_map(dict(teacher.config), dict(student_unet.config), feature_kd)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    teacher = teacher.to(device, dtype).eval().requires_grad_(False)
    student = Student(student_unet).to(device).train()
    prepare_unets(teacher, student.unet, **speed)  # the trainer's own set-up (aria_train.distill.speed)
    models = StepModels(teacher, student, scheduler, layer_map)
    return models, inputs


def make_batch(batch: int, inputs: Inputs, device, generator: torch.Generator):
    """A micro-batch of random samples, noise, timesteps and conditioning (SDXL: a TextConditioning,
    handed to both UNets by the trainer's ``unet_inputs``)."""
    from aria_train.diffusion.prompts import TextConditioning
    from aria_train.distill.batches import Batch

    x0 = torch.randn(batch, *inputs.sample, generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    timesteps = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    hidden = torch.randn(batch, *inputs.text, generator=generator).to(device)
    if inputs.pooled is not None:
        hidden = TextConditioning(hidden, torch.randn(batch, inputs.pooled, generator=generator).to(device),
                                  torch.tensor([inputs.time_ids], dtype=torch.float32, device=device).repeat(batch, 1))
    return Batch(x0=x0, noise=noise, timesteps=timesteps, hidden=hidden,
                 paired=torch.ones(batch, dtype=torch.bool, device=device),
                 prompt_ids=np.zeros(batch, np.int64), regions=np.zeros(batch, np.int64), switched=np.zeros(batch, bool),
                 nulled=np.zeros(batch, bool))


def default_student(size: str) -> str:
    """KOALA-700M for an SDXL teacher, BK-SDM-Small for SD and the demo teacher."""
    if size in CONFIG_SIZES:
        sdxl = config_teacher(size)[2].pooled is not None
    else:
        from aria_train.diffusion.loading import is_sdxl_folder

        sdxl = size != "demo" and is_sdxl_folder(Path(size))
    return "koala-700m" if sdxl else "small"
