"""torch's FlexAttention (a Triton flash kernel that inductor generates) as the UNets' cross-attention:
a candidate of issue 16, measured by ``bench.distill_step --flex-cross``.

The cross-attention attends 4096 (or 1024, 256, 64) image tokens to the prompt's 77: a few GFLOPs,
so its time is the bytes of the queries read and the outputs written. cuDNN's flash kernels take
~14 ms of the compiled SD-size step for it (its tiles are built for long keys; at 4096 x 77 the
forward alone is ~3x the time those bytes need on an H100, bench/results/attention_backends_sd14_*).
FlexAttention compiles its own kernel for the step's exact shapes (its head width rounded up to a
power of two, 40 -> 64, which costs no bytes) inside the compiled UNet. It needs torch.compile (eager
FlexAttention is a reference implementation) and, for gradients, a GPU.
"""
from __future__ import annotations

import torch

from aria_train.diffusion.models.fa4_attention import FA4AttnProcessor


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(head width)) v over (batch, tokens, heads, head width) tensors, by FlexAttention."""
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


class FlexAttnProcessor(FA4AttnProcessor):
    """FA4AttnProcessor's plain transformer attention with FlexAttention as its kernel."""

    kernel = staticmethod(attention)


def use_flex_cross(unet: torch.nn.Module) -> None:
    """``unet``'s cross-attention (the ``attn2`` of each transformer block) through FlexAttention, in
    place; its self-attention keeps its processor."""
    unet.set_attn_processor({name: FlexAttnProcessor() if name.endswith(".attn2.processor") else processor
                             for name, processor in unet.attn_processors.items()})
