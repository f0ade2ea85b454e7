"""The distillation step's attention under each of torch's SDPA backends, at the step's own shapes.

The SD-size compiled step spends about a fifth of its kernel time in attention (cuDNN's flash
kernels, 82 of 425 ms per step on the H200; docs/design.md §7), so the backend torch picks is one
lever left on MFU. This times ``F.scaled_dot_product_attention`` alone, for every attention shape
of the step: the shapes and how many layers have each come from one forward of the teacher and of
its BK-SDM-Small student on the meta device (``--size sd14``: SD v1.4's UNet at 64 x 64 latents and
77 tokens; ``tiny``: the tests' tiny SD UNet). Per backend (``default``: torch's own choice; then
flash, efficient, cudnn, math, each forced with ``torch.nn.attention.sdpa_kernel``; ``fa4``:
FlashAttention-4's Hopper kernels, aria_train/diffusion/models/fa4_attention.py, when installed; ``flex``:
torch's FlexAttention compiled, the Triton kernel inductor generates for the shape, whose backward
runs on GPUs only) and shape, a
row with the forward's ms (the frozen teacher's) and forward + backward's ms (the student's), and
per backend a ``step`` row: the sum over layers of one step's attention, teacher forwards plus
student forwards and backwards, at ``--batch`` images. A backend that cannot run a shape gives
nan and its reason. Each shape's row also holds the relative RMS difference of the forward's
output and of the query's, key's and value's gradients to float32 attention on the same bf16
inputs (the first two images: the float32 reference holds the whole score matrix). bf16 on a GPU,
float32 on the CPU (where the numbers mean nothing; the CPU smoke test runs ``--quick``).

``python -m bench.attention_backends [--size sd14|tiny] [--batch B] [--repeats N] [--quick]``
"""
from __future__ import annotations

import collections
import functools
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.common import end_to_end_parser, parse_args, report

BACKENDS = ("default", "flash", "efficient", "cudnn", "math", "fa4", "flex")
Shape = tuple[int, int, int, int]  # (query tokens, heads, head dim, key tokens)


def meta_unets(size: str) -> tuple[torch.nn.Module, torch.nn.Module, tuple[torch.Tensor, ...]]:
    """(teacher, its Small student, one image's UNet inputs) of ``size`` on the meta device: SD v1.4's
    UNet at 64 x 64 latents and 77 tokens (``sd14``), or the tests' tiny SD UNet (``tiny``)."""
    from diffusers import UNet2DConditionModel

    from aria_train.diffusion.models.configs import SD_V1_4_UNET_CONFIG, tiny_unet_config
    from aria_train.diffusion.models.students import make_student

    config = SD_V1_4_UNET_CONFIG if size == "sd14" else tiny_unet_config(in_channels=4, sample_size=8)
    with torch.device("meta"):
        teacher = UNet2DConditionModel(**config)
    student = make_student(teacher, "small").to("meta")
    side = config["sample_size"]
    inputs = (torch.zeros(1, config["in_channels"], side, side, device="meta"), torch.zeros(1, dtype=torch.long, device="meta"),
              torch.zeros(1, 77, config["cross_attention_dim"], device="meta"))
    return teacher, student, inputs


def count_calls(model: torch.nn.Module, inputs: tuple, describe: Callable[..., object]) -> collections.Counter:
    """How many times one forward of ``model`` on ``inputs`` calls a module of each shape:
    ``describe(module, args, kwargs)`` gives a call's shape, or None for modules not counted."""
    seen = collections.Counter()

    def record(module, args, kwargs) -> None:
        if (shape := describe(module, args, kwargs)) is not None:
            seen[shape] += 1

    hooks = [m.register_forward_pre_hook(record, with_kwargs=True) for m in model.modules()]
    with torch.no_grad():
        model(*inputs)
    for hook in hooks:
        hook.remove()
    return seen


def attention_shapes(size: str) -> tuple[collections.Counter, collections.Counter]:
    """How many attention layers of each Shape the teacher of ``size`` and its Small student run in
    one forward of one image (read from the attention modules' inputs on the meta device)."""
    from diffusers.models.attention_processor import Attention

    def describe(module, args, kwargs) -> Shape | None:
        if not isinstance(module, Attention):
            return None
        x = args[0] if args else kwargs["hidden_states"]
        context = kwargs.get("encoder_hidden_states")
        keys = x.shape[1] if context is None else context.shape[1]
        return x.shape[1], module.heads, module.inner_dim // module.heads, keys

    teacher, student, inputs = meta_unets(size)
    return count_calls(teacher, inputs, describe), count_calls(student, inputs, describe)


