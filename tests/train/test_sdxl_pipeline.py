"""A Stable Diffusion XL folder end to end: `aria cache` -> `aria regions` -> `aria distill` (rc and
aria into KOALA students, one process and two) -> `aria eval`, on a tiny random SDXL folder
(tests/sdxl_pipeline.py), through the real CLI entry points.

What only an SDXL folder has: two text encoders whose penultimate hidden states are concatenated,
the pooled projection and the six time ids of the UNet's added embedding, the null text as zeros,
the Euler scheduler config. The models are random: the tests check exact properties (identity
with diffusers' own StableDiffusionXLPipeline, shapes, derived configs, exact resumption) and
that distillation lowers the discrepancy, never sample quality.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import aria_cli
from aria_train.data.cache import TensorCache
from aria_train.diffusion.loading import load_region_encoder, load_teacher, open_teacher
from aria_train.diffusion.models.students import make_student
from aria_train.diffusion.prompts import TextConditioning, unet_inputs
from cli_errors import refused
from fixtures_train import DistillPaths, assert_resumes_exactly, run_two_processes
from sd_pipeline import SUBJECTS
from sdxl_pipeline import (IMAGE_SIZE, LATENT_CHANNELS, LATENT_SIZE, MAX_TOKENS, POOLED_WIDTH, SCALING_FACTOR,
                           TIME_IDS, WIDTHS, make_tiny_sdxl_folder, write_prompt_files)

CACHE_STEPS = 2  # DDIM steps of the paired cache (guidance: the default 7.5)
ARIA = ("--method", "aria", "--aria-warmup", "1")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*argv) -> int:
    return aria_cli.main([str(a) for a in argv])


class SDXL:
    """The module's shared inputs and outputs: teacher folder, prompt files, caches, regions."""

    def __init__(self, root: Path):
        self.root = root
        self.teacher = make_tiny_sdxl_folder(root)
        self.prompts = write_prompt_files(root)
        self.cache = root / "cache"
        self.regions = root / "regions"
        self.paths = DistillPaths(self.teacher, self.regions / "regions.parquet", self.cache / "paired",
                                  self.cache / "text")

    def distill(self, out: Path, *extra: str) -> list[str]:
        """`aria distill` arguments: the k-means regions as the pool, tiny fast settings."""
        return self.paths.options(out, "--lr", "1e-3", "--sample-every", "3", *extra)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory) -> SDXL:
    """The SDXL folder, its paired + text caches (`aria cache`) and k-means regions (`aria regions`)."""
    sdxl = SDXL(tmp_path_factory.mktemp("sdxl"))
    assert cli("cache", "--teacher", sdxl.teacher, "--paired", sdxl.prompts.paired, "--pool", sdxl.prompts.pool,
               "--embed-pool", "--out", sdxl.cache, "--steps", CACHE_STEPS, "--batch-size", 4, "--no-progress") == 0
    assert cli("regions", "--teacher", sdxl.teacher, "--prompts", sdxl.prompts.pool, "--k", len(SUBJECTS),
               "--out", sdxl.regions) == 0
    return sdxl


@pytest.fixture(scope="module")
def runs(sdxl) -> dict[str, Path]:
    """An rc run of 6 steps into KOALA-1B with self-attention feature KD, an aria run of 3 into
    KOALA-700M with block-output feature KD and the pool's text cache (so the cached pooled
    projections), and the untrained KOALA-700M student."""
    out = {"rc": sdxl.root / "rc", "aria": sdxl.root / "aria", "initial": sdxl.root / "initial"}
    assert cli(*sdxl.distill(out["rc"], "--method", "rc", "--student-variant", "koala-1b", "--steps", "6",
                             "--feature-kd", "self-attention")) == 0
    assert cli(*sdxl.distill(out["aria"], *ARIA, "--student-variant", "koala-700m", "--steps", "3",
                             "--text-cache", sdxl.cache / "text")) == 0
    make_student(open_teacher(sdxl.teacher).unet, "koala-700m").save_pretrained(out["initial"])
    return out


# ---------------------------------------------------------------- the folder and its conditioning


