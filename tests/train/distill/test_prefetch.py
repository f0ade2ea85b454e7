"""The overlapped batch stream (aria_train.distill.batches.Prefetcher) and the feedback read back
once per micro-batch (aria_train.conditioning.feedback): the same batches, losses, metrics,
tracker state and checkpoints as the sequential loop, bitwise, and exact resume."""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aria_train.conditioning.aria import AriaOptions, AriaSampler
from aria_train.conditioning.feedback import gather_feedback
from aria_train.distill.batches import Batch, BatchStream, ConditionEncoder, Prefetcher
from aria_train.distill.config import DistillConfig
from aria_train.distill.inputs import load_inputs
from aria_train.distill.loop import train
from aria_train.distill.losses import LOSS_NAMES
from aria_train.runs.checkpoint import generator_state

CPU = torch.device("cpu")
VARYING = {"images_per_s", "peak_memory_gib"}  # wall clock and allocator: not part of the result


def aria_config(paths, **fields) -> DistillConfig:
    """ARIA allocating from its second micro-batch on, with every option that draws or weights
    by the sampler (unbiased weights, the test bed's noise on a region's prompts)."""
    fields = {"teacher": str(paths.teacher), "paired_cache": str(paths.paired), "pool": str(paths.pool),
              "method": "aria", "aria": AriaOptions(warmup=0, unbiased=True, normalise="none"), "batch_size": 8,
              "noisy_regions": [2], "noise_std": 0.5, **fields}
    return DistillConfig(**fields).validate()


def stream(config: DistillConfig) -> BatchStream:
    inputs = load_inputs(config)
    sampler = AriaSampler(inputs.pool.regions, 1000, config.aria, inputs.pool.num_regions)
    return BatchStream(config, inputs, sampler, ConditionEncoder(inputs, CPU), 0, 1, CPU)


def observe(source: BatchStream, batch: Batch) -> None:
    """A made-up observation that moves ARIA's pi, the way the loop's feedback does."""
    shown = batch.regions >= 0
    source.sampler.observe(batch.regions[shown], 1.0 + 3.0 * (batch.regions[shown] == batch.regions.max()),
                           batch.timesteps.numpy()[shown], batch.switched[shown])


def assert_same_batch(a: Batch, b: Batch) -> None:
    for field in dataclasses.fields(Batch):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), field.name
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), field.name
        else:
            assert x is None and y is None, field.name


def test_prefetched_batches_are_the_sequential_ones(paths):
    """Each next draft is drawn while a batch 'trains', the sampler observes that batch before
    the next conditions are drawn, and a checkpoint's settle() in between changes nothing."""
    config = aria_config(paths)
    sequential, ahead = stream(config), stream(config)
    drafted_in = []
    draft = ahead.draft
    ahead.draft = lambda: drafted_in.append(threading.current_thread().name) or draft()
    pis = []
    with Prefetcher(ahead) as batches:
        for n in range(12):
            want, got = sequential.next(), batches.next()
            assert_same_batch(want, got)
            observe(sequential, want)
            observe(ahead, got)
            pis.append(sequential.sampler.probabilities())
            assert batches.cursor == sequential.cursor
            if n in (4, 5, 9):  # twice in a row: settling with nothing pending
                batches.settle()
                assert generator_state(ahead.rng, ahead.noise_generator) == generator_state(
                    sequential.rng, sequential.noise_generator)
                assert ahead.state() == sequential.state()
    assert not np.allclose(pis[0], pis[-1])  # pi moved: the draws depended on the observations
    # drafted in the main thread: the first and the one dropped by each settle() with one pending
    assert drafted_in.count(threading.current_thread().name) == 1 + 3
    assert sum(name.startswith("batch-draft") for name in drafted_in) == 12  # one ahead after every batch


def test_sequential_prefetcher_and_stream_next_agree(paths):
    config = aria_config(paths, noisy_regions=[], noise_std=0.0, method="rc", aria=AriaOptions())
    plain, inline = stream(config), stream(config)
    batches = Prefetcher(inline, background=False)
    for _ in range(6):
        assert_same_batch(plain.next(), batches.next())
    batches.close()
    assert inline.cursor == plain.cursor


def test_a_failed_draft_raises_at_next(paths):
    source = stream(aria_config(paths))
    with Prefetcher(source) as batches:
        batches.next()
        source.draft = lambda: (_ for _ in ()).throw(OSError("paired cache unreadable (simulated)"))
        with pytest.raises(OSError, match="simulated"):
            batches.next()  # the draft submitted before the failure is still fine
            batches.next()