def time_ms(fn, repeats: int, device: torch.device) -> float:
    """Median ms of ``repeats`` calls of ``fn`` after two untimed ones, each waited for."""
    def wait() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        wait()
        begin = time.perf_counter()
        fn()
        wait()
        times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def backend_context(name: str):
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel

    if name == "default":
        return nullcontext()
    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                        "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name])


@functools.cache
def compiled_flex():
    """FlexAttention compiled for each shape at its first call, as inside a compiled UNet. Every
    shape is compiled three times (the timed batch with and without gradients, and the two images
    compared with float32), so the step's eight shapes pass torch's default limit of 8 compilations
    of one function, past which it runs eagerly (2026-12-06: attention_backends_sd14_flex_h100.csv's
    rows from the fourth shape on): the limit is raised (this process only times attention)."""
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.config.recompile_limit = 64
    return torch.compile(flex_attention, dynamic=False)


def relative_rms(x: torch.Tensor, reference: torch.Tensor) -> float:
    return ((x.float() - reference).norm() / reference.norm()).item()


def run_attention(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention over (batch, heads, tokens, width) tensors under ``backend``; fa4 takes its own
    layout, (batch, tokens, heads, width), which the UNets' projections give untransposed."""
    if backend == "fa4":
        from aria_train.diffusion.models.fa4_attention import attention

        return attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    if backend == "flex":
        return compiled_flex()(q, k, v)
    with backend_context(backend):
        return F.scaled_dot_product_attention(q, k, v)


def measure(shape: Shape, batch: int, backend: str, repeats: int, device: torch.device) -> dict:
    """Forward ms, forward + backward ms, the differences to float32 and why not, of one attention
    call of ``shape`` at ``batch``."""
    tokens, heads, dim, keys = shape
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    generator = torch.Generator(device).manual_seed(0)

    def make(n: int, gradient: bool = True) -> torch.Tensor:
        """(batch, heads, n, dim); for fa4 a view of a (batch, n, heads, dim) tensor, as the UNet hands it over."""
        layout = (batch, n, heads, dim) if backend == "fa4" else (batch, heads, n, dim)
        x = torch.randn(layout, generator=generator, device=device, dtype=dtype)
        x = x.transpose(1, 2) if backend == "fa4" else x
        return x.requires_grad_(gradient)

    q, k, v = make(tokens), make(keys), make(keys)  # all three train in the student: its projections do
    grad = make(tokens, gradient=False)
    try:
        with torch.no_grad():
            forward = time_ms(lambda: run_attention(backend, q, k, v), repeats, device)
        both = time_ms(lambda: run_attention(backend, q, k, v).backward(grad), repeats, device)
        sample = [x[:2].detach().requires_grad_() for x in (q, k, v)]
        out = run_attention(backend, *sample)
        out.backward(grad[:2])
        exact = [x.detach().float().requires_grad_() for x in sample]
        with backend_context("math"):
            reference = F.scaled_dot_product_attention(*exact)
        reference.backward(grad[:2].float())
        errors = {"output_rel_rms": relative_rms(out.detach(), reference.detach()),
                  **{f"grad_{name}_rel_rms": relative_rms(x.grad, y.grad) for name, x, y in zip("qkv", sample, exact)}}
    except Exception as error:  # no kernel of this backend for this shape, dtype or device; fa4 not installed
        return {"forward_ms": math.nan, "forward_backward_ms": math.nan,
                "unsupported": f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"}
    return {"forward_ms": forward, "forward_backward_ms": both, **errors, "unsupported": ""}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = end_to_end_parser("attention_backends", __doc__, ("tiny", "sd14"), "teacher")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per shape (default: %(default)s)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                        help="SDPA backends to time (default: all)")
    args = parse_args(parser, argv, {"size": "tiny", "batch": 2, "repeats": 2})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher, student = attention_shapes(args.size)
    rows = []
    for backend in args.backends:
        total = 0.0
        for shape in sorted(set(teacher) | set(student), reverse=True):
            measured = measure(shape, args.batch, backend, args.repeats, device)
            step = teacher[shape] * measured["forward_ms"] + student[shape] * measured["forward_backward_ms"]
            total += step
            rows.append({"size": args.size, "backend": backend, "batch": args.batch, "tokens": shape[0], "heads": shape[1],
                         "head_dim": shape[2], "key_tokens": shape[3], "teacher_layers": teacher[shape],
                         "student_layers": student[shape], **measured, "step_ms": step})
        rows.append({"size": args.size, "backend": backend, "batch": args.batch, "tokens": "step", "step_ms": total})
        print(f"{backend}: {total:.4g} ms of attention per step", flush=True)
    report(f"attention_backends_{args.size}", rows, args.out)
    return rows


if __name__ == "__main__":
    main()