def test_folder_is_an_sdxl_checkpoint_and_loads_as_its_pipeline_conditions(sdxl):
    """The folder is what StableDiffusionXLPipeline.save_pretrained writes; our loader reads its
    Euler config as DDPM (SD's betas, no clipping, leading spacing), and encodes prompts exactly
    as the pipeline's encode_prompt does: penultimate states of both encoders side by side, the
    second encoder's pooled projection, zeros for the null text."""
    from diffusers import StableDiffusionXLPipeline

    from aria_train.diffusion.sampling import make_ddim

    index = json.loads((sdxl.teacher / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline" and index["force_zeros_for_empty_prompt"] is True
    assert index["scheduler"] == ["diffusers", "EulerDiscreteScheduler"]
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl.teacher, local_files_only=True)
    teacher = open_teacher(sdxl.teacher)
    prompts = teacher.prompts
    assert prompts.sdxl and prompts.zero_null and prompts.time_ids == TIME_IDS
    assert pipe.vae.config.scaling_factor == SCALING_FACTOR and pipe.vae_scale_factor * LATENT_SIZE == IMAGE_SIZE
    torch.testing.assert_close(teacher.scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod, rtol=0, atol=0)
    ddim = make_ddim(dict(teacher.scheduler.config))
    assert ddim.config.clip_sample is False and ddim.config.prediction_type == "epsilon"
    ddim.set_timesteps(CACHE_STEPS)
    assert ddim.timesteps.tolist() == [501, 1]  # "leading" spacing + steps_offset, as SDXL samples
    assert prompts.tokenizers[1].pad_token == "!" and prompts.tokenizers[0].pad_token == "<|endoftext|>"

    texts = ["a photo of a red cat", "a photo of a blue bird"]
    cond = prompts.encode(texts)
    assert isinstance(cond, TextConditioning)
    assert cond.hidden.shape == (2, MAX_TOKENS, sum(WIDTHS)) and cond.text_embeds.shape == (2, POOLED_WIDTH)
    assert cond.time_ids.tolist() == [list(TIME_IDS)] * 2
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(texts, device="cpu", do_classifier_free_guidance=True)
    torch.testing.assert_close(cond.hidden, embeds, rtol=0, atol=0)
    torch.testing.assert_close(cond.text_embeds, pooled, rtol=0, atol=0)
    null = prompts.null()
    assert not null.hidden.any() and not null.text_embeds.any() and null.time_ids.tolist() == [list(TIME_IDS)]
    assert not negative.any() and not negative_pooled.any()
    kwargs = unet_inputs(cond[0:1], torch.float64)
    assert set(kwargs) == {"encoder_hidden_states", "added_cond_kwargs"}
    assert all(t.dtype == torch.float64 for t in (kwargs["encoder_hidden_states"], *kwargs["added_cond_kwargs"].values()))
    with pytest.raises(ValueError, match="Stable Diffusion XL folder"):
        load_teacher(sdxl.teacher)  # the one-encoder API refuses it instead of dropping an encoder


def test_null_text_is_encoded_when_the_folder_does_not_force_zeros(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    folder = make_tiny_sdxl_folder(tmp_path, force_zeros_for_empty_prompt=False, prediction_type="v_prediction")
    teacher = open_teacher(folder)
    assert not teacher.prompts.zero_null and teacher.scheduler.config.prediction_type == "v_prediction"
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True)
    _, negative, _, negative_pooled = pipe.encode_prompt(["a cat"], device="cpu", do_classifier_free_guidance=True)
    null = teacher.prompts.null()
    assert null.hidden.abs().sum() > 0
    torch.testing.assert_close(null.hidden, negative, rtol=0, atol=0)
    torch.testing.assert_close(null.text_embeds, negative_pooled, rtol=0, atol=0)


# ---------------------------------------------------------------- cache and regions


def test_cache_holds_latents_of_diffusers_own_sdxl_pipeline(sdxl):
    """The paired cache holds (N, 4, 8, 8) latents, and they are what diffusers'
    StableDiffusionXLPipeline with DDIM samples from the same initial noise (CFG 7.5, zero null
    text, default time ids), to float32 rounding (1e-5). The reference DDIM gets clip_sample False, as our loader
    reads a scheduler config that does not set it (SDXL's Euler config never clips)."""
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline

    from aria_train.diffusion.sampling import seeded_noise

    paired = pd.read_parquet(sdxl.prompts.paired)["text"].tolist()
    pool = pd.read_parquet(sdxl.prompts.pool)["text"].tolist()
    cache = TensorCache(sdxl.cache / "paired")
    assert cache.shape("sample") == (len(paired), LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    samples = cache.get("sample")
    assert torch.isfinite(samples).all() and samples.std() > 0
    assert [pool[i] for i in cache.get("prompt_id").tolist()] == paired
    text = TensorCache(sdxl.cache / "text")
    assert text.shape("hidden") == (len(pool), MAX_TOKENS, sum(WIDTHS))
    assert text.shape("text_embeds") == (len(pool), POOLED_WIDTH)

    scheduler = DDIMScheduler.from_pretrained(sdxl.teacher, subfolder="scheduler", local_files_only=True,
                                              clip_sample=False)
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl.teacher, scheduler=scheduler, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    rows = [0, 5]
    noise = seeded_noise((LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE), rows)
    expect = pipe([paired[i] for i in rows], num_inference_steps=CACHE_STEPS, guidance_scale=7.5,
                  latents=noise, output_type="latent").images
    # float32 rounding only: the cache sampled 4 prompts per batch, the pipeline 2 (measured: at most
    # 1.1e-5 on latents of magnitude up to ~4)
    torch.testing.assert_close(samples[rows], expect, rtol=1e-5, atol=1e-5)


def test_regions_cluster_the_pooled_projection_of_the_second_encoder(sdxl):
    from aria_train.diffusion.text import encode_prompts

    pool = pd.read_parquet(sdxl.prompts.pool)
    table = pd.read_parquet(sdxl.regions / "regions.parquet")
    assert table["text"].tolist() == pool["text"].tolist()
    centroids = np.load(sdxl.regions / "centroids.npy")
    assert centroids.shape == (len(SUBJECTS), POOLED_WIDTH)
    prompts = open_teacher(sdxl.teacher).prompts
    pooled = prompts.encode(pool["text"].tolist()).text_embeds  # what the UNet's added embedding sees
    torch.testing.assert_close(TensorCache(sdxl.regions / "embeddings").get("pooled"), pooled)
    tokenizer_2, encoder_2, parts = load_region_encoder(sdxl.teacher)
    assert parts == ("tokenizer_2", "text_encoder_2") and tokenizer_2.pad_token == "!"
    torch.testing.assert_close(encode_prompts(tokenizer_2, encoder_2, pool["text"].tolist(), "cpu")[1], pooled)
    nearest = torch.cdist(pooled, torch.from_numpy(centroids)).argmin(1).numpy()
    assert np.array_equal(nearest, table["region"].to_numpy())


# ---------------------------------------------------------------- distillation and evaluation


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method,steps,variant", [("rc", 6, "koala-1b"), ("aria", 3, "koala-700m")])
def test_distill_trains_koala_students_of_the_sdxl_teacher(sdxl, runs, method, steps, variant):
    from aria_train.diffusion.models.koala import derive_koala_config

    out = runs[method]
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert all(np.isfinite(r[k]) for r in records for k in ("loss", "out", "feat"))
    assert all(r["feat"] > 0 for r in records)  # feature KD on a layer map derived from both configs
    if method == "aria":
        assert all(len(r["pi"]) == len(SUBJECTS) and abs(sum(r["pi"]) - 1) < 1e-12 for r in records)
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == [f"step-{s:07d}.png" for s in range(3, steps + 1, 3)]
    teacher = json.loads((sdxl.teacher / "unet" / "config.json").read_text())
    student = json.loads((out / "checkpoints" / f"step-{steps:07d}" / "student_ema" / "config.json").read_text())
    expect = derive_koala_config(teacher, variant)
    for key in ("transformer_layers_per_block", "layers_per_block", "mid_block_type", "addition_embed_type",
                "projection_class_embeddings_input_dim", "cross_attention_dim", "block_out_channels"):
        assert student[key] == expect[key], key
    assert teacher["transformer_layers_per_block"] == [1, 2] and student["transformer_layers_per_block"] == [1, 1]


def test_eval_of_koala_students_against_the_sdxl_teacher(sdxl, runs, tmp_path):
    out = tmp_path / "eval"
    assert cli("eval", "--teacher", sdxl.teacher, "--student", runs["initial"], "--student", runs["rc"],
               "--student", runs["aria"], "--heldout", sdxl.prompts.heldout, "--out", out,
               "--steps", 2, "--samples-per-region", 1, "--timesteps", 100, 500, 900) == 0
    results = json.loads((out / "results.json").read_text())
    disc = results["discrepancy"]
    assert set(disc) == {"initial", "rc", "aria"} and results["x0"] == "teacher"
    for value in disc.values():
        assert all(np.isfinite(r[t]) and r[t] > 0 for r in value["per_region"] for t in ("all", "100", "500", "900"))
    mean = {name: value["mean"] for name, value in disc.items()}
    # distillation brings the students closer to the teacher than KOALA-700M's initialisation
    # (measured: 0.100 initial; rc 0.064 after 6 steps, aria 0.075 after 3)
    assert mean["rc"] < mean["initial"] and mean["aria"] < mean["initial"]
    assert (out / "grid_seen.png").is_file() and (out / "grid_unseen.png").is_file()


def test_koala_distillation_of_the_sdxl_teacher_resumes_exactly(sdxl, tmp_path):
    """aria with the text cache (cached pooled projections) into KOALA-700M, self-attention
    feature KD and the held-out monitor: a run killed after step 3 and resumed from step 2 logs
    what the straight run logs."""
    straight = assert_resumes_exactly(sdxl.paths, tmp_path, *ARIA, "--student-variant", "koala-700m",
                                      "--feature-kd", "self-attention",
                                      "--text-cache", str(sdxl.paths.text), "--checkpoint-every", "2",
                                      "--heldout", str(sdxl.regions / "regions.parquet"), "--heldout-every", "2")
    records = metrics(straight)
    assert all("heldout" in r for r in records if r["step"] % 2 == 0) and all(r["feat"] > 0 for r in records)


def test_self_attention_feature_map_follows_the_weight_mapping_on_sdxl_base():
    """On SDXL base's config, KOALA-700M: one pair per transformer block the student keeps
    (encoder 2 + 5, decoder 2 x 5 + 2 x 2), each with the teacher self-attention its weights are
    copied from (KOALA-1B adds its mid-block's, paired by name: the rc run of `runs` uses that)."""
    from aria_train.diffusion.models.configs import SDXL_BASE_UNET_CONFIG
    from aria_train.diffusion.models.students import (derive_student_config, feature_layer_channels,
                                                      feature_layer_map, weight_sources)

    student = derive_student_config(SDXL_BASE_UNET_CONFIG, "koala-700m")
    layer_map = feature_layer_map(SDXL_BASE_UNET_CONFIG, student, "self-attention")
    sources = weight_sources(SDXL_BASE_UNET_CONFIG, student)
    assert len(layer_map) == 21 and all(s.endswith(".attn1") for s in layer_map)
    assert all(sources[f"{s}.to_q.weight"] == f"{t}.to_q.weight" for s, t in layer_map.items())
    assert layer_map["up_blocks.0.attentions.1.transformer_blocks.0.attn1"] == \
        "up_blocks.0.attentions.2.transformer_blocks.0.attn1"  # RC's decoder pair 1 <- teacher pair 2
    channels = feature_layer_channels(SDXL_BASE_UNET_CONFIG, student, "self-attention")
    assert all(cs == ct for cs, ct in channels.values()) and {cs for cs, _ in channels.values()} == {640, 1280}


@pytest.mark.slow
def test_two_processes_distil_the_sdxl_folder_with_the_same_tracker(sdxl, tmp_path):
    out = tmp_path / "run"
    run_two_processes(*sdxl.distill(out, *ARIA, "--student-variant", "koala-700m", "--steps", "2",
                                    "--checkpoint-every", "0", "--sample-every", "0"))
    final = out / "checkpoints" / "step-0000002"
    main = json.loads((final / "trainer_state.json").read_text())["sampler"]
    ranks = [json.loads((final / f"rng-rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["sampler"] == ranks[1]["sampler"] == main
    assert [r["step"] for r in metrics(out)] == [1, 2]


# ---------------------------------------------------------------- malformed folders


def _broken(sdxl, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(sdxl.teacher, folder)
    return folder


def _text_encoder(width: int, projection: int, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=1000, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=MAX_TOKENS, projection_dim=projection)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


@pytest.mark.parametrize("case,needles", [
    ("no_second_encoder", ("SDXL teacher folder", "lacks text_encoder_2/")),
    ("widths", ("text encoder widths 16 + 64 = 80 != UNet cross_attention_dim 96",)),
    ("pooled_width", ("added embedding takes 80 inputs", "pooled projection (8)")),
    ("no_projection", ("text_encoder_2/ is CLIPTextModel", "CLIPTextModelWithProjection")),
])
def test_malformed_sdxl_folders_are_refused_in_one_line(sdxl, tmp_path, capsys, case, needles):
    folder = _broken(sdxl, tmp_path, case)
    if case == "no_second_encoder":
        shutil.rmtree(folder / "text_encoder_2")
    elif case == "widths":
        shutil.rmtree(folder / "text_encoder")
        _text_encoder(16, 16, False).save_pretrained(folder / "text_encoder")
    else:
        shutil.rmtree(folder / "text_encoder_2")
        _text_encoder(WIDTHS[1], 8, case == "pooled_width").save_pretrained(folder / "text_encoder_2")
    refused(["cache", "--teacher", folder, "--paired", sdxl.prompts.paired, "--out", tmp_path / "out"], capsys, *needles)
