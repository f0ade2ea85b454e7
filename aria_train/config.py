"""The distillation run's configuration: one dataclass, saved as JSON in the run directory.

Every field documents its unit and default in its metadata; `aria distill` builds its options
from these fields, so the CLI help and this file cannot disagree.

Inputs the run reads (all local, nothing is downloaded):

* ``teacher``: a model folder laid out like a diffusers Stable Diffusion folder (``unet/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``, optional ``vae/``).
* ``paired_cache``: a TensorCache (aria_train.data.cache) with the tensors
  ``sample`` (N, C, H, W) float -- the teacher-generated x0 (pixels in [-1, 1] for a
  pixel-space teacher, scaled VAE latents for a latent one) -- and ``prompt_id`` (N,) int64,
  the row of the pool file holding that sample's caption.
* ``pool``: the prompt pool file (txt / jsonl / csv / parquet / arrow with a ``text`` column and,
  for region-based samplers, a ``region`` column of ints in [0, K)).
* ``text_cache`` (optional): a TensorCache with ``hidden`` (M, L, D) float, row i = the
  frozen text encoder's last hidden state for pool row i. Without it the drawn prompts are
  encoded on the fly by the teacher's frozen text encoder.

Mixed precision is not a field on purpose: it comes only from the accelerator
(``accelerate launch --mixed_precision bf16`` or the accelerate config), which autocasts the
student; the frozen teacher and text encoder are then held in that half precision.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args, get_type_hints

METHODS = ("kd", "rc", "aria")
SAMPLERS = ("uniform", "region")
VARIANTS = ("base", "small", "tiny")
SCHEDULES = ("exp", "sigmoid")


def _doc(unit: str, help_text: str) -> dict:
    return {"unit": unit, "help": help_text}


@dataclass
class DistillConfig:
    """Everything that determines a distillation run (paths, method, optimisation, logging).

    Defaults are the demo defaults for the embedded 32x32 world; DESIGN §2 gives RC's values for
    Stable Diffusion (lr 5e-5, total batch 256, EMA 0.9999).
    """

    teacher: str = field(default="", metadata=_doc('path', 'teacher model folder (unet/, text_encoder/, tokenizer/, scheduler/, optional vae/)'))
    paired_cache: str = field(default="", metadata=_doc('path', 'TensorCache folder of teacher samples: tensors `sample` (N,C,H,W) and `prompt_id` (N,) = pool row of the caption'))
    pool: str = field(default="", metadata=_doc('path', 'prompt pool file (txt/jsonl/csv/parquet/arrow, the last memory-mapped and shared by all ranks; `text`, optional `region` column)'))
    text_cache: str | None = field(default=None, metadata=_doc('path', 'optional TensorCache folder with `hidden` (M,L,D), row i = pool row i; absent: prompts are encoded on the fly'))
    method: Literal["kd", "rc", "aria"] = field(default="rc", metadata=_doc('choice', 'kd: paired captions only (BK-SDM); rc: random conditioning, captions replaced with probability p(t); aria: rc whose replacing prompts come from regions drawn by the tracker-driven allocation'))
    sampler: Literal["uniform", "region"] = field(default="uniform", metadata=_doc('choice', 'how rc draws a replacing prompt: uniform over the pool (RC) or a uniform region then a uniform prompt in it (ablation); not used by kd and aria'))
    aria_beta: float = field(default=1.0, metadata=_doc('exponent', 'aria: region weights w_k = m_k^beta of the tracked discrepancies m (0 = region-uniform)'))
    aria_tau: float = field(default=0.0, metadata=_doc('discrepancy units', 'aria: > 0 uses softmax(m / tau) weights instead of m^beta'))
    aria_eps: float = field(default=0.2, metadata=_doc('fraction', 'aria: floor, pi = (1 - eps) w / sum(w) + eps u, so every region keeps >= eps u_k'))
    aria_base: Literal["uniform", "shares"] = field(default="uniform", metadata=_doc('choice', "aria: the floor's distribution u, uniform over regions or RC's prompt shares"))
    aria_step: str = field(default="0.05", metadata=_doc('per observation', "aria: tracker step a in (0, 1] (a_n = max(1/n, a)), or 'auto' (sigma and delta estimated online)"))
    aria_warmup: int = field(default=50, metadata=_doc('optimizer steps', "aria: steps drawn as RC (prompt shares) while the tracker warms up"))
    aria_normalise: Literal["timestep", "none"] = field(default="timestep", metadata=_doc('choice', 'aria: divide each observed discrepancy by the running mean of its timestep bin, or not'))
    aria_timestep_bins: int = field(default=10, metadata=_doc('bins', 'aria: equal-width timestep bins of the normalisation'))
    aria_observe: Literal["switched", "all"] = field(default="switched", metadata=_doc('choice', "aria: the tracker observes samples that showed a drawn prompt, or all non-null samples (paired ones too)"))
    aria_unbiased: bool = field(default=False, metadata=_doc('flag', "aria: weight a drawn sample's loss by q_k / pi_k (q = RC's region shares), keeping RC's expected gradient"))
    student_variant: Literal["base", "small", "tiny"] = field(default="small", metadata=_doc('choice', 'BK-SDM student architecture derived from the teacher'))
    channel_scale: float = field(default=1.0, metadata=_doc('fraction', "student channel width relative to the teacher's, in (0, 1]"))
    compile: bool = field(default=False, metadata=_doc('flag', 'torch.compile teacher and student UNets in place (GPU; the first steps compile, minutes for SD)'))
    channels_last: bool = field(default=False, metadata=_doc('flag', 'hold both UNets in channels-last memory format (faster convolutions on GPUs)'))
    gradient_checkpointing: bool = field(default=False, metadata=_doc('flag', "recompute the student's activations in backward: less memory, about a third more student compute"))
    steps: int = field(default=1000, metadata=_doc('optimizer steps', 'length of the run, counting resumed steps'))
    batch_size: int = field(default=64, metadata=_doc('samples', 'micro-batch size per device'))
    grad_accum: int = field(default=1, metadata=_doc('micro-batches', 'accumulated per optimizer step (total batch = batch_size x grad_accum x devices)'))
    lr: float = field(default=2e-4, metadata=_doc('1/step', 'AdamW learning rate, constant (SD recipe: 5e-5; the 32x32 demo world learns faster with 2e-4)'))
    weight_decay: float = field(default=1e-2, metadata=_doc('1/step, relative to lr', 'AdamW decoupled weight decay'))
    max_grad_norm: float = field(default=1.0, metadata=_doc('L2 norm', 'gradient clipping threshold; 0 = no clipping'))
    l_out: float = field(default=1.0, metadata=_doc('weight', 'of the output KD loss MSE(eps_student, eps_teacher)'))
    l_feat: float = field(default=1.0, metadata=_doc('weight', 'of the feature KD loss (sum of block-output MSEs)'))
    l_sd: float = field(default=0.0, metadata=_doc('weight', "of the denoising loss MSE(eps_student, eps_true) on paired samples only (off in RC's scripts)"))
    switch_schedule: Literal["exp", "sigmoid"] = field(default="exp", metadata=_doc('choice', 'RC switch probability p(t): exp(-lambda(1-t/T)) or 1/(1+exp(-20(t/T-0.7)))'))
    switch_lambda: float = field(default=5.0, metadata=_doc('dimensionless', 'lambda of the exp switch schedule'))
    null_prob: float = field(default=0.1, metadata=_doc('probability', 'that a condition becomes the null text (classifier-free guidance), both methods'))
    ema_decay: float = field(default=0.999, metadata=_doc('per optimizer step', 'maximum EMA decay of the student weights (warm-up (1+n)/(10+n) below it)'))
    seed: int = field(default=0, metadata=_doc('integer', 'seed of every random draw (data order, t, noise, switches, prompts)'))
    checkpoint_every: int = field(default=500, metadata=_doc('optimizer steps', 'between checkpoints; 0 = only at the end'))
    checkpoint_limit: int = field(default=3, metadata=_doc('checkpoints', 'kept, older ones deleted; 0 = keep all'))
    sample_every: int = field(default=500, metadata=_doc('optimizer steps', 'between sample grids of the EMA student; 0 = never (pixel-space or VAE teachers only)'))
    log_every: int = field(default=10, metadata=_doc('optimizer steps', 'between metric records'))
    heldout: str = field(default="", metadata=_doc('path', 'held-out prompt file with a region column: its per-region discrepancy is logged as "heldout" every heldout_every steps (empty: none)'))
    heldout_every: int = field(default=0, metadata=_doc('optimizer steps', 'between held-out measurements; a multiple of log_every; 0 = never'))
    heldout_per_region: int = field(default=4, metadata=_doc('prompts', 'held-out prompts per region measured'))
    max_nonfinite: int = field(default=10, metadata=_doc('optimizer steps', 'skipped for a non-finite loss that are tolerated; one more aborts the run'))

    # Fields that may change between a checkpoint and its resumption without breaking the
    # exact continuation (paths may move; schedules of IO and the stopping point may change).
    RESUMABLE_CHANGES = ("teacher", "paired_cache", "pool", "text_cache", "steps", "checkpoint_every",
                         "checkpoint_limit", "sample_every", "log_every", "max_nonfinite", "heldout")

    def validate(self) -> "DistillConfig":
        """Raise ValueError (one line) for a value outside its domain; return self."""
        for name in ("teacher", "paired_cache", "pool"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} is required")
        hints = get_type_hints(DistillConfig)
        for f in dataclasses.fields(self):
            choices = get_args(hints[f.name])
            if getattr(hints[f.name], "__origin__", None) is Literal and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        positive = ("steps", "batch_size", "grad_accum", "lr", "channel_scale", "log_every")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("weight_decay", "max_grad_norm", "l_out", "l_feat", "l_sd", "switch_lambda",
                        "checkpoint_every", "checkpoint_limit", "sample_every", "max_nonfinite")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.null_prob <= 1.0:
            raise ValueError(f"null_prob must be in [0, 1], got {self.null_prob}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.channel_scale > 1.0:
            raise ValueError(f"channel_scale must be <= 1, got {self.channel_scale}")
        if self.heldout_every and (not self.heldout or self.heldout_every % self.log_every):
            raise ValueError("heldout_every needs --heldout and must be a multiple of log_every")
        if self.heldout_per_region < 1:
            raise ValueError(f"heldout_per_region must be >= 1, got {self.heldout_per_region}")
        if self.aria_step != "auto":
            try:
                step = float(self.aria_step)
            except ValueError:
                raise ValueError(f"aria_step must be a number in (0, 1] or 'auto', got {self.aria_step!r}") from None
            if not 0.0 < step <= 1.0:
                raise ValueError(f"aria_step must be in (0, 1] or 'auto', got {self.aria_step}")
        for name in ("aria_beta", "aria_tau", "aria_warmup"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.aria_eps <= 1.0:
            raise ValueError(f"aria_eps must be in [0, 1], got {self.aria_eps}")
        if self.aria_timestep_bins < 1:
            raise ValueError(f"aria_timestep_bins must be >= 1, got {self.aria_timestep_bins}")
        if self.aria_unbiased and self.method != "aria":
            raise ValueError("aria_unbiased applies to --method aria only")
        if self.l_out + self.l_feat + self.l_sd == 0:
            raise ValueError("all loss weights are 0: nothing to train")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def aria_options(self, grad_accum_batches: int):
        """The AriaOptions of this config; the warm-up counted in observed micro-batches."""
        from aria_train.aria_sampler import AriaOptions

        return AriaOptions(beta=self.aria_beta, tau=self.aria_tau, eps=self.aria_eps,
                           step="auto" if self.aria_step == "auto" else float(self.aria_step), base=self.aria_base,
                           warmup_batches=self.aria_warmup * grad_accum_batches, normalise=self.aria_normalise,
                           timestep_bins=self.aria_timestep_bins, unbiased=self.aria_unbiased,
                           observe=self.aria_observe)

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown distillation config fields: {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "DistillConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read distillation config {path}: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"distillation config {path} is not a JSON object")
        return cls.from_dict(data)

    def differences(self, other: "DistillConfig") -> list[str]:
        """Fields (outside RESUMABLE_CHANGES) whose values differ, as 'name: a -> b'."""
        return [
            f"{f.name}: {getattr(other, f.name)!r} -> {getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in self.RESUMABLE_CHANGES and getattr(self, f.name) != getattr(other, f.name)
        ]
