"""A study: scenarios x policies x seeds at one budget, its tidy tables, printed summaries and files."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from simulations.allocation.policies import PolicySpec
from simulations.allocation.scenarios import build_world, describe
from simulations.allocation.simulate import RunResult, simulate
from simulations.allocation.world import METRICS, TESTBED_METRICS, SimConfig, World

@dataclass
class Study:
    """Tidy tables of a study (lists of row dicts) and the per-run results for plotting."""

    history: list[dict] = field(default_factory=list)  # scenario, policy, seed, step, metric, value
    regions: list[dict] = field(default_factory=list)  # per logged step and region: D, estimate, pi
    final: list[dict] = field(default_factory=list)    # scenario, policy, seed, metric, value
    runs: dict[tuple[str, str, int], RunResult] = field(default_factory=dict)
    worlds: dict[tuple[str, int], World] = field(default_factory=dict)


def progress_bar(desc: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that draws one tqdm bar on stderr (a study of many seeds
    runs for minutes; every policy of a (scenario, seed) is one unit)."""
    from tqdm import tqdm

    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="job")
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return report


def run_study(scenarios: list[str], specs: list[PolicySpec], seeds: list[int],
              config: SimConfig, progress: Callable[[int, int], None] | None = None) -> Study:
    """Every policy on every scenario and seed, at the same budget (`config`); ``progress(done,
    total)`` after each (scenario, seed)."""
    study = Study()
    done, total = 0, len(scenarios) * len(seeds)
    for scenario in scenarios:
        for seed in seeds:
            world = build_world(scenario, seed)
            study.worlds[scenario, seed] = world
            groups = world.groups()
            reference = None
            for spec in specs:
                if spec.kind == "doremi" and reference is None:
                    reference = simulate(world, config, PolicySpec("rc"), seed).final
                run = simulate(world, config, spec, seed, reference)
                study.runs[scenario, spec.label, seed] = run
                _record(study, scenario, spec.label, seed, world, groups, run, config)
            done += 1
            if progress:
                progress(done, total)
    return study


def _record(study: Study, scenario: str, label: str, seed: int, world: World, groups: list[str],
            run: RunResult, config: SimConfig) -> None:
    key = {"scenario": scenario, "policy": label, "seed": seed}
    for row, step in enumerate(run.log_steps):
        for metric, value in world.metrics(run.discrepancy[row]).items():
            study.history.append({**key, "step": int(step), "metric": metric, "value": value})
        # pi is averaged over the steps since the previous log (step 0 shows the first step's pi)
        lo = int(run.log_steps[row - 1]) if row else 0
        pi = run.pi[lo:max(int(step), 1)].mean(axis=0)
        for region in range(world.num_regions):
            study.regions.append({**key, "step": int(step), "region": region, "group": groups[region],
                                  "share": float(world.shares[region]),
                                  "discrepancy": float(run.discrepancy[row, region]),
                                  "estimate": float(run.estimates[row, region]), "pi": float(pi[region])})
    for metric, value in world.metrics(run.final).items():
        study.final.append({**key, "metric": metric, "value": value})


def summary_table(final_rows: list[dict]):
    """pandas DataFrame: per scenario and policy, mean and sd over seeds of each final metric."""
    import pandas as pd

    df = pd.DataFrame(final_rows)
    order = list(dict.fromkeys(df["policy"]))
    stats = df.groupby(["scenario", "policy", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    table = stats.reset_index()
    table["policy"] = pd.Categorical(table["policy"], order, ordered=True)
    return table.sort_values(["scenario", "policy"], kind="stable").reset_index(drop=True)


def format_table(final_rows: list[dict], references: tuple[str, ...] = ("RC", "uniform")) -> str:
    """Printable tables per scenario: final metrics (mean +- sd over seeds), then for each
    reference policy the paired ratio policy / reference on the same seed (mean over seeds, and
    on how many seeds the policy was lower), which removes the world-to-world spread."""
    import pandas as pd

    table = summary_table(final_rows)
    df = pd.DataFrame(final_rows)
    lines = []
    for scenario, block in table.groupby("scenario", sort=False):
        n = int(block["count"].max())
        metrics = METRICS if set(METRICS) <= set(block["metric"]) else TESTBED_METRICS
        lines.append(f"\n{scenario}: {describe(scenario)} "
                     f"(final true discrepancy, mean +- sd over {n} seeds)")
        lines.append(f"{'policy':<28}" + "".join(f"{m:>18}" for m in metrics))
        for policy, rows in block.groupby("policy", sort=False, observed=True):
            cells = rows.set_index("metric")
            lines.append(f"{policy:<28}" + "".join(
                f"{cells.loc[m, 'mean']:>10.4f} +-{cells.loc[m, 'std']:.4f}" if np.isfinite(cells.loc[m, "mean"])
                else f"{'-':>18}" for m in metrics))
        wide = df[df["scenario"] == scenario].pivot_table(index=["policy", "seed"], columns="metric",
                                                          values="value", sort=False,
                                                          dropna=False).reindex(columns=list(metrics))
        for ref in references:
            if ref not in wide.index.get_level_values("policy"):
                continue
            ratio = wide / wide.xs(ref, level="policy")
            lines.append(f"  paired ratio to {ref} (mean over seeds; seeds lower than {ref})")
            for policy in dict.fromkeys(wide.index.get_level_values("policy")):
                if policy == ref:
                    continue
                r = ratio.xs(policy, level="policy")
                lines.append(f"  {policy:<26}" + "".join(
                    f"{r[m].mean():>10.3f} ({int((r[m] < 1).sum())}/{len(r)})" if r[m].notna().any()
                    else f"{'-':>16}" for m in metrics))
    return "\n".join(lines)


def write_study(study: Study, out_dir: Path, meta: dict) -> list[Path]:
    """allocation_history.csv, allocation_regions.csv, allocation_final.csv, allocation_config.json."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in (("history", study.history), ("regions", study.regions), ("final", study.final)):
        path = out_dir / f"allocation_{name}.csv"
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.6g")
        paths.append(path)
    path = out_dir / "allocation_config.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return paths + [path]
