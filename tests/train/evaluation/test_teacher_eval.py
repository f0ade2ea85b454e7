"""Teacher training, DDIM + CFG sampling, the paired/text caches and `aria eval`, on a tiny CPU world.

One tiny teacher (9 regions, 8x8 pixels, a two-stage UNet, a few steps) is trained once per module
through the CLI and reused; it is not a good model, so the tests check exact properties
(determinism, identities, resumption, file contents), never sample quality.
"""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors import safe_open

import aria_cli
from aria_train.diffusion import sampling
from aria_train.runs.atomic import atomic_output_dir
from aria_train.data.cache import TensorCache
from aria_train.diffusion.loading import load_teacher
from aria_train.diffusion.sampling import to_model_space
from aria_train.diffusion.text import build_text_encoder, encode_prompts
from aria_train.worlds import World, WorldConfig
from cli_errors import refused

WORLD = {
    "image_size": 8, "colours": ["red", "green", "blue"], "shapes": ["circle", "square", "triangle"],
    "unseen": ["red triangle"], "under": ["green circle"], "pool_per_region": 6, "pool_per_under_region": 2,
    "paired_per_region": 2, "paired_per_under_region": 1, "heldout_per_region": 2,
}
TINY = ["--channels", "8", "16", "--layers-per-block", "1", "--attention-heads", "2", "--norm-groups", "4",
        "--text-hidden", "8", "--text-heads", "2", "--text-layers", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(teacher folder, world tables folder): a 3-step teacher and the world's parquet tables."""
    root = tmp_path_factory.mktemp("g2")
    (root / "world.json").write_text(json.dumps(WORLD))
    teacher = root / "teacher"
    code = aria_cli.main(["teacher", "--out", str(teacher), "--world", str(root / "world.json"), *TINY,
                          "--steps", "3", "--batch-size", "4", "--warmup-steps", "1", "--log-every", "2",
                          "--eval-per-region", "1", "--eval-steps", "2", "--no-progress"])
    assert code == 0
    tables = World(WorldConfig(**WORLD)).tables()
    for name, frame in tables.items():
        frame.to_parquet(root / f"{name}.parquet")
    return teacher, root


def run_cli(*argv) -> int:
    return aria_cli.main([str(a) for a in argv])


# ---------------------------------------------------------------- teacher


def test_teacher_folder_is_complete_and_loadable(setup):
    teacher, _ = setup
    unet, scheduler, tokenizer, text_encoder = load_teacher(teacher)
    assert scheduler.config.beta_schedule == "squaredcos_cap_v2" and scheduler.config.num_train_timesteps == 1000
    # The text encoder was trained with the UNet (it left its seeded initialisation) and is frozen now.
    initial = build_text_encoder(len(tokenizer), hidden=8, layers=1, heads=2, max_length=tokenizer.model_max_length)
    assert not torch.equal(initial.get_input_embeddings().weight, text_encoder.get_input_embeddings().weight)
    assert not any(p.requires_grad for p in text_encoder.parameters())
    assert unet.config.block_out_channels == [8, 16] and unet.config.cross_attention_dim == 8
    assert WorldConfig.load(teacher / "world.json") == WorldConfig(**WORLD)
    with safe_open(teacher / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # shipped in float16
    report = json.loads((teacher / "teacher_report.json").read_text())
    assert np.isfinite(report["eval_loss"]["all"]) and report["final_train_loss"] > 0
    assert report["save_dtype_change"]["relative_to_eval_loss"] < 1e-3  # float16 storage changes ~nothing
    regions = report["accuracy"]["per_region"]
    assert [r["region"] for r in regions] == list(range(9))
    assert all(0.0 <= r["all"] <= 1.0 and r["n"] == 1 for r in regions)
    groups = {g["group"]: g for g in report["accuracy"]["groups"]}
    assert set(groups) == {"seen", "unseen", "under", "all"}
    assert groups["unseen"]["regions"] == 1 and groups["unseen"]["worst_region"] == "red triangle"
    raw = UNet2DConditionModel.from_pretrained(teacher / "checkpoint" / "unet_raw")
    state = torch.load(teacher / "checkpoint" / "training_state.pt", weights_only=False)
    assert set(state) == {"step", "log", "train_seconds", "loss_sum", "loss_count", "optimizer", "lr_scheduler", "ema",
                          "text_encoder"}
    assert state["step"] == 3 and state["ema"]["optimization_step"] == 3
    # the shipped weights are the EMA, not the raw weights
    assert not all(torch.equal(a.half().float(), b) for a, b in zip(raw.parameters(), unet.parameters()))
    assert not list(teacher.parent.glob(".teacher.tmp-*"))


def test_teacher_refuses_existing_output_and_bad_config(setup, capsys):
    teacher, _ = setup
    assert run_cli("teacher", "--out", teacher, "--steps", "1") == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli("teacher", "--out", teacher.parent / "new", "--channels", "8") == 2
    assert "channels" in capsys.readouterr().err and not (teacher.parent / "new").exists()


# ---------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def stack(setup):
    teacher, _ = setup
    unet, scheduler, tokenizer, text_encoder = load_teacher(teacher)
    texts = ["a red circle", "a big blue square on a white background", "green triangle"]
    cond, _ = encode_prompts(tokenizer, text_encoder, texts, "cpu")
    null, _ = encode_prompts(tokenizer, text_encoder, [""], "cpu")
    return unet, dict(scheduler.config), cond, null


def test_sampling_is_deterministic_per_seed(stack):
    unet, config, cond, null = stack
    shape = sampling.sample_shape(unet)
    a = sampling.sample(unet, config, cond, null, [5, 6, 7], shape, steps=3)
    b = sampling.sample(unet, config, cond, null, [5, 6, 7], shape, steps=3)
    assert torch.equal(a, b)
    # A sample depends on its own prompt and seed only, not on its batch.
    alone = sampling.sample(unet, config, cond[1:2], null, [6], shape, steps=3)
    torch.testing.assert_close(alone[0], a[1], rtol=0, atol=1e-5)
    other = sampling.sample(unet, config, cond, null, [5, 9, 7], shape, steps=3)
    assert not torch.allclose(other[1], a[1])
    assert a.abs().max() <= 1.0 + 1e-6  # pixel teacher: DDIM clips x0 to [-1, 1]


def test_guidance_one_is_the_conditional_prediction(stack):
    unet, config, cond, null = stack
    x = sampling.seeded_noise(sampling.sample_shape(unet), [1, 2, 3])
    t = torch.tensor(500)
    with torch.no_grad():
        conditional = unet(x, t, encoder_hidden_states=cond).sample
        unconditional = unet(x, t, encoder_hidden_states=null.expand(3, -1, -1)).sample
    torch.testing.assert_close(sampling.guided_prediction(unet, x, t, cond, null, 1.0), conditional, rtol=0, atol=1e-5)
    torch.testing.assert_close(sampling.guided_prediction(unet, x, t, cond, null, 0.0), unconditional, rtol=0, atol=1e-5)
    # With guidance 1 the null prompt has no influence on the samples.
    shape = sampling.sample_shape(unet)
    with_null = sampling.sample(unet, config, cond, null, [1, 2, 3], shape, steps=3, guidance=1.0)
    with_other = sampling.sample(unet, config, cond, cond[:1], [1, 2, 3], shape, steps=3, guidance=1.0)
    torch.testing.assert_close(with_null, with_other, rtol=0, atol=1e-5)


def test_image_conversions_round_trip_and_grid(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(sampling.to_uint8_images(to_model_space(torch.from_numpy(images))), images)
    sampling.save_grid([images, images[:2]], ["teacher", "student"], tmp_path / "g.png", scale=2, pad=2)
    width, height = Image.open(tmp_path / "g.png").size
    assert height == 2 * (16 + 2) + 2 and width > 5 * (16 + 2)


# ---------------------------------------------------------------- cache


def cache_args(setup, out, *extra):
    teacher, root = setup
    return ["cache", "--teacher", teacher, "--paired", root / "paired.parquet", "--pool", root / "pool.parquet",
            "--out", out, "--steps", "2", "--batch-size", "2", "--shard-rows", "4", "--no-progress", *extra]


def test_cache_writes_samples_and_resumes_without_duplicates(setup, tmp_path, monkeypatch, capsys):
    teacher, root = setup
    paired = pd.read_parquet(root / "paired.parquet")
    pool = pd.read_parquet(root / "pool.parquet")
    assert run_cli(*cache_args(setup, tmp_path / "full", "--embed-pool")) == 0
    full = TensorCache(tmp_path / "full" / "paired")
    assert set(full.names) == {"sample", "prompt_index", "prompt_id"} and len(full) == len(paired)
    assert full.shape("sample") == (len(paired), 3, 8, 8)
    assert torch.equal(full.get("prompt_index"), torch.arange(len(paired)))
    assert pool["text"].to_numpy()[full.get("prompt_id").numpy()].tolist() == paired["text"].tolist()
    # the teacher folder's sampling.json (1.0, written by train_teacher) is the default guidance
    assert full.metadata["steps"] == 2 and full.metadata["guidance"] == 1.0 and full.metadata["seed"] == 0

    # The samples are the teacher's DDIM + CFG samples of the paired prompts from seeds 0..N-1.
    unet, scheduler, tokenizer, text_encoder = load_teacher(teacher)
    expect = sampling.sample_texts(unet, dict(scheduler.config), tokenizer, text_encoder,
                                   paired["text"].tolist()[:3], [0, 1, 2], steps=2, guidance=1.0)
    torch.testing.assert_close(full.get("sample", [0, 1, 2]), expect, rtol=0, atol=1e-5)
    text = TensorCache(tmp_path / "full" / "text")
    hidden, _ = encode_prompts(tokenizer, text_encoder, pool["text"].tolist(), "cpu")
    assert torch.equal(text.get("hidden"), hidden)

    # Interrupt after three batches of 2 (one shard of 4 rows written), then run again.
    real, calls = sampling.sample, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "sample", interrupted)
    assert run_cli(*cache_args(setup, tmp_path / "resumed")) == 130
    assert TensorCache(tmp_path / "resumed" / "paired", allow_incomplete=True).__len__() == 4
    monkeypatch.setattr(sampling, "sample", real)
    assert run_cli(*cache_args(setup, tmp_path / "resumed")) == 0
    resumed = TensorCache(tmp_path / "resumed" / "paired")
    assert torch.equal(resumed.get("prompt_index"), torch.arange(len(paired)))
    torch.testing.assert_close(resumed.get("sample"), full.get("sample"), rtol=0, atol=1e-5)
    # A finished cache is left alone; other settings are refused rather than mixed in.
    assert run_cli(*cache_args(setup, tmp_path / "resumed")) == 0
    assert len(TensorCache(tmp_path / "resumed" / "paired")) == len(paired)
    capsys.readouterr()
    assert run_cli(*cache_args(setup, tmp_path / "resumed", "--guidance", "3")) == 2
    assert "guidance" in capsys.readouterr().err


def test_cache_refuses_steps_past_the_schedule_and_non_finite_samples(setup, tmp_path, capsys):
    """More DDIM steps than the teacher's training timesteps: refused before the cache folder is
    made (it used to be left behind, blocking the corrected rerun). A guidance that overflows:
    refused at the first batch, no shard written (it used to write a cache of NaN with exit 0)."""
    refused(cache_args(setup, tmp_path / "steps", "--steps", "1001"), capsys, "--steps must be <= the teacher's 1000")
    assert not (tmp_path / "steps").exists()
    refused(cache_args(setup, tmp_path / "nan", "--guidance", "1e308"), capsys, "are not finite")
    assert not list((tmp_path / "nan").rglob("*.safetensors"))


def test_cache_compile_compiles_the_teacher_unet_and_is_recorded(setup, tmp_path, monkeypatch, capsys):
    """--compile compiles the UNet the sampling calls (stubbed here: inductor takes minutes on a
    CPU) and is part of the cache's settings: continuing it without --compile is refused."""
    compiled = []
    monkeypatch.setattr(UNet2DConditionModel, "compile", lambda self, **options: compiled.append(options))
    assert run_cli(*cache_args(setup, tmp_path / "c", "--compile")) == 0
    assert compiled == [{}]
    assert TensorCache(tmp_path / "c" / "paired").metadata["compile"] is True
    capsys.readouterr()
    assert run_cli(*cache_args(setup, tmp_path / "c")) == 2  # other settings: not mixed in
    assert "compile" in capsys.readouterr().err
    assert run_cli(*cache_args(setup, tmp_path / "plain")) == 0
    assert "compile" not in TensorCache(tmp_path / "plain" / "paired").metadata and compiled == [{}]


# ---------------------------------------------------------------- eval


def students(setup, tmp_path):
    """A copy of the teacher's UNet (folder) and a perturbed one inside a fake distillation run dir."""
    teacher, _ = setup
    unet = UNet2DConditionModel.from_pretrained(teacher / "unet")
    unet.save_pretrained(tmp_path / "copy")
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in unet.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    step = tmp_path / "run" / "checkpoints" / "step-0000007"
    unet.save_pretrained(step / "student_ema")
    (step / "trainer_state.json").write_text("{}")
    return tmp_path / "copy", tmp_path / "run"


def test_eval_end_to_end(setup, tmp_path, capsys):
    teacher, root = setup
    copy, run = students(setup, tmp_path)
    out = tmp_path / "eval"
    assert run_cli("eval", "--teacher", teacher, "--student", copy, "--student", run, "--heldout",
                   root / "heldout.parquet", "--out", out, "--samples-per-region", "1", "--steps", "2",
                   "--timesteps", "100", "900") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["x0"] == "render" and results["prompts"] == 9 * 2
    same, perturbed = results["discrepancy"]["copy"], results["discrepancy"]["run"]
    assert all(r["all"] == 0.0 and r["100"] == 0.0 for r in same["per_region"])  # identical model: exactly 0
    assert all(r["all"] > 0.0 and r["100"] > 0.0 and r["900"] > 0.0 for r in perturbed["per_region"])
    groups = {g["group"]: g for g in perturbed["groups"]}
    assert set(groups) == {"seen", "unseen", "under", "all", "weighted"}
    assert groups["all"]["worst"] == max(r["all"] for r in perturbed["per_region"])
    # The p(t)-weighted view is p(100) D(100) + p(900) D(900) over p(100) + p(900), with RC's
    # p(t) = exp(-5 (1 - t / 1000)); the text-sensitive view is the t >= 700 column alone.
    p100, p900 = np.exp(-5 * 0.9), np.exp(-5 * 0.1)
    for r in perturbed["per_region"]:
        assert r["pt"] == pytest.approx((p100 * r["100"] + p900 * r["900"]) / (p100 + p900), rel=1e-12)
        assert r["text"] == pytest.approx(r["900"], rel=1e-12)
    # The weighted row weights each region by its share of the world's pool.
    pool = World(WorldConfig.load(teacher / "world.json")).tables()["pool"]
    shares = pool.groupby("region").size() / len(pool)
    direct = sum(shares[r["region"]] * r["all"] for r in perturbed["per_region"]) / \
        sum(shares[r["region"]] for r in perturbed["per_region"])
    assert groups["weighted"]["mean"] == pytest.approx(direct, rel=1e-12)
    # The identical student draws the teacher's very samples, so it reads the same attributes.
    assert results["accuracy"]["copy"]["per_region"] == results["accuracy"]["teacher"]["per_region"]
    disc = pd.read_csv(out / "discrepancy.csv")
    assert set(disc["model"]) == {"copy", "run"} and set(disc["t"].astype(str)) == {"all", "text", "pt", "100", "900"}
    assert set(pd.read_csv(out / "accuracy.csv")["model"]) == {"teacher", "copy", "run"}
    assert set(pd.read_csv(out / "summary.csv")["metric"]) == {"discrepancy", "discrepancy_text", "discrepancy_pt",
                                                               "accuracy"}
    for group in ("seen", "unseen", "under"):
        assert Image.open(out / f"grid_{group}.png").size[1] == 3 * (16 + 2) + 2  # teacher + 2 students
    printed = capsys.readouterr().out
    assert "unseen (1 regions)" in printed and "red triangle" in printed

    # Clean images from the teacher's own samples instead of renders; no sampling of students.
    out2 = tmp_path / "eval2"
    assert run_cli("eval", "--teacher", teacher, "--student", copy, "--heldout", root / "heldout.parquet",
                   "--out", out2, "--x0", "teacher", "--samples-per-region", "0", "--steps", "2",
                   "--max-per-region", "1") == 0
    results = json.loads((out2 / "results.json").read_text())
    assert results["x0"] == "teacher" and results["prompts"] == 9 and results["accuracy"] == {}
    assert all(r["all"] == 0.0 and r["n"] == 1 for r in results["discrepancy"]["copy"]["per_region"])
    assert not list(out2.glob("*.png")) and not (out2 / "accuracy.csv").exists()


def test_eval_bad_inputs_leave_nothing(setup, tmp_path, capsys):
    teacher, root = setup
    copy, _ = students(setup, tmp_path)
    heldout = root / "heldout.parquet"
    corrupt = tmp_path / "corrupt"
    shutil.copytree(teacher, corrupt, ignore=shutil.ignore_patterns("checkpoint"))
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "empty.txt").write_text("\n")
    cases = [
        (tmp_path / "missing", copy, heldout, "not found"),
        (corrupt, copy, heldout, "cannot load"),
        (teacher, copy, tmp_path / "empty.txt", "empty"),
        (teacher, tmp_path / "nothing", heldout, "not found"),
    ]
    for teacher_dir, student, held, message in cases:
        out = tmp_path / "out"
        assert run_cli("eval", "--teacher", teacher_dir, "--student", student, "--heldout", held, "--out", out) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("aria: error:") and message in err and len(err.splitlines()) == 1
        assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_atomic_output_dir_removes_partial_output(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "done.json").write_text("{}")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["done.json"]
