"""Small-world experiment throughput: device seconds per distillation run with its evaluation.

``python -m bench.small_world --parallel 1 16`` runs, for each N, an experiment of N
distillations with the code ``aria experiment`` runs (aria_train.experiment.runner.run_experiment;
``--group G``: N processes of G students each, N x G runs, `aria experiment --group`):
the 12-region glyph demo world (the shipped teacher and paired cache, its pool and held-out
prompts written into the work folder), the test bed's students (BK-SDM-Small of the teacher,
batch 64, ``--steps`` steps), rc and aria alternating over seeds, N processes at a time on one
device, then their evaluation as the map's (16 samples per region, guidance 1). Per N: the wall
seconds of the runs and of the evaluation and their sum over N, the device time one run costs
when N share the device, and from the runs' metrics records the steady step time (``step_ms``: the
median over runs of their median record after the first; in a group, the group's step, which
trains its G students) and the first record's seconds
(``first_record_s``: its 10 steps hold a compilation, when there is one). Issue 16's target:
<= 15 s per 1000-step run. ``--mixed-precision`` is the experiment's (the map's experiments ran "no":
float32, with cuDNN's convolutions in TF32 as torch does by default, the matrix products in full
float32); ``--tf32`` runs the matrix products in TF32 too (`aria distill --tf32`); ``--compile`` compiles
each run's UNets (`aria distill --compile`), its compilation inside the run's seconds.
``--eval-batch-size B ...`` evaluates the same trained runs once per B (the experiment's ``eval``
option ``batch_size``: prompts per sampling batch; the discrepancy passes hold B / 6 prompts),
one row each, with the same ``runs_s``: the evaluation is ~60 forwards of each student at B = 64
on the demo world's 96 held-out prompts.
The CPU smoke test runs it with a few steps; the numbers that mean something come from a GPU
(`python -m bench.small_world --parallel 16 1`, one GPU call of ~9.5 min, measured 2026-12-03).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

from bench.common import RESULTS, report, work_folder


def make_inputs(work: Path) -> dict:
    """The demo world's pool and held-out prompts in ``work``; the experiment's input paths."""
    from aria_train.assets import ASSETS
    from aria_train.worlds import load_world_config, make_world

    demo = ASSETS / "glyph_demo"
    teacher = demo / "teacher"
    tables = make_world(load_world_config(teacher / "world.json")).tables()
    for name in ("pool", "heldout"):
        tables[name].to_parquet(work / f"{name}.parquet")
    return {"teacher": str(teacher), "paired_cache": str(demo / "paired"),
            "pool": str(work / "pool.parquet"), "heldout": str(work / "heldout.parquet")}


def run_one(inputs: dict, work: Path, parallel: int, steps: int, batch: int, samples: int,
            mixed_precision: str, compile: bool = False, group: int = 1, tf32: bool = False,
            eval_batch_sizes: tuple[int, ...] = (64,)) -> list[dict]:
    """One experiment of ``parallel`` x ``group`` runs, all at once (``parallel`` processes of
    ``group`` students each), then its evaluation once per ``eval_batch_sizes``; a row each."""
    from aria_train.evaluation.evaluate import evaluate
    from aria_train.experiment.config import ExperimentConfig
    from aria_train.experiment.runner import run_experiment

    total = parallel * group
    methods = {"rc": {"method": "rc"}, "aria": {"method": "aria"}} if total > 1 else {"rc": {"method": "rc"}}
    seeds = list(range((total + len(methods) - 1) // len(methods)))
    config = {**inputs, "seeds": seeds, "methods": methods, "parallel": parallel, "mixed_precision": mixed_precision,
              "distill": {"steps": steps, "batch_size": batch, "log_every": 10, "checkpoint_every": steps,
                          "sample_every": 0, "compile": compile, "tf32": tf32},
              "eval": {"samples_per_region": samples, "guidance": 1.0}}
    name = f"{parallel}x{group}{'_compiled' if compile else ''}{'_tf32' if tf32 else ''}"
    path = work / f"experiment_{name}.json"
    path.write_text(json.dumps(config))
    experiment = ExperimentConfig.load(path)
    runs = len(experiment.run_configs())
    out = work / f"out_{name}"
    start = time.perf_counter()
    run_experiment(experiment, out, only="runs", group=group)
    runs_s = time.perf_counter() - start
    step_ms, first_s = record_times(sorted((out / "runs").glob("*/metrics.jsonl")), batch)
    students = [str(out / "runs" / name) for name in experiment.run_configs()]
    rows = []
    for eval_batch in eval_batch_sizes:  # what run_experiment's evaluation stage runs, at each batch size
        eval_config = dataclasses.replace(experiment.eval_config(students), batch_size=eval_batch)
        start = time.perf_counter()
        evaluate(eval_config, out / f"eval_b{eval_batch}", overwrite=True, progress=False)
        eval_s = time.perf_counter() - start
        rows.append({"parallel": parallel, "group": group, "runs": runs, "steps": steps, "batch": batch,
                     "samples_per_region": samples, "eval_batch_size": eval_batch, "mixed_precision": mixed_precision,
                     "tf32": tf32, "compile": compile, "runs_s": runs_s, "eval_s": eval_s,
                     "s_per_run": (runs_s + eval_s) / runs, "step_ms": step_ms, "first_record_s": first_s})
    return rows


def record_times(metrics: list[Path], batch: int) -> tuple[float, float]:
    """(median over runs of the median ms per step of their records after the first, median
    over runs of their first record's seconds) from the runs' metrics.jsonl files."""
    steady, first = [], []
    for path in metrics:
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        rates = [r["images_per_s"] for r in records]
        first.append(records[0]["step"] * batch / rates[0])
        if len(rates) > 1:
            steady.append(statistics.median(batch / rate * 1e3 for rate in rates[1:]))
    if not first:
        raise ValueError("the experiment wrote no metrics records")
    return (statistics.median(steady) if steady else math.nan), statistics.median(first)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.small_world", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 16],
                        help="runs sharing the device at once, one experiment each (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per run (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=64, help="batch per step [images] (default: %(default)s)")
    parser.add_argument("--samples-per-region", type=int, default=16,
                        help="evaluation samples per region (default: %(default)s)")
    parser.add_argument("--mixed-precision", choices=["no", "bf16"], default="no",
                        help="the runs' precision (default: %(default)s, as the map's experiments)")
    parser.add_argument("--tf32", action="store_true",
                        help="the runs' float32 matrix products in TF32 (`aria distill --tf32`; default: full float32, "
                             "as the map's experiments)")
    parser.add_argument("--compile", action="store_true",
                        help="the runs compile both UNets (`aria distill --compile`; each run compiles its own)")
    parser.add_argument("--group", type=int, nargs="+", default=[1],
                        help="runs trained together in each process (`aria experiment --group`), one experiment "
                             "per --parallel and --group pair (default: %(default)s)")
    parser.add_argument("--eval-batch-size", type=int, nargs="+", default=[64],
                        help="prompts per sampling batch of the evaluation, one evaluation of the same runs each "
                             "(default: %(default)s, `aria eval`'s)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV folder (default: bench/results)")
    parser.add_argument("--name", default="small_world", help="CSV name (default: %(default)s)")
    args = parser.parse_args(argv)
    if (min(args.parallel) < 1 or min(args.group) < 1 or args.steps < 1 or args.batch < 1
            or min(args.eval_batch_size) < 1 or args.samples_per_region < 0):
        parser.error("--parallel, --group, --steps, --batch and --eval-batch-size must be >= 1, "
                     "--samples-per-region >= 0")
    rows = []
    with work_folder(args.work) as work:
        inputs = make_inputs(work)
        for parallel in args.parallel:
            for group in args.group:
                rows += run_one(inputs, work, parallel, args.steps, args.batch, args.samples_per_region,
                                args.mixed_precision, args.compile, group, args.tf32, tuple(args.eval_batch_size))
            report(args.name, rows, args.out, show=False)  # a run cut short keeps what it measured
    report(args.name, rows, args.out)
    return rows


if __name__ == "__main__":
    main()
