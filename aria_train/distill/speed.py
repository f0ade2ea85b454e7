"""How the two UNets are set up for speed: one place, used by the trainer and by bench/distill_step.

* channels-last memory format: cuDNN's fastest convolution kernels on tensor cores take NHWC;
  with NCHW weights every convolution pays two layout transposes.
* gradient checkpointing (diffusers' own, per resnet / attention block of the student): trades
  about one extra student forward for the activations of the whole student.
* torch.compile, in place (``nn.Module.compile``), so module names, state-dict keys and the
  feature hooks (aria_train.diffusion.models.feature_kd, registered once) stay those of the bare UNet.
  Inductor fuses GroupNorm + SiLU, the attention reshapes and the residual adds, which in
  eager mode are separate memory-bound kernels. With channels-last too, inductor's layout
  optimisation is forced: its heuristic leaves it off for UNets (their decoder convolutions have
  more input than output channels), and then the gradients it computes between convolutions are
  in NCHW, which every convolution backward copies to NHWC (7% of the SD-size step's kernel time);
  forced, the compiled SD-size step is 2.5% faster on an H100 (bench/results/
  distill_step_sd14_compiled_layout_opt_{forced,default}_h100.csv).
  Under channels-last too, both UNets' 2x nearest upsampling runs as a broadcast that keeps the
  layout (aria_train.diffusion.models.upsample_broadcast: the same values, a block sum for a
  backward): diffusers' own makes its input NCHW at batch 64 and more, and its backward is a
  scatter-add; the compiled SD-size step 0.988-0.993x as long on an H100. And the student's
  convolutions get their output gradients channels-last-dense from the compiled graph
  (aria_train.diffusion.models.conv_grad_layout: the same values), where cuDNN's backward would
  copy a strided one itself, with ATen's generic copy kernel: the compiled SD-size step on an
  H100 0.985-0.993x as long, 1.4% less energy per image.
* AdamW with ``fused=True`` on CUDA: one kernel per parameter group instead of one per tensor.
* FlashAttention-4's Hopper kernels in the self-attention of both UNets, or in all their
  attention (``--attention fa4-self|fa4``, aria_train.diffusion.models.fa4_attention; flash-attn-4
  installed): the compiled SD-size step 0.965-0.972x as long with ``fa4-self`` on H100s.
* the frozen teacher's linear layers in FP8 (``--teacher-fp8``, aria_train.diffusion.models.fp8):
  H100 / H200 tensor cores multiply FP8 at twice the bf16 rate, and the teacher needs no gradients.
* the frozen text encoder, compiled too under ``--compile`` (``prepare_text_encoder``): it runs
  on every micro-batch's drawn prompts when there is no text cache, between two steps, where
  its ~10 kernels per layer are launch-bound.
* the distillation loss, compiled too under ``--compile`` (``compile_loss``): the compiled SD-size
  step 0.967x as long and 2.2 GiB smaller on an H100 (bench/results/distill_step_sd14_compiled_loss_h100.csv).
* TF32 matrix products for float32 work (``--tf32``, ``set_process_speed``): a process-wide
  torch setting, so the trainer sets it from its config at every start (also to off), and a
  student group, one process, needs it equal in all its runs.
* cuDNN's benchmark mode (``set_process_speed``, always): the loop's shapes are fixed, so timing
  the candidate convolution algorithms once per shape and keeping the fastest pays for itself
  within a few steps; without it cuDNN takes its heuristic's first choice. The benchmarks always
  ran with it; ``aria distill`` ran without it until 2026-12-05 (the teacher trainer had it). A
  resumed process times them again and may choose others: on a GPU a resume restores the
  generators, the data cursor and the tracker exactly, not the last bits of the floats that
  follow (docs/design.md §9).

Half precision is not set here: it comes from the accelerator (aria_train.distill.config); the
trainer holds the frozen teacher and text encoder in that half precision.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn


def prepare_unets(teacher: nn.Module, student_unet: nn.Module, *, compile: bool = False,
                  channels_last: bool = False, gradient_checkpointing: bool = False, teacher_fp8: bool = False,
                  attention: str = "sdpa") -> None:
    """Apply the speed options to the frozen teacher and the trained student UNet, in place.

    Call after the models are on their device and in their dtype; hooks may be attached before
    or after (compilation happens at the first forward). ``attention``: ``set_attention``'s.
    """
    if teacher_fp8:
        from aria_train.diffusion.models.fp8 import check_float8_device, to_float8

        check_float8_device(next(teacher.parameters()).device)
        to_float8(teacher)
    set_attention(teacher, student_unet, attention)
    if channels_last:
        from aria_train.diffusion.models.conv_grad_layout import set_conv_gradient_layout
        from aria_train.diffusion.models.upsample_broadcast import set_upsampling

        for unet in (teacher, student_unet):
            unet.to(memory_format=torch.channels_last)
            set_upsampling(unet, broadcast=True)
        set_conv_gradient_layout(student_unet, dense=True)  # before compilation, which traces its hooks
    if gradient_checkpointing:
        student_unet.enable_gradient_checkpointing()
    if compile:
        compile_unets(teacher, student_unet, channels_last=channels_last)


def set_attention(teacher: nn.Module, student_unet: nn.Module, attention: str) -> None:
    """Both UNets' attention, in place: torch's SDPA (``sdpa``, diffusers' default: nothing to do),
    or FA4's kernels in their self-attention (``fa4-self``) or in all of it (``fa4``), after
    fa4_attention.check_fa4 has said they can run there (device and dtype: the teacher's)."""
    if attention == "sdpa":
        return
    from aria_train.diffusion.models.fa4_attention import check_fa4, use_fa4

    check_fa4(next(teacher.parameters()).device, next(teacher.parameters()).dtype)
    for unet in (teacher, student_unet):
        use_fa4(unet, self_attention_only=attention == "fa4-self")


def compile_unets(teacher: nn.Module, student_unet: nn.Module, *, channels_last: bool, cuda_graphs: bool = False,
                  inductor: Mapping[str, object] | None = None) -> None:
    """``torch.compile`` both UNets in place, with inductor's layout optimisation forced where they
    are channels-last (module docstring). Candidates measured by bench.distill_step, not options of
    the trainer: ``cuda_graphs``, inductor records each compiled graph as a CUDA graph and replays
    it (each training step must then begin with ``torch.compiler.cudagraph_mark_step_begin()``);
    ``inductor``, further inductor options by name (``torch._inductor.config``'s, e.g.
    ``max_autotune``: its Triton templates timed against cuBLAS / cuDNN for every matrix product
    and convolution shape; torch.compile refuses a name it does not know)."""
    options: dict[str, object] = {"force_layout_optimization": True} if channels_last else {}
    if cuda_graphs:
        options["triton.cudagraphs"] = True
    options.update(inductor or {})
    teacher.compile(options=options)
    student_unet.compile(options=options)


def compile_loss() -> Callable[..., dict[str, torch.Tensor]]:
    """``distillation_loss`` compiled, as the trainer runs it under ``--compile`` (bench.distill_step
    --eager-loss is the baseline). Eager, its feature terms are memory-bound passes over every captured
    feature map (BK-SDM-Small's eight block outputs of SD v1.4: 6.2M elements a sample, 397M at
    batch 64): float32 copies of the bf16 maps, the difference, its square, the mean, and in the
    backward the copies again, ``mse_loss_backward`` and the cast back. The H100 profile of the
    compiled SD-size step has 6.4 ms of ``mse_loss_backward`` per step, and 13.7 ms of plain copy
    kernels, the loss's casts among them (bench/results/distill_step_sd14_sdpa_profiled_profile_b64_h100.json).
    Compiled, each term is one reduction that reads the bf16 maps once, and its backward one
    pointwise kernel; the loss sums in another order (float32 rounding), the gradients are the
    same expression. torch's automatic dynamic shapes (the default): the trainer's shapes are fixed,
    so its graphs are static, but the denoising term (``--l-sd``) indexes the paired samples, whose
    count changes from batch to batch, and a static graph per count would be compiled again for
    each new one until torch's recompile limit sent the loss back to eager."""
    from aria_train.distill.losses import distillation_loss

    return torch.compile(distillation_loss)


def set_process_speed(tf32: bool) -> None:
    """The process-wide kernel choices of a run: float32 matrix products in TF32 on CUDA tensor
    cores (``tf32``) or in full float32 (torch's default), and cuDNN's benchmark mode on; no
    effect on CPUs."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def prepare_text_encoder(text_encoder: nn.Module, *, compile: bool = False) -> None:
    """Apply the speed options to the frozen text encoder, in place (after it is on its device
    and in its dtype). Compiled with a dynamic batch size: the number of prompts it encodes
    varies from micro-batch to micro-batch (null texts are not encoded), and a static graph
    would be compiled again for each new count."""
    if compile:
        text_encoder.compile(dynamic=True)


def make_optimizer(parameters: Iterable[nn.Parameter], lr: float, weight_decay: float,
                   device: torch.device, fused: bool = False) -> torch.optim.AdamW:
    """AdamW (decoupled weight decay), the fused kernel on a GPU or where ``fused`` is asked for
    (the only one that can skip a step on the device: its ``found_inf``)."""
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=fused or device.type == "cuda")
