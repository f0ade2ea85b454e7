"""The step's 1x1 convolutions as cuDNN convolutions and as cuBLAS matrix products: a candidate of issue 16.

SD v1.x UNets project into and out of every transformer block with 1x1 convolutions (``proj_in``,
``proj_out``; SD 2.x uses linear layers there), and their channel-changing resnet shortcuts are 1x1
convolutions too. On channels-last tensors each is a (pixels x in) by (in x out) matrix product:
the same FLOPs, which cuBLAS runs instead of cuDNN's implicit-GEMM convolutions.
``PointwiseConvAsMatmul`` keeps the convolution's parameter (shape, name, state dict) and computes
its forward as ``F.linear`` on the channels-last view (on a tensor that is not channels-last the
product copies it first); ``bench.distill_step --pointwise-matmul teacher|both`` times the compiled
step with it. It did not pay on an H100 (2026-12-06; docs/benchmarks.md, *Kernel candidates*): alone,
the products' forwards are faster than the convolutions' and their backwards often slower; in the
compiled, power-bound step neither form won. This module times both forms alone,
for every 1x1 convolution shape of the step (counted from one forward of the teacher and of its
BK-SDM-Small student on the meta device, as bench.attention_backends counts attention): per shape
a row with the forward's ms (the frozen teacher's) and forward + backward's ms (the student's,
weight and input gradients) of each form, and a ``step`` row summing layers x times over one step
at ``--batch`` images. Inputs and weights channels-last; bf16 on a GPU, float32 on the CPU (where the
numbers mean nothing; the CPU smoke test runs ``--quick``). Each shape's row also holds the relative
RMS difference between the two forms' outputs and input gradients.

``python -m bench.pointwise_conv [--size sd14|tiny] [--batch B] [--repeats N] [--quick]``
"""
from __future__ import annotations

import collections

import torch
import torch.nn.functional as F
from torch import nn

from bench.attention_backends import count_calls, meta_unets, relative_rms, time_ms
from bench.common import end_to_end_parser, parse_args, report

FORMS = ("conv", "matmul")
Shape = tuple[int, int, int, int]  # (in channels, out channels, height, width)


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


def pointwise_shapes(size: str) -> tuple[collections.Counter, collections.Counter]:
    """(teacher's, student's) Counter of 1x1 convolution Shapes in one forward of one image."""
    def describe(module, args, kwargs) -> Shape | None:
        if not pointwise(module):
            return None
        x = args[0]
        return module.in_channels, module.out_channels, x.shape[2], x.shape[3]

    teacher, student, inputs = meta_unets(size)
    return count_calls(teacher, inputs, describe), count_calls(student, inputs, describe)


def measure(shape: Shape, batch: int, repeats: int, device: torch.device) -> dict:
    """Forward and forward + backward ms of both forms of one 1x1 convolution of ``shape`` at
    ``batch``, and how far the matrix product's output and input gradient are from the convolution's."""
    channels_in, channels_out, height, width = shape
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    conv = nn.Conv2d(channels_in, channels_out, 1).to(device, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels_in, height, width, device=device, dtype=dtype)
    x = x.to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(batch, channels_out, height, width, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    row = {}
    results = []
    for form in FORMS:
        if form == "matmul":
            pointwise_convs_as_matmuls(conv)
        with torch.no_grad():
            row[f"{form}_forward_ms"] = time_ms(lambda: conv(x), repeats, device)
        row[f"{form}_forward_backward_ms"] = time_ms(lambda: conv(x).backward(grad), repeats, device)
        x.grad = None
        out = conv(x)
        out.backward(grad)
        results.append((out.detach().float(), x.grad.float()))
        x.grad = None
    row["output_rel_rms"] = relative_rms(results[1][0], results[0][0])
    row["grad_input_rel_rms"] = relative_rms(results[1][1], results[0][1])
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = end_to_end_parser("pointwise_conv", __doc__, ("tiny", "sd14"), "teacher")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per shape and form (default: %(default)s)")
    args = parse_args(parser, argv, {"size": "tiny", "batch": 2, "repeats": 2})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher, student = pointwise_shapes(args.size)
    rows, totals = [], dict.fromkeys(FORMS, 0.0)
    for shape in sorted(set(teacher) | set(student), reverse=True):
        measured = measure(shape, args.batch, args.repeats, device)
        for form in FORMS:
            totals[form] += (teacher[shape] * measured[f"{form}_forward_ms"]
                             + student[shape] * measured[f"{form}_forward_backward_ms"])
        rows.append({"size": args.size, "batch": args.batch, "in_channels": shape[0], "out_channels": shape[1],
                     "height": shape[2], "width": shape[3], "teacher_layers": teacher[shape],
                     "student_layers": student[shape], **measured})
    rows.append({"size": args.size, "batch": args.batch, "in_channels": "step",
                 **{f"{form}_step_ms": totals[form] for form in FORMS}})
    print(" ".join(f"{form}: {totals[form]:.4g} ms" for form in FORMS) + " of 1x1 convolutions per step", flush=True)
    report(f"pointwise_conv_{args.size}", rows, args.out)
    return rows


if __name__ == "__main__":
    main()
