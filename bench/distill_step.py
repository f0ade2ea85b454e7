"""Distillation step throughput, memory, MFU, and ARIA's overhead over RC, with the trainer's code.

``python -m bench.distill_step --size sd14`` times the trainer's ``train_step`` (aria_train.distill.step)
plus AdamW for an SD-v1.4-size teacher (random weights from its config, held in bf16, no
gradients) and its BK-SDM-Small student (fp32 weights, bf16 autocast), output + feature KD,
64x64 latents, random 77x768 text embeddings. ``--size sdxl`` does the same for SDXL base's UNet
(2.57B parameters, random weights) into a KOALA-700M student (``--student koala-1b`` for the
other), 128x128 latents, random SDXL conditioning (77x2048 context, 1280-wide pooled
``text_embeds``, the six time ids of 1024 px) handed to both UNets as the trainer does
(aria_train.diffusion.prompts.unet_inputs); ``--size sdxl-tiny`` is that path on the tests' tiny
SDXL-shaped UNet (a CPU smoke test), ``--size sd-tiny`` a tiny UNet with SD v1.4's four stages. ``--size demo`` is the shipped 24 px embedded-world teacher,
and ``--size FOLDER`` any teacher folder, SD or SDXL (its UNet's sample shape, conditioning as
long and as wide as its encoders'). Students come from ``make_student``, as the trainer makes
them (BK-SDM-Small of SD, KOALA-700M of SDXL unless ``--student``). Per row: images/s, peak
memory, the host's time per step to launch it (``host_ms``: the step's work queued, before the
wait for its discrepancy; well under ``step_ms``, the device bounds the step; near it, the host
does, or the driver's launch queue filled and held the host back), FLOPs of
one whole step counted with torch.utils.flop_counter (and split into attention,
convolutions and matrix products: ``*_tflop``; the counter does not know the CPU's attention
kernel, so on a CPU attention counts 0), MFU against a bf16 8192^3 matmul measured in the same
run, and NVML's SM clock, power draw and utilisation over the row's timed steps (``NVML_COLUMNS``:
the clock under sustained load, to set beside the one a ``--profile`` run's traced steps held,
``traced_sm_clock_mhz``; nan on a CPU).
``--compile``, ``--channels-last``, ``--gradient-checkpointing`` and ``--teacher-fp8`` set the models up exactly as
``aria distill`` does (aria_train.distill.speed). FLOPs are counted on an eager step (the counter sees
aten ops, not compiled kernels; with checkpointing they include the recomputed forward);
``warmup_s`` is the time of the ``--warmup`` steps after it, compilation included; with ``--compile``
the eager step at the full batch is left out (it would cap the batch at eager's memory), so the
first warm-up step is the first at that batch and ``--warmup`` must be at least 1. torch's FLOP
counter does not count the FP8 products of ``--teacher-fp8`` (``torch._scaled_mm``): compare those
rows by images/s, not MFU. ``--teacher-stream on`` runs the teacher's forward on a second CUDA
stream as ``aria distill --teacher-stream`` does; ``both`` times every row with and without it,
interleaved, after one compilation (the A/B of bench/results/distill_step_sd14_*teacher_stream_h100.csv).
``--pointwise-matmul teacher|both`` computes those UNets' 1x1 convolutions as matrix products (a
candidate, bench/pointwise_conv.py; bench/results/distill_step_sd14_candidate_*_h100.csv);
``--upsample-interpolate`` leaves both UNets' nearest upsampling to diffusers under ``--channels-last``, where the
trainer runs it as a broadcast (aria_train/diffusion/models/upsample_broadcast.py): its baseline.
``--strided-conv-grads`` hands every convolution backward of the student its gradient as the compiled graph has
it under ``--channels-last``, where the trainer makes it channels-last-dense in the graph
(aria_train/diffusion/models/conv_grad_layout.py): its baseline, in which cuDNN copies the strided ones.

A batch sweep (``--batch 8 16 32 ...``, run in the given order, each size with freshly built
models) finds the largest batch that fits: a size that runs out of device memory is recorded
as an ``oom`` row (NaN measurements) and sizes at least as large are skipped. ``--append`` adds
the rows to the CSV's earlier ones (scripts/sdxl_bench.sh collects its runs in one CSV).

ARIA's overhead: with the real AriaSampler over K regions and a pool of P prompts, each step
adds a draw (for the switched share of the batch, at RC's mean switch rate) and an observe of
the batch's discrepancies. Those are timed on their own around the same steps ("aria ops"),
and the aria rows run the step with them in the loop, so the difference to the rc rows is
visible too (it is within timing noise when the ops cost well under 1%).
"""
from __future__ import annotations

