"""FP8 linear layers for the frozen teacher (aria_train.diffusion.models.fp8, `aria distill --teacher-fp8`),
on the CPU (torch emulates the FP8 product there; the speed is a GPU matter, bench/fp8_teacher.py)."""
import torch
from diffusers import UNet2DConditionModel
from torch import nn

from aria_train.diffusion.models.configs import tiny_unet_config
from aria_train.diffusion.models.fp8 import E4M3_MAX, Float8Linear, quantise_rows, to_float8
from aria_train.distill.speed import prepare_unets


def test_rows_are_quantised_to_e4m3_with_one_scale_each():
    x = torch.randn(6, 32) * torch.logspace(-3, 3, 6)[:, None]  # rows of very different sizes
    values, scale = quantise_rows(x)
    assert values.dtype == torch.float8_e4m3fn and scale.shape == (6, 1)
    assert torch.allclose(values.float().abs().amax(dim=1), torch.full((6,), E4M3_MAX))  # each row's max fills the range
    back = values.float() * scale
    # E4M3 keeps 3 mantissa bits: a normal value is within half a step, 2^-4 of itself; tiny ones within a subnormal step
    assert torch.all((back - x).abs() <= 2 ** -4 * x.abs() + scale * 2 ** -9)


def test_float8_linear_is_the_product_of_the_quantised_factors():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    fp8 = Float8Linear(linear)
    x = torch.randn(2, 5, 64)
    out = fp8(x)
    values, scale = quantise_rows(x.reshape(-1, 64))
    weight = fp8.weight_bits.view(torch.float8_e4m3fn).float() * fp8.scale_bits.view(torch.float32).t()
    expect = (values.float() * scale) @ weight.t() + linear.bias
    assert out.shape == (2, 5, 48) and out.dtype == torch.float32
    torch.testing.assert_close(out.reshape(-1, 48), expect.detach(), rtol=1e-4, atol=1e-4)
    reference = linear(x).detach()
    assert (out - reference).norm() / reference.norm() < 0.06  # two E4M3 roundings, averaged over 64 terms


def test_to_float8_converts_eligible_layers_and_survives_a_dtype_cast():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10), nn.Sequential(nn.Linear(64, 16)))
    assert to_float8(model) == 2  # 64 -> 10 keeps its precision: 10 is no multiple of 16
    assert [type(m).__name__ for m in (model[0], model[2], model[3][0])] == ["Float8Linear", "Linear", "Float8Linear"]
    bits = model[0].weight_bits.clone()
    model.to(torch.bfloat16)  # the trainer holds the teacher in bf16
    assert model[0].weight_bits.dtype == torch.uint8 and torch.equal(model[0].weight_bits, bits)
    assert model[0].scale_bits.dtype == torch.int32
    assert model[0](torch.randn(3, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_fp8_teacher_prediction_stays_close():
    config = tiny_unet_config(sample_size=16, block_out_channels=(32, 64), cross_attention_dim=32,
                              attention_heads=2, norm_num_groups=8)
    torch.manual_seed(0)
    teacher = UNet2DConditionModel(**config).eval().requires_grad_(False)
    converted = UNet2DConditionModel(**config).eval().requires_grad_(False)
    converted.load_state_dict(teacher.state_dict())
    student = UNet2DConditionModel(**config)
    prepare_unets(converted, student, teacher_fp8=True)
    assert sum(isinstance(m, Float8Linear) for m in converted.modules()) > 10
    assert not any(isinstance(m, Float8Linear) for m in student.modules())  # only the teacher
    g = torch.Generator().manual_seed(1)
    x, hidden = torch.randn(4, 3, 16, 16, generator=g), torch.randn(4, 6, 32, generator=g)
    t = torch.tensor([10, 400, 800, 990])
    with torch.no_grad():
        a = teacher(x, t, encoder_hidden_states=hidden).sample
        b = converted(x, t, encoder_hidden_states=hidden).sample
    assert 0 < float((a - b).norm() / a.norm()) < 0.1


def test_float8_linear_compiles_to_one_graph_with_eager_values():
    """`aria distill --compile --teacher-fp8` compiles the FP8 teacher: a Float8Linear (a padded row
    count included) traces as one graph without a break, and inductor's code gives eager's output
    bitwise (the glyph demo teacher compiled whole, checked once by hand on the CPU: one graph,
    0.4% RMS from eager through rounding flips, 6.14% from float32 against eager's 6.14%)."""
    import torch._dynamo as dynamo

    torch.manual_seed(0)
    layer = Float8Linear(nn.Linear(64, 32))
    x = torch.randn(5, 7, 64)  # 35 rows: padded to 48 inside
    explained = dynamo.explain(layer)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    dynamo.reset()
    assert torch.equal(torch.compile(layer)(x), layer(x))
