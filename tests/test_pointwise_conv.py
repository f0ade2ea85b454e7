"""bench/pointwise_conv.py: issue 16's candidate of the 1x1 convolutions as matrix products
(``bench.distill_step --pointwise-matmul``) must compute what it replaces, or its timings mean
nothing; and its benchmark of both forms runs on the CPU."""
import csv

import pytest
import torch

from bench import pointwise_conv
from tiny_unet import output_and_grads as unet_output_and_grads
from tiny_unet import tiny_unet_and_batch


def test_pointwise_convs_as_matmuls_give_the_same_outputs_gradients_and_state():
    """Every plain 1x1 convolution of the tiny SD UNet (transformer projections, resnet shortcuts)
    swapped, no other: the output and every parameter gradient as before, in channels-last and in
    the default layout, and the state dict's keys and shapes unchanged."""
    unet, (sample, timesteps, context) = tiny_unet_and_batch()
    pointwise = [name for name, m in unet.named_modules() if pointwise_conv.pointwise(m)]
    assert any(n.endswith("proj_in") for n in pointwise) and any(n.endswith("conv_shortcut") for n in pointwise)
    assert not any(n.endswith(("conv1", "conv2", "conv_in", "conv_out")) for n in pointwise)  # 3x3 kernels

    def output_and_grads(x):
        return unet_output_and_grads(unet, x, timesteps, context)

    channels_last = sample.to(memory_format=torch.channels_last)
    before = output_and_grads(channels_last)
    state = {k: v.shape for k, v in unet.state_dict().items()}
    assert pointwise_conv.pointwise_convs_as_matmuls(unet) == len(pointwise)
    assert {k: v.shape for k, v in unet.state_dict().items()} == state
    torch.testing.assert_close(output_and_grads(channels_last), before, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(output_and_grads(sample), before, rtol=1e-4, atol=1e-6)


def test_pointwise_conv_benchmark_rows(tmp_path):
    """A row per 1x1 shape of the tiny teacher and student with both forms' times and their
    difference (float32 on the CPU: none to speak of), and a step row summing layers x times."""
    teacher, student = pointwise_conv.pointwise_shapes("tiny")
    assert set(student) <= set(teacher) and sum(student.values()) < sum(teacher.values())
    rows = pointwise_conv.main(["--quick", "--out", str(tmp_path)])
    assert len(list(csv.DictReader((tmp_path / "pointwise_conv_tiny.csv").open()))) == len(rows) == len(teacher) + 1
    shapes, step = rows[:-1], rows[-1]
    assert all(r["output_rel_rms"] < 1e-5 and r["grad_input_rel_rms"] < 1e-5 for r in shapes)
    for form in pointwise_conv.FORMS:
        assert step[f"{form}_step_ms"] == pytest.approx(sum(r["teacher_layers"] * r[f"{form}_forward_ms"]
                                                            + r["student_layers"] * r[f"{form}_forward_backward_ms"]
                                                            for r in shapes))
        assert step[f"{form}_step_ms"] > 0
