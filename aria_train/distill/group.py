"""Several students of one teacher trained in one process: an experiment's runs, N at a time.

A small student's step is bound by launching its kernels, not by running them: on the 16 px
test-bed world one H200 step of batch 64 launches 2,310 kernels holding 12 ms of work in 92 ms
(bench/results/prof_small_world_h200_nvml.json), and processes sharing a GPU run their kernels
one context at a time. A group launches each kernel once for all its students:

* the teacher runs once on the N students' micro-batches together (N x B samples);
* the students' parameters are stacked (N, ...) and one vmapped forward and backward
  (torch.func.vmap over functional_call) serves them all: a convolution becomes one grouped
  convolution, a matrix product one batched product;
* AdamW and the EMA update the stacked tensors. Both act elementwise, so each student's update
  is its own; gradients are clipped by each student's own norm (``StudentClipper``).

Each student's loss is the single loop's loss of its own micro-batch; their sum is
backpropagated, and as no student's loss depends on another's parameters, each gets exactly its
own gradient. What stays per student is the single loop's own code: its config's method,
sampler, ARIA options and seed (GROUP_FIELDS; every other option is shared), its batch stream,
condition sampler (ARIA's tracker), tally, metrics, held-out measurements and run directory.

Against `aria distill` of the same config: the same batches, and numbers equal up to
floating-point rounding -- grouped convolutions and batched products sum in another order, and
attention runs as explicit products (diffusers' AttnProcessor: vmap has no batching rule for
the fused attention kernels) -- so a grouped run is not bitwise the single run, and a group
resumes exactly only as the same group. A non-finite loss in any student skips the optimizer
step of the whole group: each student logs its own loss, counts the step as skipped (against its
own max_nonfinite) and is from then on no longer its single run; one student's NonFiniteAbort
ends the group. ``check_group`` refuses what a group does not do: gradient accumulation,
--feedback-lag 1, ARIA's text signal, feature projections (channel_scale below 1 with feature
KD), SDXL teachers, --compile, --channels-last, gradient checkpointing, --attention fa4, fp16; nor does it run
on several processes. A member's ``peak_memory_gib`` is the group process's.

Checkpoints: every run folder gets its own (aria_train.runs.checkpoint.stage_group_checkpoint:
student/, student_ema/, generators, trainer state, and its slices of AdamW's state), all staged
before any is moved into place and before any run is pruned (commit_group_checkpoints), so a
group killed midway still has a step all its runs hold: it resumes from its runs' latest common
step. `aria eval` reads a grouped run like any other; `aria distill --resume` refuses its
checkpoints, and `aria experiment` continues such runs as groups (aria_train.experiment.runner).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from aria_train.distill.config import DistillConfig
from aria_train.distill.state import RunStart
from aria_train.options import to_dict

# The options that may differ between the students of a group: those that only shape a
# student's draws (its batch stream and condition sampler). Everything else is shared.
GROUP_FIELDS = ("method", "sampler", "aria", "seed", "switch_schedule", "switch_lambda", "null_prob")


def _shared_options(config: DistillConfig) -> dict:
    """The options outside GROUP_FIELDS (ARIA's appear as aria_* in the flat form)."""
    return {k: v for k, v in to_dict(config).items() if k not in GROUP_FIELDS and not k.startswith("aria_")}


def group_key(config: DistillConfig) -> str:
    """Equal for configs that may train in one group (every option outside GROUP_FIELDS equal)."""
    return json.dumps(_shared_options(config), sort_keys=True)


def check_group(configs: Sequence[DistillConfig], mixed_precision: str = "no") -> None:
    """ValueError (one line) unless ``configs`` can train as one group under accelerate's
    ``mixed_precision``; reads nothing but the teacher folder's listing."""
    if not configs:
        raise ValueError("a student group needs at least one run")
    first = configs[0]
    for config in configs[1:]:
        if group_key(config) != group_key(first):
            shared, other = _shared_options(first), _shared_options(config)
            name = next(k for k in shared if shared[k] != other[k])
            raise ValueError(f"runs of one group must share every option but {', '.join(GROUP_FIELDS)}: "
                             f"{name} is {shared[name]!r} in one, {other[name]!r} in another")
    unsupported = {"grad_accum > 1": first.grad_accum > 1, "feedback_lag 1": first.feedback_lag,
                   "compile": first.compile, "channels_last": first.channels_last,
                   "gradient_checkpointing": first.gradient_checkpointing, "ema_offload": first.ema_offload,
                   "teacher_stream": first.teacher_stream,
                   "attention fa4": first.attention != "sdpa",
                   "aria signal text": any(c.method == "aria" and c.aria.signal == "text" for c in configs),
                   "feature projections (channel_scale below 1 with l_feat)": first.l_feat and first.channel_scale < 1,
                   "SDXL teachers": (Path(first.teacher) / "text_encoder_2").is_dir(),
                   "fp16": mixed_precision == "fp16"}
    named = [name for name, value in unsupported.items() if value]
    if named:
        raise ValueError(f"a student group does not support {', '.join(named)}: run these with `aria distill`")


@dataclass
class _Member:
    """One student of the group: what the single loop keeps per run."""

    config: DistillConfig
    sampler: object
    stream: object  # BatchStream
    state: object  # TrainingState
    run_dir: object  # RunDir
    batches: object  # Prefetcher


class StudentClipper:
    """Scales each student's gradients (slice i of every stacked tensor) to L2 norm <= ``max_norm``
    over all its tensors, as torch.nn.utils.clip_grad_norm_ does for one model.

    Its per-student views of the gradients (G x tensors of them: ~14 ms to make at G = 8 on the
    2-core CPU, a real share of a group step on the host) are made once and reused while the
    gradient tensors stay the same ones -- the group zeroes them in place, zero_grad(set_to_none=False)."""

    def __init__(self, max_norm: float):
        self.max_norm = max_norm
        self._grads: list = []
        self._slices: list = []

    def __call__(self, grads: list) -> None:
        import torch

        n, count = grads[0].shape[0], len(grads)
        if len(grads) != len(self._grads) or any(a is not b for a, b in zip(grads, self._grads)):
            self._grads, self._slices = list(grads), [g[i] for i in range(n) for g in grads]  # student-major
        norms = torch.stack(torch._foreach_norm(self._slices)).view(n, count).norm(dim=1)
        scale = (self.max_norm / (norms + 1e-6)).clamp(max=1.0)
        for i in range(n):
            torch._foreach_mul_(self._slices[i * count:(i + 1) * count], scale[i])


def train_group(configs: Sequence[DistillConfig], outs: Sequence[str | Path], resume: bool = False, *,
                on_step: Callable[[int, int, int], None] | None = None, prefetch: bool = True) -> list[Path]:
    """Run (or continue, ``resume``) the distillations ``configs`` into the run folders ``outs``
    as one group; returns the folders. Fresh runs need new or empty folders; resumed ones start
    from the latest step all of them have a checkpoint of. ``on_step(member, step, steps)`` is
    called after every optimizer step for each member (e.g. to report progress)."""
    import torch
    from accelerate import Accelerator
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor
    from diffusers.training_utils import EMAModel

    from aria_train.diffusion.models.feature_kd import FeatureHooks
    from aria_train.diffusion.models.students import feature_layer_map, make_student
    from aria_train.distill.batches import BatchStream, ConditionEncoder, Prefetcher
    from aria_train.distill.group_step import GroupModels, group_step
    from aria_train.distill.inputs import load_inputs, make_condition_sampler
    from aria_train.distill.losses import LOSS_NAMES, LossWeights
    from aria_train.distill.speed import make_optimizer, prepare_unets, set_process_speed
    from aria_train.distill.state import TrainingState
    from aria_train.distill.tally import Tally
    from aria_train.conditioning.feedback import gather_feedback
    from aria_train.evaluation.grids import SampleGrid
    from aria_train.runs.checkpoint import (commit_group_checkpoints, generator_state, load_group_checkpoint,
                                            stage_group_checkpoint)
    from aria_train.runs.run_dir import RunDir

    configs = [config.validate().with_absolute_paths() for config in configs]
    outs = [Path(out) for out in outs]
    if len(outs) != len(configs):
        raise ValueError(f"{len(configs)} configs but {len(outs)} run folders")
    starts = _resolve_starts(configs, outs, resume)
    first, n = configs[0], len(configs)
    accelerator = Accelerator()
    check_group(configs, accelerator.mixed_precision)
    if accelerator.num_processes > 1:
        raise ValueError("a student group runs in one process")
    inputs = load_inputs(first)
    device = accelerator.device
    set_process_speed(first.tf32)
    weight_dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
    teacher = inputs.teacher
    template = make_student(teacher, first.student_variant, first.channel_scale)  # every student starts as it
    layer_map = feature_layer_map(dict(teacher.config), dict(template.config), first.feature_kd) if first.l_feat else {}
    for frozen in (teacher, *inputs.prompts.encoders):
        frozen.to(device)
        if weight_dtype != torch.float32:
            frozen.to(dtype=weight_dtype)
    template.set_attn_processor(AttnProcessor())  # explicit products: vmap batches them
    template.to(device).train()
    prepare_unets(teacher, template, teacher_fp8=first.teacher_fp8)
    names = [name for name, _ in template.named_parameters()]
    stacked = [torch.nn.Parameter(p.detach().unsqueeze(0).repeat(n, *[1] * p.dim())) for p in template.parameters()]
    scratch = template  # holds one student at a time: to save, measure and sample it
    ema = EMAModel(stacked, decay=first.ema_decay, foreach=True)
    optimizer = make_optimizer(stacked, first.lr, first.weight_decay, device)
    models = GroupModels(teacher, template, dict(zip(names, stacked)), inputs.scheduler, layer_map,
                         FeatureHooks(teacher, layer_map.values()).attach(),
                         FeatureHooks(template, layer_map.keys()).attach(), accelerator.autocast)
    weights = LossWeights(first.l_out, first.l_feat, first.l_sd)
    clip = StudentClipper(first.max_grad_norm)
    encoder = ConditionEncoder(inputs, device)
    pool = inputs.pool

    def load_member(i: int) -> None:
        with torch.no_grad():
            torch._foreach_copy_(list(scratch.parameters()), [p[i] for p in stacked])

    def member_ema(i: int) -> EMAModel:
        one = EMAModel(scratch.parameters(), decay=first.ema_decay, model_cls=UNet2DConditionModel,
                       model_config=scratch.config, foreach=True)
        counters = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
        one.load_state_dict({**counters, "shadow_params": [s[i].clone() for s in ema.shadow_params]})
        return one

    members = []
    for i, (config, out, start) in enumerate(zip(configs, outs, starts)):
        sampler = make_condition_sampler(config, inputs)
        stream = BatchStream(config, inputs, sampler, encoder, 0, 1, device)
        state = TrainingState(config, sampler, stream, Tally(pool.num_regions))
        if start.state is not None:
            state.load_state_dict(start.state, start.same_run)
            one = member_ema(i)
            student, moments = load_group_checkpoint(start.checkpoint, one, names, start.state["sampler"],
                                                     stream.rng, stream.noise_generator)
            _restore_member(i, names, stacked, student, one, ema, optimizer, moments)
        members.append(_Member(config, sampler, stream, state, None, None))
    monitor = None
    if first.heldout_every:
        from aria_train.evaluation.heldout_monitor import HeldoutMonitor

        monitor = HeldoutMonitor(first.heldout, first.heldout_per_region, pool.num_regions or 1, inputs, teacher,
                                 device, first.blind_regions)
    grid = SampleGrid(inputs, encoder, teacher) if first.sample_every else None

    for i, (member, out, start) in enumerate(zip(members, outs, starts)):  # inputs are valid: write the runs
        member.run_dir = RunDir.open(out, member.config, True, member.state.metrics_position, fresh=not start.same_run)
        member.run_dir.log(f"{'resumed from ' + str(start.checkpoint) if start.checkpoint else 'started'} at step "
                           f"{member.state.step}/{first.steps} as student {i + 1} of a group of {n} (one process: "
                           f"aria_train.distill.group): method {member.config.method}, student "
                           f"{first.student_variant} x{first.channel_scale} ({scratch.num_parameters():,} params), "
                           f"mixed precision {accelerator.mixed_precision}, batch {first.batch_size}, pool "
                           f"{len(pool)} prompts, {len(inputs.paired)} paired samples")
        member.run_dir.progress(first.steps, member.state.step, enabled=False)
        member.batches = Prefetcher(member.stream, background=prefetch)

    def write_checkpoints(step: int) -> None:
        staged = []
        for i, member in enumerate(members):
            load_member(i)
            member.batches.settle()
            staged.append(stage_group_checkpoint(
                member.run_dir.checkpoints, step, scratch, member_ema(i),
                member.state.state_dict(member.run_dir.metrics_position()),
                {**generator_state(member.stream.rng, member.stream.noise_generator),
                 "sampler": member.sampler.state_dict()}, _member_moments(i, names, stacked, optimizer)))
        commit_group_checkpoints(staged, first.checkpoint_limit)
        for member, (_, final) in zip(members, staged):
            member.run_dir.export_csv()
            member.run_dir.log(f"checkpoint {final}")

    step = members[0].state.step
    interval_start = time.perf_counter()
    try:
        while step < first.steps:
            batches = [member.batches.next() for member in members]
            losses = group_step(models, batches, weights)
            feedbacks = [gather_feedback(accelerator.gather, b.regions, b.switched, b.nulled, b.timesteps, loss,
                                         LOSS_NAMES).wait() for b, loss in zip(batches, losses)]
            finite = all(feedback.finite for feedback in feedbacks)  # the host's one wait per step is above
            if finite:
                if first.max_grad_norm:
                    clip([p.grad for p in stacked])
                optimizer.step()
            optimizer.zero_grad(set_to_none=False)  # the same gradient tensors next step: the clipper's views hold
            step += 1
            for member, feedback in zip(members, feedbacks):
                member.state.tally.add(feedback)  # its own loss, logged if finite
                if pool.regions is not None:  # what was trained: nothing when the group skipped the step
                    (feedback if finite else dataclasses.replace(feedback, finite=False)).observe(member.sampler)
                member.state.step = step
                if not finite:
                    member.state.skip_step(step, member.run_dir.log, member.run_dir.checkpoints)
            if finite:
                ema.step(stacked)
            last = step == first.steps
            for i, member in enumerate(members):
                member.run_dir.advance()
                if on_step is not None:
                    on_step(i, step, first.steps)
            if step % first.log_every == 0 or last:
                seconds = time.perf_counter() - interval_start
                peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
                for i, member in enumerate(members):
                    record = member.state.tally.record(step, optimizer.param_groups[0]["lr"], member.state.nonfinite,
                                                       seconds, member.sampler.metrics(), peak_memory_gib=peak)
                    record["epoch"] = member.batches.cursor / len(inputs.paired)
                    if monitor is not None and step % first.heldout_every == 0:
                        load_member(i)
                        record.update(monitor.measure(scratch))
                    member.run_dir.write_metrics(record)
                    member.state.tally.reset()
                interval_start = time.perf_counter()
            if first.sample_every and (step % first.sample_every == 0 or last) and grid is not None:
                for i, member in enumerate(members):
                    load_member(i)
                    grid.save(member.run_dir.samples, step, scratch, member_ema(i))
            if (first.checkpoint_every and step % first.checkpoint_every == 0) or last:
                write_checkpoints(step)
    finally:
        for member in members:
            if member.batches is not None:
                member.batches.close()
            if member.run_dir is not None:
                member.run_dir.close()
                member.run_dir.export_csv()
                member.run_dir.unlock()
    for member in members:
        member.run_dir.log(f"finished at step {step}; EMA student in "
                           f"{member.run_dir.checkpoints}/step-{step:07d}/student_ema")
    accelerator.end_training()
    return outs


def _resolve_starts(configs: list[DistillConfig], outs: list[Path], resume: bool) -> list[RunStart]:
    """Each run's start: fresh, or (``resume``) its checkpoint at the latest step all runs have."""
    from aria_train.runs.checkpoint import STEP_DIR, list_checkpoints

    if not resume:
        return [RunStart.resolve(out, None) for out in outs]
    steps = [{int(STEP_DIR.fullmatch(p.name).group(1)): p for p in list_checkpoints(out / "checkpoints")} for out in outs]
    common = set.intersection(*(set(s) for s in steps))
    if not common:
        raise ValueError(f"the runs of the group have no checkpoint at a common step ({', '.join(map(str, outs))})")
    starts = [RunStart.resolve(out, str(s[max(common)])) for out, s in zip(outs, steps)]
    for config, start in zip(configs, starts):
        start.check_continues(config)
    return starts


def _member_moments(i: int, names: list[str], stacked: list, optimizer) -> dict:
    """Student i's slices of AdamW's state, by parameter name (empty before the first step)."""
    state = [optimizer.state.get(p, {}) for p in stacked]
    if not state[0]:
        return {}
    return {"step": float(state[0]["step"]),
            **{key: {name: s[key][i].detach().to("cpu", copy=True) for name, s in zip(names, state)}
               for key in ("exp_avg", "exp_avg_sq")}}


def _restore_member(i: int, names: list[str], stacked: list, weights: dict, one_ema, ema, optimizer,
                    moments: dict) -> None:
    """Put student i's checkpoint (weights, EMA, AdamW moments) into slice i of the group's state."""
    import torch

    with torch.no_grad():
        for name, p, shadow, mine in zip(names, stacked, ema.shadow_params, one_ema.shadow_params):
            p[i].copy_(weights[name])
            shadow[i].copy_(mine)
        ema.optimization_step = one_ema.optimization_step
        if moments:
            for name, p in zip(names, stacked):
                state = optimizer.state[p]
                if not state:
                    fused = optimizer.defaults.get("fused")
                    state["step"] = torch.tensor(0.0, dtype=torch.float32, device=p.device if fused else "cpu")
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                state["step"].fill_(moments["step"])
                state["exp_avg"][i].copy_(moments["exp_avg"][name])
                state["exp_avg_sq"][i].copy_(moments["exp_avg_sq"][name])
