"""`aria cache`'s teacher sampling against diffusers' StableDiffusionPipeline, in the same run on
the same folder: samples/s.

On a random SD folder (bench/sd_folder.py; ``--size sd14``: SD v1.4's UNet, 4 x 64 x 64 latents,
CLIP-L-size text encoder; ``--size tiny``: the tests' tiny SD folder), ``--samples`` random
prompts are sampled in batches of ``--batch`` with DDIM, ``--steps`` steps and classifier-free
guidance ``--guidance``, each from the same seeded initial noise:

* aria, per ``--dtype``: the teacher folder loaded as `aria cache` loads it (`load_teacher`), the
  UNet and text encoder in that dtype on the device, and the library's sampling
  (`aria_train.diffusion.sampling.sample_texts`: prompts encoded, conditional and null branches
  in one batched forward, DDIM in float32), as `aria cache` samples its paired prompts; with
  ``--compile`` also each dtype with the UNet compiled as `aria cache --compile` does (its
  compilation happens in the untimed first batch, reported as ``warmup_s``);
* diffusers: `StableDiffusionPipeline.from_pretrained(folder, torch_dtype=...)` with a DDIM
  scheduler from the folder's config, ``output_type="latent"`` (no VAE decode), in
  ``--diffusers-dtype`` (default float16 on a GPU, what RC's scripts and diffusers' examples
  use; float32 on the CPU, where half precision is emulated).

Each row: samples/s, the ratio to diffusers', and the relative RMS difference of its latents
from diffusers' (both from the same noise: a check that both did the same work; random weights
make the latents grow large, so read it as a ratio, not an image quality). One untimed batch of
one step first, so that neither pays for lazy initialisation.

``python -m bench.cache_vs_diffusers [--size sd14|tiny] [--samples N] [--batch B] [--dtype ...]
[--quick] [--out DIR] [--work DIR]``; the default size is sd14 on a GPU and tiny on the CPU.
"""
from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.common import end_to_end_parser, parse_args, report, work_folder
from aria_train.diffusion.precision import DTYPES
from bench.sd_folder import SIZES, random_prompts, sd_folder



