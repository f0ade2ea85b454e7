"""Distil a teacher UNet into a BK-SDM student by KD, random conditioning (RC) or ARIA.

The same trainer serves the embedded pixel-space world and Stable Diffusion (latent space): it
reads a teacher folder (diffusers layout), a paired cache of teacher samples with the pool rows
of their captions, and a prompt pool. Per sample: t ~ U{0..T-1}, noise from the teacher's DDPM
scheduler, the condition from RC's switch (methods rc and aria; aria draws the replacing
prompt's region from its tracker, aria_train.aria_sampler) and null-text dropout; the loss is
l_out * MSE(eps_S, eps_T) + l_feat * feature MSEs + l_sd * MSE(eps_S, eps)[paired].

Run it under `accelerate launch [--multi_gpu --num_processes N] [--mixed_precision bf16] -m aria_cli
distill ...` for data parallelism and mixed precision (mixed precision only comes from the
accelerator). On CPUs, `ACCELERATE_USE_CPU=true torchrun --standalone --nproc_per_node N -m aria_cli
distill ...` runs the same data-parallel code over gloo.
Writes OUT/config.json, log.txt, metrics.jsonl (+ metrics.csv), samples/ and checkpoints/;
`--resume latest` continues a run exactly where its newest checkpoint left it.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

from aria_train.config import DistillConfig

GRID_PROMPTS = 8  # prompts in a sample grid (one per region when the pool has regions)


class NonFiniteAbort(RuntimeError):
    """More than max_nonfinite steps were skipped for a non-finite loss."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run directory: created (must be new or empty) or, with --resume, continued")
    parser.add_argument("--config", metavar="FILE", help="JSON DistillConfig to start from; options given here override it (default: none)")
    parser.add_argument("--resume", metavar="latest|PATH", help="continue from OUT's newest checkpoint or from the checkpoint "
                        "folder PATH; the config is the checkpoint's with the options given here on top (default: fresh run)")
    hints = get_type_hints(DistillConfig)
    for f in dataclasses.fields(DistillConfig):
        hint = hints[f.name]
        unit = "" if f.metadata["unit"] in ("path", "choice") else f" [{f.metadata['unit']}]"
        default = "required" if f.default == "" else f"default: {f.default}"
        kwargs: dict = {"default": None, "help": f"{f.metadata['help']}{unit} ({default})"}
        if get_origin(hint) is Literal:
            kwargs["choices"] = get_args(hint)
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif hint in (int, float):
            kwargs["type"], kwargs["metavar"] = hint, "N" if hint is int else "X"
        else:
            kwargs["metavar"] = "PATH" if f.metadata["unit"] == "path" else "VALUE"
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def build_config(args: argparse.Namespace) -> DistillConfig:
    """Defaults < --config FILE (or, when resuming, the checkpoint's config) < options given."""
    if args.config:
        config = DistillConfig.load(args.config)
    elif args.resume:
        from aria_train.checkpoint import checkpoint_config, resolve_resume

        config = checkpoint_config(resolve_resume(args.resume, Path(args.out) / "checkpoints"))
    else:
        config = DistillConfig()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig) if getattr(args, f.name) is not None}
    return dataclasses.replace(config, **given).validate()


def run(args: argparse.Namespace) -> int:
    from aria_train.model_io import quiet_libraries

    quiet_libraries()  # per-file load/save bars would drown the training bar
    try:
        train(build_config(args), Path(args.out), args.resume)
    except NonFiniteAbort as err:
        print(f"aria: error: {err}", file=sys.stderr)
        return 1
    return 0


