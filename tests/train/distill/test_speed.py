"""Speed options (aria_train.distill.speed) change how the step runs, never what it computes; the feature
hooks stay registered once, so torch.compile traces the UNet as one graph."""
import json

import pytest
import torch
from diffusers import UNet2DConditionModel

import aria_cli
from aria_train.distill.batches import Batch
from aria_train.distill.losses import LossWeights
from aria_train.diffusion.models.configs import tiny_unet_config
from aria_train.diffusion.models.feature_kd import FeatureHooks
from aria_train.diffusion.models.students import feature_layer_map, make_student
from aria_train.distill.speed import make_optimizer, prepare_unets
from aria_train.distill.step import StepModels, Student, train_step
from fixtures_train import make_distill_inputs


def _models(seed: int = 0, feature_kd: str = "blocks", **speed) -> StepModels:
    from diffusers import DDPMScheduler

    config = tiny_unet_config(sample_size=16, block_out_channels=(8, 16), cross_attention_dim=16,
                              attention_heads=2, norm_num_groups=4)
    torch.manual_seed(seed)
    teacher = UNet2DConditionModel(**config).eval().requires_grad_(False)
    student = make_student(teacher, "small")
    prepare_unets(teacher, student, **speed)
    return StepModels(teacher, Student(student), DDPMScheduler(num_train_timesteps=1000),
                      feature_layer_map(dict(teacher.config), dict(student.config), feature_kd))


def _batch(n: int = 3) -> Batch:
    import numpy as np

    g = torch.Generator().manual_seed(1)
    return Batch(x0=torch.randn(n, 3, 16, 16, generator=g), noise=torch.randn(n, 3, 16, 16, generator=g),
                 timesteps=torch.tensor([10, 500, 990][:n]), hidden=torch.randn(n, 6, 16, generator=g),
                 paired=torch.ones(n, dtype=torch.bool), prompt_ids=np.zeros(n, np.int64),
                 regions=np.zeros(n, np.int64), switched=np.zeros(n, bool), nulled=np.zeros(n, bool))


def _grads(models: StepModels) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in models.student.unet.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("speed", [{"gradient_checkpointing": True}, {"channels_last": True}])
def test_speed_options_keep_loss_and_gradients(speed):
    plain, fast = _models(), _models(**speed)
    assert fast.student.unet.training  # diffusers checkpoints only in training mode
    if "gradient_checkpointing" in speed:
        assert fast.student.unet.is_gradient_checkpointing and not plain.student.unet.is_gradient_checkpointing
    else:
        assert fast.teacher.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    weights = LossWeights(1.0, 1.0, 0.0)
    a, b = train_step(plain, _batch(), weights), train_step(fast, _batch(), weights)
    for key in ("loss", "out", "feat"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    ga, gb = _grads(plain), _grads(fast)
    assert ga.keys() == gb.keys() and len(ga) > 10
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("feature_kd, speed", [("blocks", {}), ("self-attention", {"gradient_checkpointing": True})])
def test_feature_hooks_are_registered_once_and_emptied_after_each_step(feature_kd, speed):
    """Nothing a hook captured outlives the step: with checkpointing, backward recomputes the
    self-attention modules inside checkpointed blocks and their hooks fire again."""
    models = _models(feature_kd=feature_kd, **speed)
    hooked = [m for m in models.teacher.modules() if m._forward_hooks]
    assert len(hooked) == len(models.layer_map)
    for _ in range(3):
        losses = train_step(models, _batch(), LossWeights(1.0, 1.0, 0.0))
        assert float(losses["feat"].detach()) > 0
        assert models.teacher_features.features == {} and models.student_features.features == {}
    assert [m for m in models.teacher.modules() if m._forward_hooks] == hooked
    assert all(len(m._forward_hooks) == 1 for m in hooked)


def test_hooked_unet_compiles_to_one_graph_and_still_captures_features():
    models = _models()
    batch = _batch()
    explanation = torch._dynamo.explain(models.teacher)(batch.x0, batch.timesteps, encoder_hidden_states=batch.hidden)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    assert sorted(models.teacher_features.features) == sorted(models.layer_map.values())


def test_feature_hooks_attach_is_idempotent_and_detach_removes():
    models = _models()
    hooks = FeatureHooks(models.teacher, ["down_blocks.0"]).attach().attach()
    assert len(models.teacher.down_blocks[0]._forward_hooks) == 2  # StepModels' own and this one
    hooks.detach()
    assert len(models.teacher.down_blocks[0]._forward_hooks) == 1


def _check_same_gradients_and_clear(eager: StepModels, compiled: StepModels) -> None:
    """The two students' gradients agree up to float32 summation order; then both are cleared."""
    ga, gb = _grads(eager), _grads(compiled)
    assert ga.keys() == gb.keys() and len(ga) > 10
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-7, msg=name)
    for models in (eager, compiled):
        models.student.zero_grad(set_to_none=True)