import argparse
import gc
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from aria_train.diffusion.models.fa4_attention import available
from aria_train.distill.config import Attention
from bench.common import RESULTS, number, read_rows, report
from bench.loop_profile import DeviceSampler
from bench.step_setup import build, default_student, make_batch


def matmul_tflops(device: torch.device) -> float:
    """Measured bf16 dense matmul rate (TFLOP/s) of an 8192^3 product, mean of 10 after 3 warm-ups."""
    if device.type != "cuda":
        return float("nan")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12


def aria_ops(num_regions: int, pool_size: int, batch: int, seed: int = 0):
    """A closure doing one step's ARIA work on the host: draw the switched share, observe all."""
    from aria_train.conditioning.aria import AriaOptions, AriaSampler

    rng = np.random.default_rng(seed)
    regions = rng.integers(0, num_regions, pool_size)
    sampler = AriaSampler(regions, 1000, AriaOptions(warmup=0), num_regions)
    switched = max(1, round(0.2 * batch))  # RC's mean switch rate at lambda = 5 is (1 - e^-5) / 5 ~ 0.2

    def step(discrepancy: np.ndarray) -> None:
        sampler.draw(switched, rng)
        sampler.observe(rng.integers(0, num_regions, batch), discrepancy, rng.integers(0, 1000, batch),
                        np.ones(batch, bool))
        sampler.metrics()

    return step


# NVML's means over a row's timed steps (bench.loop_profile.DeviceSampler; nan without NVML): the clock
# the device held under the step's sustained load, beside the profile's traced_sm_clock_mhz
NVML_COLUMNS = ("sm_clock_mhz", "power_w", "gpu_utilization_pct")
SPEED_OPTIONS = ("compile", "channels_last", "gradient_checkpointing", "teacher_fp8")  # prepare_unets' options
TEACHER_STREAMS = {"off": (False,), "on": (True,), "both": (False, True)}  # --teacher-stream: run_rows' variants
FLOP_BATCH = 8  # images in the FLOP-counting step; larger batches are scaled from it (see run_rows)
MEASURED = ("step_ms", "host_ms", "images_per_s", "peak_gib", "step_tflop", "tflops", "mfu", "matmul_peak_tflops", "warmup_s",
            "aria_ops_ms", "aria_ops_fraction", "attention_tflop", "convolution_tflop", "matmul_tflop", *NVML_COLUMNS)
FLOP_CLASSES = ("attention", "convolution", "matmul")  # every counted operator is one of these (flop_classes)


def flop_classes(counts: dict) -> dict[str, float]:
    """FLOPs of a FlopCounterMode's global counts (``get_flop_counts()["Global"]``: operator ->
    FLOPs) by class of work, named as bench.loop_profile's kernel classes so that a profile can
    divide one by the other: attention (every SDPA kernel), convolution (forward and backward),
    matmul (the rest: mm, addmm, bmm, baddbmm, FP8's scaled mm)."""
    totals = dict.fromkeys(FLOP_CLASSES, 0.0)
    for op, flops in counts.items():
        name = str(op)
        totals["attention" if "attention" in name else "convolution" if "conv" in name else "matmul"] += flops
    return totals


def make_row(setup: dict, method: str, batch: int, **measured) -> dict:
    """One CSV row: the set-up, the method ("rc", "aria", or "oom" for a batch that did not fit)
    and the measured values (NaN where not measured), always the same columns."""
    return {**setup, "method": method, "batch": batch, **{k: measured.get(k, float("nan")) for k in MEASURED}}