def test_feedback_packs_every_field_exactly():
    """Two 'processes' of 3 samples: every field comes back in rank order and exact."""
    regions, switched, nulled = np.array([2, -1, 70000]), np.array([True, False, True]), np.array([False, True, False])
    losses = {name: torch.tensor(float(i) + 0.1) for i, name in enumerate(LOSS_NAMES)}
    losses["discrepancy"] = torch.tensor([0.1, 1e-30, 3.5], dtype=torch.float32)
    losses["finite"] = torch.tensor(True)

    def gather(tensor: torch.Tensor) -> torch.Tensor:  # the second process has one more of everything
        assert tensor.dtype == torch.float64 and tensor.shape[0] == 1
        other = tensor.clone()
        other[0, -1] = 0.0  # its loss was not finite
        return torch.cat([tensor, other])

    feedback = gather_feedback(gather, regions, switched, nulled, torch.tensor([0, 999, 5]), losses, LOSS_NAMES).wait()
    assert feedback.regions.dtype == np.int64 and feedback.regions.tolist() == [2, -1, 70000] * 2
    assert feedback.switched.tolist() == [True, False, True] * 2
    assert feedback.nulled.tolist() == [False, True, False] * 2
    assert feedback.timesteps.dtype == np.int64 and feedback.timesteps.tolist() == [0, 999, 5] * 2
    assert np.array_equal(feedback.discrepancy, np.tile(losses["discrepancy"].double().numpy(), 2))
    for name in LOSS_NAMES:
        assert np.array_equal(feedback.losses[name], [float(losses[name])] * 2)
    assert feedback.finite is False  # all processes must be finite


# ---------------------------------------------------------------- the loop, end to end


def run_files(out: Path, checkpoints: str = "step-*") -> dict[str, object]:
    """Everything a run leaves that must not depend on the overlap: metrics without wall-clock
    fields, and per checkpoint its tensors, trainer state and generator states."""
    files: dict[str, object] = {"metrics": [{k: v for k, v in json.loads(line).items() if k not in VARYING}
                                            for line in (out / "metrics.jsonl").read_text().splitlines()]}
    for checkpoint in sorted((out / "checkpoints").glob(checkpoints)):
        for part in ("student", "student_ema", "accelerator"):
            for file in sorted((checkpoint / part).glob("*.safetensors")):
                files[f"{checkpoint.name}/{part}/{file.name}"] = load_file(file)
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        del state["metrics_position"]  # the byte length of metrics.jsonl, wall-clock fields included
        files[f"{checkpoint.name}/trainer_state.json"] = state
        files[f"{checkpoint.name}/rng-rank0.json"] = json.loads((checkpoint / "rng-rank0.json").read_text())
    return files


def assert_same_run(a: Path, b: Path, checkpoints: str = "step-*", config_change: str | None = None) -> None:
    """Runs ``a`` and ``b`` left the same files (run_files); ``config_change``: an option that
    differs between their configs (and in the config copy of every trainer state)."""
    x, y = run_files(a, checkpoints), run_files(b, checkpoints)
    assert x.keys() == y.keys()
    for key in x:
        if isinstance(x[key], dict) and all(isinstance(v, torch.Tensor) for v in x[key].values()):
            assert x[key].keys() == y[key].keys(), key
            assert all(torch.equal(x[key][name], y[key][name]) for name in x[key]), key
        else:
            if config_change is not None and key.endswith("trainer_state.json"):
                assert x[key]["config"].pop(config_change) != y[key]["config"].pop(config_change)
            assert x[key] == y[key], key


@pytest.mark.parametrize("text_cache", [False, True], ids=["encoder", "text-cache"])
def test_overlapped_loop_is_the_sequential_loop_and_resumes_exactly(paths, tmp_path, text_cache):
    config = aria_config(paths, aria=AriaOptions(warmup=1, unbiased=True), batch_size=4, grad_accum=2, steps=4,
                         log_every=1, checkpoint_every=2, checkpoint_limit=0, sample_every=0, channel_scale=0.5,
                         text_cache=str(paths.text) if text_cache else None)
    train(config, tmp_path / "sequential", progress=False, prefetch=False)
    train(config, tmp_path / "overlapped", progress=False)
    assert_same_run(tmp_path / "sequential", tmp_path / "overlapped")
    records = run_files(tmp_path / "overlapped")["metrics"]
    assert len(records) == 4 and records[0]["pi"] != records[-1]["pi"]  # ARIA allocated
    # an interrupted overlapped run, resumed from step 2, ends where the straight one did
    split = tmp_path / "split"
    train(dataclasses.replace(config, steps=3), split, progress=False)
    shutil.rmtree(split / "checkpoints" / "step-0000003")
    train(config, split, "latest", progress=False)
    assert_same_run(tmp_path / "overlapped", split, "step-0000004")  # step 2's config says 3 steps
