"""Train the embedded world's teacher (a text-conditioned 32x32 pixel UNet) and write its folder.

The teacher learns v-prediction (aria_train.targets says why; --prediction-type epsilon is the
other choice) on (prompt, image) pairs rendered on the fly uniformly over
the WHOLE world (every region, unseen and underrepresented ones included: the teacher knows
what the students will be asked about), with 10% null-text dropout for classifier-free guidance.
The text stack is the world's word-level tokenizer and a small CLIP text encoder (aria_train.text)
drawn from a seed. With no pretrained encoder to start from, the encoder is by default trained
together with the UNet, as GLIDE trains its text transformer from scratch, and frozen from then
on: students, caches and evaluation see a fixed encoder, exactly as with SD's CLIP.
(--no-train-text-encoder keeps the random encoder frozen throughout; in a 16x16, 800-step CPU
comparison neither variant had learned the attributes yet, so the choice is not yet measured.)

Noise schedule: DDPM with T = 1000 and the cosine schedule (squaredcos_cap_v2, Nichol &
Dhariwal 2021). At 32x32 pixels the linear schedule of DDPM destroys the image too early (its
last quarter of timesteps is nearly pure noise and teaches little), and SD's scaled_linear is
tuned for 64x64 VAE latents; the cosine schedule spends the timesteps evenly across noise
levels. ``clip_sample`` stays on because pixels are known to lie in [-1, 1]: DDIM clips its
x0 estimate, which keeps the first, nearly pure-noise, steps stable.

Writes OUT/ (atomically: built under a temporary name, renamed when done):
    unet/ (EMA weights, safetensors, float16 by default)  text_encoder/  tokenizer/
    scheduler/  world.json  teacher_config.json  teacher_report.json  train_log.jsonl
    checkpoint/ (unet_raw/ non-EMA weights, training_state.pt with AdamW, LR schedule and EMA
                 states: not needed to use the teacher; don't ship it)
teacher_report.json holds the final denoising loss of the EMA weights on the held-out prompts
(rendered images, fixed timesteps and noise; also with the null prompt instead, which shows how
much the teacher uses the text), the attribute accuracy of DDIM + CFG samples of
held-out prompts per region and per group (mean, worst region), and how much storing the
weights in float16 changes the predictions.

Run it on a GPU with ``accelerate launch --mixed_precision bf16 -m aria_cli teacher --out DIR``
or plainly ``aria teacher --out DIR`` (bf16 on a GPU, fp32 on the CPU). The shipped teacher
(aria_train/assets/teacher) was made by scripts/ship_teacher.sh, which holds its exact options
(24 px world, channels 32 64 64, batch 1024, 1400 steps); tests pass a tiny model and a few steps.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args, get_type_hints


def _doc(unit: str, text: str) -> dict:
    return {"unit": unit, "help": text}


@dataclass
class TeacherConfig:
    """Everything that determines a teacher (saved as OUT/teacher_config.json)."""

    world: str = field(default="", metadata=_doc("path", "world.json of the world to learn; empty: the default WorldConfig"))
    channels: list[int] = field(default_factory=lambda: [64, 128, 128], metadata=_doc("channels", "UNet block_out_channels, one per stage"))
    layers_per_block: int = field(default=2, metadata=_doc("blocks", "residual(+attention) blocks per UNet stage"))
    attention_heads: int = field(default=4, metadata=_doc("heads", "attention heads per UNet attention layer"))
    norm_groups: int = field(default=32, metadata=_doc("groups", "GroupNorm groups; must divide every channel count"))
    text_hidden: int = field(default=64, metadata=_doc("features", "text encoder width = UNet cross-attention width"))
    text_layers: int = field(default=2, metadata=_doc("layers", "text encoder transformer layers"))
    text_heads: int = field(default=4, metadata=_doc("heads", "text encoder attention heads"))
    train_text_encoder: bool = field(default=True, metadata=_doc("flag", "train the text encoder with the UNet, then freeze it (off: the seeded random encoder stays frozen)"))
    prediction_type: Literal["v_prediction", "epsilon"] = field(
        default="v_prediction", metadata=_doc("choice", "what the UNet predicts; v weights the high noise levels where the prompt matters (aria_train.targets)"))
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = field(
        default="squaredcos_cap_v2", metadata=_doc("choice", "DDPM beta schedule (T = 1000); cosine suits 32x32 pixels"))
    steps: int = field(default=8000, metadata=_doc("optimizer steps", "training length"))
    batch_size: int = field(default=256, metadata=_doc("images", "batch per device"))
    lr: float = field(default=3e-4, metadata=_doc("1/step", "AdamW peak learning rate"))
    lr_schedule: Literal["cosine", "constant"] = field(default="cosine", metadata=_doc("choice", "after warm-up: cosine decay to 0, or constant"))
    warmup_steps: int = field(default=500, metadata=_doc("optimizer steps", "linear learning-rate warm-up"))
    weight_decay: float = field(default=0.01, metadata=_doc("relative to lr", "AdamW decoupled weight decay"))
    max_grad_norm: float = field(default=1.0, metadata=_doc("L2 norm", "gradient clipping threshold; 0 = none"))
    ema_decay: float = field(default=0.999, metadata=_doc("per step", "maximum EMA decay (warm-up (1+n)/(10+n) below it)"))
    null_prob: float = field(default=0.1, metadata=_doc("probability", "that a training prompt becomes the null text"))
    seed: int = field(default=0, metadata=_doc("integer", "seed of weights, data, noise and timesteps"))
    save_dtype: Literal["float16", "float32"] = field(default="float16", metadata=_doc("choice", "dtype of the shipped unet/ weights"))
    eval_per_region: int = field(default=24, metadata=_doc("prompts", "held-out prompts per region sampled for the attribute accuracy"))
    eval_steps: int = field(default=25, metadata=_doc("DDIM steps", "sampling steps of the evaluation samples"))
    eval_guidance: float = field(default=7.5, metadata=_doc("scale", "classifier-free guidance of the evaluation samples"))
    eval_timesteps: list[int] = field(default_factory=lambda: [100, 300, 500, 700, 900, 980], metadata=_doc("timesteps", "where the held-out denoising loss is measured"))
    log_every: int = field(default=200, metadata=_doc("optimizer steps", "between log lines"))
    workers: int = field(default=-1, metadata=_doc("processes", "data-rendering workers; -1: 6 on a GPU, 0 (in-process) on the CPU"))

    def validate(self) -> "TeacherConfig":
        """Raise ValueError (one line) for a value outside its domain; return self."""
        hints = get_type_hints(TeacherConfig)
        for f in dataclasses.fields(self):
            choices = get_args(hints[f.name])
            if getattr(hints[f.name], "__origin__", None) is Literal and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        for name in ("layers_per_block", "attention_heads", "norm_groups", "text_hidden", "text_layers",
                     "text_heads", "steps", "batch_size", "lr", "log_every", "eval_steps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "weight_decay", "max_grad_norm", "eval_per_region", "eval_guidance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise ValueError(f"channels needs at least 2 positive stages, got {self.channels}")
        if self.text_hidden % self.text_heads:
            raise ValueError(f"text_hidden {self.text_hidden} must be divisible by text_heads {self.text_heads}")
        if not 0.0 <= self.null_prob <= 1.0 or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("null_prob must be in [0, 1] and ema_decay in [0, 1)")
        if not self.eval_timesteps or min(self.eval_timesteps) < 0 or max(self.eval_timesteps) >= 1000:
            raise ValueError(f"eval_timesteps must lie in [0, 1000), got {self.eval_timesteps}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TeacherConfig":
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown teacher config fields: {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="teacher folder to write (must not exist or be empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    hints = get_type_hints(TeacherConfig)
    for f in dataclasses.fields(TeacherConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs: dict = {"default": default, "help": f"{f.metadata['help']} [{f.metadata['unit']}] (default: %(default)s)"}
        hint = hints[f.name]
        if getattr(hint, "__origin__", None) is Literal:
            kwargs["choices"] = get_args(hint)
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif getattr(hint, "__origin__", None) is list:
            kwargs.update(nargs="+", type=int)
        else:
            kwargs["type"] = hint
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def run(args: argparse.Namespace) -> int:
    from aria_train.atomic_dir import check_free
    from aria_train.model_io import quiet_libraries
    from aria_train.teacher_train import train_teacher

    quiet_libraries()

    config = TeacherConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TeacherConfig)}).validate()
    check_free(args.out, args.overwrite)
    report = train_teacher(config, Path(args.out), overwrite=args.overwrite, progress=not args.no_progress)
    if report is not None:
        groups = ", ".join(f"{g['group']} {g['mean']:.3f} (worst {g['worst_region']} {g['worst']:.3f})"
                           for g in report["accuracy"]["groups"])
        print(f"teacher written to {args.out}: held-out denoising loss {report['eval_loss']['all']:.4f}; "
              f"attribute accuracy (all attributes right) {groups or 'not measured'}")
    return 0
