"""A tiny random Stable Diffusion XL folder, laid out exactly like a real checkpoint, for tests.

Why: an SDXL folder (``StableDiffusionXLPipeline.save_pretrained``: model_index.json, unet/, vae/,
text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/) differs from an SD v1.x one
(tests/sd_pipeline.py) in what the trainer must get right: two CLIP encoders of different widths
whose *penultimate* hidden states are concatenated, the second one a CLIPTextModelWithProjection
whose pooled projection feeds the UNet's added embedding ("text_time") with six time ids, a
second tokenizer that pads with "!" (as OpenCLIP's in SDXL), the null text as zeros
(``force_zeros_for_empty_prompt``), and the Euler discrete scheduler SDXL ships. Nothing is
downloaded: every part is built from configs and seeds in about a second, and the folder is
written by diffusers' own pipeline.

    teacher = make_tiny_sdxl_folder(tmp_path)          # tmp_path/sdxl (the folder)
    prompts = write_prompt_files(tmp_path)             # sd_pipeline's pool / paired / held-out tables

Sizes: latents 4 x 8 x 8 <-> pixels 3 x 16 x 16 (scaling factor 0.13025, SDXL's), so the time
ids are (16, 16, 0, 0, 16, 16); a two-stage UNet shaped as SDXL's (plain outer stage, the inner
one with cross-attention of transformer depth 2, so KOALA's depth cut applies); two-layer CLIP
encoders (so the penultimate hidden state has passed a transformer layer) of widths 32 and 64
(projection 32); cross-attention width 32 + 64 = 96.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from aria_train.diffusion.models.configs import tiny_sdxl_unet_config
from sd_pipeline import (LATENT_CHANNELS, LATENT_SIZE, MAX_TOKENS, PromptFiles, _seeded, build_clip_tokenizer,
                         write_clip_tokenizer_folder, write_prompt_files)

IMAGE_SIZE = 16  # VAE pixels: two encoder blocks halve the size once
SCALING_FACTOR = 0.13025  # SDXL's VAE scaling factor
WIDTHS = (32, 64)  # text_encoder, text_encoder_2 hidden sizes
POOLED_WIDTH = 32  # text_encoder_2's projection_dim
TIME_IDS = (IMAGE_SIZE, IMAGE_SIZE, 0, 0, IMAGE_SIZE, IMAGE_SIZE)
PAD_2 = "!"  # SDXL's tokenizer_2 (OpenCLIP ViT-bigG) pads with "!", its tokenizer/ with the end-of-text token

__all__ = ["IMAGE_SIZE", "LATENT_CHANNELS", "LATENT_SIZE", "MAX_TOKENS", "POOLED_WIDTH", "PromptFiles",
           "SCALING_FACTOR", "TIME_IDS", "WIDTHS", "make_tiny_sdxl_folder", "write_prompt_files"]


def write_tokenizer_2_folder(folder: Path) -> None:
    """tokenizer/'s CLIP files, padding with "!" as SDXL's tokenizer_2 does."""
    write_clip_tokenizer_folder(folder)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        config = json.loads((folder / name).read_text())
        config["pad_token"] = PAD_2
        (folder / name).write_text(json.dumps(config, indent=2))


def make_tiny_sdxl_folder(root: Path, seed: int = 0, prediction_type: str = "epsilon",
                          force_zeros_for_empty_prompt: bool = True) -> Path:
    """Write ROOT/sdxl, a random SDXL-layout folder (see the module docstring); returns it."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    root = Path(root)
    tokenizer = build_clip_tokenizer(root / "bpe")
    write_tokenizer_2_folder(root / "bpe_2")
    tokenizer_2 = CLIPTokenizer.from_pretrained(root / "bpe_2", local_files_only=True)

    def text_config(width: int, act: str, projection: int) -> CLIPTextConfig:
        # CLIP ViT-L's and OpenCLIP bigG's token ids in SDXL's configs (eos 2: pooled at the
        # largest id), two layers so that the penultimate hidden state follows a transformer layer
        return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width,
                              num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=MAX_TOKENS,
                              hidden_act=act, projection_dim=projection, bos_token_id=0, pad_token_id=1, eos_token_id=2)

    text_encoder = _seeded(seed, lambda: CLIPTextModel(text_config(WIDTHS[0], "quick_gelu", WIDTHS[0])))
    text_encoder_2 = _seeded(seed + 3, lambda: CLIPTextModelWithProjection(text_config(WIDTHS[1], "gelu", POOLED_WIDTH)))
    unet_config = tiny_sdxl_unet_config(sample_size=LATENT_SIZE, cross_attention_dim=sum(WIDTHS), pooled_dim=POOLED_WIDTH)
    unet = _seeded(seed + 1, lambda: UNet2DConditionModel(**unet_config))
    vae = _seeded(seed + 2, lambda: AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, scaling_factor=SCALING_FACTOR,
        force_upcast=True))
    # stabilityai/stable-diffusion-xl-base-1.0's scheduler: Euler discrete, SD's scaled-linear betas,
    # "leading" timestep spacing with steps_offset 1
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading",
                                       interpolation_type="linear", use_karras_sigmas=False,
                                       prediction_type=prediction_type)
    pipeline = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
                                         add_watermarker=False)
    folder = root / "sdxl"
    pipeline.save_pretrained(folder)
    # as in sd_pipeline: the hub's checkpoints have CLIP's tokenizer files, not tokenizer.json
    for name, write in (("tokenizer", write_clip_tokenizer_folder), ("tokenizer_2", write_tokenizer_2_folder)):
        shutil.rmtree(folder / name)
        write(folder / name)
    return folder
