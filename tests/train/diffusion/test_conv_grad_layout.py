"""aria_train/diffusion/models/conv_grad_layout.py: the channels-last-dense convolution gradients the
trainer gives the student under --channels-last must change no value, must hand every convolution
backward a dense gradient, and, compiled, must take the copy out of the convolution backward where
inductor passed a slice."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import profile
from torch.utils._python_dispatch import TorchDispatchMode

from aria_train.diffusion.models.conv_grad_layout import set_conv_gradient_layout
from aria_train.distill.speed import prepare_unets
from tiny_unet import output_and_grads, tiny_unet_and_batch


class ConvGradLayouts(TorchDispatchMode):
    """Records, for every convolution backward, whether the gradient it gets is channels-last-dense."""

    def __init__(self):
        super().__init__()
        self.dense: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            self.dense.append(args[0].is_contiguous(memory_format=torch.channels_last))
        return func(*args, **(kwargs or {}))


def test_dense_conv_gradients_change_no_value_and_densify_every_convolution_gradient():
    """The tiny channels-last SD UNet: bitwise the same output and parameter gradients with the hooks,
    one hook per convolution however often it is asked for; without them some convolution backward
    gets a gradient that is not channels-last-dense (so the check can fail), with them none does;
    removing the hooks undoes it."""
    unet, batch = tiny_unet_and_batch()
    sample = batch[0].to(memory_format=torch.channels_last)
    convs = sum(isinstance(m, nn.Conv2d) for m in unet.modules())
    with ConvGradLayouts() as plain:
        before = output_and_grads(unet, sample, *batch[1:])
    assert len(plain.dense) > 10 and not all(plain.dense)

    assert set_conv_gradient_layout(unet) == convs == set_conv_gradient_layout(unet, dense=True)
    assert sum(len(m._forward_hooks) for m in unet.modules()) == convs
    with ConvGradLayouts() as dense:
        after = output_and_grads(unet, sample, *batch[1:])
    assert len(dense.dense) == len(plain.dense) and all(dense.dense)
    assert torch.equal(after[0], before[0])
    assert all(torch.equal(a, b) for a, b in zip(after[1], before[1], strict=True))

    assert set_conv_gradient_layout(unet, dense=False) == convs
    assert sum(len(m._forward_hooks) for m in unet.modules()) == 0
    with ConvGradLayouts() as removed:
        output_and_grads(unet, sample, *batch[1:])
    assert removed.dense == plain.dense


class UpResnet(nn.Module):
    """The pattern of a SD up block, in small: an attention block's output projection (1x1, plus its
    residual), concatenated with a skip connection, into a resnet with a 1x1 shortcut."""

    def __init__(self):
        super().__init__()
        self.proj_out = nn.Conv2d(8, 8, 1)
        self.norm = nn.GroupNorm(4, 16)
        self.conv = nn.Conv2d(16, 8, 3, padding=1)
        self.shortcut = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([self.proj_out(x) + x, skip], 1)
        return self.conv(F.silu(self.norm(joined))) + self.shortcut(joined)


def copies_in_convolution_backwards(dense: bool) -> int:
    """How many gradients the compiled pattern's convolution backwards make contiguous in one step
    (compiled as the trainer compiles channels-last UNets: the layout optimisation forced). dynamo
    does not guard on a module's hooks, nor on which instance of a class it runs: without a reset a
    second pattern would run the first one's graph."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    module = UpResnet().to(memory_format=torch.channels_last)
    if dense:
        set_conv_gradient_layout(module)
    compiled = torch.compile(module, options={"force_layout_optimization": True})
    x, skip = (torch.randn(2, 8, 8, 8).to(memory_format=torch.channels_last) for _ in range(2))
    x.requires_grad_(True)
    compiled(x, skip).square().mean().backward()  # compiles
    with profile() as traced:
        compiled(x, skip).square().mean().backward()
    return sum(e.name == "aten::contiguous" and e.cpu_parent is not None
               and e.cpu_parent.name == "aten::convolution_backward" for e in traced.events())


def test_compiled_dense_gradients_take_the_copy_out_of_the_convolution_backward():
    """Compiled, the concatenation's gradient reaches ``proj_out``'s backward as a channel slice, which
    it copies; with the hooks the graph hands it a dense gradient and the copy inside is gone."""
    assert copies_in_convolution_backwards(dense=False) == 1
    assert copies_in_convolution_backwards(dense=True) == 0


def test_the_trainer_densifies_the_students_convolution_gradients_where_it_is_channels_last():
    """prepare_unets hooks every convolution of the student under --channels-last, and none of the
    frozen teacher (it computes no gradients) nor of an NCHW student (there it would transpose them)."""
    for channels_last in (True, False):
        teacher, _ = tiny_unet_and_batch(channels_last=False)
        student, _ = tiny_unet_and_batch(channels_last=False)
        prepare_unets(teacher, student, channels_last=channels_last)
        hooked = [len(m._forward_hooks) for m in student.modules() if isinstance(m, nn.Conv2d)]
        assert hooked == [int(channels_last)] * len(hooked) and len(hooked) > 10
        assert not any(m._forward_hooks for m in teacher.modules())


def test_distill_step_times_the_baseline_and_says_so(tmp_path, monkeypatch, capsys):
    """``bench.distill_step --channels-last`` times the step as the trainer runs it (the student's convolution
    gradients dense), with ``--strided-conv-grads`` its baseline: the hooks taken off the student's
    convolutions before its step runs; the rows' ``dense_conv_grads`` column says which rows are which;
    without channels-last the option is refused in one line."""
    from aria_train.diffusion.models import conv_grad_layout
    from bench import distill_step

    calls = []
    monkeypatch.setattr(conv_grad_layout, "set_conv_gradient_layout", lambda unet, dense=True,
                        layout=conv_grad_layout.set_conv_gradient_layout: calls.append((unet, dense)) or layout(unet, dense))
    argv = ["--size", "demo", "--batch", "1", "--steps", "1", "--warmup", "0", "--regions", "8", "--pool", "1000",
            "--channels-last", "--out", str(tmp_path)]
    dense = distill_step.main(argv=argv)
    assert [d for _, d in calls] == [True] and calls[0][0].training  # the student: the teacher is frozen in eval mode
    assert dense and all(r["dense_conv_grads"] for r in dense)
    strided = distill_step.main(argv=argv + ["--strided-conv-grads", "--name", "strided"])
    assert [d for _, d in calls] == [True, True, False] and calls[2][0] is calls[1][0]
    assert strided and all(not r["dense_conv_grads"] and r["step_ms"] > 0 for r in strided)
    with pytest.raises(SystemExit):
        distill_step.main(argv=[a for a in argv if a != "--channels-last"] + ["--strided-conv-grads"])
    assert "--strided-conv-grads needs --channels-last" in capsys.readouterr().err
