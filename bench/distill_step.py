"""Distillation step throughput, memory, MFU, and ARIA's overhead over RC, with the trainer's code.

``python -m bench.distill_step --size sd14`` times the trainer's ``train_step`` (aria_train.distill.step)
plus AdamW for an SD-v1.4-size teacher (random weights from its config, held in bf16, no
gradients) and its BK-SDM-Small student (fp32 weights, bf16 autocast), output + feature KD,
64x64 latents, random 77x768 text embeddings; ``--size demo`` does the same for the shipped
24 px embedded-world teacher, and ``--size FOLDER`` for any teacher folder (its UNet's sample
shape, text embeddings as long as its tokenizer pads to and as wide as its encoder). Per row:
images/s, peak memory, FLOPs of one whole step counted with torch.utils.flop_counter, and MFU
against a bf16 8192^3 matmul measured in the same run.
``--compile``, ``--channels-last`` and ``--gradient-checkpointing`` set the models up exactly as
``aria distill`` does (aria_train.distill.speed). FLOPs are counted on an eager step (the counter sees
aten ops, not compiled kernels; with checkpointing they include the recomputed forward);
``warmup_s`` is the time of the first three steps, compilation included.

ARIA's overhead: with the real AriaSampler over K regions and a pool of P prompts, each step
adds a draw (for the switched share of the batch, at RC's mean switch rate) and an observe of
the batch's discrepancies. Those are timed on their own around the same steps ("aria ops"),
and the aria rows run the step with them in the loop, so the difference to the rc rows is
visible too (it is within timing noise when the ops cost well under 1%).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS, report


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


def build(size: str, device: torch.device, speed: dict):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from aria_train.diffusion.models.configs import SD_V1_4_UNET_CONFIG
    from aria_train.diffusion.models.students import feature_layer_map, make_student
    from aria_train.distill.speed import prepare_unets
    from aria_train.distill.step import StepModels, Student

    if size == "sd14":
        teacher = UNet2DConditionModel(**SD_V1_4_UNET_CONFIG)
        scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        sample, text = (4, 64, 64), (77, 768)
    else:  # the shipped demo teacher, or any teacher folder (bench.distill_e2e times its loop on the same one)
        from aria_train.assets import default_teacher_path
        from aria_train.diffusion.loading import load_teacher
        from aria_train.diffusion.sampling import sample_shape

        teacher, scheduler, tokenizer, encoder = load_teacher(default_teacher_path() if size == "demo" else Path(size))
        sample, text = sample_shape(teacher), (tokenizer.model_max_length, encoder.config.hidden_size)
    student_unet = make_student(teacher, "small")
    layer_map = feature_layer_map(dict(teacher.config), dict(student_unet.config))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    teacher = teacher.to(device, dtype).eval().requires_grad_(False)
    student = Student(student_unet).to(device).train()
    prepare_unets(teacher, student.unet, **speed)  # the trainer's own set-up (aria_train.distill.speed)
    models = StepModels(teacher, student, scheduler, layer_map)
    return models, sample, text


def make_batch(batch: int, sample, text, device, generator: torch.Generator):
    from aria_train.distill.batches import Batch

    x0 = torch.randn(batch, *sample, generator=generator).to(device)
    return Batch(x0=x0, noise=torch.randn(x0.shape, generator=generator).to(device),
                 timesteps=torch.randint(0, 1000, (batch,), generator=generator).to(device),
                 hidden=torch.randn(batch, *text, generator=generator).to(device),
                 paired=torch.ones(batch, dtype=torch.bool, device=device),
                 prompt_ids=np.zeros(batch, np.int64), regions=np.zeros(batch, np.int64), switched=np.zeros(batch, bool),
                 nulled=np.zeros(batch, bool))


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


def run_rows(size: str, batch: int, steps: int, speed: dict, device: torch.device, peak: float,
             num_regions: int, pool_size: int) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    from aria_train.distill.losses import LossWeights
    from aria_train.distill.speed import make_optimizer

    # FLOPs are counted on an eager step; compilation is switched on after that.
    models, sample, text = build(size, device, {**speed, "compile": False})
    optimizer = make_optimizer(models.student.parameters(), 1e-5, 1e-2, device)
    weights = LossWeights(1.0, 1.0, 0.0)
    generator = torch.Generator().manual_seed(0)
    batch_data = make_batch(batch, sample, text, device, generator)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    ops = aria_ops(num_regions, pool_size, batch)

    def one_step(with_aria: bool) -> None:
        from aria_train.distill.step import train_step

        with autocast:
            losses = train_step(models, batch_data, weights)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        discrepancy = losses["discrepancy"].double().cpu().numpy()  # RC's tally reads it too: the same sync
        if with_aria:
            ops(discrepancy)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    one_step(False)
    flops = FlopCounterMode(display=False)
    with flops:
        one_step(False)
    step_flops = flops.get_total_flops()
    if speed["compile"]:
        from aria_train.distill.speed import prepare_unets

        prepare_unets(models.teacher, models.student.unet, compile=True)
    compile_start = time.perf_counter()
    for _ in range(3):
        one_step(True)
    sync()
    warmup_s = time.perf_counter() - compile_start
    rows = []
    for method in ("rc", "aria", "rc", "aria"):  # interleaved, so drift in clocks hits both
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            one_step(method == "aria")
        sync()
        seconds = (time.perf_counter() - start) / steps
        rows.append({"size": size, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                     **speed, "method": method, "batch": batch, "step_ms": seconds * 1e3,
                     "images_per_s": batch / seconds,
                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan"),
                     "step_tflop": step_flops / 1e12, "tflops": step_flops / seconds / 1e12,
                     "mfu": step_flops / seconds / 1e12 / peak, "matmul_peak_tflops": peak})
    discrepancy = np.random.default_rng(1).exponential(size=batch)
    start = time.perf_counter()
    for _ in range(200):
        ops(discrepancy)
    ops_ms = (time.perf_counter() - start) / 200 * 1e3
    rc_ms = np.mean([r["step_ms"] for r in rows if r["method"] == "rc"])
    for r in rows:
        r.update(warmup_s=warmup_s, aria_ops_ms=ops_ms, aria_ops_fraction=ops_ms / rc_ms, regions=num_regions, pool=pool_size)
    return rows


def main(scale: float = 1.0, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.distill_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="demo", metavar="sd14|demo|FOLDER",
                        help="teacher: SD v1.4's UNet (random weights), the shipped demo teacher, or a teacher "
                        "folder (default: %(default)s)")
    parser.add_argument("--batch", type=int, nargs="+", default=[16], help="micro-batch sizes in images (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="torch.compile teacher and student (in place)")
    parser.add_argument("--channels-last", action="store_true", help="both UNets in channels-last memory format")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute the student's activations in backward")
    parser.add_argument("--regions", type=int, default=256, help="ARIA regions K (default: %(default)s)")
    parser.add_argument("--pool", type=int, default=1_000_000, help="ARIA pool size in prompts (default: %(default)s)")
    parser.add_argument("--name", default="distill_step", help="CSV name under bench/results (default: %(default)s)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    peak = matmul_tflops(device)
    rows = []
    for batch in args.batch:
        speed = {"compile": args.compile, "channels_last": args.channels_last,
                 "gradient_checkpointing": args.gradient_checkpointing}
        rows += run_rows(args.size, batch, max(1, int(args.steps * scale)), speed, device, peak,
                         args.regions, args.pool)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        report(args.name, rows, RESULTS)  # after every batch size: a run cut short keeps what it measured


if __name__ == "__main__":
    main()
