"""Student groups (aria_train.distill.group): several runs trained in one process, one teacher
forward and one vmapped student step for all. Each student is its single run up to
floating-point rounding (the same batches and draws, the same losses and weights within a
tolerance); a group resumes exactly; a non-finite loss in one student skips the step for all;
what a group cannot do is refused in one line; an experiment forms its groups from runs that
may train together."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aria_train.conditioning.aria import AriaOptions
from aria_train.distill.config import DistillConfig
from aria_train.distill.group import check_group, clip_per_student, train_group
from aria_train.distill.loop import train
from aria_train.distill.state import NonFiniteAbort
from aria_train.experiment.runner import make_jobs
from test_distill import _nan_cache
from test_prefetch import aria_config, assert_same_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def members(paths, **fields) -> list[DistillConfig]:
    """rc, ARIA (allocating from step 2, unbiased weights) and kd, seeds 0-2, with the options that
    touch every part of the group step: teacher noise on a region, the paired L_sd term, a
    clipping threshold below the gradients' norm."""
    shared = {"batch_size": 4, "steps": 4, "log_every": 1, "checkpoint_every": 2, "checkpoint_limit": 0,
              "sample_every": 0, "l_sd": 0.5, "max_grad_norm": 0.05, **fields}
    return [aria_config(paths, method="rc", seed=0, aria=AriaOptions(), **shared),
            aria_config(paths, seed=1, **shared),
            aria_config(paths, method="kd", seed=2, aria=AriaOptions(), **shared)]


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(out, step: int, part: str) -> dict[str, torch.Tensor]:
    return load_file(next((out / "checkpoints" / f"step-{step:07d}" / part).glob("*.safetensors")))


def test_each_student_of_a_group_is_its_single_run(paths, tmp_path):
    configs = members(paths)
    train_group(configs, [tmp_path / f"group{i}" for i in range(3)])
    for i, config in enumerate(configs):
        train(config, tmp_path / f"single{i}", progress=False)
        grouped, single = records(tmp_path / f"group{i}"), records(tmp_path / f"single{i}")
        assert len(grouped) == len(single) == 4
        for a, b in zip(grouped, single):
            # the same batches: the same regions shown and drawn, switches and nulls
            for key in ("region_counts", "switched_region_counts", "switched_frac", "null_frac", "skipped"):
                assert a[key] == b[key], (i, key)
            for key in ("loss", "out", "sd"):
                assert a[key] == pytest.approx(b[key], rel=1e-5), (i, key)
            if "pi" in b:  # ARIA's allocation, from trackers fed the same discrepancies up to rounding
                assert np.allclose(a["pi"], b["pi"], rtol=1e-5)
        for part in ("student", "student_ema"):
            mine, theirs = weights(tmp_path / f"group{i}", 4, part), weights(tmp_path / f"single{i}", 4, part)
            assert mine.keys() == theirs.keys()
            assert max((mine[k] - theirs[k]).abs().max().item() for k in mine) < 1e-5, (i, part)
    # ... and the students differ from each other: each trained on its own batches
    first, second = weights(tmp_path / "group0", 4, "student"), weights(tmp_path / "group1", 4, "student")
    assert any(not torch.allclose(first[k], second[k]) for k in first)


def test_a_group_resumes_exactly(paths, tmp_path):
    """Interrupted after step 3 with step 2's checkpoints left, the group resumed from them ends
    where the straight group did: weights, EMA, optimizer moments, streams, trackers, metrics."""
    configs = members(paths)
    straight = [tmp_path / f"straight{i}" for i in range(3)]
    train_group(configs, straight)
    split = [tmp_path / f"split{i}" for i in range(3)]
    train_group([dataclasses.replace(c, steps=3) for c in configs], split)
    for out in split:
        shutil.rmtree(out / "checkpoints" / "step-0000003")
    kept = tmp_path / "kept"
    shutil.move(split[1] / "checkpoints" / "step-0000002", kept)  # one run without it: no common step
    with pytest.raises(ValueError, match="no checkpoint at a common step"):
        train_group(configs, split, resume=True)
    shutil.move(kept, split[1] / "checkpoints" / "step-0000002")
    train_group(configs, split, resume=True)
    for a, b in zip(straight, split):
        assert_same_run(a, b, "step-0000004")
    assert (split[0] / "checkpoints" / "step-0000004" / "group_optimizer.pt").is_file()


