"""aria_train/diffusion/models/upsample_broadcast.py: the UNets' nearest upsampling as a broadcast, which
the trainer runs under ``--channels-last``, must compute what it replaces."""
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D

from aria_train.diffusion.models import upsample_broadcast
from aria_train.distill.speed import prepare_unets
from tiny_unet import output_and_grads as unet_output_and_grads
from tiny_unet import tiny_unet_and_batch


def test_upsample_nearest_2x_is_interpolate_and_stays_channels_last():
    """The same values as F.interpolate's nearest 2x, channels-last strides from either layout, and
    the gradient: each input pixel's four output gradients summed (exact here: small integers)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, 6, generator=generator)
    for layout in (torch.contiguous_format, torch.channels_last):
        y = upsample_broadcast.upsample_nearest_2x(x.to(memory_format=layout))
        assert torch.equal(y, F.interpolate(x, scale_factor=2.0, mode="nearest"))
        assert y.is_contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    grad = torch.randint(-8, 8, (3, 5, 8, 12), generator=generator).float()
    upsample_broadcast.upsample_nearest_2x(x).backward(grad)
    assert torch.equal(x.grad, grad.unflatten(2, (4, 2)).unflatten(4, (6, 2)).sum((3, 5)))


def test_broadcast_upsamplers_give_the_same_outputs_gradients_and_state(monkeypatch):
    """Every upsampler of the tiny SD UNet swapped: the output as before, every parameter gradient
    within float32's rounding of a reordered sum, in channels-last and in the default layout, and the
    state dict unchanged; an upsampler with a transposed convolution keeps diffusers' forward."""
    unet, (sample, timesteps, context) = tiny_unet_and_batch()
    count = sum(type(m) is Upsample2D for m in unet.modules())
    assert count > 0

    def output_and_grads(x):
        return unet_output_and_grads(unet, x, timesteps, context)

    channels_last = sample.to(memory_format=torch.channels_last)
    before = output_and_grads(channels_last)
    state = {k: v.shape for k, v in unet.state_dict().items()}
    assert upsample_broadcast.set_upsampling(unet) == count
    assert all(type(m) is upsample_broadcast.BroadcastUpsample2D for m in unet.modules() if isinstance(m, Upsample2D))
    assert {k: v.shape for k, v in unet.state_dict().items()} == state
    calls = []  # the broadcast runs, not diffusers' forward behind it
    monkeypatch.setattr(upsample_broadcast, "upsample_nearest_2x",
                        lambda x, broadcast=upsample_broadcast.upsample_nearest_2x: calls.append(x.shape) or broadcast(x))
    torch.testing.assert_close(output_and_grads(channels_last), before, rtol=1e-5, atol=1e-7)
    assert len(calls) == count
    torch.testing.assert_close(output_and_grads(sample), before, rtol=1e-5, atol=1e-7)

    transposed = Upsample2D(4, use_conv_transpose=True)
    expected = transposed(sample)
    upsample_broadcast.set_upsampling(transposed)
    assert torch.equal(transposed(sample), expected)

    assert upsample_broadcast.set_upsampling(unet, broadcast=False) == count  # and back to diffusers' forward
    assert all(type(m) is Upsample2D for m in unet.modules() if isinstance(m, Upsample2D))


def test_the_trainer_upsamples_by_broadcast_where_the_unets_are_channels_last():
    """prepare_unets swaps both UNets' upsamplers with --channels-last, and leaves them to diffusers
    without it (NCHW, the broadcast's channels-last output would cost the next convolution a copy)."""
    for channels_last in (True, False):
        teacher, _ = tiny_unet_and_batch(channels_last=False)
        student, _ = tiny_unet_and_batch(channels_last=False)
        prepare_unets(teacher, student, channels_last=channels_last)
        kinds = {type(m) for unet in (teacher, student) for m in unet.modules() if isinstance(m, Upsample2D)}
        assert kinds == {upsample_broadcast.BroadcastUpsample2D if channels_last else Upsample2D}


def test_distill_step_times_the_baseline_and_says_so(tmp_path):
    """``bench.distill_step --channels-last`` times the step as the trainer runs it (broadcast), with
    ``--upsample-interpolate`` diffusers' upsampling, and its rows' ``upsample_broadcast`` column says
    which rows are which; without channels-last the option is refused in one line."""
    from bench import distill_step

    argv = ["--size", "demo", "--batch", "1", "--steps", "1", "--warmup", "0", "--regions", "8", "--pool", "1000",
            "--channels-last", "--out", str(tmp_path)]
    rows = distill_step.main(argv=argv) + distill_step.main(argv=argv + ["--upsample-interpolate", "--name", "plain"])
    assert [r["upsample_broadcast"] for r in rows] == [True] * (len(rows) // 2) + [False] * (len(rows) // 2)
    assert all(r["step_ms"] > 0 for r in rows)
    with pytest.raises(SystemExit):
        distill_step.main(argv=[a for a in argv if a != "--channels-last"] + ["--upsample-interpolate"])
