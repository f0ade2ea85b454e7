"""The teacher's training loop, its evaluation and the teacher folder (see aria_train.teacher.config).

Data: batch i of process R is drawn from the world's ``sample_training_batch`` (either world
family) with a generator seeded by (seed, R, i) and tokenised by a data worker (a DataLoader
process; in-process on the CPU), worker w of W making batches w, w + W, ... so rendering and
tokenisation overlap the GPU work. The stream is therefore the same for any number of workers, and
a resumed run (aria_train.teacher.checkpoint) starts it at its step without replaying it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel

from aria_train.diffusion.sampling import SAMPLING_FILE, to_model_space
from aria_train.diffusion.targets import prediction_target
from aria_train.runs.atomic import atomic_output_dir, check_free
from aria_train.teacher.checkpoint import (CHECKPOINT_DIR, CONFIG_FILE, load_training_state, save_training_state,
                                           write_state)
from aria_train.teacher.config import TeacherConfig
from aria_train.worlds import AnyWorld, AnyWorldConfig, WorldConfig, load_world_config, make_world

GPU_WORKERS = 6  # data workers on a GPU: ~35 ms per 256-image batch each (measured on the CPU)


class WorldBatches(torch.utils.data.IterableDataset):
    """Endless (input_ids (B, L) int64, images (B, H, W, 3) uint8) training batches of a world,
    from batch ``start`` on; batch i's draws are seeded by (seed, rank, i). DataLoader hands the
    workers' batches out in turn, so its k-th batch is batch start + k for any worker count."""

    def __init__(self, world: AnyWorld, tokenizer, batch_size: int, seed: int, rank: int, start: int = 0):
        self.world, self.tokenizer, self.batch_size = world, tokenizer, batch_size
        self.seed, self.rank, self.start = seed, rank, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        index = self.start + worker
        while True:
            rng = np.random.default_rng([self.seed, self.rank, index])
            texts, images = self.world.sample_training_batch(self.batch_size, rng)
            yield tokenize(self.tokenizer, texts), torch.from_numpy(images)
            index += workers


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids (N, L) exactly as ``aria_train.diffusion.text.encode_prompts`` makes them (fixed length)."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def make_scheduler(config: TeacherConfig) -> DDPMScheduler:
    """The teacher's DDPM scheduler. Sampling steps are spaced "trailing" so that DDIM starts at
    t = T - 1, the pure-noise level that sampling from N(0, I) assumes (the "leading" default
    would start at 960 of 1000 for 25 steps, Lin et al. 2024)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=config.beta_schedule, clip_sample=True,
                         prediction_type=config.prediction_type, timestep_spacing="trailing")


def build_teacher(config: TeacherConfig, world: AnyWorld):
    """(unet, tokenizer, frozen text encoder, scheduler) of an untrained teacher, on the CPU."""
    from aria_train.diffusion.models.configs import tiny_unet_config
    from aria_train.diffusion.text import build_text_encoder, build_tokenizer

    tokenizer = build_tokenizer(world.vocabulary(), world.max_words() + 2)  # + <bos>, <eos>
    text_encoder = build_text_encoder(len(tokenizer), hidden=config.text_hidden, layers=config.text_layers,
                                      heads=config.text_heads, max_length=tokenizer.model_max_length, seed=config.seed)
    unet_config = tiny_unet_config(sample_size=world.config.image_size, in_channels=3,
                                   block_out_channels=tuple(config.channels), layers_per_block=config.layers_per_block,
                                   cross_attention_dim=config.text_hidden, attention_heads=config.attention_heads,
                                   norm_num_groups=config.norm_groups)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = UNet2DConditionModel(**unet_config)
    if config.train_text_encoder:
        text_encoder.train().requires_grad_(True)
    return unet, tokenizer, text_encoder, make_scheduler(config)


def _mixed_precision() -> str:
    """The accelerator's precision when launched by ``accelerate launch``; else bf16 on a GPU."""
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() else "no"


