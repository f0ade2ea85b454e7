"""``--feedback-lag 1`` (aria_train.distill.lagged_feedback): the sampler sees each micro-batch's
feedback one micro-batch late and a non-finite step is skipped on the device. The overlapped
loop is still the sequential one bitwise, a run does not depend on how often it logs (the drains
at records and checkpoints read the feedback early but observe it on time), it resumes exactly,
and a non-finite step is skipped and counted as with lag 0."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import aria_cli
from aria_train.conditioning.aria import AriaOptions
from aria_train.distill.loop import train
from test_distill import _nan_cache
from test_prefetch import aria_config, assert_same_run, run_files


def final_tensors(out, step: int) -> dict[str, dict[str, torch.Tensor]]:
    folder = out / "checkpoints" / f"step-{step:07d}"
    return {part: load_file(next((folder / part).glob("*.safetensors"))) for part in ("student", "student_ema")}


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for part in a:
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][name], b[part][name]) for name in a[part]), part


def lagged(paths, **fields):
    """ARIA, 5 steps of 2 micro-batches, lag 1; ``fields`` override."""
    return aria_config(paths, **{"aria": AriaOptions(warmup=1, unbiased=True), "batch_size": 4, "grad_accum": 2,
                                 "steps": 5, "log_every": 5, "checkpoint_every": 2, "checkpoint_limit": 0,
                                 "sample_every": 0, "channel_scale": 0.5, "feedback_lag": 1, **fields})


def test_lagged_loop_is_its_sequential_loop_and_resumes_exactly(paths, tmp_path):
    """The overlapped lag-1 loop is the same lag-1 loop drawn without prefetching (``prefetch=False``),
    bitwise; an interrupted run resumes exactly."""
    config = lagged(paths)
    train(config, tmp_path / "sequential", progress=False, prefetch=False)
    train(config, tmp_path / "overlapped", progress=False)
    assert_same_run(tmp_path / "sequential", tmp_path / "overlapped")
    # checkpoints at 2 and 4 hold the last micro-batch's feedback, read but not yet observed
    state = json.loads((tmp_path / "overlapped" / "checkpoints" / "step-0000002" / "trainer_state.json").read_text())
    assert len(state["unobserved_feedback"]["regions"]["__ndarray__"]) == 4
    # interrupted after step 3 with step 2's checkpoint left: resumed, it ends where the straight run did
    split = tmp_path / "split"
    train(dataclasses.replace(config, steps=3), split, progress=False)
    shutil.rmtree(split / "checkpoints" / "step-0000003")
    train(config, split, "latest", progress=False)
    assert_same_run(tmp_path / "overlapped", split, "step-0000005")


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_lagged_run_does_not_depend_on_how_often_it_logs(paths, tmp_path, grad_accum):
    """A record or checkpoint drains the feedback in flight; the sampler still observes it one
    micro-batch late, so logging every step trains the same student (and EMA) as logging once.
    With one micro-batch per step the EMA update of step s comes from the next step's read, which
    must precede that step's optimizer update."""
    train(lagged(paths, grad_accum=grad_accum, log_every=1, checkpoint_every=1), tmp_path / "often", progress=False)
    train(lagged(paths, grad_accum=grad_accum, checkpoint_every=0), tmp_path / "once", progress=False)
    assert_same_tensors(final_tensors(tmp_path / "often", 5), final_tensors(tmp_path / "once", 5))
    often = [json.loads(line) for line in (tmp_path / "often" / "metrics.jsonl").read_text().splitlines()]
    once = [json.loads(line) for line in (tmp_path / "once" / "metrics.jsonl").read_text().splitlines()]
    assert once[-1]["pi"] == often[-1]["pi"]
    assert sum(np.array(r["region_counts"]) for r in often).tolist() == once[-1]["region_counts"]  # every micro-batch tallied


@pytest.mark.parametrize("grad_accum, nan", [(1, False), (2, False), (1, True)])
def test_a_deferred_record_is_the_record_a_drain_writes(paths, tmp_path, grad_accum, nan):
    """With lag 1 a plain record is written after the next micro-batch's push has read its step,
    instead of waiting for the device (a drain); a record that meets a checkpoint still drains.
    Recording every step with a checkpoint at every step (all drained) and without (all but the
    last deferred) writes the same records -- losses, counts, pi and estimates as at the end of
    their step, the non-finite count of a skipped step -- and trains the same student."""
    fields = {"grad_accum": grad_accum, "log_every": 1, "checkpoint_limit": 0}
    if nan:
        fields["paired_cache"] = str(_nan_cache(paths, tmp_path, [5]))
    train(lagged(paths, checkpoint_every=1, **fields), tmp_path / "drained", progress=False)
    train(lagged(paths, checkpoint_every=0, **fields), tmp_path / "deferred", progress=False)
    drained, deferred = (run_files(tmp_path / name, "none")["metrics"] for name in ("drained", "deferred"))
    assert len(deferred) == 5 and deferred == drained
    assert deferred[-1]["nonfinite"] == (1 if nan else 0) and "pi" in deferred[-1]
    assert_same_tensors(final_tensors(tmp_path / "drained", 5), final_tensors(tmp_path / "deferred", 5))