def train(config: DistillConfig, out: Path, resume: str | None = None) -> Path:
    """Run (or continue) a distillation; returns the run directory. See the module docstring."""
    import torch
    from accelerate import Accelerator
    from diffusers import UNet2DConditionModel
    from diffusers.training_utils import EMAModel

    from aria_train.aria_sampler import AriaSampler
    from aria_train.batches import BatchStream, ConditionEncoder
    from aria_train.checkpoint import (check_checkpoint, generator_state, load_checkpoint, resolve_resume,
                                       restore_generators, save_checkpoint)
    from aria_train.conditions import make_sampler
    from aria_train.inputs import load_inputs
    from aria_train.losses import LossWeights
    from aria_train.models.feature_kd import make_projections
    from aria_train.models.students import feature_layer_channels, feature_layer_map, make_student
    from aria_train.run_dir import RunDir
    from aria_train.speed import make_optimizer, prepare_unets
    from aria_train.step import StepModels, Student, train_step
    from aria_train.tally import Tally

    config.validate()
    out = Path(out)
    checkpoint = resolve_resume(resume, out / "checkpoints") if resume else None
    if checkpoint is None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty: choose a new --out or continue it with --resume latest")
    inputs = load_inputs(config)
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum)
    state = check_checkpoint(checkpoint, accelerator.num_processes) if checkpoint else None
    if state is not None:
        changed = config.differences(DistillConfig.from_dict(state["config"]))
        if changed:
            raise ValueError(f"cannot resume {checkpoint} exactly with a changed config: {'; '.join(changed)}")
    pool = inputs.pool
    if config.method == "aria":
        sampler = AriaSampler(pool.regions, int(inputs.scheduler.config.num_train_timesteps),
                              config.aria_options(config.grad_accum), pool.num_regions)
    else:
        sampler = make_sampler(config.sampler, len(pool), pool.regions)
    if state is not None:
        sampler.load_state_dict(state["sampler"])

    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    teacher = inputs.teacher
    student_unet = make_student(teacher, config.student_variant, config.channel_scale)  # fp32 copy, exact
    layer_map = feature_layer_map(dict(teacher.config), dict(student_unet.config))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        projections = make_projections(feature_layer_channels(dict(teacher.config), dict(student_unet.config)))
    student = Student(student_unet, projections).to(device).train()
    for frozen in (teacher, inputs.text_encoder):  # half precision only under a half-precision accelerator
        frozen.to(device)
        if weight_dtype != torch.float32:
            frozen.to(dtype=weight_dtype)
    prepare_unets(teacher, student_unet, compile=config.compile, channels_last=config.channels_last,
                  gradient_checkpointing=config.gradient_checkpointing)
    ema = EMAModel(student_unet.parameters(), decay=config.ema_decay, model_cls=UNet2DConditionModel,
                   model_config=student_unet.config)
    optimizer = make_optimizer(student.parameters(), config.lr, config.weight_decay, device)
    student, optimizer = accelerator.prepare(student, optimizer)
    bare = accelerator.unwrap_model(student)
    models = StepModels(teacher, student, inputs.scheduler, layer_map if config.l_feat else {})
    weights = LossWeights(config.l_out, config.l_feat, config.l_sd)
    encoder = ConditionEncoder(inputs, device)
    stream = BatchStream(config, inputs, sampler, encoder, accelerator.process_index, accelerator.num_processes, device)
    tally = Tally(pool.num_regions)

    step, nonfinite, metrics_position = 0, 0, None
    if checkpoint is not None:
        state, generators = load_checkpoint(accelerator, checkpoint, ema, [n for n, _ in bare.unet.named_parameters()])
        step, nonfinite = int(state["step"]), int(state["nonfinite"])
        stream.load_state(state["data_cursor"])
        restore_generators(generators, stream.rng, stream.noise_generator)
        tally.load_state_dict(state["tally"])
        if checkpoint.resolve().parent.parent == out.resolve():
            metrics_position = int(state["metrics_position"])
        elif out.exists() and any(out.iterdir()):
            raise ValueError(f"{out} is not empty and not the run of checkpoint {checkpoint}: choose a new --out")

    monitor = None
    if config.heldout_every and accelerator.is_main_process:
        from aria_train.heldout_monitor import HeldoutMonitor

        monitor = HeldoutMonitor(config.heldout, config.heldout_per_region, pool.num_regions or 1, inputs, teacher, device)

    # Inputs are valid: from here on the run directory is written.
    run_dir = RunDir.open(out, config, accelerator.is_main_process, metrics_position)
    run_dir.log(f"{'resumed from ' + str(checkpoint) if checkpoint else 'started'} at step {step}/{config.steps}: "
                f"method {config.method}, student {config.student_variant} x{config.channel_scale} "
                f"({sum(p.numel() for p in bare.unet.parameters()):,} params), {accelerator.num_processes} process(es), "
                f"mixed precision {accelerator.mixed_precision}, batch {config.batch_size}x{config.grad_accum}"
                f"x{accelerator.num_processes}, pool {len(pool)} prompts, {len(inputs.paired)} paired samples")
    grid = SampleGrid(inputs, encoder, teacher) if config.sample_every and accelerator.is_main_process else None
    if grid is not None and not grid.enabled:
        run_dir.log("no sample grids: a latent teacher without a vae/ folder")

    def write_checkpoint() -> None:
        trainer_state = {"step": step, "nonfinite": nonfinite, "sampler": sampler.state_dict(),
                         "metrics_position": run_dir.metrics_position(), "data_cursor": stream.state(),
                         "tally": tally.state_dict(), "config": config.to_dict()}
        path = save_checkpoint(accelerator, run_dir.checkpoints, step, bare.unet, ema, trainer_state,
                               {**generator_state(stream.rng, stream.noise_generator), "sampler": sampler.state_dict()},
                               config.checkpoint_limit)
        run_dir.export_csv()
        run_dir.log(f"checkpoint {path}")

    interval_start = time.perf_counter()
    run_dir.progress(config.steps, step)
    try:
        while step < config.steps:
            skipped = False
            for _ in range(config.grad_accum):
                batch = stream.next()
                with accelerator.accumulate(student):
                    losses = train_step(models, batch, weights, accelerator)
                    skipped |= not bool(losses["finite"])
                    if accelerator.sync_gradients:
                        if not skipped:
                            if config.max_grad_norm:
                                accelerator.clip_grad_norm_(student.parameters(), config.max_grad_norm)
                            optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                observe(accelerator, losses, batch, sampler, tally, pool.regions is not None)
            step += 1
            if skipped:
                nonfinite += 1
                tally.skipped += 1
                run_dir.log(f"step {step}: non-finite loss, step skipped ({nonfinite} so far)")
                if nonfinite > config.max_nonfinite:
                    raise NonFiniteAbort(f"{nonfinite} steps had a non-finite loss (max_nonfinite = "
                                         f"{config.max_nonfinite}); last good checkpoint in {run_dir.checkpoints}")
            elif not accelerator.optimizer_step_was_skipped:
                ema.step(bare.unet.parameters())
            run_dir.advance()
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                record = tally.record(step, optimizer.param_groups[0]["lr"], nonfinite, now - interval_start,
                                      sampler.metrics())
                record["epoch"] = stream.cursor / len(inputs.paired)
                if monitor is not None and step % config.heldout_every == 0:
                    record["heldout"] = monitor.measure(bare.unet)
                run_dir.write_metrics(record)
                tally.reset()
                interval_start = time.perf_counter()  # held-out measurement and IO are not training time
            if config.sample_every and (step % config.sample_every == 0 or step == config.steps):
                if grid is not None:
                    grid.save(run_dir, step, bare.unet, ema)
                accelerator.wait_for_everyone()
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps:
                write_checkpoint()
    finally:
        run_dir.close()
        run_dir.export_csv()  # also after an abort, so the CSV holds every record written
    run_dir.log(f"finished at step {step}; EMA student in {run_dir.checkpoints}/step-{step:07d}/student_ema")
    accelerator.end_training()
    return out


