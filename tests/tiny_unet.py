"""The tiny SD UNet and one batch for it, and its output and parameter gradients on that batch (a
helper module, not a conftest): what a module swap of the UNet must leave unchanged."""
from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

from aria_train.diffusion.models.configs import tiny_unet_config


def tiny_unet_and_batch(channels_last: bool = True) -> tuple[UNet2DConditionModel, tuple[torch.Tensor, ...]]:
    """The tiny SD UNet (seed 0; channels-last where asked) and (sample, timesteps, context) of two
    images (seed 1)."""
    config = tiny_unet_config(in_channels=4, sample_size=8)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config)
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(1)
    return unet, (torch.randn(2, 4, 8, 8, generator=generator), torch.tensor([10, 500]),
                  torch.randn(2, 77, config["cross_attention_dim"], generator=generator))


def output_and_grads(unet: torch.nn.Module, sample: torch.Tensor, timesteps: torch.Tensor,
                     context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``unet``'s output on the batch and every parameter's gradient of its mean square."""
    unet.zero_grad()
    out = unet(sample, timesteps, context).sample
    out.square().mean().backward()
    return out.detach(), [p.grad.clone() for p in unet.parameters()]