class PhaseOutOfMemory(RuntimeError):
    """The device ran out of memory in a named phase of ``run_rows``; the message (which still
    says "out of memory") names the phase and the memory held when it happened, so a batch that
    does not fit can be told from one whose set-up (e.g. the FLOP-counting step) does not."""


@contextmanager
def oom_phase(name: str, device: torch.device):
    """Re-raise a device out-of-memory error inside the block as PhaseOutOfMemory naming ``name``."""
    try:
        yield
    except RuntimeError as err:
        if not out_of_memory(err) or isinstance(err, PhaseOutOfMemory):
            raise
        held = ""
        if device.type == "cuda":
            held = (f"; allocated {torch.cuda.memory_allocated() / 2**30:.1f} GiB, reserved "
                    f"{torch.cuda.memory_reserved() / 2**30:.1f} GiB, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        raise PhaseOutOfMemory(f"out of memory in {name}{held}: {str(err).splitlines()[0][:160]}") from err


def run_rows(setup: dict, batch: int, steps: int, warmup: int, device: torch.device, peak: float,
             profile: int = 0, teacher_streams: tuple[bool, ...] = (False,)) -> tuple[list[dict], dict | None]:
    """Two rc and two aria rows (interleaved) of ``steps`` timed steps each, after ``warmup`` steps,
    and with ``profile`` > 0 the profile of that many rc steps after them (bench.loop_profile's
    summary: kernel classes, top kernels and their launch sites; None without). Each of those rows
    once per ``teacher_streams`` value, interleaved too (the ``teacher_stream`` column): the
    teacher's forward beside the student's on a second CUDA stream where true (``aria distill
    --teacher-stream``); the warm-up steps take the values in turn, the profile the last.
    Running out of device memory raises PhaseOutOfMemory naming the phase."""
    from torch.utils.flop_counter import FlopCounterMode

    from aria_train.distill.losses import LossWeights
    from aria_train.distill.speed import make_optimizer

    speed = {k: setup[k] for k in SPEED_OPTIONS}
    # FLOPs are counted on an eager step; compilation is switched on after that.
    with oom_phase("building the models", device):
        models, inputs = build(setup["size"], setup["student"], setup["feature_kd"], device, {**speed, "compile": False})
        optimizer = make_optimizer(models.student.parameters(), 1e-5, 1e-2, device)
        batch_data = make_batch(batch, inputs, device, torch.Generator().manual_seed(0))
    weights = LossWeights(1.0, 1.0, 0.0)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    ops = aria_ops(setup["regions"], setup["pool"], batch)
    side = torch.cuda.Stream(device) if any(teacher_streams) else None

    def use_teacher_stream(on: bool) -> None:
        models.teacher_stream = side if on else None

    launching = [0.0]  # the host's seconds in one_step before it waits for the device, summed

    def one_step(with_aria: bool, data: dict = batch_data) -> None:
        from aria_train.distill.step import train_step

        start = time.perf_counter()
        if setup["cuda_graphs"]:  # the last step's graph outputs may be overwritten now
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            losses = train_step(models, data, weights)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        launching[0] += time.perf_counter() - start
        discrepancy = losses["discrepancy"].double().cpu().numpy()  # RC's tally reads it too: the same sync
        if with_aria:
            ops(discrepancy)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if not speed["compile"]:  # compiled, the first full step is a warm-up step: an eager one would
        with oom_phase("the first step", device):  # cap the batch at eager's memory
            one_step(False)
    # Counted on at most FLOP_BATCH images and scaled: every op the counter sees works per image,
    # so the count is linear in the batch (tests/test_bench_smoke.py checks it), and counting under
    # FlopCounterMode holds far more memory than the step itself (KOALA-700M, checkpointed, batch
    # 64: the first step fit, the counted one ran out at 134 GiB).
    flop_batch = min(batch, FLOP_BATCH)
    flops = FlopCounterMode(display=False)
    with oom_phase("the FLOP-counting step", device), flops:
        one_step(False, batch_data if flop_batch == batch else
                 make_batch(flop_batch, inputs, device, torch.Generator().manual_seed(0)))
    step_flops = flops.get_total_flops() * batch / flop_batch
    class_tflop = {f"{name}_tflop": count * batch / flop_batch / 1e12
                   for name, count in flop_classes(flops.get_flop_counts()["Global"]).items()}
    from aria_train.distill.speed import compile_loss, compile_unets, set_attention

    # after the count: FA4's ops have no FLOP formula (SDPA's is the same), and the counter runs eagerly
    set_attention(models.teacher, models.student.unet, setup["attention"])
    if setup["pointwise_matmul"]:  # a candidate (bench/pointwise_conv.py): the teacher's 1x1 convolutions, or both UNets'
        from bench.pointwise_conv import pointwise_convs_as_matmuls

        pointwise_convs_as_matmuls(models.teacher)
        if setup["pointwise_matmul"] == "both":
            pointwise_convs_as_matmuls(models.student.unet)
    if setup["upsample_broadcast"] != speed["channels_last"]:  # the baseline: diffusers' upsampling, channels-last
        from aria_train.diffusion.models.upsample_broadcast import set_upsampling

        for unet in (models.teacher, models.student.unet):
            set_upsampling(unet, broadcast=setup["upsample_broadcast"])
    if setup["dense_conv_grads"] != speed["channels_last"]:  # the baseline: gradients as the graph hands them
        from aria_train.diffusion.models.conv_grad_layout import set_conv_gradient_layout

        set_conv_gradient_layout(models.student.unet, dense=False)  # before the first compiled call traces the hooks
    if setup["compile_loss"]:
        models.loss_fn = compile_loss()
    if speed["compile"]:  # as the trainer compiles them (its layout optimisation forced where channels-last)
        compile_unets(models.teacher, models.student.unet, channels_last=speed["channels_last"],
                      cuda_graphs=setup["cuda_graphs"], inductor=parse_inductor(setup["inductor"]))
    compile_start = time.perf_counter()
    with oom_phase("the warm-up steps", device):
        for step in range(max(warmup, len(teacher_streams))):
            use_teacher_stream(teacher_streams[step % len(teacher_streams)])
            one_step(True)
        sync()
    warmup_s = time.perf_counter() - compile_start
    rows = []
    for method, on in [(m, on) for m in ("rc", "aria", "rc", "aria") for on in teacher_streams]:  # interleaved,
        use_teacher_stream(on)  # so drift in clocks hits all
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        launching[0] = 0.0
        start = time.perf_counter()
        with oom_phase("the timed steps", device), DeviceSampler(interval=0.05) as sampler:
            for _ in range(steps):
                one_step(method == "aria")
            sync()
        seconds = (time.perf_counter() - start) / steps
        nvml = sampler.summary()
        rows.append(make_row({**setup, "teacher_stream": on}, method, batch, step_ms=seconds * 1e3, host_ms=launching[0] / steps * 1e3,
                             images_per_s=batch / seconds,
                             peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan"),
                             step_tflop=step_flops / 1e12, tflops=step_flops / seconds / 1e12,
                             mfu=step_flops / seconds / 1e12 / peak, matmul_peak_tflops=peak, **class_tflop,
                             **{name: nvml.get(name, float("nan")) for name in NVML_COLUMNS}))
    discrepancy = np.random.default_rng(1).exponential(size=batch)
    start = time.perf_counter()
    for _ in range(200):
        ops(discrepancy)
    ops_ms = (time.perf_counter() - start) / 200 * 1e3
    rc_ms = np.mean([r["step_ms"] for r in rows if r["method"] == "rc"])
    for r in rows:
        r.update(warmup_s=warmup_s, aria_ops_ms=ops_ms, aria_ops_fraction=ops_ms / rc_ms)
    return rows, profile_steps(one_step, profile) if profile else None


def profile_steps(one_step, active: int) -> dict:
    """bench.loop_profile's summary of ``active`` rc steps (after one untraced step and the
    profiler's own warm-up step), with its 40 costliest kernels."""
    from bench.loop_profile import LoopProfiler

    total = active + 2
    with LoopProfiler(total, active, top=40, skip=0) as profiler:
        for step in range(total):
            one_step(False)
            profiler.on_step(step, total)
    return profiler.summary()


def inductor_option(text: str) -> str:
    """``--inductor``'s argument type: KEY=VALUE with a non-empty key, kept as written."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (an inductor option), got {text!r}")
    return text


def parse_inductor(joined: str) -> dict[str, object]:
    """The inductor options of a setup's ``inductor`` column (KEY=VALUE words): VALUE true / false
    as booleans, integers and numbers as such, anything else as a string."""
    def value(text: str) -> object:
        return text.lower() == "true" if text.lower() in ("true", "false") else number(text)

    return {key: value(text) for key, _, text in (word.partition("=") for word in joined.split())}


def make_setup(size: str, device: torch.device, speed: dict, regions: int, pool: int, student: str | None = None,
               feature_kd: str = "blocks", cuda_graphs: bool = False, cudnn_benchmark: bool = True,
               inductor: list[str] | None = None, attention: str = "sdpa", compile_loss: bool | None = None,
               pointwise_matmul: str = "", upsample_broadcast: bool | None = None,
               dense_conv_grads: bool | None = None) -> dict:
    """What ``run_rows`` runs, as the first columns of its rows: teacher size, student variant
    (``default_student`` if None), feature KD kind, device, the speed options (SPEED_OPTIONS), the
    UNets' ``attention`` as ``aria distill --attention`` sets it (aria_train.distill.speed.set_attention),
    ``teacher_stream`` (false here; run_rows sets it per row),
    two candidates the trainer does not offer (``cuda_graphs``, the compiled UNets replayed as CUDA
    graphs; ``inductor``, further inductor options as KEY=VALUE strings (``parse_inductor``; the
    column holds them joined by spaces), ``compile_loss``, the loss compiled too
    (aria_train.distill.speed.compile_loss; None: where the UNets are, as the trainer's ``--compile``
    does; False for the eager loss it was measured against), ``cudnn_benchmark`` false for cuDNN's heuristic choice of
    convolution algorithm instead of its benchmark mode, which the trainer always has on (the caller
    sets it, as it is process-wide), ``pointwise_matmul`` (``teacher`` or ``both``: those UNets'
    1x1 convolutions as matrix products, bench/pointwise_conv.py; '' for none), ``upsample_broadcast``
    (both UNets' nearest upsampling as a broadcast, aria_train/diffusion/models/upsample_broadcast.py; None:
    where they are channels-last, as the trainer does; False for diffusers' own), ``dense_conv_grads`` (the
    student's convolution gradients channels-last-dense, aria_train/diffusion/models/conv_grad_layout.py; None:
    where it is channels-last, as the trainer does; False for the gradients as the graph hands them), and
    ARIA's K regions over a pool of ``pool`` prompts."""
    return {"size": size, "student": student or default_student(size), "feature_kd": feature_kd,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            **{k: speed[k] for k in SPEED_OPTIONS}, "teacher_stream": False, "cuda_graphs": cuda_graphs, "inductor": " ".join(inductor or []),
            "attention": attention, "compile_loss": speed["compile"] if compile_loss is None else compile_loss,
            "cudnn_benchmark": cudnn_benchmark, "pointwise_matmul": pointwise_matmul,
            "upsample_broadcast": speed["channels_last"] if upsample_broadcast is None else upsample_broadcast,
            "dense_conv_grads": speed["channels_last"] if dense_conv_grads is None else dense_conv_grads,
            "regions": regions, "pool": pool}


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the device running out of memory (torch.OutOfMemoryError, or the
    RuntimeError cuDNN / cuBLAS / a compiled graph raise for it)."""
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def main(scale: float = 1.0, argv: list[str] | None = None) -> list[dict]:
    from aria_train.diffusion.models.students import FEATURE_KINDS

    parser = argparse.ArgumentParser(prog="python -m bench.distill_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="demo", metavar="sd14|sdxl|sdxl-tiny|sd-tiny|demo|FOLDER",
                        help="teacher: SD v1.4's or SDXL base's UNet (random weights), a tiny SDXL-shaped one (a CPU "
                        "smoke test), a tiny one with SD v1.4's four stages, the shipped demo teacher, or a teacher folder (default: %(default)s)")
    parser.add_argument("--student", default=None, metavar="small|base|tiny|koala-1b|koala-700m",
                        help="student variant (default: koala-700m of an SDXL teacher, else small)")
    parser.add_argument("--feature-kd", choices=FEATURE_KINDS, default="blocks", help="what feature KD compares (default: "
                        "%(default)s)")
    parser.add_argument("--batch", type=int, nargs="+", default=[16], help="micro-batch sizes in images, run in this "
                        "order; one that runs out of device memory gives an 'oom' row, and later ones at least as "
                        "large are skipped (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the eager ones (a first step at "
                        "the batch, left out with --compile, and one that counts FLOPs); compilation happens in "
                        "the first; at least 1 with --compile (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="torch.compile teacher and student (in place)")
    parser.add_argument("--channels-last", action="store_true", help="both UNets in channels-last memory format")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute the student's activations in backward")
    parser.add_argument("--teacher-fp8", action="store_true", help="the teacher's linear layers in FP8 (aria distill --teacher-fp8)")
    parser.add_argument("--cuda-graphs", action="store_true", help="with --compile: inductor replays each compiled graph "
                        "as a CUDA graph (a candidate; no trainer option)")
    parser.add_argument("--inductor", nargs="+", default=[], metavar="KEY=VALUE", type=inductor_option,
                        help="with --compile: further inductor options (torch._inductor.config's names; VALUE "
                        "true/false, an integer, a number or a string), e.g. max_autotune=true (Triton templates "
                        "timed against cuBLAS / cuDNN for each matrix product and convolution; compilation takes "
                        "far longer), coordinate_descent_tuning=true (each fused Triton kernel's launch "
                        "configuration tuned), conv_1x1_as_mm=true (1x1 convolutions as matrix products); "
                        "candidates, no trainer options")
    parser.add_argument("--attention", choices=get_args(Attention), default="sdpa", help="both UNets' attention, as aria distill "
                        "--attention: torch's SDPA (cuDNN's flash kernels on Hopper), or FlashAttention-4's in the "
                        "self-attention only or in all of it (flash-attn-4 installed, a Hopper GPU) (default: %(default)s)")
    parser.add_argument("--teacher-stream", choices=("off", "on", "both"), default="off",
                        help="the teacher's forward on a second CUDA stream, beside the student's, as aria distill "
                        "--teacher-stream (GPUs only): off, on, or both (each row twice, interleaved: an A/B of one "
                        "compilation) (default: %(default)s)")
    parser.add_argument("--eager-loss", action="store_true", help="with --compile: leave the distillation loss eager "
                        "(`aria distill --compile` compiles it too, aria_train.distill.speed.compile_loss: each feature "
                        "term one fused pass over the feature maps instead of several eager ones); the baseline")
    parser.add_argument("--cudnn-heuristics", action="store_true", help="cuDNN's benchmark mode off: each convolution "
                        "takes the heuristic's first algorithm, not the fastest one timed (whose workspace may be "
                        "larger where more memory is free); a memory candidate, no trainer option")
    parser.add_argument("--pointwise-matmul", choices=("teacher", "both"), default="", help="the teacher's or both "
                        "UNets' 1x1 convolutions computed as matrix products (bench/pointwise_conv.py; a candidate, no "
                        "trainer option) (default: neither)")
    parser.add_argument("--upsample-interpolate", action="store_true", help="with --channels-last, both UNets' 2x "
                        "nearest upsampling by diffusers' own forward (F.interpolate on NCHW copies at batch >= 64, a "
                        "scatter-add for a backward), not the trainer's broadcast: its baseline")
    parser.add_argument("--strided-conv-grads", action="store_true", help="with --channels-last, every convolution of "
                        "the student gets its output's gradient as the compiled graph has it (cuDNN's backward copies a "
                        "strided one), not channels-last-dense as the trainer makes it "
                        "(aria_train/diffusion/models/conv_grad_layout.py): its baseline")
    parser.add_argument("--regions", type=int, default=256, help="ARIA regions K (default: %(default)s)")
    parser.add_argument("--pool", type=int, default=1_000_000, help="ARIA pool size in prompts (default: %(default)s)")
    parser.add_argument("--name", default="distill_step", help="CSV name (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV folder (default: bench/results)")
    parser.add_argument("--append", action="store_true", help="keep the rows already in the CSV and add these")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="after the timed steps, profile N more rc "
                        "steps (bench/loop_profile.py: device ms per kernel class, the 40 costliest kernels and what "
                        "launched them) into OUT/NAME_profile_bBATCH.json (default: 0, none)")
    args = parser.parse_args(argv)
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1: the first step compiles, and must not be timed")
    if args.cuda_graphs and not args.compile:
        parser.error("--cuda-graphs needs --compile: inductor records the graphs")
    if args.eager_loss and not args.compile:
        parser.error("--eager-loss needs --compile: without it the loss is eager anyway")
    if args.upsample_interpolate and not args.channels_last:
        parser.error("--upsample-interpolate needs --channels-last: without it the upsampling is diffusers' anyway")
    if args.strided_conv_grads and not args.channels_last:
        parser.error("--strided-conv-grads needs --channels-last: without it the trainer leaves the gradients alone")
    if args.inductor and not args.compile:
        parser.error("--inductor needs --compile: its options are inductor's")
    if args.teacher_stream != "off" and not torch.cuda.is_available():
        parser.error("--teacher-stream needs a CUDA device")
    if args.teacher_stream != "off" and args.cuda_graphs:
        parser.error("--teacher-stream is not a --cuda-graphs candidate: the graphs are recorded on one stream")
    if args.attention != "sdpa" and (why := available()):
        parser.error(f"--attention fa4 needs flash-attn-4: {why}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        from aria_train.distill.speed import set_process_speed

        set_process_speed(tf32=True)  # the trainer's kernel choices under `aria distill --tf32`
        torch.backends.cudnn.benchmark = not args.cudnn_heuristics
    peak = matmul_tflops(device)
    speed = {"compile": args.compile, "channels_last": args.channels_last,
             "gradient_checkpointing": args.gradient_checkpointing, "teacher_fp8": args.teacher_fp8}
    setup = make_setup(args.size, device, speed, args.regions, args.pool, args.student, args.feature_kd,
                       args.cuda_graphs, cudnn_benchmark=device.type == "cuda" and not args.cudnn_heuristics,
                       inductor=args.inductor, attention=args.attention,
                       compile_loss=False if args.eager_loss else None, pointwise_matmul=args.pointwise_matmul,
                       upsample_broadcast=False if args.upsample_interpolate else None,
                       dense_conv_grads=False if args.strided_conv_grads else None)
    previous = read_rows(args.out / f"{args.name}.csv") if args.append else []
    rows, too_large = [], None
    for batch in args.batch:
        if too_large is not None and batch >= too_large:
            print(f"batch {batch} skipped: batch {too_large} ran out of memory")
            continue
        try:
            batch_rows, profiled = run_rows(setup, batch, max(1, int(args.steps * scale)), args.warmup, device, peak,
                                            args.profile, TEACHER_STREAMS[args.teacher_stream])
            rows += batch_rows
            if profiled is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{args.name}_profile_b{batch}.json").write_text(json.dumps({**setup, "batch": batch,
                                                                                          **profiled}, indent=1))
        except RuntimeError as err:
            if not out_of_memory(err):
                raise
            print(f"batch {batch}: {str(err).splitlines()[0][:400]}")
            too_large = batch if too_large is None else min(too_large, batch)
            rows.append(make_row(setup, "oom", batch, matmul_peak_tflops=peak))
        gc.collect()  # the models of the batch (and of a failed step) go before the next is built
        if device.type == "cuda":
            torch.cuda.empty_cache()
        # after every batch size: a run cut short keeps what it measured
        report(args.name, previous + rows, args.out)
    return rows


if __name__ == "__main__":
    main()