def timed_batches(sample_batch: Callable[[range, int | None], torch.Tensor], texts: list[str], batch: int,
                  device: torch.device) -> tuple[torch.Tensor, float, float]:
    """(latents of all texts on the CPU, seconds, warm-up seconds): ``sample_batch(rows, None)``
    (None: the run's steps) per batch of rows, after one untimed batch of one step,
    ``sample_batch(rows, 1)``."""
    start = time.perf_counter()
    sample_batch(range(min(batch, len(texts))), 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    parts = [sample_batch(range(s, min(s + batch, len(texts))), None).float().cpu() for s in range(0, len(texts), batch)]
    return torch.cat(parts), time.perf_counter() - start, warmup  # .cpu() waited for the GPU


def run(size: str, samples: int, batch: int, steps: int, guidance: float, dtypes: list[str], diffusers_dtype: str,
        device: torch.device, work: Path, out: Path, compile: bool = False) -> list[dict]:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from aria_train.diffusion.loading import load_teacher
    from aria_train.diffusion.sampling import sample_shape, sample_texts, seeded_noise

    folder = sd_folder(work, size)
    texts = random_prompts(samples)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    label = {"size": size, "device": name, "steps": steps, "guidance": guidance, "batch": batch, "samples": samples}
    print(f"{name}: {samples} samples, {steps} DDIM steps, guidance {guidance}, batch {batch}", flush=True)

    # clip_sample False, as StableDiffusionPipeline forces it (with a warning) and `load_teacher` reads it
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler", clip_sample=False, local_files_only=True)
    pipe = StableDiffusionPipeline.from_pretrained(folder, scheduler=scheduler, torch_dtype=getattr(torch, diffusers_dtype),
                                                   safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    shape = sample_shape(pipe.unet)

    def diffusers_batch(rows: range, few: int | None) -> torch.Tensor:
        noise = seeded_noise(shape, list(rows)).to(device, pipe.unet.dtype)
        return pipe([texts[r] for r in rows], num_inference_steps=few or steps, guidance_scale=guidance, latents=noise,
                    output_type="latent").images

    expected, seconds, warmup = timed_batches(diffusers_batch, texts, batch, device)
    rows = [{**label, "path": "diffusers", "dtype": diffusers_dtype, "seconds": seconds, "samples_per_s": samples / seconds,
             "rel_rms_vs_diffusers": 0.0, "warmup_s": warmup}]
    print(f"diffusers {diffusers_dtype}: {samples / seconds:.3g} samples/s", flush=True)
    del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()

    teacher, ddpm, tokenizer, encoder = load_teacher(folder)
    for dtype, compiled in [(d, c) for d in dtypes for c in ((False, True) if compile else (False,))]:
        unet = copy.deepcopy(teacher).to(device, getattr(torch, dtype))  # each from the float32 weights
        text_encoder = copy.deepcopy(encoder).to(device, getattr(torch, dtype))
        if compiled:
            unet.compile()  # as `aria cache --compile`

        def aria_batch(rows: range, few: int | None) -> torch.Tensor:
            return sample_texts(unet, dict(ddpm.config), tokenizer, text_encoder, [texts[r] for r in rows], list(rows),
                                few or steps, guidance, batch)

        latents, seconds, warmup = timed_batches(aria_batch, texts, batch, device)
        difference = float((latents - expected).square().mean().sqrt() / expected.square().mean().sqrt())
        path = "aria-compiled" if compiled else "aria"
        rows.append({**label, "path": path, "dtype": dtype, "seconds": seconds, "samples_per_s": samples / seconds,
                     "rel_rms_vs_diffusers": difference, "warmup_s": warmup})
        print(f"{path} {dtype}: {samples / seconds:.3g} samples/s (first batch {warmup:.1f} s)", flush=True)
    for row in rows:
        row["over_diffusers"] = row["samples_per_s"] / rows[0]["samples_per_s"]
    report(f"cache_vs_diffusers_{size}", rows, out)  # by size: a CPU run leaves the GPU results alone
    return rows


def main(scale: float = 1.0, argv: list[str] | None = None) -> list[dict]:
    """What `python -m bench` runs (argv None: the defaults, samples times `scale`)."""
    cuda = torch.cuda.is_available()
    parser = end_to_end_parser("cache_vs_diffusers", __doc__, SIZES, "teacher folder")
    parser.add_argument("--samples", type=int, default=128 if cuda else 32,
                        help="samples per row (default: 128 on a GPU, 32 on the CPU)")
    parser.add_argument("--batch", type=int, default=64 if cuda else 16,
                        help="prompts per batch (default: 64 on a GPU, 16 on the CPU)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default: %(default)s, RC's)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance (default: %(default)s, RC's)")
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=["bfloat16", "float16"] if cuda else ["float32"],
                        help="dtypes of aria's rows (default: bfloat16 float16 on a GPU, float32 on the CPU)")
    parser.add_argument("--diffusers-dtype", choices=DTYPES, default="float16" if cuda else "float32",
                        help="diffusers' dtype (default: float16 on a GPU, float32 on the CPU)")
    parser.add_argument("--compile", action="store_true", help="also each dtype with the UNet compiled, as `aria cache "
                        "--compile` (minutes of compilation at SD size, in the untimed first batch)")
    args = parse_args(parser, [] if argv is None else argv, {"size": "tiny", "samples": 8, "batch": 4, "steps": 3})
    with work_folder(args.work) as work:
        return run(args.size, max(1, int(args.samples * scale)), args.batch, args.steps, args.guidance, args.dtype,
                   args.diffusers_dtype, torch.device("cuda" if cuda else "cpu"), work, args.out, args.compile)


if __name__ == "__main__":
    main(argv=sys.argv[1:])
