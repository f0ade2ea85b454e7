"""Where a small-world distillation step spends its time: torch.profiler over the real loop.

Runs `aria distill`'s loop (aria_train.distill.loop.train) on the glyph demo world (the shipped
teacher and paired cache, BK-SDM-Small of it, --batch images per step) for --steps steps and
profiles the last --active of them. Per step it reports the wall time, the host's time inside
PyTorch operators, the operators that compute (would launch a kernel on a GPU: views and
allocations left out) split into forward / backward / optimizer, and on a GPU the kernels launched
and their busy time. If the GPU is busy for a small part of the wall time and the operator count
is large, the step is bound by the host's launches (issue 16, item 5). Writes --out as JSON.

    python -m scripts.prof_small_world [--batch 64] [--steps 20] [--active 6] [--out prof_small_world.json]

Measured on the 2-core CPU (2026-12-03, batch 1, aria): ~2,200 computing operators per step in the
forward passes and data path, >= 570 in backward, ~2,800 in the optimizer (the CPU's per-tensor
AdamW; a GPU uses the fused kernel). On the H200 (batch 64, aria; bench/results/prof_small_world_h200.json):
130.6 ms per profiled step, 469 computing operators in the forwards and data path and 105 in backward,
2,311 kernels per step. That run's busy figure (153 ms) summed key_averages and so counted each kernel
twice, so ~77 ms of kernels in a 131 ms step -- not re-measured (the script now sums kernel events
and their union), and at odds with 16 such runs at once doing 16,000 steps in 283 s
(bench/results/small_world.csv), which leaves <= 17.7 ms of GPU per step if processes take turns.
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from aria_train.distill.config import DistillConfig
from aria_train.distill.loop import train
from bench.small_world import make_inputs

# operators that only make views or allocate: no kernel of their own
NO_KERNEL = {"aten::view", "aten::as_strided", "aten::transpose", "aten::t", "aten::reshape", "aten::detach",
             "aten::expand", "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select",
             "aten::_unsafe_view", "aten::resolve_conj", "aten::alias", "aten::empty", "aten::empty_strided",
             "aten::empty_like", "aten::split", "aten::chunk", "aten::contiguous", "aten::unbind",
             "aten::lift_fresh", "aten::result_type"}


def phase(event) -> str:
    """forward, backward or optimizer: from the names of the event's enclosing ranges."""
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    if any("Optimizer.step" in n for n in names):
        return "optimizer"
    if any("autograd::engine" in n or "Backward" in n for n in names):
        return "backward"
    return "forward_and_data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="images per step (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="steps of the run (default: %(default)s)")
    parser.add_argument("--active", type=int, default=6, help="last steps profiled (default: %(default)s)")
    parser.add_argument("--method", default="aria", choices=["rc", "aria"], help="(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("prof_small_world.json"), help="JSON written")
    args = parser.parse_args()
    if not 1 <= args.active < args.steps:
        parser.error("--active must be >= 1 and below --steps")
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as work:
        inputs = make_inputs(Path(work))  # as bench/small_world.py: the shipped teacher and cache, the pool
        config = DistillConfig.from_dict({
            "teacher": inputs["teacher"], "paired_cache": inputs["paired_cache"], "pool": inputs["pool"],
            "method": args.method, "steps": args.steps, "batch_size": args.batch, "log_every": 10,
            "checkpoint_every": 10**6, "sample_every": 0})
        wall = []

        def on_step(step: int, steps: int) -> None:
            if cuda:
                torch.cuda.synchronize()
            wall.append(time.perf_counter())
            prof.step()

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        wait = args.steps - args.active - 1
        with profile(activities=activities, schedule=schedule(wait=wait, warmup=1, active=args.active)) as prof:
            train(config, Path(work) / "run", None, progress=False, on_step=on_step)
        shutil.rmtree(Path(work) / "run", ignore_errors=True)
    events = prof.events()
    ops = collections.Counter(phase(e) for e in events
                              if e.name.startswith("aten::") and not e.cpu_children and e.name not in NO_KERNEL)
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "batch": args.batch, "method": args.method,
        "profiled_steps": args.active,
        "wall_ms_per_step": (wall[-1] - wall[-args.active - 1]) / args.active * 1e3,
        "host_op_ms_per_step": sum(e.self_cpu_time_total for e in events) / 1e3 / args.active,
        "computing_ops_per_step": {k: round(v / args.active) for k, v in ops.items()},
    }
    if cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        result["kernels_per_step"] = round(len(kernels) / args.active)
        # kernel events only: summing key_averages' self device time counts each kernel twice (as
        # itself and under the operator that launched it). Busy time is the union of their intervals.
        spans = sorted((k.time_range.start, k.time_range.end) for k in kernels)
        busy, reach = 0.0, float("-inf")
        for start, end in spans:
            busy += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        result["kernel_ms_per_step"] = sum(end - start for start, end in spans) / 1e3 / args.active
        result["gpu_busy_ms_per_step"] = busy / 1e3 / args.active
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
