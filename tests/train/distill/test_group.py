"""Student groups (aria_train.distill.group): several runs trained in one process, one teacher
forward and one vmapped student step for all. Each student is its single run up to
floating-point rounding (the same batches and draws, the same losses and weights within a
tolerance); a group resumes exactly; a non-finite loss in one student skips the step for all;
what a group cannot do is refused in one line; an experiment forms its groups from runs that
may train together."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aria_train.conditioning import feedback as feedback_module
from aria_train.conditioning.aria import AriaOptions
from aria_train.distill.config import DistillConfig
from aria_train.distill.group import StudentClipper, check_group, train_group
from aria_train.distill.loop import train
from aria_train.distill.state import NonFiniteAbort
from aria_train.experiment.runner import make_jobs, run_all
from aria_train.runs import checkpoint as checkpoint_module
from test_distill import _nan_cache
from test_prefetch import aria_config, assert_same_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def members(paths, **fields) -> list[DistillConfig]:
    """rc, ARIA (allocating from step 2; its unbiased weights stay 1 in these few steps: the group
    step's own test gives other weights) and kd, seeds 0-2, with teacher noise on a region, the
    paired L_sd term and a clipping threshold below the gradients' norm."""
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
    student counts it; a student whose own batch was finite still logs its loss."""
    bad = _nan_cache(paths, tmp_path, [3])
    configs = [dataclasses.replace(c, paired_cache=str(bad), checkpoint_every=0) for c in members(paths)[:2]]
    outs = [tmp_path / "rc", tmp_path / "aria"]
    train_group(configs, outs)
    skipped = [[r["skipped"] for r in records(out)] for out in outs]
    assert skipped[0] == skipped[1] and 0 < sum(skipped[0]) < 4
    for out in outs:
        assert "non-finite loss, step skipped" in (out / "log.txt").read_text()
    own = [[r["loss"] is not None for r in records(out)] for out in outs]
    assert any(own[0][i] != own[1][i] for i in range(4))  # one student's batch was finite where the other's was not
    nan_everywhere = _nan_cache(paths, tmp_path / "all", range(16))
    with pytest.raises(NonFiniteAbort, match="every step"):
        train_group([dataclasses.replace(c, paired_cache=str(nan_everywhere), steps=1) for c in configs],
                    [tmp_path / "x0", tmp_path / "x1"])


def test_per_student_clipping_is_clip_grad_norm_per_student():
    """Each student's gradients clipped by its own norm, as clip_grad_norm_ clips one model; the
    clipper's views made at the first call still clip the same tensors after they change in place
    (the group zeroes its gradients in place), and new tensors get new views."""
    torch.manual_seed(0)
    clip = StudentClipper(1.0)
    grads = [torch.randn(3, 4, 5), torch.randn(3, 7)]
    for call in range(3):
        if call == 1:  # the same tensors, new values
            for g in grads:
                g.copy_(torch.randn_like(g))
        if call == 2:  # new tensors
            grads = [torch.randn(3, 4, 5), torch.randn(3, 7)]
        for g in grads:
            g[1] *= 1e-3  # every tensor of student 1: below the threshold, unchanged
        before = [g.clone() for g in grads]
        expected = []
        for i in range(3):
            own = [torch.nn.Parameter(torch.zeros_like(g[i])) for g in grads]
            for p, g in zip(own, grads):
                p.grad = g[i].clone()
            torch.nn.utils.clip_grad_norm_(own, 1.0)
            expected.append([p.grad for p in own])
        clip(grads)
        for i in range(3):
            for g, e in zip(grads, expected[i]):
                assert torch.allclose(g[i], e, rtol=1e-6, atol=0), call
        assert all(torch.equal(g[1], b[1]) for g, b in zip(grads, before))
        for i in (0, 2):
            assert torch.cat([g[i].flatten() for g in grads]).norm() == pytest.approx(1.0, rel=1e-5)


def test_group_step_is_train_step_for_each_student(paths):
    """The group step's losses and each student's gradient are ``train_step``'s for that student
    alone, with every per-sample input a batch can carry: loss weights not all 1, a blinded
    student conditioning, teacher noise."""
    from diffusers.models.attention_processor import AttnProcessor

    from aria_train.diffusion.models.feature_kd import FeatureHooks
    from aria_train.diffusion.models.students import feature_layer_map, make_student
    from aria_train.distill.batches import BatchStream, ConditionEncoder
    from aria_train.distill.group_step import GroupModels, group_step
    from aria_train.distill.inputs import load_inputs, make_condition_sampler
    from aria_train.distill.losses import LossWeights
    from aria_train.distill.step import StepModels, Student, train_step

    cpu = torch.device("cpu")
    configs = members(paths)[:2]
    inputs = load_inputs(configs[0])
    encoder = ConditionEncoder(inputs, cpu)
    batches = []
    for config in configs:
        batch = BatchStream(config, inputs, make_condition_sampler(config, inputs), encoder, 0, 1, cpu).next()
        batch.weights = torch.linspace(0.5, 1.5, len(batch.timesteps))
        batch.student_hidden = inputs.prompts.null().expand_as(batch.hidden).clone()
        batch.target_noise = 0.5 * torch.randn_like(batch.x0)
        batches.append(batch)
    teacher = inputs.teacher
    template = make_student(teacher, configs[0].student_variant).train()
    template.set_attn_processor(AttnProcessor())
    layer_map = feature_layer_map(dict(teacher.config), dict(template.config), configs[0].feature_kd)
    students = [copy.deepcopy(template) for _ in configs]
    with torch.no_grad():
        for p in students[1].parameters():
            p.add_(0.01 * torch.randn_like(p))
    names = [n for n, _ in template.named_parameters()]
    stacked = {n: torch.stack([dict(s.named_parameters())[n].detach() for s in students]).requires_grad_()
               for n in names}
    weights_ = LossWeights(1.0, 1.0, 0.5)
    models = GroupModels(teacher, template, stacked, inputs.scheduler, layer_map,
                         FeatureHooks(teacher, layer_map.values()).attach(),
                         FeatureHooks(template, layer_map.keys()).attach(), contextlib.nullcontext)
    grouped = group_step(models, batches, weights_)
    for i, (student, batch) in enumerate(zip(students, batches)):
        single = train_step(StepModels(teacher, Student(student), inputs.scheduler, layer_map), batch, weights_)
        for key in ("loss", "out", "feat", "sd"):
            assert grouped[i][key].item() == pytest.approx(single[key].item(), rel=1e-5), (i, key)
        for name, p in student.named_parameters():
            assert torch.allclose(stacked[name].grad[i], p.grad, rtol=1e-4, atol=1e-7), (i, name)


def test_a_skipped_step_leaves_weights_ema_and_trackers_untouched(paths, tmp_path, monkeypatch):
    """The tracker is told nothing was trained on a skipped step, the EMA does not move, and the
    weights stay finite."""
    bad = _nan_cache(paths, tmp_path, [3])
    configs = [dataclasses.replace(c, paired_cache=str(bad), checkpoint_every=0) for c in members(paths)[:2]]
    outs = [tmp_path / "rc", tmp_path / "aria"]
    observed, real = [], feedback_module.Feedback.observe
    monkeypatch.setattr(feedback_module.Feedback, "observe",
                        lambda self, sampler: (observed.append(self.finite), real(self, sampler))[1])
    train_group(configs, outs)
    skipped = [r["skipped"] for r in records(outs[0])]
    assert 0 < sum(skipped) < 4
    assert observed == [not s for s in skipped for _ in outs]
    for out in outs:
        for part in ("student", "student_ema"):
            assert all(torch.isfinite(t).all() for t in weights(out, 4, part).values())
        ema = json.loads((out / "checkpoints" / "step-0000004" / "student_ema" / "config.json").read_text())
        assert ema["optimization_step"] == 4 - sum(skipped)


def test_heldout_records_and_progress_are_each_students(paths, tmp_path):
    heldout = tmp_path / "heldout.csv"
    heldout.write_text("text,region,group\na red circle,0,seen\na white square,1,seen\na blue cross,2,unseen\n")
    configs = members(paths, heldout=str(heldout), heldout_every=2, checkpoint_every=0)
    seen = []
    train_group(configs, [tmp_path / f"g{i}" for i in range(3)], on_step=lambda m, s, n: seen.append((m, s)))
    assert sorted(seen) == [(m, s) for m in range(3) for s in range(1, 5)]
    for i, config in enumerate(configs):
        train(config, tmp_path / f"s{i}", progress=False)
        grouped, single = records(tmp_path / f"g{i}"), records(tmp_path / f"s{i}")
        assert sum("heldout" in r for r in grouped) == 2
        for a, b in zip(grouped, single):
            assert ("heldout" in a) == ("heldout" in b)
            if "heldout" in b:
                assert a["heldout"] == pytest.approx(b["heldout"], rel=1e-4)
                assert a["heldout_level"] == pytest.approx(b["heldout_level"], rel=1e-4)


@pytest.mark.parametrize("change, needle", [
    ({"lr": 1e-3}, "lr is 0.0002 in one, 0.001 in another"),
    ({"tf32": True}, "tf32 is False in one, True in another"),  # process-wide: one setting per group
    ({"grad_accum": 2}, "grad_accum > 1"),
    ({"feedback_lag": 1}, "feedback_lag 1"),
    ({"ema_offload": True}, "ema_offload"),
    ({"teacher_stream": True}, "teacher_stream"),
    ({"attention": "fa4-self"}, "attention fa4"),
    ({"aria": AriaOptions(signal="text")}, "aria signal text"),
])
def test_what_a_group_cannot_do_is_refused_in_one_line(paths, change, needle):
    configs = members(paths)
    with pytest.raises(ValueError, match=needle):
        if "lr" in change or "tf32" in change:  # differs between members
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
    done = dict.fromkeys(names, 0)
    assert make_jobs(configs, names, done, 1) == [[name] for name in names]
    assert make_jobs(configs, names, done, 4) == [["rc-seed0", "rc-seed1", "rc-seed2", "aria-seed0"],
                                                  ["aria-seed1", "aria-seed2"], ["fast-seed0"]]
    # continued: a run checkpointed alone stays alone; runs checkpointed in a group continue as the
    # group recorded for them (even if one of them is a checkpoint behind), whatever --group is now
    done.update({"rc-seed0": 2, "rc-seed1": 2, "rc-seed2": 4, "aria-seed0": 2})
    kinds = dict.fromkeys(names, "fresh")
    kinds.update({"rc-seed0": "single", "rc-seed1": "group", "rc-seed2": "group", "aria-seed0": "group"})
    recorded = [["rc-seed1", "rc-seed2"], ["aria-seed0", "finished-seed0"]]
    assert make_jobs(configs, names, done, 1, kinds, recorded) == [
        ["rc-seed1", "rc-seed2"], ["aria-seed0"], ["rc-seed0"], ["aria-seed1"], ["aria-seed2"], ["fast-seed0"]]
    # no record: checkpointed group runs are grouped by their options and step
    assert make_jobs(configs, names, done, 1, kinds) == [
        ["rc-seed0"], ["rc-seed1", "aria-seed0"], ["rc-seed2"], ["aria-seed1"], ["aria-seed2"], ["fast-seed0"]]


def test_an_experiment_continues_a_group_killed_between_its_runs_checkpoints(paths, tmp_path):
    """Killed while moving its runs' step-4 checkpoints into place, after one: no run had pruned
    step 2 (limit 1), so the group continues from there, as itself, with or without --group."""
    out = tmp_path / "exp"
    configs = [dataclasses.replace(c, checkpoint_limit=1) for c in members(paths)[:2]]
    runs = [out / "runs" / "a", out / "runs" / "b"]
    straight = [tmp_path / "straight_a", tmp_path / "straight_b"]
    train_group(configs, straight)
    real = checkpoint_module.commit_group_checkpoints

    def killed(stage, limit):  # step 4: the first run's moved into place, then the process dies
        if stage[0][1].name.endswith("4"):
            checkpoint_module._commit(*stage[0], 0)
            raise KeyboardInterrupt
        real(stage, limit)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint_module, "commit_group_checkpoints", killed)
        with pytest.raises(KeyboardInterrupt):
            train_group(configs, runs)
    assert [len(list((run / "checkpoints").glob("step-*"))) for run in runs] == [2, 1]
    (out / "jobs.json").write_text(json.dumps([["a", "b"]]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("os.cpu_count", lambda: 1)  # one torch thread in the worker, as here: the same sums
        run_all({"a": ("rc", configs[0]), "b": ("aria", configs[1])}, out, 1, "no", show_progress=False)
    for a, b in zip(straight, runs):
        assert_same_run(a, b, "step-0000004")
    for i, run in enumerate(runs):  # both, the finished one too, continued as the group from step 2
        resumed = [line for line in (run / "log.txt").read_text().splitlines() if "resumed from" in line]
        assert len(resumed) == 1 and "step-0000002" in resumed[0] and f"student {i + 1} of a group of 2" in resumed[0]


def test_an_experiment_started_alone_continues_alone_under_group(paths, tmp_path):
    out = tmp_path / "exp"
    configs = members(paths)[:2]
    first = [dataclasses.replace(c, steps=2) for c in configs]
    run_all({"a": ("rc", first[0]), "b": ("aria", first[1])}, out, 2, "no", show_progress=False)
    run_all({"a": ("rc", configs[0]), "b": ("aria", configs[1])}, out, 1, "no", show_progress=False, group=2)
    for name in ("a", "b"):
        assert (out / "runs" / name / "checkpoints" / "step-0000004" / "accelerator").is_dir()
    assert json.loads((out / "jobs.json").read_text()) == []