@pytest.mark.parametrize("speed, bf16", [({}, False), ({"channels_last": True}, False), ({}, True)])
def test_compiled_loss_gives_the_eager_loss_and_gradients(speed, bf16):
    """The loss as --compile compiles it: the step with it (inductor, on the CPU here) gives the
    eager step's losses up to float32 summation order, and its gradients, also on channels-last
    feature maps and on bf16 ones (under bf16 autocast, as on a GPU)."""
    from aria_train.distill.speed import compile_loss

    eager, compiled = _models(**speed), _models(**speed)
    compiled.loss_fn = compile_loss()
    weights = LossWeights(1.0, 1.0, 0.0)
    for _ in range(2):  # the second call runs the compiled graph without compiling again
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            a, b = train_step(eager, _batch(), weights), train_step(compiled, _batch(), weights)
        for key in ("loss", "out", "feat", "discrepancy"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7)
        assert float(a["feat"]) > 0
        _check_same_gradients_and_clear(eager, compiled)


def test_compiled_loss_as_the_trainer_uses_it():
    """Under --compile the trainer runs the compiled loss with whatever its config asks: the
    denoising term on a paired subset that changes from step to step (none paired: the term is
    0) and ARIA's per-sample weights; the compiled loss gives the eager losses and gradients."""
    import dataclasses

    from aria_train.distill.speed import compile_loss

    eager, compiled = _models(), _models()
    compiled.loss_fn = compile_loss()
    weights = LossWeights(1.0, 1.0, 1.0)
    for paired in ([True, False, True], [False, False, False], [False, True, False]):
        batch = dataclasses.replace(_batch(), paired=torch.tensor(paired), weights=torch.tensor([0.5, 2.0, 0.5]))
        a, b = train_step(eager, batch, weights), train_step(compiled, batch, weights)
        for key in ("loss", "out", "feat", "sd", "discrepancy"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7)
        assert (float(a["sd"]) > 0) == any(paired)
        _check_same_gradients_and_clear(eager, compiled)


def test_fused_optimizer_on_cuda_or_where_asked_for():
    """Fused AdamW on a GPU, and on the CPU only where asked (--feedback-lag 1 needs its found_inf)."""
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert not make_optimizer(params, 1e-3, 0.0, torch.device("cpu")).defaults["fused"]
    assert make_optimizer(params, 1e-3, 0.0, torch.device("cpu"), fused=True).defaults["fused"]
    assert make_optimizer(params, 1e-3, 0.0, torch.device("cuda")).defaults["fused"]  # built, never stepped


def test_distill_with_speed_options_records_them(tmp_path):
    paths = make_distill_inputs(tmp_path / "inputs")
    out = tmp_path / "run"
    assert aria_cli.main(paths.options(out, "--steps", "2", "--channels-last", "--gradient-checkpointing")) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["channels_last"] and config["gradient_checkpointing"] and not config["compile"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["loss"] > 0 for r in records)


@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_channels_last_unets_force_inductors_layout_optimisation(monkeypatch, channels_last):
    """With --channels-last, --compile hands inductor force_layout_optimization (its heuristic
    leaves UNets in NCHW between convolutions, so each convolution backward copied its gradient):
    both UNets get it, and torch accepts it as an inductor option (it checks the names at once)."""
    seen = []
    monkeypatch.setattr(UNet2DConditionModel, "compile", lambda self, **kwargs: seen.append(kwargs), raising=False)
    _models(compile=True, channels_last=channels_last)
    expected = {"force_layout_optimization": True} if channels_last else {}
    assert seen == [{"options": expected}] * 2
    torch.compile(torch.nn.Linear(2, 2), options=expected)
    with pytest.raises(RuntimeError, match="Unexpected optimization option"):  # the check is real
        torch.compile(torch.nn.Linear(2, 2), options={"force_layout_optimisation": True})


