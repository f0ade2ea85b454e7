"""The distillation trainer end to end: `aria distill` runs and their artefacts, exact resumption
(one and two processes), atomic checkpoints, non-finite losses and the step function, on tiny
CPU fixtures (tests/fixtures_train.py; the ``paths`` fixture is in this folder's conftest.py)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import aria_cli
from aria_train.runs.checkpoint import list_checkpoints, load_checkpoint, read_trainer_state
from aria_train.distill.config import DistillConfig
from aria_train.data.cache import TensorCacheWriter
from aria_train.distill.losses import LossWeights
from fixtures_train import MAX_TOKENS, TEXT_WIDTH, DistillPaths, distill, run_two_processes
from fixtures_train import run_metrics as metrics


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    (file,) = folder.glob("*.safetensors")
    return load_file(file)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("method", ["kd", "rc"])
def test_end_to_end_writes_every_artefact(paths, tmp_path, method):
    out = tmp_path / "run"
    assert distill(paths, out, "--method", method, "--steps", "4", "--sample-every", "2", "--checkpoint-limit", "1",
                   text_cache=method == "rc") == 0
    config = DistillConfig.load(out / "config.json")
    assert config.method == method and config.steps == 4 and config.batch_size == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert np.isfinite([r["loss"], r["out"], r["feat"]]).all() and r["nonfinite"] == 0
        assert sum(r["region_counts"]) + round(r["null_frac"] * 4) == 4  # every shown condition counted
        assert r["images_per_s"] > 0 and r["lr"] == config.lr
    switched = sum(r["switched_frac"] for r in records)
    assert switched == 0 if method == "kd" else switched > 0  # rc at lambda 5: P(no switch in 16) < 1e-3
    csv = (out / "metrics.csv").read_text().splitlines()
    assert len(csv) == 5 and "region_counts_2" in csv[0]
    assert {p.name for p in (out / "samples").iterdir()} == {"step-0000002.png", "step-0000004.png"}
    assert "finished at step 4" in (out / "log.txt").read_text()
    (ckpt,) = list_checkpoints(out / "checkpoints")  # retention limit 1
    assert ckpt.name == "step-0000004"
    for part in ("student", "student_ema", "accelerator", "trainer_state.json", "rng-rank0.json"):
        assert (ckpt / part).exists()
    from diffusers import UNet2DConditionModel

    student = UNet2DConditionModel.from_pretrained(ckpt / "student_ema")
    assert student.config.layers_per_block == 1 and student.config.mid_block_type is None  # BK-SDM Small
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["data_cursor"]["cursor"] == 16
    assert state["metrics_position"] == (out / "metrics.jsonl").stat().st_size


def test_student_learns_teacher(paths, tmp_path):
    out = tmp_path / "run"
    assert distill(paths, out, "--steps", "30", "--batch-size", "8", "--lr", "1e-3", "--log-every", "10",
                   "--checkpoint-every", "0") == 0
    first, *_, last = [json.loads(line)["out"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert last < first


RESUME_OPTIONS = ("--method", "rc", "--sampler", "region", "--grad-accum", "2", "--l-sd", "0.5",
                  "--channel-scale", "0.5", "--log-every", "3", "--checkpoint-every", "2", "--sample-every", "2")


def test_resume_is_exact(paths, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert distill(paths, straight, *RESUME_OPTIONS, "--steps", "6", text_cache=True) == 0
    # an interrupted run: it got to step 5 but its newest checkpoint (step 4) is all that survives;
    # its metrics and sample grid after step 4 must be redone
    assert distill(paths, split, *RESUME_OPTIONS, "--steps", "5", text_cache=True) == 0
    shutil.rmtree(split / "checkpoints" / "step-0000005")
    assert len(metrics(split)) == 2  # steps 3 and 5
    assert aria_cli.main(["distill", "--out", str(split), "--resume", "latest", "--steps", "6"]) == 0
    a, b = straight / "checkpoints" / "step-0000006", split / "checkpoints" / "step-0000006"
    for part in ("student", "student_ema", "accelerator"):
        assert_same_tensors(tensors(a / part), tensors(b / part))
    assert metrics(straight) == metrics(split)
    assert json.loads((a / "trainer_state.json").read_text())["sampler"] == {"num_regions": 3}
    assert json.loads((b / "rng-rank0.json").read_text()) == json.loads((a / "rng-rank0.json").read_text())


@pytest.mark.slow
def test_data_parallel_resume_is_exact(paths, tmp_path):
    """Two CPU processes (gloo DDP via torchrun): per-rank generators, gathered metrics and
    barrier-synchronised checkpoints; killing after step 4 and resuming from step 2 reproduces
    step 4 bitwise."""
    out = tmp_path / "run"
    run_two_processes(*paths.options(out, "--steps", "4", "--sampler", "region", "--grad-accum", "2", "--channel-scale", "0.5"))
    final = out / "checkpoints" / "step-0000004"
    assert (final / "rng-rank1.json").is_file() and (final / "accelerator" / "random_states_1.pkl").is_file()
    expected = {part: tensors(final / part) for part in ("student", "student_ema", "accelerator")}
    expected_metrics = metrics(out)
    assert len(expected_metrics) == 4 and sum(expected_metrics[0]["region_counts"]) + round(
        expected_metrics[0]["null_frac"] * 16) == 16  # 2 processes x 2 micro-batches x 4 samples, all counted
    shutil.rmtree(final)
    run_two_processes("distill", "--out", str(out), "--resume", "latest", "--steps", "4")
    for part, values in expected.items():
        assert_same_tensors(tensors(final / part), values)
    assert metrics(out) == expected_metrics


def test_checkpoint_write_killed_midway_keeps_previous(paths, tmp_path, monkeypatch):
    from diffusers.training_utils import EMAModel

    out = tmp_path / "run"
    assert distill(paths, out, "--steps", "2") == 0
    before = tensors(out / "checkpoints" / "step-0000002" / "student")

    def killed(self, path):
        Path(path).mkdir(parents=True)
        (Path(path) / "partial").write_bytes(b"\0" * 10)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(EMAModel, "save_pretrained", killed)
    assert distill(paths, out, "--resume", "latest", "--steps", "4") == 2
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-0000002"]
    assert (out / "checkpoints" / ".tmp-step-0000004").is_dir()  # the debris, ignored by loaders
    assert_same_tensors(tensors(out / "checkpoints" / "step-0000002" / "student"), before)
    # the previous checkpoint still resumes, and the next save clears the debris
    assert distill(paths, out, "--resume", "latest", "--steps", "4") == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]


def test_load_checkpoint_restores_ema(paths, tmp_path):
    from accelerate import Accelerator
    from diffusers import UNet2DConditionModel
    from diffusers.training_utils import EMAModel

    out = tmp_path / "run"
    assert distill(paths, out, "--steps", "2", "--student-variant", "tiny") == 0
    ckpt = out / "checkpoints" / "step-0000002"
    unet = UNet2DConditionModel.from_pretrained(ckpt / "student")
    ema = EMAModel([torch.zeros_like(p) for p in unet.parameters()], model_cls=UNet2DConditionModel,
                   model_config=unet.config)
    from aria_train.distill.step import Student

    accelerator = Accelerator()
    accelerator.prepare(Student(unet), torch.optim.AdamW(Student(unet).parameters()))
    state = read_trainer_state(ckpt, ("step", "sampler"))
    rng, noise = np.random.default_rng(), torch.Generator()
    load_checkpoint(accelerator, ckpt, ema, [n for n, _ in unet.named_parameters()], state["sampler"], rng, noise)
    assert state["step"] == 2 and ema.optimization_step == 2
    saved = tensors(ckpt / "student_ema")
    names = [name for name, _ in unet.named_parameters()]
    assert all(torch.equal(p, saved[n]) for n, p in zip(names, ema.shadow_params))


# ---------------------------------------------------------------- non-finite losses


def _nan_cache(paths: DistillPaths, root: Path, bad_rows) -> Path:
    from aria_train.data.cache import TensorCache

    cache = TensorCache(paths.paired)
    sample = cache.get("sample").clone()
    sample[list(bad_rows)] = float("nan")
    with TensorCacheWriter(root / "nan") as writer:
        writer.append(sample=sample, prompt_id=cache.get("prompt_id"))
    return root / "nan"


def test_nonfinite_step_is_skipped(paths, tmp_path):
    out = tmp_path / "run"
    cache = _nan_cache(paths, tmp_path, [5])
    # one epoch of 16 samples in 4 steps of 4: exactly one step holds the NaN sample
    assert aria_cli.main(paths.options(out, "--steps", "4", "--paired-cache", str(cache))) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["nonfinite"] == 1 and sum(r["skipped"] for r in records) == 1
    assert [r["loss"] is None for r in records].count(True) == 1
    student = tensors(out / "checkpoints" / "step-0000004" / "student")
    assert all(torch.isfinite(v).all() for v in student.values())


def test_too_many_nonfinite_aborts(paths, tmp_path, capsys):
    out = tmp_path / "run"
    cache = _nan_cache(paths, tmp_path, range(16))
    assert aria_cli.main(paths.options(out, "--steps", "10", "--paired-cache", str(cache), "--max-nonfinite", "2")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aria: error: 3 steps had a non-finite loss")
    # aborted during step 3: the checkpoint of step 2 (--checkpoint-every 2) is the last one
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-0000002"]
    assert "step 3: non-finite loss" in (out / "log.txt").read_text()


# ---------------------------------------------------------------- the step function


def _step_setup(paths):
    """(StepModels, the student UNet, the teacher, one micro-batch of 3) from the tiny fixtures."""
    from aria_train.conditioning.samplers import make_sampler
    from aria_train.diffusion.models.students import feature_layer_map, make_student
    from aria_train.distill.batches import BatchStream, ConditionEncoder
    from aria_train.distill.inputs import load_inputs
    from aria_train.distill.step import StepModels, Student

    config = DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired), pool=str(paths.pool),
                           batch_size=3, student_variant="base")
    inputs = load_inputs(config)
    unet = make_student(inputs.teacher, "base")
    models = StepModels(inputs.teacher, Student(unet), inputs.scheduler,
                        feature_layer_map(dict(inputs.teacher.config), dict(unet.config)))
    stream = BatchStream(config, inputs, make_sampler("uniform", len(inputs.pool), None),
                         ConditionEncoder(inputs, torch.device("cpu")), 0, 1, torch.device("cpu"))
    return models, unet, inputs.teacher, stream.next()


def test_train_step_without_accelerator(paths):
    from aria_train.distill.step import train_step

    models, unet, teacher, batch = _step_setup(paths)
    assert batch.x0.shape == (3, 3, 16, 16) and batch.hidden.shape == (3, MAX_TOKENS, TEXT_WIDTH)
    losses = train_step(models, batch, LossWeights(1.0, 1.0, 0.0))
    assert bool(losses["finite"]) and losses["discrepancy"].shape == (3,)
    assert all(p.grad is not None for p in unet.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())


def test_train_step_never_reads_a_tensor_on_the_host(paths, monkeypatch):
    """No value of the step's tensors is turned into a Python number or bool inside train_step
    (on a GPU each would wait for the device): the forward, the loss, ``finite`` and the backward
    are queued; the loop reads ``finite`` once, with the feedback. While it runs, every Python
    route to a value raises (``__bool__``, ``item``, ``tolist``, ``__float__``, ``__int__``,
    ``__index__``, ``numpy``, ``__array__``), and so does the operator all of the scalar ones end
    in (``aten._local_scalar_dense``), whichever way C++ reaches it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from aria_train.distill.step import train_step

    models, unet, _, batch = _step_setup(paths)

    def host_read(*args, **kwargs):
        raise AssertionError("train_step read a tensor's value on the host")

    class NoScalarReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                host_read()
            return func(*args, **(kwargs or {}))

    with monkeypatch.context() as patch:
        for name in ("__bool__", "item", "tolist", "__float__", "__int__", "__index__", "numpy", "__array__"):
            patch.setattr(torch.Tensor, name, host_read)
        with NoScalarReads():
            losses = train_step(models, batch, LossWeights(1.0, 1.0, 0.0))
    assert bool(losses["finite"]) and all(p.grad is not None for p in unet.parameters())
