"""The step's 1x1 convolutions as cuDNN convolutions and as cuBLAS matrix products, at the step's shapes.

SD v1.x UNets run a 1x1 convolution into and out of every transformer block and in each resnet
that changes its channel count; on channels-last tensors each is a matrix product
(aria_train.diffusion.models.pointwise_conv, a candidate of issue 16). This times both forms alone,
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

import torch

from bench.attention_backends import count_calls, meta_unets, relative_rms, time_ms
from bench.common import end_to_end_parser, parse_args, report

FORMS = ("conv", "matmul")
Shape = tuple[int, int, int, int]  # (in channels, out channels, height, width)


def pointwise_shapes(size: str):
    """(teacher's, student's) Counter of 1x1 convolution Shapes in one forward of one image."""
    from aria_train.diffusion.models.pointwise_conv import pointwise

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
    from aria_train.diffusion.models.pointwise_conv import pointwise_convs_as_matmuls

    channels_in, channels_out, height, width = shape
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels_in, channels_out, 1).to(device, dtype).to(memory_format=torch.channels_last)
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
