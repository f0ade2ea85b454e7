"""FP8 matrix products for a frozen UNet (the distillation teacher): issue 16's step past MFU 0.5.

The teacher's forward is about a third of a distillation step's FLOPs and needs no gradients,
so its linear layers can run on FP8 tensor cores (H100 / H200: twice the bf16 rate) if the
error this adds to its prediction is small next to the teacher-student discrepancy being
distilled. ``Float8Linear`` replaces an ``nn.Linear``: its weight is quantised once to
float8_e4m3fn with one scale per output row (amax / 448, the format's largest value); each
input is quantised on the fly with one scale per row of the flattened input (its token), and
``torch._scaled_mm`` multiplies the two, accumulating in float32, and rescales into the input's
dtype (through bf16 on a GPU, whose row-wise kernels write only that); the bias is added after.
Convolutions stay as they are (torch has no FP8 convolution). ``to_float8`` converts every
eligible linear layer of a module in place (layers whose sizes are not multiples of 16, what the
FP8 kernels need, keep their precision). ``bench/fp8_teacher.py`` measures how far the
prediction moves (and, on a GPU, the forward's time); ``bench.distill_step --teacher-fp8`` the
step's speed.
"""
from __future__ import annotations

import torch
from torch import nn

E4M3_MAX = 448.0  # largest finite float8_e4m3fn
MULTIPLE = 16  # _scaled_mm's FP8 kernels work on sizes in multiples of 16


def quantise_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(float8_e4m3fn values, float32 scales (rows, 1)) of a 2-D tensor, one scale per row:
    x ~= values * scales, each row's largest magnitude mapped to E4M3_MAX."""
    scale = x.detach().abs().amax(dim=1, keepdim=True).float().clamp_min(1e-12) / E4M3_MAX
    values = (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return values, scale


class Float8Linear(nn.Module):
    """A frozen ``nn.Linear`` whose product runs in FP8 with row-wise scales (module docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = quantise_rows(linear.weight.detach())
        # held as integer views of their bits, so that module.to(dtype) (a teacher cast to bf16
        # after conversion) leaves the FP8 values and the float32 scales as they are
        self.register_buffer("weight_bits", weight.view(torch.uint8))  # (out, in)
        self.register_buffer("scale_bits", scale.t().contiguous().view(torch.int32))  # (1, out): scale_b
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        count = rows.shape[0]
        values, scale = quantise_rows(rows)
        pad = -count % MULTIPLE  # whole tiles of rows for the GPU kernels; the padding rows are dropped
        if pad:
            values = torch.cat([values, values.new_zeros(pad, self.in_features)])
            scale = torch.cat([scale, scale.new_ones(pad, 1)])
        weight = self.weight_bits.view(torch.float8_e4m3fn)
        # CUDA's row-wise scaled kernels write bf16 only; the CPU writes any float dtype
        out_dtype = x.dtype if x.device.type == "cpu" else torch.bfloat16
        out = torch._scaled_mm(values, weight.t(), scale_a=scale, scale_b=self.scale_bits.view(torch.float32),
                               out_dtype=out_dtype)[:count].to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def eligible(linear: nn.Linear) -> bool:
    """Whether the FP8 kernels take this layer's sizes."""
    return linear.in_features % MULTIPLE == 0 and linear.out_features % MULTIPLE == 0


def to_float8(module: nn.Module) -> int:
    """Replace every eligible ``nn.Linear`` inside ``module`` (frozen: inference only) by a
    Float8Linear on the same device, in place; return how many were replaced."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and eligible(child):
                setattr(parent, name, Float8Linear(child))
                replaced += 1
    return replaced


def check_float8_device(device: torch.device) -> None:
    """ValueError (one line) unless ``device`` multiplies in FP8: a CUDA GPU of compute
    capability 8.9 or higher (Ada, Hopper and later), or the CPU (emulated: for tests, slow)."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        name = torch.cuda.get_device_name(device)
        raise ValueError(f"--teacher-fp8 needs FP8 tensor cores (compute capability 8.9+, e.g. H100); {name} has "
                         f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}")
