"""A tiny random Stable Diffusion v1.x folder, laid out exactly like a real checkpoint, for tests.

Why: `aria cache / regions / distill / eval` claim to take a diffusers Stable Diffusion folder
(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), and such a folder differs
from the embedded-world teachers (tests/fixtures_train.py) in everything that can break: latent
space with a VAE, a byte-level BPE CLIPTokenizer padding to 77 tokens, CLIP's legacy pooling
(``eos_token_id`` 2, pooled at the largest token id), epsilon prediction, and the scheduler SD
ships (a PNDMScheduler config: scaled-linear betas, ``steps_offset`` 1, no ``clip_sample``).
Nothing is downloaded: every part is built from configs and seeds in about a second, and the
folder is written by ``StableDiffusionPipeline.save_pretrained`` itself.

    teacher = make_tiny_sd_folder(tmp_path)            # tmp_path/sd (the folder)
    prompts = write_prompt_files(tmp_path)             # pool / paired / held-out tables

Sizes: latents 4 x 8 x 8 <-> pixels 3 x 16 x 16 (scaling factor 0.18215), a two-stage UNet
(CrossAttnDownBlock2D + DownBlock2D, cross-attention mid-block: BK-SDM Base and Small apply),
a one-layer CLIP text encoder of width 32.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from aria_train.diffusion.models.configs import tiny_unet_config

LATENT_CHANNELS = 4
LATENT_SIZE = 8  # UNet sample_size (latent pixels)
IMAGE_SIZE = 16  # VAE pixels: two encoder blocks halve the size once
SCALING_FACTOR = 0.18215  # SD v1.x's VAE scaling factor
TEXT_WIDTH = 32
MAX_TOKENS = 77  # CLIP's model_max_length and max_position_embeddings

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
COLOURS = ("red", "green", "blue", "yellow")  # the pool's colours
HELDOUT_COLOURS = ("white", "black")  # held-out prompts: colours the pool does not have
SUBJECTS = ("cat", "dog", "bird")  # region = subject index; the last region is unseen
SEEN_REGIONS = (0, 1)
TEMPLATE = "a photo of a {colour} {subject}"
# Every word the fixture prompts use becomes one BPE token (a whole word with `</w>`).
WORDS = ("a", "photo", "of", *COLOURS, *HELDOUT_COLOURS, *SUBJECTS)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable unicode character table (256 entries)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def _apply_merges(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the best-ranked adjacent pair until none is known."""
    while len(pieces) > 1:
        pairs = [(ranks[pair], i) for i, pair in enumerate(zip(pieces, pieces[1:])) if pair in ranks]
        if not pairs:
            break
        _, i = min(pairs)
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]
    return pieces


def clip_bpe_files(words: tuple[str, ...] = WORDS) -> tuple[dict[str, int], list[str]]:
    """(vocab, merges) in CLIP's own layout: the 256 byte characters, the same with `</w>`, one
    entry per merge in merge order, then <|startoftext|> and <|endoftext|> as the two largest ids
    (as 49406 / 49407 in the real vocabulary, which CLIP's legacy pooling relies on).

    Each word (ASCII letters) gets the merges that make it one token: its pieces under the merges
    so far, then new merges of its first two pieces until one is left. A new merge ranks after
    every earlier one, so it cannot change how an earlier word is merged. Any other text still
    tokenizes, into bytes.
    """
    byte_chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in byte_chars + [c + "</w>" for c in byte_chars]:
        vocab[token] = len(vocab)
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        pieces = _apply_merges(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
            pieces = _apply_merges(pieces, ranks)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, [f"{a} {b}" for a, b in sorted(ranks, key=ranks.get)]


def _added_token(content: str) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def write_clip_tokenizer_folder(folder: Path) -> None:
    """FOLDER as CompVis/stable-diffusion-v1-4's tokenizer/ is: vocab.json, merges.txt (with its
    ``#version`` line), tokenizer_config.json and special_tokens_map.json; no tokenizer.json, so
    loading it goes through transformers' conversion of CLIP's own files, as for the real one."""
    vocab, merges = clip_bpe_files()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": _added_token(BOS), "eos_token": _added_token(EOS), "pad_token": EOS,
               "unk_token": _added_token(EOS)}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"add_prefix_space": False, **special, "do_lower_case": True, "errors": "replace",
              "model_max_length": MAX_TOKENS, "name_or_path": "openai/clip-vit-large-patch14",
              "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def build_clip_tokenizer(folder: Path):
    """A real `transformers.CLIPTokenizer` read from the hand-written files of
    `write_clip_tokenizer_folder` in ``folder`` (pads to 77 tokens)."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer_folder(folder)
    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def _seeded(seed: int, build):
    """``build()`` under torch seed ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def make_tiny_sd_folder(root: Path, seed: int = 0) -> Path:
    """Write ROOT/sd, a random SD v1.x-layout folder (see the module docstring); returns it."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = Path(root)
    tokenizer = build_clip_tokenizer(root / "bpe")
    # openai/clip-vit-large-patch14's token ids and activation (bos 0, pad 1, eos 2 selects the
    # legacy pooling at the largest id), shrunk to one layer of width 32.
    text_config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH,
                                 num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=MAX_TOKENS,
                                 hidden_act="quick_gelu", projection_dim=TEXT_WIDTH,
                                 bos_token_id=0, pad_token_id=1, eos_token_id=2)
    text_encoder = _seeded(seed, lambda: CLIPTextModel(text_config))
    unet_config = tiny_unet_config(sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, block_out_channels=(8, 16),
                                   cross_attention_dim=TEXT_WIDTH, attention_heads=2, norm_num_groups=4)
    unet = _seeded(seed + 1, lambda: UNet2DConditionModel(**unet_config))
    vae = _seeded(seed + 2, lambda: AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, scaling_factor=SCALING_FACTOR))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    folder = root / "sd"
    pipeline.save_pretrained(folder)
    # save_pretrained writes the tokenizer in this transformers' own format (tokenizer.json);
    # the SD v1.x checkpoints on the hub have CLIP's files instead, so write those.
    shutil.rmtree(folder / "tokenizer")
    write_clip_tokenizer_folder(folder / "tokenizer")
    return folder


@dataclass
class PromptFiles:
    pool: Path  # text, region (= subject), group; 12 prompts, 3 regions
    paired: Path  # the prompts of the seen regions (what `aria cache` samples)
    heldout: Path  # text, region, region_name, group: held-out colours of every region


def prompt_frame(colours: tuple[str, ...]) -> pd.DataFrame:
    """One prompt per (subject, colour), region = subject index, group seen / unseen."""
    rows = [(TEMPLATE.format(colour=c, subject=s), k, s, "seen" if k in SEEN_REGIONS else "unseen")
            for k, s in enumerate(SUBJECTS) for c in colours]
    return pd.DataFrame(rows, columns=["text", "region", "region_name", "group"])


def write_prompt_files(root: Path) -> PromptFiles:
    """ROOT/pool.parquet, ROOT/paired.parquet and ROOT/heldout.parquet."""
    root = Path(root)
    pool = prompt_frame(COLOURS)
    pool[["text", "region", "group"]].to_parquet(root / "pool.parquet")
    pool[pool["region"].isin(SEEN_REGIONS)][["text"]].reset_index(drop=True).to_parquet(root / "paired.parquet")
    prompt_frame(HELDOUT_COLOURS).to_parquet(root / "heldout.parquet")
    return PromptFiles(root / "pool.parquet", root / "paired.parquet", root / "heldout.parquet")
