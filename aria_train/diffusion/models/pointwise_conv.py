"""1x1 convolutions as the matrix products they are: a candidate of issue 16, measured by
``bench.distill_step --pointwise-matmul``.

SD v1.x UNets project into and out of every transformer block with 1x1 convolutions (``proj_in``,
``proj_out``; SD 2.x uses linear layers there), and their resnets' channel-changing shortcuts are
1x1 convolutions too. On channels-last tensors a 1x1 convolution is a (pixels x in) by (in x out)
matrix product: the same FLOPs, which cuBLAS may run nearer the tensor cores' peak than cuDNN's
implicit-GEMM convolutions (in the compiled SD-size step matrix products reach ~0.77 of the measured
peak, convolutions as a whole ~0.70: bench/results/distill_e2e_profile_*). ``PointwiseConvAsMatmul`` keeps the
convolution's parameter (shape, name, state dict, ``save_pretrained``) and computes its forward as
``F.linear`` on the channels-last view; on a tensor that is not channels-last the view's product
copies it first (use it with ``--channels-last``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PointwiseConvAsMatmul(nn.Conv2d):
    """An ``nn.Conv2d`` with a 1x1 kernel, stride 1, no padding, one group, computed as a matrix product."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)


def pointwise(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain 1x1 convolution (a matrix product over channels at every pixel)."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) and conv.groups == 1)


def pointwise_convs_as_matmuls(module: nn.Module) -> int:
    """Every plain 1x1 convolution inside ``module`` computed as a matrix product from now on (its
    class swapped in place, its parameters untouched); returns how many."""
    convs = [m for m in module.modules() if pointwise(m)]
    for conv in convs:
        conv.__class__ = PointwiseConvAsMatmul
    return len(convs)
