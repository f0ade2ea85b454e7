"""Channels-last-dense gradients for a UNet's convolutions: what the trainer does to the student under
``--channels-last`` (aria_train.distill.speed.prepare_unets; ``bench.distill_step --strided-conv-grads``
times its baseline). The compiled SD-size step on an H100, SDPA, batch 64, against the baseline in both
orders on one machine: 152.4 vs 150.2 and 151.2 vs 150.3 images/s, 1.4% less energy per image
(bench/results/distill_step_sd14_candidate_{densegrad,base_*_densegrad,densegrad_again}_h100.csv).

cuDNN's convolution backward makes the gradient it is given contiguous in the convolution's memory
format, so a gradient that reaches it as a strided view is copied there, by ATen's generic copy
kernel. In the compiled channels-last SD-size step those copies were 3.1 of the 3.4 ms of plain
copies per step, inside eight convolution backwards (H100, 2026-12-06:
bench/results/distill_step_sd14_fa4_self_broadcast_nvml_profile_b64_h100.json, ``kernel_sources``).
One way they arise, traced on the CPU in the trainer's compiled step with an SD-shaped tiny teacher
(three gradient copies there, none with these hooks: scripts/conv_grad_copies.py): a resnet
whose input is the concatenation of the up path with a skip connection uses it twice (its first
norm and its 1x1 shortcut), so inductor computes the concatenation's whole gradient into one buffer
and hands each part on as a channel slice of it, and the convolution that produced the up path's
part (an attention block's ``proj_out``) gets that slice: inductor passes a fallback kernel's inputs
with the strides the traced graph gave them, and there the slice is a view. The SD-size step's eight
are not all of that kind (seven of them change the channel count, which a ``proj_out`` does
not); a gradient in any other layout than channels-last-dense is copied the same way.

``set_conv_gradient_layout`` puts an identity after every convolution whose backward returns the
gradient ``.contiguous(memory_format=torch.channels_last)``: a no-op for a gradient that already is
(traced, it adds no node), a copy in the graph for one that is not, which inductor can fuse into the
kernel that computes the gradient or run as its own kernel, instead of ATen's copy inside cuDNN's
call. Values are unchanged (tests/train/diffusion/test_conv_grad_layout.py: bitwise the same loss
and gradients, and the compiled tiny pattern's copy inside the convolution backward gone). Only the
student needs it: the frozen teacher computes no gradients.
"""
from __future__ import annotations

import torch
from torch import nn


class _ChannelsLastGradient(torch.autograd.Function):
    """The identity; its backward hands the gradient on channels-last-dense."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def _dense_output_gradient(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return _ChannelsLastGradient.apply(output) if output.dim() == 4 else output


def set_conv_gradient_layout(module: nn.Module, dense: bool = True) -> int:
    """From now on every ``nn.Conv2d`` inside ``module`` receives its output's gradient channels-last-dense
    (``dense``: one forward hook each, added once however often this is called) or as the graph hands it
    (the hooks removed); returns how many convolutions there are. For a module in channels-last (in NCHW
    it would transpose every gradient), before its first compiled call: torch.compile traces the hooks into
    the graph, and does not guard on them afterwards."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        # found by the hook itself, not by kept handles: a deep copy of the module carries its hooks along
        hooked = [key for key, hook in conv._forward_hooks.items() if hook is _dense_output_gradient]
        if dense and not hooked:
            conv.register_forward_hook(_dense_output_gradient)
        elif not dense:
            for key in hooked:
                del conv._forward_hooks[key]
    return len(convs)
