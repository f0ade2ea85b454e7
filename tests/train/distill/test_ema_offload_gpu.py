"""On a GPU, the offloaded EMA (aria_train.distill.ema_offload) reads the weights of the step it
closes, though it copies them on a side stream and the next optimizer step is launched right
after: the optimizer hooks order the two. Weights large enough that the copy takes milliseconds,
so an optimizer step that did not wait for it would overwrite weights mid-copy. Skipped without
CUDA (CI); run on a GPU with `python -m pytest --noconftest tests/train/distill/test_ema_offload_gpu.py`."""
from __future__ import annotations

import pytest
import torch
from diffusers.training_utils import EMAModel

from aria_train.distill.ema_offload import OffloadedEMA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("lag", [0, 1])
def test_offloaded_ema_on_a_gpu_is_the_on_device_ema(lag):
    """The loop's orders: lag 0 closes a step after its optimizer step; lag 1 during the next
    micro-batch, after its backward is launched and before its optimizer step."""
    torch.manual_seed(0)
    device = torch.device("cuda")
    weights = [torch.nn.Parameter(torch.randn(64, 1 << 20, device=device)) for _ in range(2)]  # 2 x 256 MiB
    optimizer = torch.optim.AdamW(weights, lr=0.1, fused=True)
    reference = EMAModel(weights, decay=0.9, foreach=True)
    offload = OffloadedEMA(EMAModel(weights, decay=0.9, foreach=True), weights, optimizer)
    target = torch.randn(64, 1 << 20, device=device)

    def close_step() -> None:
        reference.step(weights)
        offload.step(weights)

    steps = 12
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        sum(((w - target) ** 2).mean() for w in weights).backward()
        if lag and step:
            close_step()  # the step before, its weights not yet overwritten by this one's update
        optimizer.step()
        if not lag:
            close_step()
    if lag:
        close_step()
    shadow = offload.settled().shadow_params
    offload.close()
    assert offload.ema.optimization_step == reference.optimization_step == steps
    for host, on_device in zip(shadow, reference.shadow_params):
        assert host.device.type == "cpu"
        # the host's and the device's elementwise kernels may round the last bit differently; a
        # copy overtaken by the next update would be off by the learning rate's scale
        torch.testing.assert_close(host, on_device.cpu(), rtol=1e-6, atol=1e-6)
