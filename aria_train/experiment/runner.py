"""Compare distillation methods at equal steps and equal paired images over seeds, then evaluate.

For every method variant and seed of an ExperimentConfig, ``run_experiment`` distils a student
into OUT/runs/NAME-seedS (``parallel`` worker processes at a time, each calling
aria_train.distill.loop.train for one run -- a small student's step is bound by the host, so runs
share one GPU well -- or, with ``group`` > 1, aria_train.distill.group.train_group for up to
``group`` runs that differ only in what shapes their draws (method, sampler, ARIA options, seed,
switch schedule, null-text probability): one kernel launch serves them all; OUT/jobs.json records
the groups, and a continued experiment keeps them, see ``make_jobs``); then evaluates every student on the very same held-out inputs (OUT/eval); then aggregates
over seeds: per method, group and metric the mean and sample standard deviation of the group
mean and of the worst region (OUT/results.csv, results.json, printed), and where it has
region-uniform sampling and allocation policies, how much of each policy's ratio to it follows the
draws it moved and whether it differs beyond the seeds' spread (OUT/allocation_split.csv,
allocation_test.csv, aria_train.evaluation.allocation_split); and writes a report of the
first seed's runs (OUT/report.html). One progress bar counts the steps of all runs. Every stage
resumes: finished runs and a finished evaluation are kept, interrupted runs continue from their
last checkpoint, and runs that stopped before their first checkpoint start again.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import queue
import shutil
import sys
from pathlib import Path

from aria_train.experiment.config import ExperimentConfig
from aria_train.options import to_dict

POLL_S = 0.5  # how often the parent reads the workers' progress
JOBS_FILE = "jobs.json"  # OUT/jobs.json: the runs trained as groups, one list of run names per group


def _checkpointed_steps(run: Path) -> int:
    from aria_train.runs.checkpoint import STEP_DIR, list_checkpoints

    found = list_checkpoints(run / "checkpoints")
    return int(STEP_DIR.fullmatch(found[-1].name).group(1)) if found else 0


def _worker(names: list[str], configs: list[dict], runs: list[str], log: str, threads: int, mixed_precision: str,
            progress) -> None:
    """Distillations in a fresh process: one run (aria_train.distill.loop.train) or a group of
    runs trained together (aria_train.distill.group); output to ``log``, steps to ``progress``."""
    os.environ.update(ACCELERATE_MIXED_PRECISION=mixed_precision, OMP_NUM_THREADS=str(threads))
    with open(log, "a") as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    import torch

    from aria_train.console import quiet_libraries
    from aria_train.distill.config import DistillConfig

    torch.set_num_threads(threads)
    quiet_libraries()
    kind = checkpoint_kind(Path(runs[0]))
    try:
        if len(names) == 1 and kind != "group":
            from aria_train.distill.loop import train

            train(DistillConfig.from_dict(configs[0]), Path(runs[0]), "latest" if kind == "single" else None,
                  progress=False, on_step=lambda step, steps: progress.put((names[0], step)))
        else:
            from aria_train.distill.group import train_group

            train_group([DistillConfig.from_dict(config) for config in configs], runs, kind == "group",
                        on_step=lambda member, step, steps: progress.put((names[member], step)))
    except Exception as err:  # reported by the parent with the log's path
        print(f"aria: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _log_path(out: Path, names: list[str]) -> Path:
    """The log of the worker that trains ``names`` (one run, or a group named by its first)."""
    return out / "logs" / f"{names[0]}{'-group' if len(names) > 1 else ''}.log"


def checkpoint_kind(run: Path) -> str:
    """"fresh" (no checkpoint), "single" (its latest checkpoint is a single run's) or "group"
    (written by a student group, aria_train.distill.group)."""
    from aria_train.runs.checkpoint import GROUP_OPTIMIZER, list_checkpoints

    found = list_checkpoints(run / "checkpoints")
    if not found:
        return "fresh"
    return "group" if (found[-1] / GROUP_OPTIMIZER).exists() else "single"


def make_jobs(configs: dict, pending: list[str], done: dict[str, int], group: int, kinds: dict[str, str] | None = None,
              recorded: list[list[str]] = (), mixed_precision: str = "no") -> list[list[str]]:
    """The pending runs as jobs of one worker process each, in order:

    * a run checkpointed alone continues alone (``kinds``, from ``checkpoint_kind``; default: all
      fresh);
    * runs checkpointed in a group continue as the group they were started in (``recorded``,
      limited to those pending; runs of no recorded group: by group key and checkpointed step),
      whatever ``group`` is now -- a group resumes exactly only as itself;
    * fresh runs: up to ``group`` at a time of those that may train together
      (aria_train.distill.group.group_key).

    A group killed while moving its first checkpoints into place leaves runs with and without a
    checkpoint: those with one continue as a smaller group, the others start again -- the same up
    to floating-point rounding, not bitwise.

    Every job of several runs is checked here (``check_group``), in one line."""
    from aria_train.distill.group import check_group, group_key

    kinds = kinds or {}
    kind = {name: kinds.get(name, "fresh") for name in pending}
    jobs: list[list[str]] = []
    placed: set[str] = set()
    for job in recorded:
        members = [name for name in job if name in kind and kind[name] == "group"]
        if members:
            jobs.append(members)
            placed.update(members)
    together: dict[tuple, list[str]] = {}
    for name in pending:
        if name in placed:
            continue
        if kind[name] == "single":
            jobs.append([name])
        elif kind[name] == "group":
            together.setdefault(("group", group_key(configs[name][1]), done[name]), []).append(name)
        else:
            together.setdefault(("fresh", group_key(configs[name][1])), []).append(name)
    for (source, *_), names in together.items():
        size = len(names) if source == "group" else max(group, 1)
        jobs.extend(names[i:i + size] for i in range(0, len(names), size))
    for names in jobs:  # here, in one line, rather than in every worker
        if len(names) > 1:
            check_group([configs[name][1] for name in names], mixed_precision)
    return jobs


def run_all(configs: dict, out: Path, parallel: int, mixed_precision: str, show_progress: bool = True,
            group: int = 1) -> None:
    """Run every distillation not yet finished, ``parallel`` processes at a time, each training
    one run or (``group`` > 1) up to ``group`` runs together; raise if any fails."""
    from tqdm.auto import tqdm

    done = {name: _checkpointed_steps(out / "runs" / name) for name in configs}
    record = out / JOBS_FILE  # the groups runs were started in, so that a continued experiment keeps them
    recorded = json.loads(record.read_text()) if record.is_file() else []
    unfinished = {name for name, (_, config) in configs.items() if done[name] < config.steps}
    for job in recorded:  # a group continues as itself: a run of it that finished trains again with the rest
        if unfinished & set(job):
            unfinished.update(name for name in job if name in configs)
    pending = [name for name in configs if name in unfinished]
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    for name in pending:
        run = out / "runs" / name
        if run.exists() and not done[name]:
            shutil.rmtree(run)  # started but never checkpointed: start again
        configs[name][1].save(out / "configs" / f"{name}.json")
    kinds = {name: checkpoint_kind(out / "runs" / name) for name in pending}
    jobs = make_jobs(configs, pending, done, group, kinds, recorded, mixed_precision)
    grouped = [names for names in jobs if len(names) > 1 or kinds[names[0]] == "group"]
    placed = {name for names in grouped for name in names}
    record.write_text(json.dumps(grouped + [names for names in recorded if not placed & set(names)]) + "\n")
    print(f"{len(configs) - len(pending)} of {len(configs)} runs already finished; running {len(pending)} in "
          f"{len(jobs)} process(es), {parallel} at a time")
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // parallel)
    total = sum(config.steps for _, config in configs.values())
    bar = tqdm(total=total, initial=sum(done.values()), desc="runs", unit="step", dynamic_ncols=True,
               disable=not show_progress)
    running: dict[str, tuple[list[str], multiprocessing.Process]] = {}
    failed, finished = [], 0
    while jobs or running:
        while jobs and len(running) < parallel:
            names = jobs.pop(0)
            process = context.Process(target=_worker, args=(names, [to_dict(configs[name][1]) for name in names],
                                                            [str(out / "runs" / name) for name in names],
                                                            str(_log_path(out, names)), threads, mixed_precision,
                                                            progress))
            process.start()
            running[names[0]] = (names, process)
        try:
            while True:
                name, step = progress.get(timeout=POLL_S)
                bar.update(step - done[name])
                done[name] = step
        except queue.Empty:
            pass
        for key, (names, process) in list(running.items()):
            if process.exitcode is not None:
                del running[key]
                if process.exitcode:
                    failed.extend(names)
                    bar.write(f"run{'s' if len(names) > 1 else ''} {', '.join(names)} FAILED (exit {process.exitcode}); "
                              f"log {_log_path(out, names)}")
                else:  # a line per finished job: all a log file shows with the bar off
                    finished += len(names)
                    bar.write(f"finished {', '.join(names)} ({finished} of {len(pending)} runs)")
        bar.set_postfix_str(f"{len(running)} running, {len(jobs)} waiting", refresh=False)
    bar.close()
    if failed:
        raise ValueError(f"runs failed: {', '.join(failed)} (see their logs under {out / 'logs'})")


def aggregate(summary, runs: dict[str, str]):
    """Mean and sample std over seeds, per method, metric and group, of the group mean and worst
    region. ``summary`` is `aria eval`'s summary.csv; ``runs`` maps run name -> method name."""
    import pandas as pd

    frame = summary.assign(method=summary["model"].map(runs))
    frame = frame[frame["method"].notna()]
    grouped = frame.groupby(["metric", "group", "method"], sort=False)
    out = grouped.agg(mean=("mean", "mean"), mean_std=("mean", "std"), worst=("worst", "mean"),
                      worst_std=("worst", "std"), seeds=("mean", "size")).reset_index()
    return pd.DataFrame(out)


def _cell(mean: float, std: float) -> str:
    return f"{mean:.4g}" if std != std else f"{mean:.4g} ± {std:.2g}"  # std is NaN with one seed


def print_table(results) -> None:
    """Per metric: one row per method, per group the group mean and the worst region (each the
    mean ± std over seeds)."""
    for metric, part in results.groupby("metric", sort=False):
        better = "lower" if metric.startswith("discrepancy") or metric == "fid" else "higher"  # accuracies, clip_score
        seeds = int(part["seeds"].max())
        spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
        print(f"\n{metric} ({better} is better; {spread}): group mean / worst region")
        groups = list(dict.fromkeys(part["group"]))
        rows = {method: [f"{_cell(r['mean'], r['mean_std'])} / {_cell(r['worst'], r['worst_std'])}"
                         for g in groups for _, r in rows[rows["group"] == g].iterrows()]
                for method, rows in part.groupby("method", sort=False)}
        width = max(len(c) for c in [*groups, *(c for cells in rows.values() for c in cells)]) + 2
        name_width = max(len(m) for m in rows) + 2
        print(" " * name_width + "".join(f"{g:>{width}}" for g in groups))
        for method, cells in rows.items():
            print(f"{method:<{name_width}}" + "".join(f"{c:>{width}}" for c in cells))


def write_allocation_split(configs: dict, out: Path) -> None:
    """Where the experiment has region-uniform sampling (rc with the region sampler) and allocation
    policies (aria): per policy and seed, its ratio to region-uniform split into what follows the
    draws it moved and a run-level offset (aria_train.evaluation.allocation_split), written to
    OUT/allocation_split.csv and printed; with two seeds or more, whether each policy's ratio differs
    from 1 beyond its spread over seeds (``paired_test``), OUT/allocation_test.csv, printed too."""
    import pandas as pd

    from aria_train.evaluation.allocation_split import allocation_split, paired_test

    uniform = [m for m, c in configs.values() if c.method == "rc" and c.sampler == "region"]
    policies = list(dict.fromkeys(m for m, c in configs.values() if c.method == "aria"))
    if not uniform or not policies:
        return
    runs = {name: (method, config.seed) for name, (method, config) in configs.items()}
    table = allocation_split(pd.read_csv(out / "eval" / "discrepancy.csv"), runs, out / "runs", uniform[0], policies)
    if table is None:
        return
    table.to_csv(out / "allocation_split.csv", index=False)
    print(f"\nover {uniform[0]} on the same seed (p(t)-weighted discrepancy, all regions): ratio, the offset every "
          f"region shares, and the slope of the regions' ratios on the draws the policy moved")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    test = paired_test(table)
    if not test.empty:
        test.to_csv(out / "allocation_test.csv", index=False)
        print("\npaired over seeds (two-sided t-test on ln ratio at 5%; seeds_for_2pct: seeds a 2% effect needs at this sd, power 0.8)")
        print(test.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def run_experiment(config: ExperimentConfig, out: Path, parallel: int | None = None, only: str = "all",
                   group: int = 1, progress: bool = True) -> Path:
    """Run, evaluate, aggregate and report one experiment into ``out`` (see the module docstring);
    ``group`` > 1 trains up to that many runs in each process (aria_train.distill.group); ``progress``
    False: no progress bars, only the stages' lines."""
    import pandas as pd

    from aria_train.evaluation.evaluate import evaluate
    from aria_train.evaluation.report import write_report

    configs = config.run_configs()
    out = Path(out)
    saved = out / "experiment.json"
    if saved.is_file() and json.loads(saved.read_text()) != to_dict(config):
        started = any((out / "runs").glob("*/checkpoints/step-*")) or (out / "eval").exists()
        raise ValueError(f"{out} holds a different experiment ({saved}); choose a new --out" + (
            "" if started else f" (none of its runs reached a checkpoint: removing {out} loses no training)"))
    if not saved.is_file() and out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not an experiment folder: choose a new --out")
    config.check_inputs()  # before the folder is made: a wrong path is one line, not a failed run per worker
    make_jobs(configs, list(configs), dict.fromkeys(configs, 0), group,  # and groups that cannot be formed
              mixed_precision=config.mixed_precision)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(to_dict(config), indent=2) + "\n")
    world = Path(config.teacher) / "world.json"
    if world.is_file():  # the teacher's world, kept with the results (the simulator's comparison reads it)
        (out / "world.json").write_text(world.read_text())
    run_all(configs, out, parallel or config.parallel, config.mixed_precision, show_progress=progress, group=group)
    if only == "runs":
        return out

    eval_dir = out / "eval"
    if not (eval_dir / "summary.csv").is_file():
        print("evaluating every student on the same held-out inputs")
        evaluate(config.eval_config([str(out / "runs" / name) for name in configs]), eval_dir, overwrite=True,
                 progress=progress)
    if only == "eval":
        return out

    method_of = {name: method for name, (method, _) in configs.items()}
    results = aggregate(pd.read_csv(eval_dir / "summary.csv"), method_of)
    results.to_csv(out / "results.csv", index=False)
    (out / "results.json").write_text(json.dumps({"config": to_dict(config),
                                                  "results": results.to_dict("records")}, indent=2) + "\n")
    print_table(results)
    write_allocation_split(configs, out)
    first = [out / "runs" / f"{method}-seed{config.seeds[0]}" for method in config.methods]
    write_report(first, out / "report.html", [eval_dir])
    print(f"\nexperiment written to {out} (results.csv, results.json, eval/, report.html)")
    return out