def test_the_lag_changes_what_aria_draws_and_not_what_rc_draws(paths, tmp_path):
    """ARIA's draws depend on its tracker, which now learns one micro-batch later; RC's uniform
    draws do not depend on the feedback at all, so its batches are the lag-0 run's."""
    runs = {}
    for method in ("aria", "rc"):
        for lag in (0, 1):
            out = tmp_path / f"{method}{lag}"
            train(lagged(paths, log_every=1, checkpoint_every=0, feedback_lag=lag,
                         **({} if method == "aria" else {"method": "rc", "aria": AriaOptions(),
                                                        "noisy_regions": [], "noise_std": 0.0})), out, progress=False)
            runs[method, lag] = run_files(out, "none")["metrics"]
    counts = {key: [r["switched_region_counts"] for r in records] for key, records in runs.items()}
    assert counts["rc", 0] == counts["rc", 1] and np.sum(counts["rc", 0]) > 0  # RC switched, alike
    assert counts["aria", 0] != counts["aria", 1]


@pytest.mark.parametrize("lag", ["0", "1"])
def test_nonfinite_step_leaves_weights_and_ema_as_they_were(paths, tmp_path, lag):
    """One NaN sample in one of 4 steps: that step is counted and skipped -- its weights and EMA are
    the step before's, bitwise -- whether the host decides the skip (lag 0) or the device does
    (lag 1, fused AdamW's found_inf)."""
    out = tmp_path / "run"
    cache = _nan_cache(paths, tmp_path, [5])
    assert aria_cli.main(paths.options(out, "--steps", "4", "--paired-cache", str(cache), "--checkpoint-every", "1",
                                       "--checkpoint-limit", "0", "--feedback-lag", lag)) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["nonfinite"] == 1 and sum(r["skipped"] for r in records) == 1
    (bad,) = [r["step"] for r in records if r["loss"] is None]
    assert bad > 1  # the seed puts the NaN sample after the first step: there is a step before to compare with
    assert_same_tensors(final_tensors(out, bad), final_tensors(out, bad - 1))
    assert all(torch.isfinite(v).all() for part in final_tensors(out, 4).values() for v in part.values())


@pytest.mark.parametrize("micro", [0, 1])
def test_lagged_nonfinite_micro_batch_anywhere_in_the_step_skips_it(paths, tmp_path, micro):
    """Two micro-batches per step, the NaN sample in the first or the second of step 1: the step
    is skipped on the device either way (found_inf accumulates over the step's micro-batches), and
    it is closed by the next step's read, not by a drain (records every 10 steps)."""
    from aria_train.distill.batches import epoch_order

    nan_row = int(epoch_order(0, 0, 16)[4 * micro])  # the first sample of micro-batch `micro` (batch 4, seed 0)
    out = tmp_path / "run"
    cache = _nan_cache(paths, tmp_path, [nan_row])
    assert aria_cli.main(paths.options(out, "--steps", "2", "--grad-accum", "2", "--paired-cache", str(cache),
                                       "--log-every", "10", "--checkpoint-every", "0", "--feedback-lag", "1")) == 0
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["nonfinite"] == 1 and record["skipped"] == 1
    assert "step 1: non-finite loss" in (out / "log.txt").read_text()
    assert all(torch.isfinite(v).all() for part in final_tensors(out, 2).values() for v in part.values())


def test_lagged_too_many_nonfinite_aborts(paths, tmp_path, capsys):
    out = tmp_path / "run"
    cache = _nan_cache(paths, tmp_path, range(16))
    assert aria_cli.main(paths.options(out, "--steps", "10", "--paired-cache", str(cache), "--max-nonfinite", "2",
                                       "--feedback-lag", "1")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aria: error: 3 steps had a non-finite loss")
    assert "step 3: non-finite loss" in (out / "log.txt").read_text()


@pytest.mark.parametrize("lag", ["2", "-1"])
def test_feedback_lag_other_than_0_or_1_is_refused(paths, tmp_path, capsys, lag):
    assert aria_cli.main(paths.options(tmp_path / "run", "--feedback-lag", lag)) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--feedback-lag must be 0 or 1" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_lagged_data_parallel_resume_is_exact(paths, tmp_path):
    """Two CPU processes (gloo): every rank reads the same gathered feedback one micro-batch late
    and skips alike (one NaN sample among 16, steps of 2 x 2 x 2 samples: one step per epoch, i.e. 2
    of 4, has one rank's non-finite loss and is skipped on both); killing after step 4 and resuming
    from step 2 reproduces step 4 bitwise."""
    from fixtures_train import run_metrics, run_two_processes

    out = tmp_path / "run"
    cache = _nan_cache(paths, tmp_path, [5])
    run_two_processes(*paths.options(out, "--steps", "4", "--method", "aria", "--grad-accum", "2", "--log-every", "3",
                                     "--channel-scale", "0.5", "--feedback-lag", "1", "--paired-cache", str(cache),
                                     "--batch-size", "2"))
    expected, expected_metrics = final_tensors(out, 4), run_metrics(out)
    assert expected_metrics[-1]["nonfinite"] == 2
    assert all(torch.isfinite(v).all() for part in expected.values() for v in part.values())
    shutil.rmtree(out / "checkpoints" / "step-0000004")
    run_two_processes("distill", "--out", str(out), "--resume", "latest", "--steps", "4")
    assert_same_tensors(final_tensors(out, 4), expected)
    assert run_metrics(out) == expected_metrics
