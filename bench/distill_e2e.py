"""The distillation loop end to end (`aria distill`'s own function) against its step benchmark,
measured in the same run on the same teacher folder.

A random SD folder (bench/sd_folder.py; ``--size sd14``: SD v1.4's UNet, CLIP-L-size text
encoder, 4 x 64 x 64 latents; ``--size tiny``: the tests' tiny SD folder) is distilled into
BK-SDM-Small by `aria_train.distill.loop.train`, as `aria distill --method rc|aria` runs it:
a paired cache of ``--paired`` random latents, a pool of ``--pool`` random prompts in
``--regions`` regions (encoded on the fly by the teacher's text encoder: no text cache), output
+ feature KD, bf16 autocast on a GPU (what ``accelerate launch --mixed_precision bf16`` gives),
``--steps`` optimizer steps of ``--batch`` images. Its images/s (``loop_images_per_s``) come from
the run's own metrics records (training time only, checkpoints and logging excluded), leaving out
those of the first ``--warmup`` steps (allocation, cuDNN's choices, compilation) and the run's
final record; peak memory is the GPU's over the whole run. ARIA's warm-up is 0 steps, so its
allocation is in every measured step. The final record is left out because with
``--feedback-lag 1`` it counts two steps (one read by the last step's push, one by the closing
drain) over an interval that held 1.2-1.6 steps of device work in the SD-size runs of 2026-12-05/06,
which put the rate 2.6-3.6% high in a 22-step window (those CSVs' ``loop_images_per_s``, from
before this rule; scripts/e2e_rates_without_final_record.py recomputes them from their step
JSONs). Beside it, from the host's clock at the end of every step (the trainer's ``on_step``),
over the same steps: ``host_images_per_s``, the batch over their mean interval (within 0.2% of
the records' rate in those runs), and ``loop_median_step_ms``, their median. Each interval (the last one too) is written to
OUT/distill_e2e_step_ms_SIZE.json, by method and lag, with the garbage collector's milliseconds in
each (a collection stops the loop's launches).
On a GPU the step benchmark runs float32 matrix products in TF32, and so does the loop
(`aria distill --tf32`); under bf16 autocast the UNets' and the encoder's products are bf16 anyway.

Beside it, in the same process: bench.distill_step's step (``train_step`` + AdamW on a fixed
batch, no data path) with the same folder, batch and speed options. Per method and
``--feedback-lags`` value one row: the step's and the loop's images/s, their ratio (issue 16's
target: >= 0.97), MFU of both by the step's FLOP count, and ARIA's loop time over RC's at the same
lag (target <= 1.01). Lag 1 moves the loop's one wait per micro-batch behind the next
micro-batch's launch (aria_train.distill.lagged_feedback).

``--profile N`` profiles each loop's last N steps (bench/loop_profile.py: the device's busy and
idle time per step, its idle gaps by length, the top kernels and host operators; NVML's
utilisation and SM clock over the steps before; each top kernel's launch sites; device time by
class of work, and in ``class_rates`` each class's time beside its FLOPs from the step benchmark's
count: the rate attention, convolutions and matrix products reach, over the measured matmul peak)
into OUT/distill_e2e_profile_SIZE_METHOD[_lag1].json:
what stands between the loop and its step benchmark. The profiled steps are left out of the
loop's rate (the profiler slows them), so --steps must leave --warmup + 1 steps before them.

``python -m bench.distill_e2e [--size sd14|tiny] [--batch B] [--steps S] [--compile]
[--channels-last] [--attention sdpa|fa4-self|fa4] [--teacher-stream] [--profile N] [--quick] [--out DIR] [--work DIR]``; the default size is sd14 on a GPU, tiny
on the CPU.
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from aria_train.distill.config import Attention
from bench.common import end_to_end_parser, parse_args, report, work_folder
from bench.sd_folder import SIZES, random_prompts, sd_folder


def write_inputs(work: Path, folder: Path, paired: int, pool_size: int, regions: int) -> tuple[Path, Path]:
    """(pool.parquet with text and region, paired cache of random latents captioned by pool rows)."""
    import pandas as pd
    from diffusers import UNet2DConditionModel

    from aria_train.data.cache import TensorCacheWriter

    rng = np.random.default_rng(0)
    region = np.concatenate([np.arange(regions), rng.integers(0, regions, pool_size - regions)])  # none empty
    pool = work / f"pool-{pool_size}-{regions}.parquet"
    pd.DataFrame({"text": random_prompts(pool_size), "region": region}).to_parquet(pool)
    unet = UNet2DConditionModel.load_config(folder / "unet")  # the config alone: building SD's UNet takes seconds
    shape = (unet["in_channels"], unet["sample_size"], unet["sample_size"])
    cache = work / f"paired-{folder.name}-{paired}"
    if not (cache / "manifest.json").exists():
        with TensorCacheWriter(cache, shard_rows=4096) as writer:
            writer.append(sample=torch.from_numpy(rng.standard_normal((paired, *shape), dtype=np.float32)),
                          prompt_id=torch.from_numpy(rng.integers(0, pool_size, paired)))
    return pool, cache


def loop_rate(run: Path, warmup: int, last: int | None = None) -> float:
    """Images/s of a run's metrics records that start after step `warmup` (and end by step
    `last`, if given): all their images over all their seconds (each record's rate covers the
    steps since the record before)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    intervals = np.diff([0] + [r["step"] for r in records])
    kept = [(n, r["images_per_s"]) for n, r in zip(intervals, records)
            if r["step"] - n >= warmup and (last is None or r["step"] <= last) and r["images_per_s"]]
    if not kept:
        raise ValueError(f"{run}: no metrics record starts after step {warmup}"
                         f"{'' if last is None else f' and ends by step {last}'}: run more --steps")
    return float(sum(n for n, _ in kept) / sum(n / rate for n, rate in kept))  # the batch size cancels


