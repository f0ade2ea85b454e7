"""``--ema-offload`` (aria_train.distill.ema_offload): the student's EMA held and updated in host
memory. On a CPU its update is EMAModel's, bitwise, and a run with it is the run without it
(weights, EMA, metrics, checkpoints), with lag 0 or 1; a run may be resumed with it switched."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from diffusers.training_utils import EMAModel

from aria_train.conditioning.aria import AriaOptions
from aria_train.distill.ema_offload import OffloadedEMA
from aria_train.distill.loop import train
from test_prefetch import aria_config, assert_same_run


def test_offloaded_update_is_emamodels_bitwise():
    """Every update (through the decay's warm-up) leaves the shadow weights and counters EMAModel's
    own update leaves; a frozen parameter is copied, as EMAModel copies it."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in ((7, 5), (3,), (2, 4, 4))]
    params[1].requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in params if p.requires_grad], lr=0.1)
    reference = EMAModel(params, decay=0.99, foreach=True)
    offload = OffloadedEMA(EMAModel(params, decay=0.99, foreach=True), params, optimizer)
    for _ in range(30):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))
        reference.step(params)
        offload.step(params)
    settled = offload.settled()
    offload.close()
    assert settled.optimization_step == reference.optimization_step == 30
    assert settled.cur_decay_value == reference.cur_decay_value
    assert all(torch.equal(a, b) for a, b in zip(settled.shadow_params, reference.shadow_params))
    assert torch.equal(settled.shadow_params[1], params[1])


def test_an_update_that_failed_raises_where_the_ema_is_read(monkeypatch):
    params = [torch.nn.Parameter(torch.ones(3))]
    offload = OffloadedEMA(EMAModel(params, foreach=True), params, torch.optim.SGD(params, lr=0.1))

    def fail(*_):
        raise RuntimeError("the host update failed")

    monkeypatch.setattr(offload, "_update", fail)
    offload.step(params)
    with pytest.raises(RuntimeError, match="host update failed"):
        offload.settled()
    offload.close()


def offload_config(paths, **fields):
    """ARIA, 4 steps of 2 micro-batches, checkpoints at 2 and 4; ``fields`` override."""
    return aria_config(paths, **{"aria": AriaOptions(warmup=1, unbiased=True), "batch_size": 4, "grad_accum": 2,
                                 "steps": 4, "log_every": 1, "checkpoint_every": 2, "checkpoint_limit": 0,
                                 "sample_every": 0, "channel_scale": 0.5, **fields})


@pytest.mark.parametrize("lag", [0, 1])
def test_offloaded_run_is_the_run_and_resumes_with_it_switched(paths, tmp_path, lag, monkeypatch):
    """With the EMA offloaded the run leaves bitwise the same files (the EMA in every checkpoint
    included); a run checkpointed without it and resumed with it ends where both did."""
    updates = []  # the host thread's updates: one per optimizer step, where the flag is given
    real_update = OffloadedEMA._update
    monkeypatch.setattr(OffloadedEMA, "_update", lambda self, *args: (updates.append(1), real_update(self, *args)))
    config = offload_config(paths, feedback_lag=lag)
    train(config, tmp_path / "on_device", progress=False)
    assert not updates
    train(dataclasses.replace(config, ema_offload=True), tmp_path / "offloaded", progress=False)
    assert len(updates) == 4
    assert_same_run(tmp_path / "on_device", tmp_path / "offloaded", config_change="ema_offload")
    split = tmp_path / "split"
    train(dataclasses.replace(config, steps=3), split, progress=False)
    shutil.rmtree(split / "checkpoints" / "step-0000003")
    train(dataclasses.replace(config, ema_offload=True), split, "latest", progress=False)
    assert_same_run(tmp_path / "on_device", split, "step-0000004", config_change="ema_offload")
