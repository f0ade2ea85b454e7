"""Load and validate everything a distillation run reads, before anything is written.

Each check raises ValueError / FileNotFoundError with one line naming the file and the problem,
so ``aria distill`` rejects bad input with exit status 2 and leaves no run directory behind.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aria_train.distill.config import DistillConfig
from aria_train.data.cache import TensorCache, folder_fingerprint
from aria_train.data.pool import PromptPool
from aria_train.data.regions import regions_from_column
from aria_train.diffusion.loading import open_teacher, teacher_parts
from aria_train.diffusion.prompts import HIDDEN, TEXT_EMBEDS, PromptEncoder
from aria_train.console import first_line

if TYPE_CHECKING:  # torch-side types, imported lazily at run time
    from diffusers import DDPMScheduler, UNet2DConditionModel

PAIRED_TENSORS = ("sample", "prompt_id")  # what `aria cache` writes for the paired set
TEXT_TENSOR = HIDDEN  # the text-embedding cache: row i = pool row i (SDXL adds TEXT_EMBEDS)


@dataclass
class Inputs:
    """The validated inputs of a run; models are on the CPU in float32."""

    teacher: UNet2DConditionModel
    scheduler: DDPMScheduler
    prompts: PromptEncoder  # the frozen tokenizer(s) and text encoder(s): one (SD) or two (SDXL)
    vae_dir: Path | None  # TEACHER/vae for latent teachers, None for pixel-space ones
    pool: PromptPool
    paired: TensorCache
    paired_prompt_ids: np.ndarray  # (N,) int64 pool rows
    text_cache: TensorCache | None


def _open_cache(path: str, what: str, names: tuple[str, ...], verify: bool = False) -> TensorCache:
    """The cache at ``path`` with the tensors ``names``; ``verify`` checks every shard's checksum
    (the paired cache: small, and a flipped byte there would train silently on garbage; the pool's
    text cache can be terabytes and is not re-read whole)."""
    try:
        cache = TensorCache(path)
    except (KeyError, IndexError) as err:
        raise ValueError(f"{what} {path}: {first_line(err)}") from None
    if verify:
        cache.verify()
    missing = [name for name in names if name not in cache.names]
    if missing:
        raise ValueError(f"{what} {path} lacks the tensors {', '.join(missing)} (has {', '.join(cache.names) or 'none'})")
    if len(cache) == 0:
        raise ValueError(f"{what} {path} is empty")
    return cache


def _paired_prompt_ids(paired: TensorCache, pool: PromptPool, paired_path: str, pool_path: str) -> np.ndarray:
    """The paired cache's prompt_id column (N,) int64, checked against the pool: the cache was made
    with this pool's texts (`aria cache --pool` records them; caches of older versions do not), and
    every id is one of its rows."""
    made_from = paired.metadata.get("pool_fingerprint")
    if made_from is not None and made_from != pool.fingerprint():
        raise ValueError(f"paired cache {paired_path} was made with another pool than {pool_path} (other "
                         "texts, or another order): its prompt_id rows would caption samples with other prompts; pass "
                         "the --pool the cache was made with")
    if paired.shape("prompt_id")[1:] != () or paired.dtype("prompt_id").is_floating_point:
        raise ValueError(f"paired cache {paired_path}: prompt_id must be one integer per row")
    prompt_ids = paired.get("prompt_id").numpy().astype(np.int64)
    if prompt_ids.min() < 0 or prompt_ids.max() >= len(pool):
        raise ValueError(f"paired cache {paired_path}: prompt_id outside the pool's rows [0, {len(pool)})")
    return prompt_ids


def check_pool_and_cache(configs: list[DistillConfig]) -> None:
    """ValueError where `load_inputs` would find, for any of ``configs`` (runs of one pool and paired
    cache), that the pool lacks the regions its method needs or that the paired cache does not
    caption its samples from the pool, or was sampled by another teacher: for callers that check
    before starting runs (an experiment, before any of its workers). The pool is read once."""
    first = configs[0]
    pool = PromptPool.from_file(first.pool)
    for config in configs:
        _check_pool_regions(config, pool)
    paired = _open_cache(first.paired_cache, "paired cache", PAIRED_TENSORS)
    for config in {c.teacher: c for c in configs}.values():  # each teacher fingerprinted once
        _check_cache_teacher(paired, config)
    _paired_prompt_ids(paired, pool, first.paired_cache, first.pool)


def _check_pool_regions(config: DistillConfig, pool: PromptPool) -> None:
    if pool.regions is not None:
        # here, before the sampler, the tally and the held-out monitor each make an array per
        # region id: a stray id of 2^39 would ask them for terabytes
        regions_from_column(pool)
    if (config.method == "aria" or (config.method == "rc" and config.sampler == "region")) and pool.regions is None:
        what = "--method aria" if config.method == "aria" else "--sampler region"
        raise ValueError(f"{what} needs a region column in the pool {config.pool} (aria regions makes one)")


def _check_cache_teacher(paired: TensorCache, config: DistillConfig) -> None:
    """The paired cache was sampled by this teacher (`aria cache` records a fingerprint of the
    teacher's files; caches of older versions do not): distilling one teacher towards another's
    samples is a mix-up, not a recipe."""
    made_by = paired.metadata.get("teacher_fingerprint")
    teacher = Path(config.teacher)
    if made_by is not None and made_by != folder_fingerprint(teacher, teacher_parts(teacher)):
        raise ValueError(f"paired cache {config.paired_cache} was sampled by another teacher than {config.teacher} "
                         "(its files differ); pass the --teacher the cache was made with, or make the cache again")


def load_inputs(config: DistillConfig) -> Inputs:
    """Load and cross-check teacher, pool, paired cache and optional text cache."""
    if config.heldout and not Path(config.heldout).is_file():  # read only by the monitor, but recorded in any case
        raise ValueError(f"held-out prompts {config.heldout}: no such file")
    teacher = open_teacher(config.teacher)
    unet = teacher.unet
    pool = PromptPool.from_file(config.pool)
    _check_pool_regions(config, pool)
    paired = _open_cache(config.paired_cache, "paired cache", PAIRED_TENSORS, verify=True)
    _check_cache_teacher(paired, config)
    prompt_ids = _paired_prompt_ids(paired, pool, config.paired_cache, config.pool)
    sample_shape = paired.shape("sample")[1:]
    if len(sample_shape) != 3 or sample_shape[0] != unet.config.in_channels:
        raise ValueError(f"paired cache {config.paired_cache}: samples of shape {tuple(sample_shape)}, the teacher "
                         f"takes {unet.config.in_channels} channels (C, H, W)")
    multiple = 2 ** (len(unet.config.block_out_channels) - 1)
    if sample_shape[1] % multiple or sample_shape[2] % multiple:
        raise ValueError(f"paired cache {config.paired_cache}: sample size {sample_shape[1:]} is not a multiple of {multiple}")

    text_cache = None
    if config.text_cache:
        text_cache = _open_cache(config.text_cache, "text cache", teacher.prompts.cache_names)
        shape = text_cache.shape(TEXT_TENSOR)
        if shape[0] != len(pool):
            raise ValueError(f"text cache {config.text_cache} has {shape[0]} rows, the pool {len(pool)}")
        if len(shape) != 3 or shape[2] != unet.config.cross_attention_dim:
            raise ValueError(f"text cache {config.text_cache}: embeddings {shape[1:]}, the teacher needs width "
                             f"{unet.config.cross_attention_dim}")
        if teacher.prompts.sdxl:
            pooled, width = text_cache.shape(TEXT_EMBEDS), teacher.prompts.pooled_width
            if pooled[0] != len(pool) or pooled[1:] != (width,):
                raise ValueError(f"text cache {config.text_cache}: {TEXT_EMBEDS} of shape {tuple(pooled)}, the SDXL "
                                 f"teacher needs ({len(pool)}, {width})")
    return Inputs(unet, teacher.scheduler, teacher.prompts, teacher.vae_dir, pool, paired, prompt_ids, text_cache)


def make_condition_sampler(config: DistillConfig, inputs: Inputs):
    """The run's condition sampler: ARIA's tracker-driven one for ``--method aria``, else RC's
    uniform-over-the-pool or region-uniform draw (kd never draws from it)."""
    from aria_train.conditioning.aria import AriaSampler
    from aria_train.conditioning.samplers import make_sampler

    pool = inputs.pool
    if config.method == "aria":
        return AriaSampler(pool.regions, int(inputs.scheduler.config.num_train_timesteps), config.aria,
                           pool.num_regions, batches_per_step=config.grad_accum)
    return make_sampler(config.sampler, len(pool), pool.regions)
