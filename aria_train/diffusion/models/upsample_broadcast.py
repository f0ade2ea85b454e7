"""The UNets' 2x nearest upsampling as a broadcast over channels-last tensors (the trainer's, under
``--channels-last``: aria_train.distill.speed.prepare_unets).

diffusers' ``Upsample2D`` upsamples with ``F.interpolate(scale_factor=2, mode="nearest")``, and at
a batch of 64 or more first makes its input NCHW-contiguous (a workaround for a CUDA kernel of
channels-last nearest upsampling, diffusers#984). In a compiled channels-last step that costs
layout copies around every upsampler, and the upsampling's backward, which inductor derives from
indexing, is a scatter-add (``index_put`` with accumulation) into a zeroed float32 buffer (the
profiled SD-size step's ``triton_poi_fused__to_copy__unsafe_index_put_new_zeros_*`` kernels, the
costliest 2.2 ms per step). Written as a broadcast instead (each pixel expanded to a
2 x 2 block, on the channels-last view), the forward is the same copy of every value, the backward
is a sum over each block, a reduction with no atomics and no buffer to zero, and both stay
channels-last. ``BroadcastUpsample2D`` keeps the module's parameters and state dict (only its
class changes) and hands every configuration it does not cover to diffusers' own forward.
What it paid: the compiled SD-size step at batch 64 0.988x and 0.993x as long with SDPA (the two
runs in either order on one H100), 0.990x with ``fa4-self``, at the same power and peak memory
(2026-12-06, bench/results/distill_step_sd14_candidate_*upsample*_h100.csv; ``bench.distill_step
--upsample-interpolate`` is the baseline).
"""
from __future__ import annotations

import torch
from diffusers.models.upsampling import Upsample2D
from torch import nn


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode="nearest")`` for a (batch, channels, height, width)
    tensor, as a broadcast: the same values, channels-last strides, and a reduction for a backward."""
    batch, channels, height, width = x.shape
    blocks = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(batch, height, 2, width, 2, channels)
    return blocks.reshape(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)


class BroadcastUpsample2D(Upsample2D):
    """diffusers' ``Upsample2D`` whose plain 2x nearest upsampling (no norm, no transposed
    convolution, no ``output_size``) is ``upsample_nearest_2x``; anything else runs diffusers' forward."""

    def forward(self, hidden_states: torch.Tensor, output_size: int | None = None, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or output_size is not None or self.norm is not None or self.use_conv_transpose \
                or not self.interpolate:
            return super().forward(hidden_states, output_size, *args, **kwargs)
        hidden_states = upsample_nearest_2x(hidden_states)
        if self.use_conv:
            hidden_states = (self.conv if self.name == "conv" else self.Conv2d_0)(hidden_states)
        return hidden_states


def set_upsampling(module: nn.Module, broadcast: bool = True) -> int:
    """Every diffusers ``Upsample2D`` inside ``module`` upsampling by broadcast from now on
    (``broadcast``) or by diffusers' own forward again (its class swapped in place, its parameters
    untouched); returns how many upsamplers there are."""
    upsamplers = [m for m in module.modules() if type(m) in (Upsample2D, BroadcastUpsample2D)]
    for upsampler in upsamplers:
        upsampler.__class__ = BroadcastUpsample2D if broadcast else Upsample2D
    return len(upsamplers)
