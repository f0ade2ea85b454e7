"""The distillation loop: a teacher UNet into a BK-SDM student by KD, random conditioning (RC) or ARIA.

The same trainer serves the embedded pixel-space worlds and Stable Diffusion (latent space): it
reads a teacher folder (diffusers layout), a paired cache of teacher samples with the pool rows
of their captions, and a prompt pool. Per sample: t ~ U{0..T-1}, noise from the teacher's DDPM
scheduler, the condition from RC's switch (methods rc and aria; aria draws the replacing
prompt's region from its tracker, aria_train.conditioning.aria) and null-text dropout; the loss is
l_out * MSE(out_S, out_T) + l_feat * feature MSEs + l_sd * MSE(out_S, target)[paired].

Data parallelism and mixed precision come from accelerate (``accelerate launch`` sets them).
Writes OUT/config.json, log.txt, metrics.jsonl (+ metrics.csv), samples/ and checkpoints/
(aria_train.runs); a run started from a checkpoint continues exactly where it left off.

Keeping the device busy: the next micro-batch's draft (paired rows, timesteps, samples, noise,
their copies to the device) is drawn in a background thread while the current one trains
(aria_train.distill.batches.Prefetcher); its conditions are drawn after the current
micro-batch's feedback, because ARIA's pi depends on it -- so a run is bitwise the run of the
sequential loop, and resumes exactly. The loop itself waits on the device once per
micro-batch, for that feedback (PendingFeedback.wait: one packed copy): it says whether the
gradients may be used (a non-finite loss skips the optimizer step) and feeds the tracker before
the next draw. ``--feedback-lag 1`` moves that wait one micro-batch later, behind the next
micro-batch's launch, and skips a non-finite step on the device instead
(aria_train.distill.lagged_feedback); its metrics records are written one micro-batch late too,
after the push that reads their step, so a record does not wait for the device either. Its
copies to the device do not wait, and nothing else is read back but what the held-out
measurement, sample grids and checkpoints need (train_step runs its backward without looking
at ``finite``: the optimizer step, after the wait, does; token ids go to the device from pinned
memory, aria_train.device). Waits outside the loop: the L_sd term selects its paired rows with a
boolean mask (aria_train.distill.losses, only with l_sd > 0), and fp16 loss scaling checks the
gradients for inf before each optimizer step (not bf16).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

from aria_train.distill.config import DistillConfig
from aria_train.distill.state import NonFiniteAbort, RunStart

__all__ = ["NonFiniteAbort", "train"]


def train(config: DistillConfig, out: Path, resume: str | None = None, *, start: RunStart | None = None,
          progress: bool = True, on_step: Callable[[int, int], None] | None = None, prefetch: bool = True) -> Path:
    """Run (or continue) a distillation; returns the run directory.

    ``resume``: None (fresh: OUT must be new or empty), "latest" or a checkpoint folder; a caller
    that already resolved it passes ``start`` instead. ``progress``: show a progress bar;
    ``on_step(step, steps)`` is called after every optimizer step (main process), e.g. to report
    progress to a parent process. ``prefetch=False`` draws every micro-batch in the main thread
    when it is needed: the same run, slower (the reference the overlapped loop is tested against).
    """
    import torch
    from accelerate import Accelerator
    from diffusers import UNet2DConditionModel
    from diffusers.training_utils import EMAModel

    from aria_train.conditioning.feedback import gather_feedback
    from aria_train.diffusion.models.feature_kd import make_projections
    from aria_train.diffusion.models.students import feature_layer_channels, feature_layer_map, make_student
    from aria_train.distill.batches import BatchStream, ConditionEncoder, Prefetcher
    from aria_train.distill.ema_offload import OffloadedEMA
    from aria_train.distill.inputs import load_inputs, make_condition_sampler
    from aria_train.distill.lagged_feedback import LaggedFeedback
    from aria_train.distill.losses import LOSS_NAMES, LossWeights
    from aria_train.distill.speed import (compile_loss, make_optimizer, prepare_text_encoder, prepare_unets,
                                         set_process_speed)
    from aria_train.distill.state import TrainingState
    from aria_train.distill.step import StepModels, Student, train_step
    from aria_train.distill.tally import Tally
    from aria_train.evaluation.grids import SampleGrid
    from aria_train.runs.checkpoint import generator_state, load_checkpoint, save_checkpoint
    from aria_train.runs.run_dir import RunDir

    config = config.validate().with_absolute_paths()
    out = Path(out)
    start = start if start is not None else RunStart.resolve(out, resume)
    start.check_continues(config)
    inputs = load_inputs(config)
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum)
    if config.teacher_stream and accelerator.device.type != "cuda":
        raise ValueError(f"--teacher-stream needs a CUDA device; this run's is {accelerator.device.type}")
    if config.feedback_lag and accelerator.mixed_precision == "fp16":
        raise ValueError("feedback_lag 1 needs bf16 or no mixed precision: fp16's loss scaler decides on the host "
                         "whether to skip a step")
    pool = inputs.pool
    sampler = make_condition_sampler(config, inputs)

    device = accelerator.device
    set_process_speed(config.tf32)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    teacher = inputs.teacher
    student_unet = make_student(teacher, config.student_variant, config.channel_scale)  # fp32 copy, exact
    layer_map = feature_layer_map(dict(teacher.config), dict(student_unet.config), config.feature_kd)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        projections = make_projections(feature_layer_channels(dict(teacher.config), dict(student_unet.config),
                                                              config.feature_kd))
    student = Student(student_unet, projections).to(device).train()
    for frozen in (teacher, *inputs.prompts.encoders):  # half precision only under a half-precision accelerator
        frozen.to(device)
        if weight_dtype != torch.float32:
            frozen.to(dtype=weight_dtype)
    prepare_unets(teacher, student_unet, compile=config.compile, channels_last=config.channels_last,
                  gradient_checkpointing=config.gradient_checkpointing, teacher_fp8=config.teacher_fp8,
                  attention=config.attention)
    for text_encoder in inputs.prompts.encoders:
        prepare_text_encoder(text_encoder, compile=config.compile)
    # foreach: a few multi-tensor kernels per step instead of three per parameter tensor, whose
    # launches the GPU would wait for after every step
    ema = EMAModel(student_unet.parameters(), decay=config.ema_decay, model_cls=UNet2DConditionModel,
                   model_config=student_unet.config, foreach=True)
    optimizer = make_optimizer(student.parameters(), config.lr, config.weight_decay, device,
                               fused=bool(config.feedback_lag))
    student, optimizer = accelerator.prepare(student, optimizer)
    bare = accelerator.unwrap_model(student)
    # before the checkpoint is loaded: its EMA then goes straight to host memory
    offload = OffloadedEMA(ema, bare.unet.parameters(), getattr(optimizer, "optimizer", optimizer)) \
        if config.ema_offload else None

    def settled_ema() -> EMAModel:
        """The EMA with every closed step's update in it (the offloaded one's update in flight done)."""
        return offload.settled() if offload is not None else ema
    models = StepModels(teacher, student, inputs.scheduler, layer_map if config.l_feat else {})
    if config.teacher_stream:
        models.teacher_stream = torch.cuda.Stream(device)
    if config.compile:
        models.loss_fn = compile_loss()
    weights = LossWeights(config.l_out, config.l_feat, config.l_sd)
    encoder = ConditionEncoder(inputs, device)
    if config.method == "aria" and config.aria.signal == "text":  # the tracker sees the prompt's effect
        models.null_hidden, models.text_signal_rows = encoder.null, config.aria.observe
    stream = BatchStream(config, inputs, sampler, encoder, accelerator.process_index, accelerator.num_processes, device)
    state = TrainingState(config, sampler, stream, Tally(pool.num_regions))
    if start.state is not None:
        state.load_state_dict(start.state, start.same_run)
        load_checkpoint(accelerator, start.checkpoint, ema, [n for n, _ in bare.unet.named_parameters()],
                        start.state["sampler"], stream.rng, stream.noise_generator)

    monitor = None
    if config.heldout_every and accelerator.is_main_process:
        from aria_train.evaluation.heldout_monitor import HeldoutMonitor

        monitor = HeldoutMonitor(config.heldout, config.heldout_per_region, pool.num_regions or 1, inputs, teacher, device,
                                 config.blind_regions)

    # Inputs are valid: from here on the run directory is written.
    run_dir = RunDir.open(out, config, accelerator.is_main_process, state.metrics_position, fresh=not start.same_run)
    run_dir.log(f"{'resumed from ' + str(start.checkpoint) if start.checkpoint else 'started'} at step "
                f"{state.step}/{config.steps}: method {config.method}, student {config.student_variant} "
                f"x{config.channel_scale} ({sum(p.numel() for p in bare.unet.parameters()):,} params), "
                f"{accelerator.num_processes} process(es), mixed precision {accelerator.mixed_precision}, batch "
                f"{config.batch_size}x{config.grad_accum}x{accelerator.num_processes}, pool {len(pool)} prompts, "
                f"{len(inputs.paired)} paired samples")
    grid = SampleGrid(inputs, encoder, teacher) if config.sample_every and accelerator.is_main_process else None
    if grid is not None and not grid.enabled:
        run_dir.log("no sample grids: a latent teacher without a vae/ folder")

    def write_checkpoint() -> None:
        if lagged is not None:  # the step complete (a no-op where the loop has drained already)
            lagged.drain()
        batches.settle()  # the stream's position after the batches trained on, not after the next draft
        path = save_checkpoint(accelerator, run_dir.checkpoints, state.step, bare.unet, settled_ema(),
                               state.state_dict(run_dir.metrics_position()),
                               {**generator_state(stream.rng, stream.noise_generator), "sampler": sampler.state_dict()},
                               config.checkpoint_limit)
        run_dir.export_csv()
        run_dir.log(f"checkpoint {path}")

    def close_step(number: int, finite: bool) -> None:
        """Optimizer step ``number`` is done: count it if its loss was not finite, else update the EMA."""
        if not finite:
            state.skip_step(number, run_dir.log, run_dir.checkpoints)
        elif not accelerator.optimizer_step_was_skipped:
            (offload or ema).step(bare.unet.parameters())

    lagged = LaggedFeedback(state, sampler if pool.regions is not None else None, close_step) \
        if config.feedback_lag else None
    interval_start = time.perf_counter()
    deferred = None  # lag 1: a record whose step is read by the next micro-batch's push, not by a drain

    def write_record(step: int, lr: float, extra: dict, epoch: float) -> None:
        """The metrics record of the interval ending at ``step`` (its micro-batches all read),
        with the sampler's metrics and the epoch as they were at the end of that step."""
        nonlocal interval_start
        now = time.perf_counter()
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        record = state.tally.record(step, lr, state.nonfinite, now - interval_start, extra, peak_memory_gib=peak)
        record["epoch"] = epoch
        if monitor is not None and step % config.heldout_every == 0:
            record.update(monitor.measure(bare.unet))
        run_dir.write_metrics(record)
        state.tally.reset()
        interval_start = time.perf_counter()  # held-out measurement and IO are not training time

    run_dir.progress(config.steps, state.step, enabled=progress)
    batches = Prefetcher(stream, background=prefetch)
    try:
        while state.step < config.steps:
            skipped = False
            not_finite = None  # lag 1: whether a micro-batch of this step was not finite, on the device
            for micro in range(config.grad_accum):
                batch = batches.next()
                with accelerator.accumulate(student):
                    losses = train_step(models, batch, weights, accelerator)
                    pending = gather_feedback(accelerator.gather, batch.regions, batch.switched, batch.nulled,
                                              batch.timesteps, losses, LOSS_NAMES)
                    if lagged is not None:  # the wait, for the micro-batch before, while this one trains
                        lagged.push(pending, state.step + 1, micro == config.grad_accum - 1)
                        if deferred is not None:  # that read ended the step of the deferred record
                            write_record(**deferred)
                            deferred = None
                        bad = ~losses["finite"]
                        not_finite = bad if not_finite is None else not_finite | bad
                    else:
                        # the one wait on the device: the optimizer step below depends on `finite`,
                        # the next micro-batch's draw on the tracker that observes this one
                        feedback = pending.wait()
                        skipped |= not feedback.finite
                    if accelerator.sync_gradients:
                        if lagged is not None:
                            bare_optimizer = getattr(optimizer, "optimizer", optimizer)
                            bare_optimizer.found_inf = not_finite.float()  # fused AdamW skips the step on the device
                        if not skipped:
                            if config.max_grad_norm:
                                accelerator.clip_grad_norm_(student.parameters(), config.max_grad_norm)
                            optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                if lagged is None:
                    state.tally.add(feedback)
                    if pool.regions is not None:
                        feedback.observe(sampler)
            state.step += 1
            step = state.step
            last = step == config.steps
            record_now = step % config.log_every == 0 or last
            grid_now = config.sample_every and (step % config.sample_every == 0 or last)
            checkpoint_now = (config.checkpoint_every and step % config.checkpoint_every == 0) or last
            # lag 1: a plain record waits for its step no more than the loop does; it is written
            # after the next micro-batch's push has read the step (the device still busy)
            defer = (lagged is not None and record_now and not (grid_now or checkpoint_now)
                     and not (monitor is not None and step % config.heldout_every == 0))
            if lagged is None:
                close_step(step, not skipped)
            elif (record_now or grid_now or checkpoint_now) and not defer:
                lagged.drain()  # the step complete: its tally, EMA update and non-finite count
            run_dir.advance()
            if on_step is not None and accelerator.is_main_process:
                on_step(step, config.steps)
            if record_now:  # the sampler's metrics copied now: the next push observes this step
                fields = dict(step=step, lr=optimizer.param_groups[0]["lr"], extra=copy.deepcopy(sampler.metrics()),
                              epoch=batches.cursor / len(inputs.paired))
                if defer:
                    deferred = fields
                else:
                    write_record(**fields)
            if grid_now:
                if grid is not None:
                    run_dir.status(f"step {step}: writing the sample grid")
                    grid.save(run_dir.samples, step, bare.unet, settled_ema())
                accelerator.wait_for_everyone()
            if checkpoint_now:
                run_dir.status(f"step {step}: writing the checkpoint")
                write_checkpoint()
    finally:
        batches.close()
        if offload is not None:
            offload.close()
        run_dir.close()
        run_dir.export_csv()  # also after an abort, so the CSV holds every record written
        run_dir.unlock()
    run_dir.log(f"finished at step {state.step}; EMA student in {run_dir.checkpoints}/step-{state.step:07d}/student_ema")
    accelerator.end_training()
    return out
