"""A teacher run's training state, so that a stopped run continues exactly (`aria teacher --resume`)
or ends where it stopped (`--finish`: the EMA weights of the checkpoint's step; no generator needed).

    OUT/checkpoint/
        unet_raw/            the non-EMA UNet (save_pretrained)
        training_state.pt    step, AdamW, LR schedule, EMA, the trained text encoder's weights, the
                             loss log, the running loss sum since the last log line, training seconds
        rng-rank{R}.pt       process R's noise generator (null-text drops, noise, timesteps)

The data stream needs no state: batch i is drawn from a generator seeded by (seed, rank, i)
(train.WorldBatches). A run with ``checkpoint_every`` > 0 writes OUT/teacher_config.json and this
folder while it trains (OUT is then a *stopped run* until the teacher folder replaces it); every
run leaves the end-of-training state in its teacher folder. Each save goes into a temporary folder
renamed into place, so a run killed midway keeps its previous checkpoint.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from aria_train.runs.atomic import replace_folder

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "training_state.pt"
CONFIG_FILE = "teacher_config.json"
# options that change neither the weights nor the data a run trains on: a resumed run may change them
RUN_OPTIONS = ("log_every", "workers", "checkpoint_every", "stop_after_seconds", "save_dtype", "eval_per_region",
               "eval_steps", "eval_guidance", "eval_timesteps")


def is_stopped_run(out: Path) -> bool:
    """Whether ``out`` holds a teacher run's checkpoint but not (yet) its teacher folder."""
    return (out / CHECKPOINT_DIR / STATE_FILE).is_file() and not (out / "unet").exists()


def write_state(folder: Path, unet, optimizer, lr_scheduler, ema, state: dict, text_encoder=None) -> None:
    """Write unet_raw/ and training_state.pt into ``folder`` (the main process's part; the teacher
    folder's end-of-training state is this alone). ``unet`` / ``text_encoder`` are the unwrapped
    models (the encoder only when it is trained), ``state`` the loop's counters: step, log,
    train_seconds, the ``loss_sum`` tensor and ``loss_count``."""
    unet.save_pretrained(folder / "unet_raw", safe_serialization=True)
    torch.save({**state, "optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                "ema": ema.state_dict(), "text_encoder": None if text_encoder is None else text_encoder.state_dict()},
               folder / STATE_FILE)


def save_training_state(folder: Path, accelerator, unet, optimizer, lr_scheduler, ema, generator: torch.Generator,
                        state: dict, text_encoder=None) -> None:
    """Write a resumable checkpoint into ``folder``: ``write_state`` and every process's generator
    (all processes call this; the folder is replaced atomically)."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(generator.get_state(), tmp / f"rng-rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        write_state(tmp, unet, optimizer, lr_scheduler, ema, state, text_encoder)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_folder(tmp, folder)
    accelerator.wait_for_everyone()


def load_training_state(folder: Path, accelerator, unet, optimizer, lr_scheduler, ema,
                        generator: torch.Generator | None, text_encoder=None) -> dict:
    """Restore what ``save_training_state`` wrote into the (unwrapped) models, optimizer, LR
    schedule, EMA and this process's generator (none: a run that trains no further); return the
    loop's counters. ValueError (one line) for a checkpoint that does not fit the models or is incomplete."""
    from safetensors.torch import load_file

    rng = folder / f"rng-rank{accelerator.process_index}.pt"
    weights = folder / "unet_raw" / "diffusion_pytorch_model.safetensors"
    needed = (folder / STATE_FILE, weights) if generator is None else (folder / STATE_FILE, rng, weights)
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise ValueError(f"{folder} is not a complete teacher checkpoint for {accelerator.num_processes} process(es): "
                         f"missing {', '.join(missing)}")
    try:
        saved_rng = None if generator is None else torch.load(rng, weights_only=True)
        # a CUDA generator's state is 16 bytes, a CPU one's 5,056
        if generator is not None and saved_rng.numel() != generator.get_state().numel():
            raise ValueError(f"it was written on another kind of device than {generator.device.type}; resume it on "
                             "the kind that trained it (its noise generator cannot move)")
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
        unet.load_state_dict(load_file(weights))
        if text_encoder is not None:
            text_encoder.load_state_dict(state["text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        ema.load_state_dict(state["ema"])
        if generator is not None:
            generator.set_state(saved_rng)
    except Exception as err:  # torch / safetensors raise many types for a file that does not fit
        raise ValueError(f"cannot load teacher checkpoint {folder}: {str(err).splitlines()[0]}") from None
    return {k: state[k] for k in ("step", "log", "train_seconds", "loss_sum", "loss_count")}
