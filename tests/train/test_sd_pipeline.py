"""A Stable Diffusion v1.x folder end to end: `aria cache` -> `aria regions` -> `aria distill`
(rc and aria, one and two processes) -> `aria eval`, on a tiny random SD folder (tests/sd_pipeline.py).

The folder is laid out as a real SD checkpoint (PNDM scheduler config, CLIP BPE tokenizer files,
VAE, latent UNet), so these tests exercise what only such a folder has: latent samples, VAE-decoded
grids, 77-token CLIP prompts with CLIP's pooling, and SD's scheduler settings. The models are
random: the tests check exact properties (identity with diffusers' own pipeline, shapes, derived
configs, files, determinism across ranks) and that distillation lowers the discrepancy, never
sample quality.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import aria_cli
import sd_pipeline
from aria_train.data.cache import TensorCache
from aria_train.diffusion.loading import load_teacher
from aria_train.diffusion.models.students import make_student
from fixtures_train import run_two_processes
from sd_pipeline import (EOS, IMAGE_SIZE, LATENT_CHANNELS, LATENT_SIZE, MAX_TOKENS, SCALING_FACTOR, SUBJECTS,
                         TEXT_WIDTH, WORDS, PromptFiles, make_tiny_sd_folder, write_prompt_files)

CACHE_STEPS = 2  # DDIM steps of the paired cache (guidance: the default 7.5)
GRID_SCALE, GRID_PAD = 2, 2  # aria_train.diffusion.sampling.save_grid's defaults
ARIA = ("--method", "aria", "--aria-warmup", "1")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*argv) -> int:
    return aria_cli.main([str(a) for a in argv])


class SD:
    """The module's shared inputs and outputs: teacher folder, prompt files, cache, regions."""

    def __init__(self, root: Path):
        self.root = root
        self.teacher = make_tiny_sd_folder(root)
        self.prompts: PromptFiles = write_prompt_files(root)
        self.cache = root / "cache"
        self.regions = root / "regions"

    def distill(self, out: Path, *extra: str) -> list[str]:
        """`aria distill` arguments: the k-means regions as the pool, tiny fast settings."""
        return ["distill", "--out", str(out), "--teacher", str(self.teacher), "--pool",
                str(self.regions / "regions.parquet"), "--paired-cache", str(self.cache / "paired"),
                "--batch-size", "4", "--log-every", "1", "--lr", "1e-3", "--checkpoint-every", "3",
                "--sample-every", "3", *extra]


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> SD:
    """The SD folder, its paired + text caches (`aria cache`) and k-means regions (`aria regions`)."""
    sd = SD(tmp_path_factory.mktemp("sd"))
    assert cli("cache", "--teacher", sd.teacher, "--paired", sd.prompts.paired, "--pool", sd.prompts.pool,
               "--embed-pool", "--out", sd.cache, "--steps", CACHE_STEPS, "--batch-size", 4, "--no-progress") == 0
    assert cli("regions", "--teacher", sd.teacher, "--prompts", sd.prompts.pool, "--k", len(SUBJECTS),
               "--out", sd.regions) == 0
    return sd


@pytest.fixture(scope="module")
def runs(sd) -> dict[str, Path]:
    """An rc run of 6 steps and an aria run of 3 (with the pool's text cache), plus the
    untrained BK-SDM-Small student of the teacher saved as a UNet folder."""
    out = {"rc": sd.root / "rc", "aria": sd.root / "aria", "initial": sd.root / "initial"}
    assert cli(*sd.distill(out["rc"], "--method", "rc", "--steps", "6")) == 0
    assert cli(*sd.distill(out["aria"], *ARIA, "--steps", "3", "--text-cache", sd.cache / "text")) == 0
    teacher, *_ = load_teacher(sd.teacher)
    make_student(teacher, "small").save_pretrained(out["initial"])
    return out


# ---------------------------------------------------------------- the folder


