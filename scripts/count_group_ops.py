"""Operators dispatched per training step: a run alone against student groups (aria_train.distill.group).

On a GPU each operator below autograd that is not a view launches at least one kernel, and the
small world's step is bound by those launches (bench/results/prof_small_world_h200_nvml.json),
so this count, which any machine can take, says how much a group could save before a GPU times
it. Runs the real loops on the glyph demo world (the shipped teacher and paired cache, batch
--batch), counts every operator dispatched below autograd (a TorchDispatchMode) over runs of 2
and 4 steps and takes the difference, so set-up, checkpoints and evaluation cancel: per step for
`aria distill`'s loop (ARIA) and for groups of --groups students (rc and aria alternating).
Views and allocations (VIEW_OPS) are counted apart. On the CPU the counts include the CPU's
per-tensor AdamW and EMA (~2,800 operators per step here), which a GPU runs as fused kernels.

    python -m scripts.count_group_ops [--batch 64] [--groups 1 2 4 8] [--out bench/results/group_ops_cpu.csv]

Measured on the 2-core CPU, 2026-12-04 (batch 64): 4,159 per step alone; per group step 4,950 /
5,175 / 5,395 / 5,835 at G = 1 / 2 / 4 / 8.
"""
from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aria_train.distill.config import DistillConfig
from aria_train.distill.group import train_group
from aria_train.distill.loop import train
from bench.common import report
from bench.small_world import make_inputs

VIEW_OPS = {"view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "unsqueeze", "squeeze",
            "select", "slice", "as_strided", "alias", "detach", "empty", "empty_strided", "_reshape_alias",
            "unflatten", "flatten", "split", "split_with_sizes", "unbind", "chunk", "movedim", "narrow",
            "lift_fresh", "lift_fresh_copy", "new_empty", "empty_like", "is_same_size",
            "_has_compatible_shallow_copy_type", "set_", "resize_"}


class OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched below autograd while active, by name."""

    def __init__(self):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def per_step(run, work: Path) -> tuple[float, float]:
    """(operators, views and allocations) per step of ``run(steps, folder)``, from 4 steps minus 2."""
    totals = []
    for steps in (2, 4):
        counter = OperatorCount()
        with counter:
            run(steps, work / f"{steps}")
        totals.append(counter.counts)
    diff = {name: (totals[1][name] - totals[0][name]) / 2 for name in totals[1]}
    return (sum(v for k, v in diff.items() if k not in VIEW_OPS), sum(v for k, v in diff.items() if k in VIEW_OPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="images per step per student (default: %(default)s)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8], help="group sizes (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/group_ops_cpu.csv"), help="CSV written")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        inputs = {k: v for k, v in make_inputs(work).items() if k != "heldout"}

        def config(seed: int, method: str, steps: int) -> DistillConfig:
            return DistillConfig(**inputs, method=method, seed=seed, steps=steps, batch_size=args.batch,
                                 log_every=10, checkpoint_every=0, sample_every=0)

        ops, views = per_step(lambda steps, out: train(config(0, "aria", steps), out, progress=False, prefetch=False),
                              work / "alone")
        rows.append({"loop": "alone", "group": 1, "batch": args.batch, "ops_per_step": ops,
                     "ops_per_student_step": ops, "views_per_step": views})
        for g in args.groups:
            ops, views = per_step(lambda steps, out: train_group(
                [config(i, ("rc", "aria")[i % 2], steps) for i in range(g)], [out / str(i) for i in range(g)],
                prefetch=False), work / f"group{g}")
            rows.append({"loop": "group", "group": g, "batch": args.batch, "ops_per_step": ops,
                         "ops_per_student_step": ops / g, "views_per_step": views})
    report(args.out.stem, rows, args.out.parent)


if __name__ == "__main__":
    main()
