"""Two model changes bench.distill_step measures as candidates of issue 16: the 1x1 convolutions
as matrix products (aria_train.diffusion.models.pointwise_conv) and FlexAttention in the
cross-attention (aria_train.diffusion.models.flex_attention). Each must compute what it replaces."""
import torch
from diffusers import UNet2DConditionModel

from aria_train.diffusion.models import flex_attention, pointwise_conv
from aria_train.diffusion.models.configs import tiny_unet_config


def tiny_unet_and_inputs():
    config = tiny_unet_config(in_channels=4, sample_size=8)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config)
    generator = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, 4, 8, 8, generator=generator), torch.tensor([10, 500]),
              torch.randn(2, 77, config["cross_attention_dim"], generator=generator))
    return unet, inputs


def test_pointwise_convs_as_matmuls_give_the_same_outputs_gradients_and_state():
    """Every plain 1x1 convolution of the tiny SD UNet (transformer projections, resnet shortcuts)
    swapped, no other: the output and every parameter gradient as before, in channels-last and in
    the default layout, and the state dict's keys and shapes unchanged."""
    unet, inputs = tiny_unet_and_inputs()
    unet.to(memory_format=torch.channels_last)
    pointwise = [name for name, m in unet.named_modules() if pointwise_conv.pointwise(m)]
    assert any(n.endswith("proj_in") for n in pointwise) and any(n.endswith("conv_shortcut") for n in pointwise)
    assert not any(n.endswith(("conv1", "conv2", "conv_in", "conv_out")) for n in pointwise)  # 3x3 kernels

    def output_and_grads(x):
        unet.zero_grad()
        out = unet(x, *inputs[1:]).sample
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in unet.parameters()]

    channels_last = inputs[0].to(memory_format=torch.channels_last)
    before = output_and_grads(channels_last)
    state = {k: v.shape for k, v in unet.state_dict().items()}
    assert pointwise_conv.pointwise_convs_as_matmuls(unet) == len(pointwise)
    assert {k: v.shape for k, v in unet.state_dict().items()} == state
    torch.testing.assert_close(output_and_grads(channels_last), before, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(output_and_grads(inputs[0]), before, rtol=1e-4, atol=1e-6)


def test_flex_cross_attention_gives_sdpa_forward():
    """FlexAttention in every cross-attention (the self-attention untouched): the tiny UNet's
    prediction as with SDPA. On the CPU FlexAttention has no backward; the GPU path is the step's."""
    unet, inputs = tiny_unet_and_inputs()
    with torch.no_grad():
        reference = unet(*inputs).sample
        flex_attention.use_flex_cross(unet)
        kinds = {(name.rsplit(".", 2)[-2], type(p).__name__) for name, p in unet.attn_processors.items()}
        assert kinds == {("attn1", "AttnProcessor2_0"), ("attn2", "FlexAttnProcessor")}
        torch.testing.assert_close(unet(*inputs).sample, reference, rtol=1e-4, atol=1e-5)