def test_folder_is_a_stable_diffusion_checkpoint(sd):
    """diffusers loads the folder as a StableDiffusionPipeline, and our loaders read SD's
    settings: epsilon, SD's betas, and a DDIM that never clips latents (SD's pipeline forces
    clip_sample False; the PNDM config does not set it and DDPM/DDIM would default it to True)."""
    from diffusers import StableDiffusionPipeline

    from aria_train.diffusion.sampling import make_ddim

    index = json.loads((sd.teacher / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["scheduler"] == ["diffusers", "PNDMScheduler"]
    assert sorted((sd.teacher / "tokenizer").iterdir()) == sorted(
        sd.teacher / "tokenizer" / f for f in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"))
    pipe = StableDiffusionPipeline.from_pretrained(sd.teacher, local_files_only=True)
    assert pipe.vae.config.scaling_factor == SCALING_FACTOR and pipe.unet.config.in_channels == LATENT_CHANNELS
    assert pipe.vae.encode(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)).latent_dist.mean.shape == (
        1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    unet, scheduler, tokenizer, text_encoder = load_teacher(sd.teacher)
    assert scheduler.config.prediction_type == "epsilon" and scheduler.config.beta_schedule == "scaled_linear"
    torch.testing.assert_close(scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod, rtol=0, atol=0)
    ddim = make_ddim(dict(scheduler.config))
    assert (ddim.config.clip_sample, ddim.config.set_alpha_to_one, ddim.config.steps_offset) == (False, False, 1)
    ddim.set_timesteps(CACHE_STEPS)
    assert ddim.timesteps.tolist() == [501, 1]  # "leading" spacing + steps_offset, as SD samples


def test_folder_is_built_from_its_seed(tmp_path):
    from safetensors.torch import load_file

    a, b, c = (make_tiny_sd_folder(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    for part in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        ta, tb, tc = (load_file(folder / f"{part}.safetensors") for folder in (a, b, c))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        assert not all(torch.equal(ta[k], tc[k]) for k in ta)
    assert (a / "tokenizer" / "vocab.json").read_text() == (c / "tokenizer" / "vocab.json").read_text()


def test_clip_tokenizer_pads_to_77_and_pools_at_the_end_of_text(sd):
    from transformers.convert_slow_tokenizer import bytes_to_unicode as transformers_bytes_to_unicode

    from aria_train.diffusion.text import encode_prompts

    _, _, tokenizer, text_encoder = load_teacher(sd.teacher)
    assert type(tokenizer).__name__ == "CLIPTokenizer" and tokenizer.model_max_length == MAX_TOKENS
    ids = tokenizer("A photo of a RED cat", padding="max_length", max_length=MAX_TOKENS).input_ids
    assert tokenizer.convert_ids_to_tokens(ids[:8]) == [
        "<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "red</w>", "cat</w>", EOS]
    assert len(ids) == MAX_TOKENS and set(ids[7:]) == {tokenizer.eos_token_id}  # padded with end-of-text
    assert tokenizer.convert_ids_to_tokens(tokenizer("zebra").input_ids) == [
        "<|startoftext|>", "z", "e", "b", "r", "a</w>", EOS]  # unknown words fall back to bytes
    assert all(tokenizer.tokenize(word) == [word + "</w>"] for word in WORDS)
    assert sd_pipeline.bytes_to_unicode() == transformers_bytes_to_unicode()  # CLIP's byte alphabet
    assert tokenizer.eos_token_id == len(tokenizer) - 1  # the largest id, as 49407 in CLIP
    texts = ["a photo of a red cat", "a photo of a blue bird", ""]
    hidden, pooled = encode_prompts(tokenizer, text_encoder, texts, "cpu")
    assert hidden.shape == (3, MAX_TOKENS, TEXT_WIDTH)
    # CLIP's legacy pooling (eos_token_id 2 in SD's config) takes the largest token id, which
    # must be the first end-of-text token: position 7, 7 and 1.
    torch.testing.assert_close(pooled, hidden[torch.arange(3), torch.tensor([7, 7, 1])], rtol=0, atol=0)
    assert not torch.equal(pooled[0], hidden[0, 8])


# ---------------------------------------------------------------- cache and regions


# the reference pipeline warns that it sets clip_sample False itself: that is what it should match
@pytest.mark.filterwarnings("ignore:The configuration file of this scheduler")
def test_cache_holds_latents_of_diffusers_own_pipeline(sd):
    """The paired cache holds (N, 4, 8, 8) latents, and they are what diffusers'
    StableDiffusionPipeline with DDIM samples from the same initial noise (CFG 7.5)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from aria_train.diffusion.sampling import seeded_noise

    paired = pd.read_parquet(sd.prompts.paired)["text"].tolist()
    pool = pd.read_parquet(sd.prompts.pool)["text"].tolist()
    cache = TensorCache(sd.cache / "paired")
    assert cache.shape("sample") == (len(paired), LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    assert cache.dtype("sample") == torch.float32
    samples = cache.get("sample")
    assert torch.isfinite(samples).all() and samples.std() > 0
    assert [pool[i] for i in cache.get("prompt_id").tolist()] == paired
    assert cache.metadata["guidance"] == 7.5 and cache.metadata["steps"] == CACHE_STEPS
    text = TensorCache(sd.cache / "text")
    assert text.shape("hidden") == (len(pool), MAX_TOKENS, TEXT_WIDTH)

    scheduler = DDIMScheduler.from_pretrained(sd.teacher, subfolder="scheduler", local_files_only=True)
    pipe = StableDiffusionPipeline.from_pretrained(sd.teacher, scheduler=scheduler, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    rows = [0, 5]
    noise = seeded_noise((LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE), rows)
    expect = pipe([paired[i] for i in rows], num_inference_steps=CACHE_STEPS, guidance_scale=7.5,
                  latents=noise, output_type="latent").images
    torch.testing.assert_close(samples[rows], expect, rtol=0, atol=1e-5)


def test_regions_cluster_pooled_clip_embeddings(sd):
    from aria_train.diffusion.text import encode_prompts

    pool = pd.read_parquet(sd.prompts.pool)
    table = pd.read_parquet(sd.regions / "regions.parquet")
    assert table["text"].tolist() == pool["text"].tolist()  # same rows: the cache's prompt_id stay valid
    assert table["region_given"].tolist() == pool["region"].tolist()
    assert sorted(set(table["region"])) == list(range(len(SUBJECTS)))
    assert np.array_equal(np.load(sd.regions / "regions.npy"), table["region"].to_numpy())
    centroids = np.load(sd.regions / "centroids.npy")
    assert centroids.shape == (len(SUBJECTS), TEXT_WIDTH)
    _, _, tokenizer, text_encoder = load_teacher(sd.teacher)
    _, pooled = encode_prompts(tokenizer, text_encoder, pool["text"].tolist(), "cpu")
    torch.testing.assert_close(TensorCache(sd.regions / "embeddings").get("pooled"), pooled)
    # every prompt sits in the region of its nearest centroid (a k-means fixed point)
    nearest = torch.cdist(pooled, torch.from_numpy(centroids)).argmin(1).numpy()
    assert np.array_equal(nearest, table["region"].to_numpy())


# ---------------------------------------------------------------- distillation


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def grid_size(rows: int, cols: int, label_chars: int) -> tuple[int, int]:
    """(width, height) of a save_grid PNG of 16 x 16 pixel images (decoded latents)."""
    side = IMAGE_SIZE * GRID_SCALE
    return 8 + 6 * label_chars + cols * (side + GRID_PAD) + GRID_PAD, rows * (side + GRID_PAD) + GRID_PAD


@pytest.mark.parametrize("method,steps", [("rc", 6), ("aria", 3)])
def test_distill_runs_and_writes_decoded_grids(sd, runs, method, steps):
    out = runs[method]
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert all(np.isfinite(r[k]) for r in records for k in ("loss", "out", "feat"))
    if method == "aria":
        assert all(len(r["pi"]) == len(SUBJECTS) and abs(sum(r["pi"]) - 1) < 1e-12 for r in records)
    # a grid every 3 steps: teacher row + EMA row, one column per region, VAE-decoded to 16 px
    grids = sorted(p.name for p in (out / "samples").glob("*.png"))
    assert grids == [f"step-{s:07d}.png" for s in range(3, steps + 1, 3)]
    label = max(len("teacher"), len(f"EMA {steps}"))
    assert Image.open(out / "samples" / grids[-1]).size == grid_size(2, len(SUBJECTS), label)
    final = out / "checkpoints" / f"step-{steps:07d}"
    assert (final / "trainer_state.json").is_file()
    # the student is BK-SDM-Small of the teacher: latent space and text width kept, blocks removed
    teacher = json.loads((sd.teacher / "unet" / "config.json").read_text())
    for part in ("student", "student_ema"):
        student = json.loads((final / part / "config.json").read_text())
        for key in ("in_channels", "out_channels", "sample_size", "cross_attention_dim", "block_out_channels",
                    "down_block_types", "up_block_types"):
            assert student[key] == teacher[key], key
        assert (student["layers_per_block"], student["mid_block_type"]) == (1, None)
        assert teacher["layers_per_block"] == 2 and teacher["mid_block_type"] == "UNetMidBlock2DCrossAttn"


def test_eval_of_both_students_against_the_teacher(sd, runs, tmp_path):
    out = tmp_path / "eval"
    halfway = runs["rc"] / "checkpoints" / "step-0000003" / "student_ema"  # named "rc-2" by aria eval
    assert cli("eval", "--teacher", sd.teacher, "--student", runs["initial"], "--student", runs["rc"],
               "--student", halfway, "--student", runs["aria"], "--heldout", sd.prompts.heldout, "--out", out,
               "--steps", 2, "--samples-per-region", 1, "--timesteps", 100, 500, 900) == 0
    results = json.loads((out / "results.json").read_text())
    heldout = pd.read_parquet(sd.prompts.heldout)
    assert results["x0"] == "teacher" and results["prompts"] == len(heldout)  # no world: x0 from teacher samples
    assert results["accuracy"] == {} and not (out / "accuracy.csv").exists()  # no attributes to read in SD
    disc = results["discrepancy"]
    assert set(disc) == {"initial", "rc", "rc-2", "aria"}
    assert results["students"]["rc-2"] == str(halfway)
    for name, value in disc.items():
        assert [r["region"] for r in value["per_region"]] == list(range(len(SUBJECTS)))
        assert all(np.isfinite(r[t]) and r[t] > 0 for r in value["per_region"] for t in ("all", "100", "500", "900"))
        assert {g["group"] for g in value["groups"]} == {"seen", "unseen", "all"}
    # distillation brings the student closer to the teacher than its initialisation, and six
    # steps closer than three (measured: 0.065 initial; rc 0.041 after 3 steps, 0.032 after 6; aria 0.042 after 3)
    mean = {name: value["mean"] for name, value in disc.items()}
    assert mean["rc"] < mean["rc-2"] < mean["initial"] and mean["rc"] < 0.75 * mean["initial"]
    assert mean["aria"] < mean["initial"]
    for group in ("seen", "unseen"):  # teacher + 4 students, one column per region of the group
        cols = 2 if group == "seen" else 1
        assert Image.open(out / f"grid_{group}.png").size == grid_size(5, cols, len("initial"))
    table = pd.read_csv(out / "discrepancy.csv")
    assert set(table["model"]) == set(disc) and set(table["t"].astype(str)) == {"all", "text", "pt", "100", "500", "900"}


@pytest.mark.slow
def test_two_processes_distil_the_sd_folder_with_the_same_tracker(sd, tmp_path):
    """gloo DDP with 2 CPU processes on the SD folder (as in test_aria_trainer): the run
    completes, and every rank's copy of the sampler (tracker, normaliser) is the saved one."""
    out = tmp_path / "run"
    run_two_processes(*sd.distill(out, *ARIA, "--steps", "3", "--checkpoint-every", "0"))
    final = out / "checkpoints" / "step-0000003"
    assert (out / "samples" / "step-0000003.png").is_file()  # the main process decoded a grid
    main = json.loads((final / "trainer_state.json").read_text())["sampler"]
    ranks = [json.loads((final / f"rng-rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["sampler"] == ranks[1]["sampler"] == main
    assert ranks[0]["numpy"] != ranks[1]["numpy"]  # each rank draws its own samples
    assert main["observed_batches"] == 3 and sum(main["tracker"]["arrays"]["counts"]) > 0
    assert [r["step"] for r in metrics(out)] == [1, 2, 3]