def train_teacher(config: TeacherConfig, out: Path, overwrite: bool = False, progress: bool = True,
                  resume: bool = False, finish: bool = False) -> dict | None:
    """Train, evaluate and write the teacher folder ``out``; the report on the main process, else None.

    With ``config.checkpoint_every`` > 0 the training state goes to out/checkpoint/ every that many
    steps (aria_train.teacher.checkpoint); ``resume`` continues from it exactly. A run that passes
    ``config.stop_after_seconds`` stops at its next checkpoint and returns None, leaving ``out`` a
    stopped run to resume. ``finish`` writes the stopped run's teacher at its checkpoint's step (the
    EMA weights of that step, no more training), on any kind of device: for a run whose time ran out."""
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the data workers fork after the first tokenisation
    world_config = load_world_config(config.world) if config.world else WorldConfig()
    world = make_world(world_config)
    unet, tokenizer, text_encoder, scheduler = build_teacher(config, world)
    accelerator = Accelerator(mixed_precision=_mixed_precision())
    device = accelerator.device
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolution kernels once
    unet.to(device)  # before the optimizer is built, so (fused) AdamW sees the device's parameters
    text_encoder.to(device)
    trained = [unet, text_encoder] if config.train_text_encoder else [unet]
    workers = config.workers if config.workers >= 0 else (GPU_WORKERS if device.type == "cuda" else 0)
    params = [p for model in trained for p in model.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda")
    lr_scheduler = get_scheduler(config.lr_schedule if config.lr_schedule == "cosine" else "constant_with_warmup",
                                 optimizer, num_warmup_steps=config.warmup_steps * accelerator.num_processes,
                                 num_training_steps=config.steps * accelerator.num_processes)
    *models, optimizer, lr_scheduler = accelerator.prepare(*trained, optimizer, lr_scheduler)
    unet, encoder = models[0], models[-1] if config.train_text_encoder else text_encoder
    bare = [accelerator.unwrap_model(m) for m in models]
    ema = EMAModel([p for m in bare for p in m.parameters()], decay=config.ema_decay, foreach=True)
    ema.to(device)
    generator = torch.Generator(device).manual_seed(config.seed * 1000 + accelerator.process_index)
    null_ids = tokenize(tokenizer, [""]).to(device)
    num_t = scheduler.config.num_train_timesteps
    checkpoint = out / CHECKPOINT_DIR
    trained_encoder = bare[-1] if config.train_text_encoder else None

    counters = {"step": 0, "log": [], "train_seconds": 0.0, "loss_sum": torch.zeros(()), "loss_count": 0}
    if resume or finish:  # finishing draws no more noise: the generator may come from another kind of device
        counters = load_training_state(checkpoint, accelerator, bare[0], optimizer, lr_scheduler, ema,
                                       None if finish else generator, trained_encoder)
        ema.to(device)
    elif config.checkpoint_every and accelerator.is_main_process:
        check_free(out, overwrite)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        config.save(out / CONFIG_FILE)  # what --resume continues with
    first, log, loss_count = counters["step"] + 1, counters["log"], counters["loss_count"]
    last = counters["step"] if finish else config.steps
    loss_sum = counters["loss_sum"].to(device)

    def counters_at(step: int) -> dict:
        return {"step": step, "log": log, "train_seconds": counters["train_seconds"] + time.time() - start,
                "loss_sum": loss_sum.cpu(), "loss_count": loss_count}

    start = time.time()
    if first <= last:  # finishing (no step left) starts no data workers
        batches = iter(torch.utils.data.DataLoader(
            WorldBatches(world, tokenizer, config.batch_size, config.seed, accelerator.process_index, start=first - 1),
            batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
            prefetch_factor=4 if workers else None, persistent_workers=workers > 0))
    bar = tqdm(range(first, last + 1), initial=first - 1, total=config.steps, desc="teacher", unit="step",
               disable=not (progress and accelerator.is_main_process))
    unet.train()
    for step in bar:
        ids, images = next(batches)
        x0 = to_model_space(images.to(device, non_blocking=True))
        drop = torch.rand(len(ids), device=device, generator=generator) < config.null_prob
        ids = torch.where(drop[:, None], null_ids, ids.to(device, non_blocking=True))  # null text for CFG
        with torch.set_grad_enabled(config.train_text_encoder):
            hidden = encoder(input_ids=ids).last_hidden_state
        noise = torch.randn(x0.shape, device=device, generator=generator)
        t = torch.randint(0, num_t, (len(ids),), device=device, generator=generator)
        pred = unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=hidden).sample
        loss = F.mse_loss(pred.float(), prediction_target(config.prediction_type, scheduler.alphas_cumprod, x0, noise, t))
        accelerator.backward(loss)
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step([p for m in bare for p in m.parameters()])
        loss_sum += loss.detach()
        loss_count += 1
        if step % config.log_every == 0 or step == config.steps:
            mean = accelerator.reduce(loss_sum, "mean").item() / loss_count  # the only host sync
            if not math.isfinite(mean):  # nothing more to learn: stop now, not after every step and the evaluation
                raise ValueError(f"the training loss is not finite at step {step} (--lr {config.lr:g} too large, "
                                 f"or --max-grad-norm 0 with an unstable start?)")
            record = {"step": step, "loss": mean, "lr": lr_scheduler.get_last_lr()[0],
                      "steps_per_s": (step - first + 1) / (time.time() - start)}
            log.append(record)
            bar.set_postfix(loss=f"{mean:.4f}")
            if accelerator.is_main_process:
                tqdm.write(f"step {step}/{config.steps} loss {mean:.4f} lr {record['lr']:.2e} "
                           f"{record['steps_per_s']:.2f} steps/s")
            loss_sum.zero_()
            loss_count = 0
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
            save_training_state(checkpoint, accelerator, bare[0], optimizer, lr_scheduler, ema, generator,
                                counters_at(step), trained_encoder)
            late = torch.tensor(float(time.time() - start > config.stop_after_seconds > 0), device=device)
            if accelerator.reduce(late, "max").item():  # every process stops at the same step
                if accelerator.is_main_process:
                    tqdm.write(f"stopped after step {step} of {config.steps}: continue with --resume")
                return None
    train_seconds = counters["train_seconds"] + time.time() - start
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    # a stopped run's folder (checkpoint_every) is replaced by the teacher folder
    with atomic_output_dir(out, overwrite or resume or bool(config.checkpoint_every)) as tmp:
        (tmp / CHECKPOINT_DIR).mkdir()
        write_state(tmp / CHECKPOINT_DIR, bare[0], optimizer, lr_scheduler, ema, counters_at(last),
                    trained_encoder)  # the end-of-training state, kept in the teacher folder
        bare = [accelerator.unwrap_model(m, keep_fp32_wrapper=False) for m in models]  # plain fp32 forward from here on
        ema.copy_to([p for m in bare for p in m.parameters()])
        unet, text_encoder = bare[0].eval(), bare[-1] if config.train_text_encoder else text_encoder
        text_encoder.eval().requires_grad_(False)  # frozen from now on, as aria_train.diffusion.text expects
        report = evaluate_teacher(unet, tokenizer, text_encoder, scheduler, world, config, progress)
        report.update(train_seconds=train_seconds, steps_trained=last, steps_per_s=last / train_seconds,
                      resumed=resume or finish, finished_early=finish,
                      final_train_loss=log[-1]["loss"] if log else None,
                      parameters=sum(p.numel() for p in unet.parameters()),
                      device=str(device), mixed_precision=accelerator.mixed_precision, world_size=accelerator.num_processes)
        write_teacher_folder(tmp, unet, tokenizer, text_encoder, scheduler, world_config, config)
        (tmp / "teacher_report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return report


def write_teacher_folder(folder: Path, unet: UNet2DConditionModel, tokenizer, text_encoder, scheduler: DDPMScheduler,
                         world_config: AnyWorldConfig, config: TeacherConfig) -> None:
    """The diffusers-layout teacher folder (unet/ in ``config.save_dtype``)."""
    from aria_train.diffusion.text import save_text_stack

    dtype = getattr(torch, config.save_dtype)
    unet.to(dtype).save_pretrained(folder / "unet", safe_serialization=True)
    unet.to(torch.float32)
    save_text_stack(folder, tokenizer, text_encoder.cpu())
    scheduler.save_pretrained(folder / "scheduler")
    world_config.save(folder / "world.json")
    config.save(folder / "teacher_config.json")
    (folder / SAMPLING_FILE).write_text(json.dumps({"guidance": config.eval_guidance}) + "\n")


@torch.no_grad()
def evaluate_teacher(unet: UNet2DConditionModel, tokenizer, text_encoder, scheduler: DDPMScheduler, world: AnyWorld,
                     config: TeacherConfig, progress: bool = False) -> dict:
    """Held-out denoising loss (per region and group), sample accuracy read by the world's checker
    (attributes; for a glyph world also the glyph's region and its bits), float16 effect. Prints a
    line per stage (minutes on a CPU); ``progress`` adds bars."""
    import copy

    import pandas as pd

    from aria_train.evaluation.discrepancy import fixed_timestep_errors
    from aria_train.evaluation.region_metrics import accuracy_by_region, region_means, summarise_groups
    from aria_train.diffusion.sampling import sample_texts, to_uint8_images
    from aria_train.diffusion.text import encode_prompts

    device = unet.device
    heldout = world.tables()["heldout"]
    x0 = to_model_space(torch.from_numpy(world.render(heldout)))
    hidden, _ = encode_prompts(tokenizer, text_encoder, heldout["text"].tolist(), device)
    rounded = copy.deepcopy(unet).to(getattr(torch, config.save_dtype)).float()
    seeds = [config.seed + i for i in range(len(heldout))]  # held-out row i always uses seed + i
    print(f"teacher evaluation: denoising loss of {len(heldout)} held-out prompts x {len(config.eval_timesteps)} "
          f"timesteps, with their text, the null text and as saved in {config.save_dtype}", flush=True)
    errors = fixed_timestep_errors({"loss": unet}, scheduler, x0, hidden, seeds, config.eval_timesteps,
                                   progress=progress)["loss"]
    # The same inputs with the null prompt: how much the teacher uses its text, per timestep.
    null, _ = encode_prompts(tokenizer, text_encoder, [""], device)
    unconditional = fixed_timestep_errors({"null": unet}, scheduler, x0, null.expand(len(heldout), -1, -1), seeds,
                                          config.eval_timesteps, progress=progress)["null"]
    change = fixed_timestep_errors({"saved": rounded}, scheduler, x0, hidden, seeds, config.eval_timesteps,
                                   reference=unet, progress=progress)["saved"]
    loss_regions = region_means(heldout, pd.DataFrame({"loss": errors.mean(1).numpy()}))
    report = {
        "eval_loss": {"all": float(errors.mean()), "null_text": float(unconditional.mean()),
                      "per_timestep": dict(zip(map(str, config.eval_timesteps), errors.mean(0).tolist())),
                      "null_text_per_timestep": dict(zip(map(str, config.eval_timesteps), unconditional.mean(0).tolist())),
                      "groups": summarise_groups(loss_regions, "loss", "max").to_dict("records"),
                      "per_region": loss_regions.to_dict("records")},
        "save_dtype": config.save_dtype,
        "save_dtype_change": {"mean_sq_prediction_change": float(change.mean()),
                              "relative_to_eval_loss": float(change.mean() / errors.mean())},
        "accuracy": {"groups": [], "per_region": []},
    }
    if config.eval_per_region > 0:
        chosen = heldout.groupby("region", sort=False).head(config.eval_per_region)
        print(f"teacher evaluation: {len(chosen)} samples ({config.eval_per_region} per region), "
              f"{config.eval_steps} DDIM steps", flush=True)
        x = sample_texts(unet, dict(scheduler.config), tokenizer, text_encoder, chosen["text"].tolist(),
                         [seeds[i] for i in chosen.index],
                         config.eval_steps, config.eval_guidance, progress=progress)
        per_region = accuracy_by_region(world.checker(), to_uint8_images(x), chosen)
        report["accuracy"] = {"samples": len(chosen), "steps": config.eval_steps, "guidance": config.eval_guidance,
                              "groups": summarise_groups(per_region, "all", "min").to_dict("records"),
                              "per_region": per_region.to_dict("records")}
        if "region_correct" in per_region:  # a glyph world: the gate is the glyph read right in every region
            report["accuracy"]["glyph_groups"] = summarise_groups(per_region, "region_correct", "min").to_dict("records")
    return report