def observe(accelerator, losses: dict, batch, sampler, tally, has_regions: bool) -> None:
    """Gather one micro-batch's per-sample values from all processes; feed tally and sampler."""
    import numpy as np
    import torch

    device = losses["discrepancy"].device
    per_sample = torch.stack([
        torch.from_numpy(batch.regions).to(device, torch.float64),
        torch.from_numpy(batch.switched).to(device, torch.float64),
        torch.from_numpy(batch.prompt_ids < 0).to(device, torch.float64),
        batch.timesteps.to(torch.float64),
        losses["discrepancy"].to(torch.float64),
    ], dim=1)
    scalars = torch.stack([losses[k].detach().float() for k in ("total", "out", "feat", "sd")]).reshape(1, 4)
    per_sample = accelerator.gather(per_sample).cpu().numpy()
    scalars = accelerator.gather(scalars).cpu().double().numpy()
    regions = per_sample[:, 0].astype(np.int64)
    tally.add(scalars, bool(losses["finite"]), regions, per_sample[:, 1] > 0, per_sample[:, 2] > 0)
    if has_regions:
        keep = (regions >= 0) & np.isfinite(per_sample[:, 4])
        sampler.observe(regions[keep], per_sample[keep, 4], per_sample[keep, 3].astype(np.int64),
                        per_sample[keep, 1] > 0)


class SampleGrid:
    """Sample grids of the EMA student beside the teacher for fixed prompts and seeds (main process).

    A teacher folder with vae/ is latent (samples are decoded); without, a 3-channel teacher is
    pixel-space (shown directly) and any other has nothing to show.
    """

    def __init__(self, inputs, encoder, teacher):
        import numpy as np

        self.vae_dir, self.scheduler_config = inputs.vae_dir, dict(inputs.scheduler.config)
        self.enabled = self.vae_dir is not None or teacher.config.in_channels == 3
        regions = inputs.pool.regions
        if regions is None:
            rows = np.arange(min(GRID_PROMPTS, len(inputs.pool)))
        else:
            firsts = np.unique(regions, return_index=True)[1]
            rows = np.sort(firsts)[:GRID_PROMPTS]
        self.hidden = encoder(rows)
        self.null = encoder.null
        self.seeds = list(range(len(rows)))
        self.shape = tuple(inputs.paired.shape("sample")[1:])
        self.teacher = teacher
        self.teacher_images = None
        self.vae = None

    def _images(self, unet):
        from aria_train.sampling import decode_latents, sample, to_uint8_images

        x = sample(unet, self.scheduler_config, self.hidden, self.null, self.seeds, self.shape)
        if self.vae_dir is not None:
            if self.vae is None:
                from diffusers import AutoencoderKL

                self.vae = AutoencoderKL.from_pretrained(self.vae_dir, local_files_only=True).to(unet.device, unet.dtype)
            x = decode_latents(self.vae, x)
        return to_uint8_images(x)

    def save(self, run_dir, step: int, student_unet, ema) -> None:
        from aria_train.sampling import save_grid

        if not self.enabled:
            return
        if self.teacher_images is None:
            self.teacher_images = self._images(self.teacher)
        ema.store(student_unet.parameters())
        ema.copy_to(student_unet.parameters())
        try:
            student_unet.eval()
            student_images = self._images(student_unet)
        finally:
            student_unet.train()
            ema.restore(student_unet.parameters())
        save_grid([self.teacher_images, student_images], ["teacher", f"EMA {step}"],
                  run_dir.samples / f"step-{step:07d}.png")