def test_compile_unets_with_cuda_graphs_asks_inductor_for_them(monkeypatch):
    """The CUDA-graph candidate of bench.distill_step --cuda-graphs: both UNets compiled with
    inductor's triton.cudagraphs beside the forced layout, an option torch accepts."""
    from aria_train.distill.speed import compile_unets

    seen = []
    monkeypatch.setattr(UNet2DConditionModel, "compile", lambda self, **kwargs: seen.append(kwargs), raising=False)
    models = _models()
    compile_unets(models.teacher, models.student.unet, channels_last=True, cuda_graphs=True)
    expected = {"force_layout_optimization": True, "triton.cudagraphs": True}
    assert seen == [{"options": expected}] * 2
    torch.compile(torch.nn.Linear(2, 2), options=expected)


def test_compile_unets_passes_inductor_options_torch_knows(monkeypatch):
    """bench.distill_step --inductor's candidates reach both UNets beside the forced layout, and
    the names docs/benchmarks.md's inductor candidates tried are options torch accepts."""
    from aria_train.distill.speed import compile_unets

    seen = []
    monkeypatch.setattr(UNet2DConditionModel, "compile", lambda self, **kwargs: seen.append(kwargs), raising=False)
    models = _models()
    candidates = {"coordinate_descent_tuning": True, "conv_1x1_as_mm": True}
    compile_unets(models.teacher, models.student.unet, channels_last=True, inductor=candidates)
    expected = {"force_layout_optimization": True, **candidates}
    assert seen == [{"options": expected}] * 2
    torch.compile(torch.nn.Linear(2, 2), options=expected)


@pytest.fixture
def process_switches():
    """Leave torch's process-wide TF32 and cuDNN benchmark switches as the test found them."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = before


def test_distill_sets_the_tf32_switch_from_its_config_at_every_start(tmp_path, process_switches):
    """--tf32 turns TF32 matrix products on for the run's process, and a run without it turns them
    off again (the switch is process-wide: a run must not inherit an earlier run's, or the teacher
    trainer's, setting); recorded with the run. cuDNN's benchmark mode is on in every run."""
    paths = make_distill_inputs(tmp_path / "inputs")
    for flag, expected in (("--tf32", True), ("--no-tf32", False)):
        torch.backends.cuda.matmul.allow_tf32 = not expected
        torch.backends.cudnn.benchmark = False
        out = tmp_path / flag
        assert aria_cli.main(paths.options(out, "--steps", "1", flag)) == 0
        assert torch.backends.cuda.matmul.allow_tf32 is expected
        assert torch.backends.cudnn.benchmark is True
        assert json.loads((out / "config.json").read_text())["tf32"] is expected


def test_both_unets_attend_through_pytorch_sdpa():
    from diffusers.models.attention_processor import AttnProcessor2_0

    models = _models()
    for unet in (models.teacher, models.student.unet):
        processors = unet.attn_processors
        assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())


def test_distill_help_lists_the_speed_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        aria_cli.main(["distill", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--compile", "--channels-last", "--gradient-checkpointing", "--teacher-fp8", "--tf32"):
        assert f"{flag}, --no-{flag[2:]}" in text
    assert "recompute the student's activations" in text


def test_distill_with_an_fp8_teacher(paths, tmp_path, monkeypatch):
    """--teacher-fp8 runs on the CPU (FP8 products emulated), reaches the teacher -- its eligible
    Linear layers become Float8Linear, the student's stay -- and is recorded with the run."""
    from aria_train.diffusion.models.fp8 import Float8Linear
    from aria_train.distill import speed

    seen = {}
    prepare = speed.prepare_unets

    def spy(teacher, student, **options):
        prepare(teacher, student, **options)
        seen.update(teacher=sum(isinstance(m, Float8Linear) for m in teacher.modules()),
                    student=sum(isinstance(m, Float8Linear) for m in student.modules()))

    monkeypatch.setattr(speed, "prepare_unets", spy)
    out = tmp_path / "run"
    assert aria_cli.main(paths.options(out, "--method", "rc", "--steps", "2", "--teacher-fp8")) == 0
    assert seen["teacher"] > 0 and seen["student"] == 0
    assert json.loads((out / "config.json").read_text())["teacher_fp8"] is True
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["loss"] > 0 for r in records)
