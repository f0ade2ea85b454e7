"""The FP8 teacher forward (aria_train.diffusion.models.fp8): how far its prediction moves, and how fast it runs.

``python -m bench.fp8_teacher --size sd14|sdxl|demo|FOLDER`` builds the teacher as
bench.distill_step does (sd14, sdxl: random weights from the config; demo: the shipped embedded-
world teacher; a folder, e.g. aria_train/assets/glyph_demo/teacher) and predicts a fixed batch of
noised random samples with random conditioning of the teacher's widths (bench.step_setup.make_batch)
at each of ``--timesteps``, up to four ways: float32 (the reference), the device's half precision
(bf16; on the CPU only with --bf16), and FP8 linear layers (``to_float8``) on top of each. Per
timestep and way: the prediction's relative RMS difference to float32, its mean squared
difference (the unit of the teacher-student discrepancy that the trainer and `aria eval` report,
so the two can be set side by side), and on a GPU the forward's milliseconds. Random weights make
activations unlike a trained teacher's: read the config sizes as a check at size, the trained
teachers' rows as the realistic ones.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from bench.common import RESULTS, report
from bench.step_setup import CONFIG_SIZES, config_teacher, make_batch


def load(size: str, device: torch.device):
    """(teacher UNet float32 on ``device``, scheduler, Inputs)."""
    from diffusers import UNet2DConditionModel

    if size in CONFIG_SIZES:
        config, scheduler, inputs = config_teacher(size)
        with torch.device(device):
            torch.manual_seed(0)
            teacher = UNet2DConditionModel(**config)
    else:
        from pathlib import Path

        from aria_train.assets import default_teacher_path
        from aria_train.diffusion.loading import open_teacher
        from aria_train.diffusion.sampling import sample_shape
        from bench.step_setup import Inputs

        loaded = open_teacher(default_teacher_path() if size == "demo" else Path(size))
        teacher, scheduler, prompts = loaded.unet, loaded.scheduler, loaded.prompts
        inputs = Inputs(sample_shape(teacher), (prompts.length, prompts.width),
                        prompts.pooled_width if prompts.sdxl else None, prompts.time_ids)
    return teacher.to(device).float().eval().requires_grad_(False), scheduler, inputs


@torch.no_grad()
def predict(unet, scheduler, batch, t: int, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """(prediction float32, seconds of one forward) at timestep ``t`` for every sample."""
    from aria_train.diffusion.prompts import unet_inputs

    timesteps = torch.full((batch.x0.shape[0],), t, device=batch.x0.device)
    noisy = scheduler.add_noise(batch.x0, batch.noise, timesteps).to(dtype)
    if noisy.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = unet(noisy, timesteps, **unet_inputs(batch.hidden, dtype)).sample.float()
    if noisy.is_cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    from aria_train.diffusion.models.fp8 import to_float8

    parser = argparse.ArgumentParser(prog="python -m bench.fp8_teacher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="demo", metavar="sd14|sdxl|demo|FOLDER", help="teacher (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="samples per forward (default: %(default)s)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[100, 500, 900, 980],
                        help="where the prediction is compared [timesteps] (default: %(default)s)")
    parser.add_argument("--bf16", action="store_true", help="on the CPU too: the bf16 and bf16+FP8 ways (slow there)")
    parser.add_argument("--out", default=RESULTS, help="CSV folder (default: bench/results)")
    parser.add_argument("--name", default=None, help="CSV name (default: fp8_teacher_SIZE)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher, scheduler, inputs = load(args.size, device)
    batch = make_batch(args.batch, inputs, device, torch.Generator().manual_seed(0))
    half = device.type == "cuda" or args.bf16
    ways = {"float32": (teacher, torch.float32)}
    fp8 = copy.deepcopy(teacher)
    converted = to_float8(fp8)
    ways["float32+fp8"] = (fp8, torch.float32)
    if half:
        ways["bfloat16"] = (copy.deepcopy(teacher).to(torch.bfloat16), torch.bfloat16)
        ways["bfloat16+fp8"] = (copy.deepcopy(fp8).to(torch.bfloat16), torch.bfloat16)
    label = {"size": args.size, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
             "batch": args.batch, "fp8_layers": converted}
    rows = []
    for t in args.timesteps:
        reference, _ = predict(teacher, scheduler, batch, t, torch.float32)
        for way, (unet, dtype) in ways.items():
            predict(unet, scheduler, batch, t, dtype)  # warm-up (kernel selection)
            out, seconds = predict(unet, scheduler, batch, t, dtype)
            mse = float((out - reference).square().mean())
            rel = (mse / float(reference.square().mean())) ** 0.5
            rows.append({**label, "timestep": t, "way": way, "rel_rms_vs_float32": rel, "mse_vs_float32": mse,
                         "forward_ms": seconds * 1e3 if device.type == "cuda" else float("nan")})
            print(f"t {t:4d} {way:>13}: relative RMS vs float32 {rel:.2e}", flush=True)
    report(args.name or f"fp8_teacher_{args.size}", rows, __import__("pathlib").Path(args.out))
    return rows


if __name__ == "__main__":
    main()
