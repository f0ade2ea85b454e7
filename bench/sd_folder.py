"""Random-weight Stable Diffusion v1.x folders for the end-to-end benchmarks, built from configs
(nothing is downloaded), and the prompts they are run on.

`sd_folder(work, size)` returns WORK/sd-SIZE, built on first use and reused by every later
benchmark given the same WORK (scripts/perf_bench.sh builds the SD-size one once):

* "tiny": the tests' tiny SD folder (tests/sd_pipeline.py: CLIP BPE tokenizer padding to 77
  tokens, a one-layer CLIP text encoder of width 32, a two-stage UNet on 4 x 8 x 8 latents, VAE);
* "sd14": that folder with its text encoder, UNet and VAE replaced by SD v1.4-size ones: CLIP
  ViT-L/14's text tower (hidden 768, 12 layers, 12 heads, vocabulary 49408, 123M), the UNet of
  `SD_V1_4_UNET_CONFIG` (859.5M, 4 x 64 x 64 latents) and SD's VAE (83.7M). ``text_only`` builds
  the SD-size text encoder alone (WORK/text-sd14), for the embedding benchmark.

The tokenizer is the tests' CLIP BPE in SD's layout (vocab.json + merges.txt, converted to the
Rust tokenizer when loaded), over a small vocabulary: every word of `random_prompts` is one
token, as common words are in CLIP's vocabulary, so tokenization costs about what it costs for
real captions. Timings do not depend on the weights; the weights are random.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

SIZES = ("tiny", "sd14")
READY = ".ready"  # written last: a folder without it is an interrupted build
TESTS = Path(__file__).resolve().parents[1] / "tests"


def _sd_pipeline():
    """tests/sd_pipeline.py, the tests' SD-folder builder, loaded by path (tests/ is no package)
    as the module `sd_pipeline` that the tests import."""
    if "sd_pipeline" not in sys.modules:
        spec = importlib.util.spec_from_file_location("sd_pipeline", TESTS / "sd_pipeline.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["sd_pipeline"] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["sd_pipeline"]


def random_prompts(count: int, seed: int = 0) -> list[str]:
    """`count` prompts of 4 to 20 words of the tokenizer's vocabulary (LAION captions average ~11)."""
    words = np.array(_sd_pipeline().WORDS)
    rng = np.random.default_rng(seed)
    return [" ".join(words[rng.integers(0, len(words), rng.integers(4, 21))]) for _ in range(count)]


def _sd14_parts(text_only: bool) -> dict[str, torch.nn.Module]:
    """SD v1.4-size random models by subfolder, built on the GPU when there is one (seconds, not minutes)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from aria_train.diffusion.models.configs import SD_V1_4_UNET_CONFIG

    # openai/clip-vit-large-patch14's text config; bos 0 / pad 1 / eos 2 as the tiny folder's
    # (eos 2 selects CLIP's legacy pooling at the largest token id, the tokenizer's end of text)
    text = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                          projection_dim=768, bos_token_id=0, pad_token_id=1, eos_token_id=2)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        parts = {"text_encoder": CLIPTextModel(text)}
        if not text_only:
            parts["unet"] = UNet2DConditionModel(**SD_V1_4_UNET_CONFIG)
            parts["vae"] = AutoencoderKL(  # SD v1.x's vae/config.json
                in_channels=3, out_channels=3, latent_channels=4, sample_size=512, scaling_factor=0.18215,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32)
    return parts


def sd_folder(work: Path, size: str, text_only: bool = False) -> Path:
    """The random SD folder of `size` ("tiny" or "sd14") under `work`, built if missing (see the
    module docstring); with `text_only`, a folder whose tokenizer/ and text_encoder/ are of that
    size (the whole folder when it is already there)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    full = Path(work) / f"sd-{size}"
    if (full / READY).exists():
        return full
    folder = Path(work) / f"text-{size}" if text_only and size != "tiny" else full
    if (folder / READY).exists():
        return folder
    building = folder.with_name(folder.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    tiny = _sd_pipeline().make_tiny_sd_folder(building)  # building/sd, plus the tokenizer's source files
    if size == "sd14":
        for name, model in _sd14_parts(text_only).items():
            shutil.rmtree(tiny / name)
            model.save_pretrained(tiny / name, safe_serialization=True)
    (tiny / READY).touch()
    shutil.rmtree(folder, ignore_errors=True)
    tiny.rename(folder)
    shutil.rmtree(building)
    return folder
