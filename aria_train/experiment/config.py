"""ExperimentConfig: one comparison of distillation methods over seeds, read from JSON.

Relative paths in an experiment file -- its inputs, and path options inside ``distill``,
``methods`` and ``eval`` -- are relative to the file's own folder, so an experiment runs the same
from any working directory; the runs it starts record absolute paths.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aria_train.distill.config import DistillConfig
from aria_train.evaluation.config import EvalConfig
from aria_train.options import Options, from_json, option, path_options, read_json_object

DEFAULT_METHODS = {
    "kd": {"method": "kd"},
    "rc": {"method": "rc"},
    "region-uniform": {"method": "rc", "sampler": "region"},
    "aria": {"method": "aria"},
}
# a method's name names its runs' folders, configs and logs: no separators, nothing hidden or empty
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# options the experiment sets itself, per option set, with what it sets them from
SET_BY_THE_EXPERIMENT = {"distill": {"seed": "its seeds"},
                         "eval": {"teacher": "its teacher", "heldout": "its heldout", "student": "its runs"}}


@dataclass
class ExperimentConfig(Options):
    """Every method (a set of DistillConfig options) x seed at equal shared options, then one
    evaluation of all students."""

    WHAT = "experiment config"

    teacher: str = option("", "path", "teacher model folder", required=True)
    pool: str = option("", "path", "prompt pool file (with a region column for aria and region-uniform)", required=True)
    paired_cache: str = option("", "path", "paired cache folder of teacher samples (`aria cache`)", required=True)
    heldout: str = option("", "path", "held-out prompts of the evaluation and the in-training monitor", required=True)
    text_cache: str | None = option(None, "path", "optional text-embedding cache of the pool")
    seeds: list[int] = option(unit="seeds", help="one run per method and seed", default_factory=lambda: [0, 1, 2])
    methods: dict = option(unit="name -> options", help="method variants: name -> DistillConfig options",
                           default_factory=lambda: dict(DEFAULT_METHODS))
    distill: dict = option(unit="options", help="DistillConfig options shared by every run (steps, batch_size, lr, ...)",
                           default_factory=dict)
    eval: dict = option(unit="options", help="EvalConfig options of the evaluation (samples_per_region, guidance, ...)",
                        default_factory=dict)
    parallel: int = option(1, "processes", "distillations at a time")
    mixed_precision: Literal["no", "bf16", "fp16"] = option("no", "choice", "accelerate's mixed precision of the runs")

    def validate(self) -> "ExperimentConfig":
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        if not self.methods:
            raise ValueError("methods must name at least one method")
        if any(not isinstance(v, dict) for v in self.methods.values()):
            raise ValueError("methods must map each name to an object of distillation options")
        for name in self.methods:
            if not METHOD_NAME.fullmatch(name):
                raise ValueError(f"method name {name!r} must be letters, digits, '_', '.' or '-', starting with a "
                                 "letter or digit: it names the runs' folders")
        for where, kind, options in [("distill", "distill", self.distill), ("eval", "eval", self.eval),
                                     *((f"method {n!r}", "distill", o) for n, o in self.methods.items())]:
            for key, source in SET_BY_THE_EXPERIMENT[kind].items():
                if key in options:
                    raise ValueError(f"{where} sets {key}, which the experiment sets itself (from {source})")
        if self.parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {self.parallel}")
        self.run_configs()
        self.eval_config([self.teacher])  # checks the eval options now, not after every run
        return self

    @classmethod
    def load(cls, path: str | Path) -> "ExperimentConfig":
        """The experiment in ``path``, its relative paths resolved against the file's folder."""
        data = read_json_object(path, cls.WHAT)
        base = Path(path).resolve().parent
        _resolve_paths(data, cls, base)
        _resolve_paths(data.get("distill"), DistillConfig, base)
        methods = data.get("methods")
        for options in methods.values() if isinstance(methods, dict) else ():
            _resolve_paths(options, DistillConfig, base)
        _resolve_paths(data.get("eval"), EvalConfig, base)
        return from_json(cls, data, f"{cls.WHAT} {path}")

    def check_inputs(self) -> None:
        """ValueError naming the first input path of a run or of the evaluation that does not
        exist, evaluation timesteps beyond the teacher's, a pool without the regions a method needs,
        or a paired cache that does not fit the pool:
        found here, before any run starts, and not in every run's worker process (or after them)."""
        configs = [config for _, config in self.run_configs().values()] + [self.eval_config([self.teacher])]
        for config in configs:
            for name in path_options(type(config)):
                value = getattr(config, name)
                if isinstance(value, str) and value and not Path(value).exists():
                    raise ValueError(f"{name} {value} does not exist (relative paths in an experiment config are "
                                     "relative to the config file's folder)")
        scheduler = Path(self.teacher) / "scheduler" / "scheduler_config.json"
        limit = json.loads(scheduler.read_text()).get("num_train_timesteps", 1000) if scheduler.is_file() else None
        timesteps = self.eval_config([self.teacher]).timesteps
        if limit is not None and max(timesteps) >= limit:
            raise ValueError(f"eval timesteps must lie in [0, {limit}) for the teacher {self.teacher}, got {timesteps}")
        from aria_train.distill.inputs import check_pool_and_cache  # torch, diffusers: only when run

        by_inputs: dict[tuple[str, str], list[DistillConfig]] = {}
        for _, config in self.run_configs().values():
            by_inputs.setdefault((config.pool, config.paired_cache), []).append(config)
        for configs in by_inputs.values():
            check_pool_and_cache(configs)

    def run_configs(self) -> dict[str, tuple[str, DistillConfig]]:
        """{run name: (method name, validated DistillConfig)} for every method and seed."""
        shared = {"teacher": self.teacher, "pool": self.pool, "paired_cache": self.paired_cache,
                  "text_cache": self.text_cache, "heldout": self.heldout, **self.distill}
        out = {}
        for name, options in self.methods.items():
            for seed in self.seeds:
                config = DistillConfig.from_dict({**shared, **options, "seed": seed}, f"method {name!r}")
                out[f"{name}-seed{seed}"] = (name, config)
        return out

    def eval_config(self, students: list[str]) -> EvalConfig:
        return EvalConfig.from_dict({**self.eval, "teacher": self.teacher, "heldout": self.heldout,
                                     "student": students}, "the experiment's eval options")


def _resolve_paths(options: object, cls: type, base: Path) -> None:
    """Make the relative path options of ``cls`` in the JSON object ``options`` absolute against
    ``base``, in place (anything not an object, or a path not a string, is left to the type checks)."""
    if not isinstance(options, dict):
        return
    for key in path_options(cls):
        if isinstance(options.get(key), str) and options[key]:
            options[key] = str((base / options[key]).resolve())
