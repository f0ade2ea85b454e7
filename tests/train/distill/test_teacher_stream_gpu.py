"""On a GPU, the teacher's forward on a second CUDA stream (``aria distill --teacher-stream``,
StepModels.teacher_stream) gives bitwise the losses, discrepancies and gradients of the teacher on
the current stream, step after step with AdamW between: the loss waits for the teacher, and the
memory the side stream allocates is not handed back to the other stream while still read. Models
large enough that each forward takes milliseconds, so a loss that did not wait would read a
prediction still being written. The kernels are the deterministic ones (SDPA's math backend among
them), and two runs on the current stream must agree first: that is the premise (on an H100 on
2026-12-06, with cuDNN's own attention and default algorithms, the gradients of two runs differed
while their losses agreed). Skipped without CUDA (CI); run on a GPU with
`python -m pytest --noconftest tests/train/distill/test_teacher_stream_gpu.py`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from aria_train.diffusion.models.configs import tiny_unet_config
from aria_train.diffusion.models.students import feature_layer_map, make_student
from aria_train.distill.batches import Batch
from aria_train.distill.losses import LossWeights
from aria_train.distill.speed import make_optimizer
from aria_train.distill.step import StepModels, Student, train_step


def _models(device: torch.device) -> StepModels:
    config = tiny_unet_config(sample_size=64, block_out_channels=(128, 256), cross_attention_dim=64,
                              attention_heads=4, norm_num_groups=32)
    torch.manual_seed(0)
    teacher = UNet2DConditionModel(**config).eval().requires_grad_(False).to(device, torch.bfloat16)
    student = make_student(teacher, "small").float().to(device)
    return StepModels(teacher, Student(student), DDPMScheduler(num_train_timesteps=1000),
                      feature_layer_map(dict(teacher.config), dict(student.config), "blocks"))


def _batch(step: int, n: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(step)
    return Batch(x0=torch.randn(n, 3, 64, 64, generator=g).to(device),
                 noise=torch.randn(n, 3, 64, 64, generator=g).to(device),
                 timesteps=torch.randint(0, 1000, (n,), generator=g).to(device),
                 hidden=torch.randn(n, 8, 64, generator=g).to(device),
                 paired=torch.ones(n, dtype=torch.bool, device=device), prompt_ids=np.zeros(n, np.int64),
                 regions=np.zeros(n, np.int64), switched=np.zeros(n, bool), nulled=np.zeros(n, bool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_teacher_on_a_side_stream_trains_bitwise_as_on_the_current_one(monkeypatch):
    # deterministic kernels, so that two runs can be equal bitwise: convolutions with one fixed
    # algorithm, cuBLAS with a fixed workspace, SDPA's math backend (the flash and memory-efficient
    # backwards accumulate in a varying order)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    torch.use_deterministic_algorithms(True)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            control, sequential, overlapped = (_history(stream) for stream in (False, False, True))
    finally:
        torch.use_deterministic_algorithms(False)
    _assert_same(control, sequential)  # the premise: here a step is a function of its inputs
    _assert_same(sequential, overlapped)


def _history(teacher_stream: bool) -> list:
    """Four steps' losses and gradients, AdamW between, with the teacher on a side stream or not."""
    device = torch.device("cuda")
    weights = LossWeights(1.0, 1.0, 0.0)
    models = _models(device)
    models.teacher_stream = torch.cuda.Stream(device) if teacher_stream else None
    optimizer = make_optimizer(models.student.parameters(), 1e-3, 1e-2, device)
    history = []
    for step in range(4):
        with torch.autocast("cuda", torch.bfloat16):
            losses = train_step(models, _batch(step, 16, device), weights)
        grads = [p.grad.clone() for p in models.student.parameters() if p.grad is not None]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(({k: v.detach().clone() for k, v in losses.items() if k in ("loss", "out", "feat", "discrepancy")},
                        grads))
    torch.cuda.synchronize()
    return history


def _assert_same(history_a: list, history_b: list) -> None:
    for (losses_a, grads_a), (losses_b, grads_b) in zip(history_a, history_b):
        assert losses_a.keys() == losses_b.keys() and float(losses_a["feat"]) > 0
        for key in losses_a:
            assert torch.equal(losses_a[key], losses_b[key]), key
        assert len(grads_a) == len(grads_b) > 10
        assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
