"""The distillation run's configuration: one dataclass, saved as JSON in the run directory.

Every field documents its unit and default in its metadata; `aria distill` builds its options
from these fields, so the CLI help and this file cannot disagree.

Inputs the run reads (all local, nothing is downloaded):

* ``teacher``: a model folder laid out like a diffusers Stable Diffusion folder (``unet/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``, optional ``vae/``; Stable Diffusion XL adds
  ``text_encoder_2/`` and ``tokenizer_2/``).
* ``paired_cache``: a TensorCache (aria_train.data.cache) with the tensors
  ``sample`` (N, C, H, W) float -- the teacher-generated x0 (pixels in [-1, 1] for a
  pixel-space teacher, scaled VAE latents for a latent one) -- and ``prompt_id`` (N,) int64,
  the row of the pool file holding that sample's caption.
* ``pool``: the prompt pool file (txt / jsonl / csv / parquet / arrow with a ``text`` column and,
  for region-based samplers, a ``region`` column of ints in [0, K)).
* ``text_cache`` (optional): a TensorCache with ``hidden`` (M, L, D) float, row i = the
  frozen text encoder's last hidden state for pool row i (Stable Diffusion XL: both encoders'
  penultimate states side by side, plus ``text_embeds`` (M, P), the pooled projection;
  aria_train.diffusion.prompts). Without it the drawn prompts are
  encoded on the fly by the teacher's frozen text encoder.

Mixed precision is not a field on purpose: it comes only from the accelerator
(``accelerate launch --mixed_precision bf16`` or the accelerate config), which autocasts the
student; the frozen teacher and text encoder are then held in that half precision.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from aria_train.conditioning.aria import AriaOptions
from aria_train.options import Options, check_seed, check_types, option, to_dict

# the UNets' attention kernels: torch's SDPA, FA4's in the self-attention, FA4's in all (aria_train.distill.speed.set_attention)
Attention = Literal["sdpa", "fa4-self", "fa4"]


@dataclass
class DistillConfig(Options):
    """Everything that determines a distillation run (paths, method, optimisation, logging).

    Defaults are the demo defaults for the embedded 32x32 world; docs/design.md §2 gives RC's values for
    Stable Diffusion (lr 5e-5, total batch 256, EMA 0.9999).
    """

    teacher: str = option("", 'path', 'teacher model folder (unet/, text_encoder/, tokenizer/, scheduler/, optional vae/; Stable Diffusion XL: also text_encoder_2/, tokenizer_2/)', required=True)
    paired_cache: str = option("", 'path', 'TensorCache folder of teacher samples: tensors `sample` (N,C,H,W) and `prompt_id` (N,) = pool row of the caption', required=True)
    pool: str = option("", 'path', 'prompt pool file (txt/jsonl/csv/parquet/arrow, the last memory-mapped and shared by all ranks; `text`, optional `region` column)', required=True)
    text_cache: str | None = option(None, 'path', 'optional TensorCache folder with `hidden` (M,L,D) (Stable Diffusion XL: and `text_embeds` (M,P)), row i = pool row i; absent: prompts are encoded on the fly')
    method: Literal["kd", "rc", "aria"] = option("rc", 'choice', 'kd: paired captions only (BK-SDM); rc: random conditioning, captions replaced with probability p(t); aria: rc whose replacing prompts come from regions drawn by the tracker-driven allocation')
    sampler: Literal["uniform", "region"] = option("uniform", 'choice', 'how rc draws a replacing prompt: uniform over the pool (RC) or a uniform region then a uniform prompt in it (ablation); rc only (refused with kd and aria)')
    aria: AriaOptions = option(unit="options", help="ARIA's options (--aria-*)", default_factory=AriaOptions)
    student_variant: Literal["base", "small", "tiny", "koala-1b", "koala-700m"] = option("small", "choice", "student architecture derived from the teacher: BK-SDM base / small / tiny (SD v1.x, 2.x), or KOALA-1B / 700M (SDXL: fewer resnets and a shallower innermost transformer)")
    channel_scale: float = option(1.0, 'fraction', "student channel width relative to the teacher's, in (0, 1]")
    compile: bool = option(False, 'flag', 'torch.compile the teacher and student UNets, the text encoder and the loss in place (GPU; the first steps compile, minutes for SD)')
    channels_last: bool = option(False, 'flag', 'hold both UNets in channels-last memory format (faster convolutions '
                                 "on GPUs), their 2x upsampling a broadcast that keeps it, the student's convolution "
                                 'gradients made channels-last-dense in the graph')
    gradient_checkpointing: bool = option(False, 'flag', "recompute the student's activations in backward: less memory, about a third more student compute")
    tf32: bool = option(False, 'flag', "float32 matrix products on NVIDIA tensor cores in TF32 (10-bit mantissa products, float32 sums; Ampere and later): what makes a float32 run fast on a GPU (the grouped small-world step: bench/small_world.py). Off by default, as in torch and in every committed test-bed run; cuDNN's convolutions use TF32 either way (torch's default). No effect on CPUs or under bf16 autocast's matmuls")
    attention: Attention = option("sdpa", 'choice', "the UNets' attention kernels: torch's SDPA (cuDNN's flash attention on Hopper), or FlashAttention-4's in the self-attention only (fa4-self) or in all attention (fa4) -- flash-attn-4 installed, a Hopper GPU, bf16; the compiled SD-size step 0.965-0.972x as long with fa4-self, 0.979x with fa4 on H100s (bench/results/distill_step_sd14_fa4_*_h100.csv); training is the same up to bf16 rounding (aria_train/diffusion/models/fa4_attention.py)")
    teacher_stream: bool = option(False, 'flag', "run the frozen teacher's forward on a second CUDA stream, beside the student's forward, so that one model's kernels fill the device where the other's leave it idle (kernel tails, memory-bound norms); the same kernels on the same inputs, so training is unchanged (aria_train/distill/step.py). GPUs only. The compiled SD-size step 0.994-0.995x as long on an H100, at the same peak memory (bench/results/distill_step_sd14_*teacher_stream_h100.csv)")
    teacher_fp8: bool = option(False, 'flag', "the frozen teacher's linear layers multiply in FP8 with row-wise scales (H100/H200 tensor cores; the CPU emulates it, slowly); its prediction moves by ~0.02 relative RMS (bench/fp8_teacher.py). Measured SLOWER at SD size on an H200: 0.84x the bf16 step eager, 0.96x compiled")
    steps: int = option(1000, 'optimizer steps', 'length of the run, counting resumed steps')
    batch_size: int = option(64, 'samples', 'micro-batch size per device')
    grad_accum: int = option(1, 'micro-batches', 'accumulated per optimizer step (total batch = batch_size x grad_accum x devices)')
    lr: float = option(2e-4, '1/step', 'AdamW learning rate, constant (SD recipe: 5e-5; the 32x32 demo world learns faster with 2e-4)')
    weight_decay: float = option(1e-2, '1/step, relative to lr', 'AdamW decoupled weight decay')
    max_grad_norm: float = option(1.0, 'L2 norm', 'gradient clipping threshold; 0 = no clipping')
    l_out: float = option(1.0, 'weight', 'of the output KD loss MSE(pred_student, pred_teacher)')
    l_feat: float = option(1.0, 'weight', 'of the feature KD loss (sum of the feature MSEs of --feature-kd)')
    feature_kd: Literal["blocks", "self-attention"] = option("blocks", 'choice', "what feature KD compares: block outputs (BK-SDM, RC) or the self-attention output of every transformer block the student keeps, each with the teacher block it was initialised from (KOALA's feature type; many more terms, so a smaller --l-feat)")
    l_sd: float = option(0.0, 'weight', "of the denoising loss MSE(pred_student, eps_true) on paired samples only (off in RC's scripts)")
    switch_schedule: Literal["exp", "sigmoid"] = option("exp", 'choice', 'RC switch probability p(t): exp(-lambda(1-t/T)) or 1/(1+exp(-20(t/T-0.7)))')
    switch_lambda: float = option(5.0, 'dimensionless', 'lambda of the exp switch schedule')
    null_prob: float = option(0.1, 'probability', 'that a condition becomes the null text (classifier-free guidance), both methods')
    ema_decay: float = option(0.999, 'per optimizer step', 'maximum EMA decay of the student weights (warm-up (1+n)/(10+n) below it)')
    ema_offload: bool = option(False, 'flag', "hold the student's EMA in host memory, updated there by a host thread from a copy of the weights made on a side stream after each optimizer step: 4 bytes of GPU memory per student parameter freed (1.8 GiB for BK-SDM-Small: the compiled SD-size loop at 41.94 GiB and 0.998 of its step's speed on an H100; aria_train/distill/ema_offload.py); the EMA is that of the GPU up to the last bits of its floats; training itself is unchanged. Costs 8 bytes of host memory per parameter")
    seed: int = option(0, 'integer', 'seed of every random draw (data order, t, noise, switches, prompts)')
    checkpoint_every: int = option(500, 'optimizer steps', 'between checkpoints; 0 = only at the end')
    checkpoint_limit: int = option(3, 'checkpoints', 'kept, older ones deleted; 0 = keep all')
    sample_every: int = option(500, 'optimizer steps', 'between sample grids of the EMA student; 0 = never (pixel-space or VAE teachers only)')
    log_every: int = option(10, 'optimizer steps', 'between metric records')
    heldout: str = option("", 'path', 'held-out prompt file with a region column: its per-region discrepancy is logged as "heldout" (relative: 1 = the average region) and its p(t)-weighted mean as "heldout_level" every heldout_every steps (empty: none)')
    heldout_every: int = option(0, 'optimizer steps', 'between held-out measurements; a multiple of log_every; 0 = never')
    heldout_per_region: int = option(4, 'prompts', 'held-out prompts per region measured')
    noisy_regions: list[int] = option(unit="region ids", default_factory=list, help="test bed (issue 11, stage 2): regions whose teacher prediction gets Gaussian noise of std noise_std in every training step -- a floor in the loss the tracker observes that no student can lower; evaluation still compares with the clean teacher (default: none)")
    noise_std: float = option(0.0, 'prediction units', "std of the noise added to the teacher's prediction on noisy_regions' prompts")
    blind_regions: list[int] = option(unit="region ids", default_factory=list, help="test bed (issue 11, stage 2): regions the student cannot tell apart -- it is shown the null text wherever a prompt of one of them is shown to the teacher, in training, in the held-out monitor and in `aria eval` of its run -- so their discrepancy has a floor no training removes (how far the teacher's predictions for them lie from one shared answer) (default: none)")
    max_nonfinite: int = option(10, 'optimizer steps', 'skipped for a non-finite loss that are tolerated; one more aborts the run')
    feedback_lag: int = option(0, 'micro-batches', "how late the condition sampler (ARIA's tracker) sees a micro-batch's feedback: 0 = before the next micro-batch is drawn (the loop waits for the device once per micro-batch, and the device runs dry while the host prepares the next batch); 1 = one micro-batch later, so the next batch is prepared while the device still trains; a non-finite step is then skipped on the device (fused AdamW's found_inf, also on the CPU, where lag 0 uses the unfused one). Exact on resume either way; needs bf16 or no mixed precision")

    WHAT = "distillation config"
    # Fields that may change between a checkpoint and its resumption without breaking the
    # exact continuation (paths may move; schedules of IO and the stopping point may change).
    RESUMABLE_CHANGES = ("teacher", "paired_cache", "pool", "text_cache", "steps", "checkpoint_every",
                         "checkpoint_limit", "sample_every", "log_every", "max_nonfinite", "heldout",
                         "ema_offload",  # where the EMA is updated: training never reads it
                         "teacher_stream")  # on which stream the teacher runs: the same kernels, the same inputs

    def validate(self) -> "DistillConfig":
        """Raise ValueError (one line) for a value of the wrong type (every float finite) or
        outside its domain; return self."""
        check_types(self)
        for name in ("teacher", "paired_cache", "pool"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} is required")
        positive = ("steps", "batch_size", "grad_accum", "lr", "channel_scale", "log_every", "heldout_per_region")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("weight_decay", "max_grad_norm", "l_out", "l_feat", "l_sd", "switch_lambda",
                        "checkpoint_every", "checkpoint_limit", "sample_every", "max_nonfinite", "heldout_every")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.null_prob <= 1.0:
            raise ValueError(f"null_prob must be in [0, 1], got {self.null_prob}")
        check_seed("seed", self.seed)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.channel_scale > 1.0:
            raise ValueError(f"channel_scale must be <= 1, got {self.channel_scale}")
        if self.heldout_every and (not self.heldout or self.heldout_every % self.log_every):
            raise ValueError("heldout_every needs --heldout and must be a multiple of log_every")
        self.aria.validate()
        if self.sampler != "uniform" and self.method != "rc":
            raise ValueError(f"sampler {self.sampler!r} applies to --method rc only (kd never replaces a caption; "
                             "aria draws its regions from the tracker's allocation)")
        if self.method != "aria":  # an ARIA option on an RC or KD run would change nothing
            default = AriaOptions()
            changed = [f"aria_{f.name}" for f in dataclasses.fields(AriaOptions)
                       if getattr(self.aria, f.name) != getattr(default, f.name)]
            if changed:
                raise ValueError(f"{', '.join(changed)} appl{'y' if len(changed) > 1 else 'ies'} to --method aria "
                                 f"only (this run: --method {self.method})")
        if self.noisy_regions and not (self.noise_std > 0 and min(self.noisy_regions) >= 0):
            raise ValueError(f"noisy_regions need noise_std > 0 and region ids >= 0, got {self.noisy_regions} "
                             f"with noise_std {self.noise_std}")
        if self.noise_std and not self.noisy_regions:
            raise ValueError("noise_std needs noisy_regions")
        if self.blind_regions and min(self.blind_regions) < 0:
            raise ValueError(f"blind_regions must be region ids >= 0, got {self.blind_regions}")
        if self.feedback_lag not in (0, 1):
            raise ValueError(f"feedback_lag must be 0 or 1, got {self.feedback_lag}")
        if self.l_out + self.l_feat + self.l_sd == 0:
            raise ValueError("all loss weights are 0: nothing to train")
        return self

    def with_absolute_paths(self) -> "DistillConfig":
        """A copy whose input paths are absolute, as a run records them (so it resumes and reports
        from any working directory)."""
        from pathlib import Path

        paths = {name: str(Path(getattr(self, name)).resolve()) for name in ("teacher", "paired_cache", "pool",
                                                                            "text_cache", "heldout") if getattr(self, name)}
        return dataclasses.replace(self, **paths)

    def differences(self, other: "DistillConfig") -> list[str]:
        """Fields (outside RESUMABLE_CHANGES) whose values differ, as 'name: a -> b'."""
        mine, theirs = to_dict(self), to_dict(other)
        return [f"{name}: {theirs[name]!r} -> {mine[name]!r}" for name in mine
                if name not in self.RESUMABLE_CHANGES and mine[name] != theirs[name]]
