"""Where a small-world distillation step spends its time: torch.profiler over the real loop.

Runs `aria distill`'s loop (aria_train.distill.loop.train) on the glyph demo world (the shipped
teacher and paired cache, BK-SDM-Small of it, --batch images per step) for --steps steps, reads
NVML's GPU utilisation and SM clock while the steps before the profiled ones run, and profiles
the last --active steps (bench/loop_profile.py: wall and unprofiled time per step, host time in
operators, operators and kernels per step, the device's busy and idle time and its idle gaps by
length, the top kernels and host operators). If the GPU is busy for a small part of the wall time
and the operator count is large, the step is bound by the host's launches (issue 16, item 5).
With ``--group G`` the step profiled is a student group's (aria_train.distill.group: G students,
one teacher forward, one vmapped student step), its counts per group step. Writes --out as JSON.

    python -m scripts.prof_small_world [--batch 64] [--steps 20] [--active 6] [--group 1] [--out prof_small_world.json]

Measured on the 2-core CPU (2026-12-03, batch 1, aria): ~2,200 computing operators per step in the
forward passes and data path, >= 570 in backward, ~2,800 in the optimizer (the CPU's per-tensor
AdamW; a GPU uses the fused kernel). On one H200 (batch 64, aria; before NVML and the gap
histogram were added): 469 computing operators in the forwards and data path and 105 in backward,
2,311 kernels per step (bench/results/prof_small_world_h200{,_80steps}.json: their busy and gap
fields count the profiler's own step range as a kernel, since fixed). With NVML, 2026-12-04
(`--steps 80 --active 10`, prof_small_world_h200_nvml.json): an untraced step 92 ms, the GPU busy
11.9% of it by NVML; traced, 2,310 kernels take 12.0 ms of a 155 ms step. The step is the host's:
16 such runs at once share the host's cores (bench/results/small_world.csv), not the GPU.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from aria_train.distill.config import DistillConfig
from aria_train.distill.group import train_group
from aria_train.distill.loop import train
from bench.loop_profile import LoopProfiler
from bench.small_world import make_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="images per step (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="steps of the run (default: %(default)s)")
    parser.add_argument("--active", type=int, default=6, help="last steps profiled (default: %(default)s)")
    parser.add_argument("--method", default="aria", choices=["rc", "aria"], help="(default: %(default)s)")
    parser.add_argument("--group", type=int, default=1,
                        help="students trained together (aria_train.distill.group; default %(default)s: the single "
                             "loop); --method is the first's, the others alternate rc and aria over seeds")
    parser.add_argument("--out", type=Path, default=Path("prof_small_world.json"), help="JSON written")
    args = parser.parse_args()
    if not 1 <= args.active < args.steps or args.group < 1:
        parser.error("--active must be >= 1 and below --steps, --group >= 1")
    with tempfile.TemporaryDirectory() as work:
        inputs = make_inputs(Path(work))  # as bench/small_world.py: the shipped teacher and cache, the pool
        methods = [args.method, *(("rc", "aria")[(i + (args.method == "aria")) % 2] for i in range(1, args.group))]
        configs = [DistillConfig.from_dict({
            "teacher": inputs["teacher"], "paired_cache": inputs["paired_cache"], "pool": inputs["pool"],
            "method": method, "seed": seed, "steps": args.steps, "batch_size": args.batch, "log_every": 10,
            "checkpoint_every": 10**6, "sample_every": 0}) for seed, method in enumerate(methods)]
        profiler = LoopProfiler(args.steps, args.active)
        with profiler:
            if args.group == 1:
                train(configs[0], Path(work) / "run", None, progress=False, on_step=profiler.on_step)
            else:
                train_group(configs, [Path(work) / "run" / str(i) for i in range(args.group)],
                            on_step=lambda member, step, steps: member == 0 and profiler.on_step(step, steps))
        shutil.rmtree(Path(work) / "run", ignore_errors=True)
    result = {"batch": args.batch, "method": args.method, "group": args.group, **profiler.summary()}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