def unprofiled_steps(steps: int, profile: int) -> int | None:
    """The last step the loop's records may cover: before the profiler's warm-up step and the
    ``profile`` profiled ones (None: no profile, all steps)."""
    return steps - profile - 1 if profile else None


def measured_steps_end(steps: int, profile: int) -> int:
    """The last step the loop's rates use: the last unprofiled one, and never the run's last step
    (its interval holds the end of the run; its record, at lag 1, one step more: module docstring)."""
    return min(steps - 1, unprofiled_steps(steps, profile) or steps)


def record_interval(warmup: int) -> int:
    """The loop's metrics interval [steps]: records start at the end of warm-up."""
    return max(1, warmup // 2)


def run_loop(method: str, folder: Path, pool: Path, paired: Path, out: Path, batch: int, steps: int, log_every: int,
             speed: dict, device: torch.device, profile: int = 0, warmup: int = 1,
             feedback_lag: int = 0, ema_offload: bool = False) -> tuple[float, float, dict | None, list[float]]:
    """One `aria distill --feedback-lag FEEDBACK_LAG [--ema-offload]` run in this process: (seconds of the whole
    call, peak GPU GiB, the profile of its last ``profile`` steps, NVML read from step ``warmup``
    on, or None; the host's clock at the end of each step, perf_counter seconds)."""
    from bench.loop_profile import LoopProfiler
    from aria_train.conditioning.aria import AriaOptions
    from aria_train.distill.config import DistillConfig
    from aria_train.distill.loop import train

    aria = AriaOptions(warmup=0) if method == "aria" else AriaOptions()  # RC and KD take no ARIA option
    config = DistillConfig(teacher=str(folder), paired_cache=str(paired), pool=str(pool), method=method,
                           aria=aria, batch_size=batch, steps=steps, log_every=log_every, checkpoint_every=0,
                           checkpoint_limit=1, sample_every=0, seed=0, feedback_lag=feedback_lag,
                           ema_offload=ema_offload, tf32=device.type == "cuda", **speed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()

    profiler = LoopProfiler(steps, profile, skip=warmup) if profile else None
    step_ends, collected = [], []
    clock = CollectionClock()

    def progress(step: int, total: int) -> None:
        step_ends.append(time.perf_counter())
        collected.append(clock.seconds)
        if step % log_every == 0 or step == total:
            print(f"  {method} loop: step {step}/{total}, {time.perf_counter() - start:.0f} s", flush=True)
        if profiler is not None:
            profiler.on_step(step, total)

    with profiler or contextlib.nullcontext(), clock:
        train(config, out, progress=False, on_step=progress)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else math.nan
    summary = None if profiler is None else {"method": method, "batch": batch, **speed, "feedback_lag": feedback_lag,
                                             **profiler.summary()}
    return time.perf_counter() - start, peak, summary, step_ends, collected


class CollectionClock:
    """The seconds the interpreter has spent in its garbage collector while entered (gc.callbacks):
    a collection stops every thread, the loop's launches too."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def __enter__(self) -> "CollectionClock":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info) -> None:
        gc.callbacks.remove(self)


def step_intervals_ms(step_ends: list[float], warmup: int, last: int | None = None) -> np.ndarray:
    """The intervals between the ends of steps ``warmup`` + 1 .. ``last`` (all after warm-up
    when None), in ms, from ``step_ends[i]`` = the end of step i + 1."""
    return np.diff(step_ends[max(warmup, 1) - 1:last]) * 1e3  # step 1 has no end before it


def host_rate(step_ends: list[float], batch: int, warmup: int, last: int | None = None) -> float:
    """Images/s by the host's clock: ``batch`` over the mean of ``step_intervals_ms``; nan without
    an interval."""
    intervals = step_intervals_ms(step_ends, warmup, last)
    return batch * 1e3 / float(intervals.mean()) if len(intervals) else math.nan


def median_step_ms(step_ends: list[float], warmup: int, last: int | None = None) -> float:
    """The median of ``step_intervals_ms``; nan without an interval."""
    intervals = step_intervals_ms(step_ends, warmup, last)
    return float(np.median(intervals)) if len(intervals) else math.nan


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def class_rates(kernel_ms: dict[str, float], step_row: dict, peak_tflops: float) -> list[dict]:
    """Per kernel class of a profile (bench.loop_profile.kernel_classes: device ms per step): its ms,
    the step's TFLOP of that class (bench.distill_step's ``CLASS_tflop`` count, 0 for classes that
    only move data), the TFLOP/s its kernels reach and that over the measured bf16 matmul peak."""
    rows = []
    for name, ms in kernel_ms.items():
        tflop = step_row.get(f"{name}_tflop", 0.0)
        tflops = tflop / ms * 1e3 if ms > 0 else 0.0
        rows.append({"class": name, "ms_per_step": ms, "step_tflop": tflop, "tflops": tflops,
                     "of_matmul_peak": tflops / peak_tflops})
    return rows


def run(size: str, batch: int, steps: int, warmup: int, step_steps: int, paired: int, pool_size: int, regions: int,
        speed: dict, device: torch.device, work: Path, out: Path, methods: tuple[str, ...] = ("rc", "aria"),
        profile: int = 0, lags: tuple[int, ...] = (0,), ema_offload: bool = False) -> list[dict]:
    from bench.distill_step import make_setup, matmul_tflops, run_rows

    folder = sd_folder(work, size)
    pool, cache = write_inputs(work, folder, paired, pool_size, regions)
    peak_tflops = matmul_tflops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{name}: step benchmark on {folder} (batch {batch}, {step_steps} steps per row)", flush=True)
    step_rows, _ = run_rows(make_setup(str(folder), device, speed, regions, pool_size, attention=speed["attention"]),
                            batch, step_steps, 3, device, peak_tflops, teacher_streams=(speed["teacher_stream"],))
    free_memory(device)
    rows, intervals = [], {}
    for method, lag in [(method, lag) for method in methods for lag in lags]:
        measured = [r for r in step_rows if r["method"] == method]
        step_rate = float(np.mean([r["images_per_s"] for r in measured]))
        print(f"{method}: step {step_rate:.4g} img/s; the loop with feedback lag {lag}, {steps} steps:", flush=True)
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            seconds, peak, profiled, step_ends, collected = run_loop(
                method, folder, pool, cache, Path(scratch) / "run", batch, steps, record_interval(warmup), speed,
                device, profile, warmup, lag, ema_offload)
            end = measured_steps_end(steps, profile)
            rate = loop_rate(Path(scratch) / "run", warmup, end)
            by_host = host_rate(step_ends, batch, warmup, end)
            median_ms = median_step_ms(step_ends, warmup, end)
            intervals[f"{method}_lag{lag}"] = {  # step_intervals_ms of a running total: its growth per step
                name: [round(float(ms), 2) for ms in step_intervals_ms(ends, warmup, unprofiled_steps(steps, profile))]
                for name, ends in (("step_ms", step_ends), ("gc_ms", collected))}
        if profiled is not None:
            if "kernel_classes" in profiled:  # a GPU's profile
                profiled["class_rates"] = class_rates(profiled["kernel_classes"], measured[0], peak_tflops)
            path = Path(out) / f"distill_e2e_profile_{size}_{method}{'_lag1' if lag else ''}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(profiled, indent=1))
            print(f"{method}: profile of the last {profile} steps in {path}", flush=True)
        free_memory(device)
        flops = measured[0]["step_tflop"]
        rows.append({"size": size, "device": name, **speed, "method": method, "feedback_lag": lag,
                     "ema_offload": ema_offload, "batch": batch,
                     "step_images_per_s": step_rate, "loop_images_per_s": rate, "loop_over_step": rate / step_rate,
                     "host_images_per_s": by_host, "host_over_step": by_host / step_rate,
                     "loop_median_step_ms": median_ms, "median_step_over_step": batch / step_rate * 1e3 / median_ms,
                     "step_mfu": float(np.mean([r["mfu"] for r in measured])),
                     "loop_mfu": flops * rate / batch / peak_tflops,  # nan on the CPU, as the step's
                     "step_peak_gib": max(r["peak_gib"] for r in measured), "loop_peak_gib": peak,
                     "loop_steps": steps, "warmup_steps": warmup, "loop_wall_s": seconds, "step_tflop": flops,
                     "regions": regions, "pool": pool_size, "paired": paired})
        print(f"{method}: loop {rate:.4g} img/s = {rate / step_rate:.3f} of the step", flush=True)
    for row in rows:  # against the rc loop of the same lag; nan without one in this run
        rc = [r for r in rows if r["method"] == "rc" and r["feedback_lag"] == row["feedback_lag"]]
        row["loop_time_over_rc"] = rc[0]["loop_images_per_s"] / row["loop_images_per_s"] if rc else math.nan
    report(f"distill_e2e_{size}", rows, out)  # by size: a CPU run leaves the GPU results alone
    # each measured step's time as the host sees it (the records' waits and any other outlier) and
    # the garbage collector's time in it
    (Path(out) / f"distill_e2e_step_ms_{size}.json").write_text(json.dumps(intervals) + "\n")
    return rows


def main(scale: float = 1.0, argv: list[str] | None = None) -> list[dict]:
    """What `python -m bench` runs (argv None: the defaults, loop steps times `scale`)."""
    cuda = torch.cuda.is_available()
    parser = end_to_end_parser("distill_e2e", __doc__, SIZES, "teacher folder")
    parser.add_argument("--batch", type=int, default=64 if cuda else 8,
                        help="images per step (default: 64 on a GPU, 8 on the CPU)")
    parser.add_argument("--steps", type=int, default=40, help="loop steps per method (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="first loop steps left out of the rate (default: %(default)s)")
    parser.add_argument("--step-steps", type=int, default=10,
                        help="timed steps per row of the step benchmark (default: %(default)s)")
    parser.add_argument("--paired", type=int, default=512, help="paired cache samples (default: %(default)s)")
    parser.add_argument("--pool", type=int, default=100_000, help="pool prompts (default: %(default)s)")
    parser.add_argument("--regions", type=int, default=256, help="pool regions K (default: %(default)s)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile as `aria distill --compile` does: both UNets, the text encoder and the loss")
    parser.add_argument("--channels-last", action="store_true", help="channels-last UNets, as `aria distill --channels-last`")
    parser.add_argument("--teacher-fp8", action="store_true", help="FP8 teacher linears, as `aria distill --teacher-fp8`")
    parser.add_argument("--attention", choices=get_args(Attention), default="sdpa",
                        help="the UNets' attention, as `aria distill --attention` (default: %(default)s)")
    parser.add_argument("--teacher-stream", action="store_true", help="the teacher's forward on a second CUDA "
                        "stream, as `aria distill --teacher-stream`, in the loop and in its step benchmark (GPUs only)")
    parser.add_argument("--methods", nargs="+", choices=["rc", "aria"], default=["rc", "aria"],
                        help="loops run, each beside the step benchmark (default: %(default)s; compiled, one "
                             "method alone saves a compilation)")
    parser.add_argument("--feedback-lags", type=int, nargs="+", choices=[0, 1], default=[0],
                        help="a loop per method and lag, as `aria distill --feedback-lag` (default: %(default)s)")
    parser.add_argument("--ema-offload", action="store_true", help="the loops' EMA in host memory, as `aria distill "
                        "--ema-offload` (the step benchmark has no EMA)")
    parser.add_argument("--profile", type=int, default=0,
                        help="profile each loop's last N steps into distill_e2e_profile_SIZE_METHOD[_lag1].json, left "
                             "out of the loop's rate (default: 0, no profile)")
    args = parse_args(parser, [] if argv is None else argv,
                      {"size": "tiny", "batch": 4, "steps": 6, "warmup": 2, "step_steps": 2, "paired": 64, "pool": 200,
                       "regions": 8})
    if args.teacher_stream and not cuda:
        parser.error("--teacher-stream needs a CUDA device")
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        from aria_train.distill.speed import set_process_speed

        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"  # what `accelerate launch --mixed_precision bf16` sets
        set_process_speed(tf32=True)  # the step benchmark's kernel choices; the loop sets its own, the same
    speed = {"compile": args.compile, "channels_last": args.channels_last, "gradient_checkpointing": False,
             "teacher_fp8": args.teacher_fp8, "attention": args.attention, "teacher_stream": args.teacher_stream}
    every = record_interval(args.warmup)
    first_record_after_warmup = math.ceil(args.warmup / every) * every + every
    # at least one measured record before the run's last step (whose record the rate leaves out)
    steps = max(first_record_after_warmup + 1, int(args.steps * scale))
    if args.profile and unprofiled_steps(steps, args.profile) < first_record_after_warmup:
        parser.error(f"--profile {args.profile} leaves too few of the {steps} steps after --warmup {args.warmup} "
                     f"for the loop's rate: run more --steps")
    with work_folder(args.work) as work:
        return run(args.size, args.batch, steps, args.warmup, args.step_steps, args.paired, args.pool, args.regions,
                   speed, device, work, args.out, tuple(args.methods), args.profile, tuple(args.feedback_lags),
                   args.ema_offload)


if __name__ == "__main__":
    main(argv=sys.argv[1:])
