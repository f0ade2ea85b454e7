"""Compare distillation methods at equal steps and equal paired images over seeds, then evaluate.

CONFIG is a JSON ExperimentConfig (see experiments/*.json). For every method variant and seed it
runs `aria distill` with the shared options (same steps, batch, paired cache, pool) and the
variant's own options, into OUT/runs/NAME-seedS; runs go ``parallel`` at a time as separate
processes (they share one GPU well: a small student's step is bound by the host, not the GPU).
Then one `aria eval` of every student on the very same held-out inputs (OUT/eval), and the
aggregation over seeds: per method, group and metric the mean and sample standard deviation over
seeds of the group mean and of the worst region (OUT/results.csv, results.json, printed), and a
report of the first seed's runs (OUT/report.html). Every stage resumes: finished runs and a
finished evaluation are kept, interrupted runs continue from their last checkpoint.

Relative paths in CONFIG are relative to the current directory.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_METHODS = {
    "kd": {"method": "kd"},
    "rc": {"method": "rc"},
    "region-uniform": {"method": "rc", "sampler": "region"},
    "aria": {"method": "aria"},
}


@dataclass
class ExperimentConfig:
    """One comparison; ``distill`` and the method options are DistillConfig fields."""

    teacher: str
    pool: str
    paired_cache: str
    heldout: str
    text_cache: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: dict[str, dict] = field(default_factory=lambda: dict(DEFAULT_METHODS))
    distill: dict = field(default_factory=dict)  # shared DistillConfig overrides (steps, batch_size, lr, ...)
    eval: dict = field(default_factory=dict)  # `aria eval` options by name (samples_per_region, guidance, ...)
    parallel: int = 1  # distillation processes at a time
    mixed_precision: str = "no"  # accelerate's mixed precision for the runs: no, bf16 or fp16

    @classmethod
    def load(cls, path: str | Path) -> "ExperimentConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read experiment config {path}: {err}") from None
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"experiment config {path}: unknown fields {sorted(set(data) - known)}")
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ValueError(f"experiment config {path} lacks {', '.join(missing)}")
        config = cls(**data)
        if not config.seeds or not config.methods or config.parallel < 1:
            raise ValueError("an experiment needs >= 1 seed, >= 1 method and parallel >= 1")
        if config.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {config.mixed_precision!r}")
        return config

    def run_configs(self) -> dict[str, "DistillConfig"]:  # noqa: F821 (lazy import)
        """{run name: validated DistillConfig} for every method and seed."""
        from aria_train.config import DistillConfig

        shared = {"teacher": self.teacher, "pool": self.pool, "paired_cache": self.paired_cache,
                  "text_cache": self.text_cache, "heldout": self.heldout, **self.distill}
        out = {}
        for name, options in self.methods.items():
            for seed in self.seeds:
                try:
                    out[f"{name}-seed{seed}"] = DistillConfig.from_dict({**shared, **options, "seed": seed}).validate()
                except (TypeError, ValueError) as err:
                    raise ValueError(f"method {name!r}: {err}") from None
        return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config JSON (ExperimentConfig)")
    parser.add_argument("--out", required=True, help="experiment folder: created, or continued if it holds this experiment")
    parser.add_argument("--parallel", type=int, default=None, help="distillation processes at a time (default: the config's)")
    parser.add_argument("--only", choices=("runs", "eval", "all"), default="all",
                        help="stop after the runs or after the evaluation (default: %(default)s)")


def _finished(run: Path, steps: int) -> bool:
    from aria_train.checkpoint import list_checkpoints

    found = list_checkpoints(run / "checkpoints")
    return bool(found) and found[-1].name == f"step-{steps:07d}"


def _command(config_file: Path, run: Path) -> list[str]:
    from aria_train.checkpoint import list_checkpoints

    if list_checkpoints(run / "checkpoints"):
        return [sys.executable, "-m", "aria_cli", "distill", "--out", str(run), "--resume", "latest"]
    if run.exists():
        shutil.rmtree(run)  # started but never checkpointed: start again
    return [sys.executable, "-m", "aria_cli", "distill", "--config", str(config_file), "--out", str(run)]


def run_all(configs: dict, out: Path, parallel: int, mixed_precision: str) -> None:
    """Run every distillation not yet finished, ``parallel`` at a time; raise if any fails."""
    pending = [(name, config) for name, config in configs.items() if not _finished(out / "runs" / name, config.steps)]
    print(f"{len(configs) - len(pending)} of {len(configs)} runs already finished; running {len(pending)}, "
          f"{parallel} at a time")
    threads = max(1, (os.cpu_count() or 1) // parallel)
    env = {**os.environ, "ACCELERATE_MIXED_PRECISION": mixed_precision, "OMP_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    running: list[tuple[str, subprocess.Popen, object]] = []
    failed = []
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    while pending or running:
        while pending and len(running) < parallel:
            name, config = pending.pop(0)
            config_file = out / "configs" / f"{name}.json"
            config.save(config_file)
            log = open(out / "logs" / f"{name}.log", "a")
            running.append((name, subprocess.Popen(_command(config_file, out / "runs" / name), env=env, stdout=log,
                                                   stderr=subprocess.STDOUT), log))
        time.sleep(0.5)
        for item in list(running):
            name, process, log = item
            if process.poll() is not None:
                log.close()
                running.remove(item)
                status = "finished" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
                print(f"run {name} {status}; log {out / 'logs' / (name + '.log')}")
                if process.returncode:
                    failed.append(name)
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
        better = "lower" if metric in ("discrepancy", "fid") else "higher"  # accuracy, clip_score: higher
        seeds = int(part["seeds"].max())
        spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
        print(f"\n{metric} ({better} is better; {spread}): group mean / worst region")
        groups = list(dict.fromkeys(part["group"]))
        rows = {method: [f"{_cell(r['mean'], r['mean_std'])} / {_cell(r['worst'], r['worst_std'])}"
                         for g in groups for _, r in rows[rows["group"] == g].iterrows()]
                for method, rows in part.groupby("method", sort=False)}
        width = max(len(c) for cells in rows.values() for c in cells) + 2
        name_width = max(len(m) for m in rows) + 2
        print(" " * name_width + "".join(f"{g:>{width}}" for g in groups))
        for method, cells in rows.items():
            print(f"{method:<{name_width}}" + "".join(f"{c:>{width}}" for c in cells))


def run(args: argparse.Namespace) -> int:
    import aria_cli
    import pandas as pd

    config = ExperimentConfig.load(args.config)
    configs = config.run_configs()
    out = Path(args.out)
    saved = out / "experiment.json"
    if saved.is_file() and json.loads(saved.read_text()) != dataclasses.asdict(config):
        raise ValueError(f"{out} holds a different experiment ({saved}); choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    run_all(configs, out, args.parallel or config.parallel, config.mixed_precision)
    if args.only == "runs":
        return 0

    eval_dir = out / "eval"
    if not (eval_dir / "summary.csv").is_file():
        argv = ["eval", "--teacher", config.teacher, "--heldout", config.heldout, "--out", str(eval_dir), "--overwrite"]
        for name in configs:
            argv += ["--student", str(out / "runs" / name)]
        for key, value in config.eval.items():
            argv += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
        code = aria_cli.main(argv)
        if code:
            raise ValueError(f"aria eval failed (exit {code})")
    if args.only == "eval":
        return 0

    method_of = {name: name.rsplit("-seed", 1)[0] for name in configs}
    results = aggregate(pd.read_csv(eval_dir / "summary.csv"), method_of)
    results.to_csv(out / "results.csv", index=False)
    (out / "results.json").write_text(json.dumps({"config": dataclasses.asdict(config),
                                                  "results": results.to_dict("records")}, indent=2) + "\n")
    print_table(results)
    first = [str(out / "runs" / f"{m}-seed{config.seeds[0]}") for m in config.methods]
    aria_cli.main(["report", *first, "--eval", str(eval_dir), "--out", str(out / "report.html")])
    print(f"\nexperiment written to {out} (results.csv, results.json, eval/, report.html)")
    return 0