def test_a_nonfinite_student_skips_the_step_of_the_whole_group(paths, tmp_path):
    """One paired sample is NaN: the step in which any student draws it is skipped by all, and every
    student counts it; the students whose own batches were finite still log their losses."""
    bad = _nan_cache(paths, tmp_path, [3])
    configs = [dataclasses.replace(c, paired_cache=str(bad), checkpoint_every=0) for c in members(paths)[:2]]
    outs = [tmp_path / "rc", tmp_path / "aria"]
    train_group(configs, outs)
    skipped = [[r["skipped"] for r in records(out)] for out in outs]
    assert skipped[0] == skipped[1] and 0 < sum(skipped[0]) < 4
    for out in outs:
        assert "non-finite loss, step skipped" in (out / "log.txt").read_text()
    nan_everywhere = _nan_cache(paths, tmp_path / "all", range(16))
    with pytest.raises(NonFiniteAbort, match="every step"):
        train_group([dataclasses.replace(c, paired_cache=str(nan_everywhere), steps=1) for c in configs],
                    [tmp_path / "x0", tmp_path / "x1"])


def test_per_student_clipping_is_clip_grad_norm_per_student():
    torch.manual_seed(0)
    grads = [torch.randn(3, 4, 5), torch.randn(3, 7)]
    grads[0][1] *= 1e-3  # student 1 is below the threshold: unchanged
    expected = []
    for i in range(3):
        own = [torch.nn.Parameter(torch.zeros_like(g[i])) for g in grads]
        for p, g in zip(own, grads):
            p.grad = g[i].clone()
        torch.nn.utils.clip_grad_norm_(own, 1.0)
        expected.append([p.grad for p in own])
    clip_per_student(grads, 1.0)
    for i in range(3):
        for g, e in zip(grads, expected[i]):
            assert torch.allclose(g[i], e, rtol=1e-6, atol=0)


@pytest.mark.parametrize("change, needle", [
    ({"lr": 1e-3}, "lr is 0.0002 in one, 0.001 in another"),
    ({"grad_accum": 2}, "grad_accum > 1"),
    ({"feedback_lag": 1}, "feedback_lag 1"),
    ({"aria": AriaOptions(signal="text")}, "aria signal text"),
])
def test_what_a_group_cannot_do_is_refused_in_one_line(paths, change, needle):
    configs = members(paths)
    with pytest.raises(ValueError, match=needle):
        if "lr" in change:  # differs between members
            check_group([configs[0], dataclasses.replace(configs[1], **change)])
        else:
            check_group([dataclasses.replace(c, **change) for c in configs])


def test_a_group_of_students_with_feature_projections_is_refused_before_any_folder(paths, tmp_path):
    configs = members(paths, channel_scale=0.5)
    with pytest.raises(ValueError, match="feature projections"):
        train_group(configs, [tmp_path / str(i) for i in range(3)])
    assert not any(tmp_path.iterdir())


def test_a_grouped_checkpoint_is_refused_by_aria_distill(paths, tmp_path):
    configs = members(paths, steps=2)[:2]
    train_group(configs, [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="written by a student group"):
        train(dataclasses.replace(configs[0], steps=3), tmp_path / "a", "latest", progress=False)


def test_experiment_jobs_group_runs_that_may_train_together(paths):
    options = {"rc": {"method": "rc", "aria": AriaOptions()}, "aria": {}}
    configs = {f"{m}-seed{s}": (m, aria_config(paths, seed=s, **options[m])) for m in options for s in (0, 1, 2)}
    configs["fast-seed0"] = ("fast", aria_config(paths, lr=1e-3))  # another lr: its own job
    names = list(configs)
    done = {name: 0 for name in names}
    done["aria-seed2"] = 2  # checkpointed at step 2: not with the fresh runs
    assert make_jobs(configs, names, done, 1) == [[name] for name in names]
    assert make_jobs(configs, names, done, 4) == [["rc-seed0", "rc-seed1", "rc-seed2", "aria-seed0"],
                                                  ["aria-seed1"], ["aria-seed2"], ["fast-seed0"]]
