"""FlashAttention-4's Hopper kernels as the UNets' attention (``aria distill --attention fa4-self|fa4``).

torch's SDPA runs cuDNN's flash attention on Hopper, and at SD v1.4's 40-wide heads that reaches
about 0.32 of the bf16 matrix peak (docs/design.md §7). FA4 (the ``flash-attn-4`` package, kernels
written in NVIDIA's CuTe DSL and compiled when first called) has an SM90 path that takes any head
width divisible by 8. In the compiled SD-size step its self-attention kernels take ~70 ms where
cuDNN's take ~89 (profiled on an H100, 2026-12-06), and the step is 0.965-0.972x as long with FA4
in the self-attention (``fa4-self``), 0.979x with it in all attention (``fa4``: FA4's kernels are
the slower at the cross-attention's 77 keys) (bench/results/distill_step_sd14_fa4_*_h100.csv). It
is not a dependency: ``check_fa4`` says, in one line, why a run cannot use it.

The kernels are wrapped as two torch custom ops (forward, backward) joined by ``register_autograd``,
so ``torch.compile`` keeps each attention as one opaque call inside its graph instead of breaking
the graph at FA4's Python. Tensors are (batch, tokens, heads, head width), FA's own layout, which
is what the query/key/value projections give before any transpose.
"""
from __future__ import annotations

import importlib

import torch


def available() -> str:
    """'' when FA4's CuTe interface imports, else why not (one line)."""
    try:
        importlib.import_module("flash_attn.cute.interface")
    except Exception as error:  # ImportError, or the CuTe DSL failing to load its libraries
        return f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    return ""


def check_fa4(device: torch.device, dtype: torch.dtype) -> None:
    """ValueError (one line) unless FA4 can run the attention of UNets held on ``device`` in
    ``dtype``: a Hopper GPU (compute capability 9.x; FA4's Blackwell kernels are untried here),
    bf16 (FA4 takes half precision only, and its gradients were checked in bf16: the trainer holds
    the teacher in the accelerator's half precision and autocasts the student), and flash-attn-4
    importable."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] != 9:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
        raise ValueError(f"--attention fa4 needs a Hopper GPU (compute capability 9.x, e.g. H100), not {name}")
    if dtype != torch.bfloat16:
        raise ValueError(f"--attention fa4 needs bf16 (accelerate's --mixed_precision bf16), not {dtype}")
    if why := available():
        raise ValueError(f"--attention fa4 needs flash-attn-4 (pip install flash-attn-4==4.0.0b40): {why}")


@torch.library.custom_op("aria::fa4_forward", mutates_args=())
def fa4_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, log-sum-exp of each query's scores, float32 (batch, heads, tokens))."""
    from flash_attn.cute.interface import _flash_attn_fwd

    out, lse, *_ = _flash_attn_fwd(q.contiguous(), k.contiguous(), v.contiguous(), softmax_scale=scale, return_lse=True)
    return out, lse


@fa4_forward.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    batch, tokens, heads, _ = q.shape
    return q.new_empty(batch, tokens, heads, v.shape[-1]), q.new_empty(batch, heads, tokens, dtype=torch.float32)


@torch.library.custom_op("aria::fa4_backward", mutates_args=())
def fa4_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, grad_out: torch.Tensor,
                 lse: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, k and v, from the forward's output and log-sum-exp."""
    from flash_attn.cute.interface import _flash_attn_bwd

    grads = _flash_attn_bwd(q.contiguous(), k.contiguous(), v.contiguous(), out.contiguous(),
                            grad_out.contiguous(), lse.contiguous(), softmax_scale=scale)
    return grads[0], grads[1], grads[2]


@fa4_backward.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, grad_out: torch.Tensor,
      lse: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


# FA4 4.0.0b40's SM90 backward gets the query's gradient wrong at head widths 40 and 80: measured
# on an H100 (2026-12-06, scripts/fa4_gradient_check.py), a relative RMS of 1.27 and 1.34 against
# float32, with the key and value gradients and the forward right; zero-padded to 64, 96 or 128,
# every gradient is right (0.0024, bf16's rounding). So the backward runs on widths padded to a
# multiple of PAD_TO: zero columns in q and k change no score (the forward's lse stands), zero
# columns in v give zero output columns, and the padded gradients' extra columns are cut off.
# The cause: the kernel tiles the width in multiples of 16 (40 -> 48), its interface allocates and
# reads back the query's float32 accumulator in multiples of 32 (upstream's open fix,
# Dao-AILab/flash-attention#2896, rounds the kernel to 32: the cost of this padding). What the
# padding costs: at width 40 the backward takes 11.9 ms padded against 9.4 at the kernel's own tile
# (batch 64 x 4096 tokens on an H100, scripts/fa4_backward_tiles.py), the compiled SD-size step 1.2%
# (416.5 against 411.6 ms, FA4's interface patched to 16: scripts/fa4_patched_step.py).
PAD_TO = 32


def padded_width(width: int) -> int:
    """The head width FA4's backward runs at for a ``width``-wide attention: a multiple of PAD_TO."""
    return width + -width % PAD_TO


def _save(ctx, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(*inputs[:3], *output)
    ctx.scale = inputs[3]


def _backward(ctx, grad_out: torch.Tensor, grad_lse: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    q, k, v, out, lse = ctx.saved_tensors  # grad_lse is None: nothing downstream reads the lse
    width = q.shape[-1]
    pad = padded_width(width) - width
    tensors = [torch.nn.functional.pad(x, (0, pad)) if pad else x for x in (q, k, v, out, grad_out)]
    grads = fa4_backward(*tensors, lse, ctx.scale)
    return *(grad[..., :width] for grad in grads), None


fa4_forward.register_autograd(_backward, setup_context=_save)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(head width)) v over (batch, tokens, heads, head width) tensors."""
    return fa4_forward(q, k, v, q.shape[-1] ** -0.5)[0]


class FA4AttnProcessor:
    """diffusers' attention processor for SD UNets' transformer attention (self and cross, no mask,
    no group or spatial norm, no residual inside the block), with FA4 in place of SDPA."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> torch.Tensor:
        unsupported = (attention_mask is not None or attn.group_norm is not None or attn.spatial_norm is not None
                       or attn.residual_connection or attn.norm_cross or attn.norm_q is not None
                       or hidden_states.ndim != 3 or abs(attn.scale * (attn.inner_dim // attn.heads) ** 0.5 - 1) > 1e-6)
        if unsupported:
            raise ValueError("FA4AttnProcessor: only plain transformer attention (SD v1.x/2.x UNets)")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = (projection(x).unflatten(-1, (attn.heads, -1))
                   for projection, x in ((attn.to_q, hidden_states), (attn.to_k, context), (attn.to_v, context)))
        out = attention(q, k, v).flatten(2)
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def use_fa4(unet: torch.nn.Module, self_attention_only: bool = False) -> None:
    """``unet``'s attention through FA4 (in place): all of it, or only its self-attention (the
    ``attn1`` of each transformer block), the cross-attention to the prompt's 77 tokens left to
    SDPA, where cuDNN's kernels are the faster (bench/results/attention_backends_sd14_fa4_padded_h100.csv)."""
    unet.set_attn_processor({name: FA4AttnProcessor() if not self_attention_only or name.endswith(".attn1.processor")
                             else processor for name, processor in unet.attn_processors.items()})
