"""The loop's speed settings that a CPU can check: what every metrics record reports about speed
and memory, the frozen text encoder in the accelerator's half precision and compiled under
--compile (aria_train.distill.speed.prepare_text_encoder)."""
from __future__ import annotations

import json

import numpy as np
import torch

import aria_train.distill.speed as speed
from aria_train.distill.config import DistillConfig
from aria_train.distill.loop import train
from aria_train.distill.tally import Tally


def config(paths, **fields) -> DistillConfig:
    fields = {"batch_size": 4, "steps": 2, "log_every": 1, "checkpoint_every": 0, "sample_every": 0, **fields}
    return DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired), pool=str(paths.pool), **fields)


def test_every_record_has_images_per_s_and_peak_memory(paths, tmp_path):
    out = train(config(paths, method="rc"), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["images_per_s"] > 0
        assert "peak_memory_gib" in record and record["peak_memory_gib"] is None  # no GPU here


def test_record_passes_peak_memory_through():
    tally = Tally(None)
    tally.samples = 64
    record = tally.record(step=1, lr=1e-4, nonfinite=0, seconds=0.5, extra={}, peak_memory_gib=42.5)
    assert record["images_per_s"] == 128 and record["peak_memory_gib"] == 42.5
    assert tally.record(step=1, lr=1e-4, nonfinite=0, seconds=0.5, extra={})["peak_memory_gib"] is None


def test_text_encoder_in_half_precision_and_compiled_with_the_unets(paths, tmp_path, monkeypatch):
    """Under bf16 mixed precision the loop hands the encoder over in bf16, and --compile reaches
    it and the loss; the compilations are left out here (minutes on a CPU; the compiled loss's
    agreement with the eager one: tests/train/distill/test_speed.py)."""
    from aria_train.distill.losses import distillation_loss

    seen = {}
    monkeypatch.setattr(speed, "compile_loss", lambda: seen.update(loss="compiled") or distillation_loss)
    monkeypatch.setattr(speed, "prepare_unets", lambda teacher, student, **options: seen.update(unets=options))
    monkeypatch.setattr(speed, "prepare_text_encoder",
                        lambda encoder, compile: seen.update(dtype=next(encoder.parameters()).dtype, compile=compile))
    from accelerate.state import AcceleratorState

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    AcceleratorState._reset_state()  # the process's accelerator state is a singleton: made anew here and after
    try:
        out = train(config(paths, method="rc", compile=True, steps=1), tmp_path / "run", progress=False)
    finally:
        AcceleratorState._reset_state()
    assert "mixed precision bf16" in (out / "log.txt").read_text()
    assert seen == {"unets": {"compile": True, "channels_last": False, "gradient_checkpointing": False, "teacher_fp8": False,
                              "attention": "sdpa"},
                    "dtype": torch.bfloat16, "compile": True, "loss": "compiled"}
    record = json.loads((out / "metrics.jsonl").read_text())
    assert np.isfinite(record["loss"])


def test_prepare_text_encoder_compiles_for_any_batch_size():
    calls = []

    class Encoder(torch.nn.Linear):
        def compile(self, **options):
            calls.append(options)

    encoder = Encoder(2, 2)
    speed.prepare_text_encoder(encoder)
    assert calls == []
    speed.prepare_text_encoder(encoder, compile=True)
    assert calls == [{"dynamic": True}]
