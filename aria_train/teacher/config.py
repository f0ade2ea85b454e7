"""Train the embedded world's teacher (a text-conditioned 32x32 pixel UNet) and write its folder.

The teacher learns v-prediction (aria_train.diffusion.targets says why; --prediction-type epsilon is the
other choice) on (prompt, image) pairs rendered on the fly uniformly over
the WHOLE world (every region, unseen and underrepresented ones included: the teacher knows
what the students will be asked about), with 10% null-text dropout for classifier-free guidance.
The text stack is the world's word-level tokenizer and a small CLIP text encoder (aria_train.diffusion.text)
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
With checkpoint_every > 0, OUT holds the run while it trains (teacher_config.json and a resumable
checkpoint/, aria_train.teacher.checkpoint); `aria teacher --out OUT --resume` continues a stopped
one exactly, and the finished folder replaces it.
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

from dataclasses import dataclass
from typing import Literal

from aria_train.options import Options, check_seed, check_types, option


@dataclass
class TeacherConfig(Options):
    """Everything that determines a teacher (saved as OUT/teacher_config.json)."""

    WHAT = "teacher config"

    world: str = option("", "path", "world.json of the world to learn; empty: the default WorldConfig")
    channels: list[int] = option(unit="channels", help="UNet block_out_channels, one per stage", default_factory=lambda: [64, 128, 128])
    layers_per_block: int = option(2, "blocks", "residual(+attention) blocks per UNet stage")
    attention_heads: int = option(4, "heads", "attention heads per UNet attention layer")
    norm_groups: int = option(32, "groups", "GroupNorm groups; must divide every channel count")
    text_hidden: int = option(64, "features", "text encoder width = UNet cross-attention width")
    text_layers: int = option(2, "layers", "text encoder transformer layers")
    text_heads: int = option(4, "heads", "text encoder attention heads")
    train_text_encoder: bool = option(True, "flag", "train the text encoder with the UNet, then freeze it (off: the seeded random encoder stays frozen)")
    prediction_type: Literal["v_prediction", "epsilon"] = option(
        "v_prediction", "choice", "what the UNet predicts; v weights the high noise levels where the prompt matters (aria_train.diffusion.targets)")
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = option(
        "squaredcos_cap_v2", "choice", "DDPM beta schedule (T = 1000); cosine suits 32x32 pixels")
    steps: int = option(8000, "optimizer steps", "training length")
    batch_size: int = option(256, "images", "batch per device")
    lr: float = option(3e-4, "1/step", "AdamW peak learning rate")
    lr_schedule: Literal["cosine", "constant"] = option("cosine", "choice", "after warm-up: cosine decay to 0, or constant")
    warmup_steps: int = option(500, "optimizer steps", "linear learning-rate warm-up")
    weight_decay: float = option(0.01, "relative to lr", "AdamW decoupled weight decay")
    max_grad_norm: float = option(1.0, "L2 norm", "gradient clipping threshold; 0 = none")
    ema_decay: float = option(0.999, "per step", "maximum EMA decay (warm-up (1+n)/(10+n) below it)")
    null_prob: float = option(0.1, "probability", "that a training prompt becomes the null text")
    seed: int = option(0, "integer", "seed of weights, data, noise and timesteps")
    save_dtype: Literal["float16", "float32"] = option("float16", "choice", "dtype of the shipped unet/ weights")
    eval_per_region: int = option(24, "prompts", "held-out prompts per region sampled for the attribute accuracy")
    eval_steps: int = option(25, "DDIM steps", "sampling steps of the evaluation samples")
    eval_guidance: float = option(1.0, "scale", "classifier-free guidance of the evaluation samples, also written to the folder's sampling.json as the scale to sample it with (small world teachers sample best unguided: the shipped one is right on every attribute of 1.00 of its samples at 1, 0.33 at 2, 0.03 at 7.5)")
    eval_timesteps: list[int] = option(unit="timesteps", help="where the held-out denoising loss is measured", default_factory=lambda: [100, 300, 500, 700, 900, 980])
    log_every: int = option(200, "optimizer steps", "between log lines")
    workers: int = option(-1, "processes", "data-rendering workers; -1: 6 on a GPU, 0 (in-process) on the CPU")
    checkpoint_every: int = option(0, "optimizer steps", "write the training state to OUT/checkpoint/ every N steps, so that `aria teacher --resume` can continue a stopped run exactly (OUT then holds the run while it trains); 0: only the end-of-training state, in the finished folder")
    stop_after_seconds: float = option(0.0, "seconds", "stop at the first checkpoint after this much training time, leaving OUT a stopped run to --resume (to split a run across jobs with a time limit); 0: run to the end")

    def validate(self) -> "TeacherConfig":
        """Raise ValueError (one line) for a value of the wrong type or outside its domain; return self."""
        check_types(self)
        check_seed("seed", self.seed)
        for name in ("layers_per_block", "attention_heads", "norm_groups", "text_hidden", "text_layers",
                     "text_heads", "steps", "batch_size", "lr", "log_every", "eval_steps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "weight_decay", "max_grad_norm", "eval_per_region", "eval_guidance",
                     "checkpoint_every", "stop_after_seconds"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.stop_after_seconds and not self.checkpoint_every:
            raise ValueError("stop_after_seconds needs checkpoint_every > 0 (a run stops at a checkpoint)")
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise ValueError(f"channels needs at least 2 positive stages, got {self.channels}")
        if self.text_hidden % self.text_heads:
            raise ValueError(f"text_hidden {self.text_hidden} must be divisible by text_heads {self.text_heads}")
        if self.workers < -1:
            raise ValueError(f"workers must be >= -1 (-1: chosen for the device), got {self.workers}")
        if not 0.0 <= self.null_prob <= 1.0:
            raise ValueError(f"null_prob must be in [0, 1], got {self.null_prob}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.eval_steps > 1000:  # checked now: the evaluation comes after the whole training
            raise ValueError(f"eval_steps must be <= the 1000 training timesteps, got {self.eval_steps}")
        if not self.eval_timesteps or min(self.eval_timesteps) < 0 or max(self.eval_timesteps) >= 1000:
            raise ValueError(f"eval_timesteps must lie in [0, 1000), got {self.eval_timesteps}")
        return self
