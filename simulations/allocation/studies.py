"""Fixed studies (`--study`): a set of policies at equal budgets on fixed scenarios, final discrepancy
as a ratio to RC's on the same seed per group, and the progress policy's target check."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np

from simulations.allocation.policies import PolicySpec
from simulations.allocation.scenarios import build_world, describe
from simulations.allocation.simulate import simulate
from simulations.allocation.world import SimConfig

STUDY_POLICIES = ("rc", "uniform", "aria:beta=1:eps=0.2:a=0.05", "aria:beta=2:eps=0.2:a=0.05", "exp3",
                  "doremi:eta=0.01", "progress")
STUDIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "policies": (("imbalanced", "high_floor", "balanced", "tb_imbalanced", "tb_high_floor", "tb_tail_floor",
                  "tb_balanced"),
                 STUDY_POLICIES + ("oracle_reducible:beta=1:eps=0.2", "count:rate=0.003"),
                 "ARIA's winning case, high floors and balanced shares, in the clustered worlds (the "
                 "tracker sees every sample) and in the test-bed world (it sees the switched ones)"),
    "map": (tuple(f"testbed:tau={tau:g}:s={s:g}" for tau in (0, 0.5, 1) for s in (0, 1.2, 1.6)), STUDY_POLICIES,
            "the test-bed world over the shared fraction tau in {0, 0.5, 1} and the Zipf exponent s in {0, 1.2, 1.6}"),
}
STUDY_COLUMNS = {"mean": "all", "head": "head", "mid": "mid", "under": "under", "unseen_tail": "unseen-tail",
                 "unseen_head": "unseen-head", "unseen": "unseen", "underrep": "under",
                 "prompt_weighted": "prompt-wtd"}
TARGET_TOLERANCE = 0.02  # the new policy's target: within 2% of the better of ARIA and region-uniform


def _final_job(job: tuple) -> list[dict]:
    """Final metrics of every policy on one scenario and seed (a DoReMi reference run when needed)."""
    scenario, seed, texts, config = job
    world = build_world(scenario, seed)
    reference, rows = None, []
    for spec in (PolicySpec.parse(text) for text in texts):
        if spec.kind == "doremi" and reference is None:
            reference = simulate(world, config, PolicySpec("rc"), seed).final
        run = simulate(world, config, spec, seed, reference)
        rows += [{"scenario": scenario, "policy": spec.label, "seed": seed, "metric": metric, "value": value}
                 for metric, value in world.metrics(run.final).items()]
    return rows


def run_final_study(scenarios: list[str], policies: list[str], seeds: list[int], config: SimConfig,
                    workers: int = 1, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Final-metric rows (scenario, policy, seed, metric, value) of every policy, scenario and seed;
    one process per (scenario, seed) job when workers > 1. The rows are the same for any workers.
    ``progress(done, total)`` after each job."""
    import contextlib
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(scenario, seed, tuple(policies), config) for scenario in scenarios for seed in seeds]
    rows: list[dict] = []
    workers = min(workers, len(jobs))  # never more processes than jobs (--workers 1000000 started them all)
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for done, job_rows in enumerate(pool.map(_final_job, jobs) if pool else map(_final_job, jobs), 1):
            rows += job_rows
            if progress:
                progress(done, len(jobs))
    return rows


def ratio_table(final_rows: list[dict], reference: str = "RC"):
    """pandas DataFrame: per scenario, policy and metric, the paired ratio policy / reference on the
    same seed: mean, sd, min and max over seeds, and the number of seeds."""
    import pandas as pd

    df = pd.DataFrame(final_rows)
    ref = df[df["policy"] == reference].set_index(["scenario", "seed", "metric"])["value"]
    df = df.join(ref.rename("reference"), on=["scenario", "seed", "metric"])
    df["ratio"] = df["value"] / df["reference"]
    stats = df.groupby(["scenario", "policy", "metric"], sort=False)["ratio"].agg(
        mean="mean", sd="std", min="min", max="max", seeds="count")
    return stats.reset_index()


def target_check(ratios, new: str, aria: str, uniform: str = "uniform") -> list[dict]:
    """Per scenario and group: where ARIA beats region-uniform (lower mean ratio to RC) the new
    policy's target is ARIA's ratio, elsewhere region-uniform's; `excess` = new / target - 1."""
    rows = []
    for (scenario, metric), block in ratios.groupby(["scenario", "metric"], sort=False):
        if metric not in STUDY_COLUMNS:
            continue
        r = block.set_index("policy")["mean"]
        if not all(label in r.index for label in (new, aria, uniform)) or not np.isfinite(r[new]):
            continue
        aria_wins = r[aria] < r[uniform]
        target = r[aria] if aria_wins else r[uniform]
        rows.append({"scenario": scenario, "metric": metric, "target_policy": aria if aria_wins else uniform,
                     "target": target, "new": r[new], "excess": r[new] / target - 1,
                     "met": r[new] <= target * (1 + TARGET_TOLERANCE)})
    return rows


def format_study(ratios, checks: list[dict], new: str) -> str:
    """Tables per scenario: ratio to RC (mean +- sd over seeds) per group, then the target check."""
    lines = []
    for scenario, block in ratios.groupby("scenario", sort=False):
        present = block.groupby("metric")["mean"].apply(lambda v: v.notna().any())
        metrics = [m for m in STUDY_COLUMNS if present.get(m, False)]
        n = int(block["seeds"].max())
        lines.append(f"\n{scenario}: {describe(scenario)}")
        lines.append(f"  final true discrepancy / RC's on the same seed, mean +- sd over {n} seeds")
        lines.append(f"  {'policy':<30}" + "".join(f"{STUDY_COLUMNS[m]:>15}" for m in metrics))
        for policy, rows in block.groupby("policy", sort=False):
            cells = rows.set_index("metric")
            lines.append(f"  {policy:<30}" + "".join(
                f"{cells.loc[m, 'mean']:>8.3f} +-{cells.loc[m, 'sd']:.3f}" if np.isfinite(cells.loc[m, "mean"])
                else f"{'-':>15}" for m in metrics))
        mine = [c for c in checks if c["scenario"] == scenario]
        if mine:
            met = sum(c["met"] for c in mine)
            lines.append(f"  {new} vs target (ARIA where it beats region-uniform, else region-uniform; "
                         f"tolerance {TARGET_TOLERANCE:.0%}): met on {met}/{len(mine)} groups")
            lines.append("    " + ", ".join(f"{STUDY_COLUMNS[c['metric']]} {c['excess']:+.1%} vs "
                                             f"{'ARIA' if c['target_policy'].startswith('ARIA') else 'uniform'}"
                                             for c in mine))
    return "\n".join(lines)


def run_named_study(name: str, seeds: list[int], config: SimConfig, out_dir: Path, workers: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> tuple[str, list[Path]]:
    """Run STUDIES[name]; write study_<name>_final.csv (as allocation_final.csv), study_<name>_ratios.csv,
    study_<name>_targets.csv and study_<name>_config.json; return the printed tables and the paths."""
    import pandas as pd

    scenarios, policies, _ = STUDIES[name]
    specs = [PolicySpec.parse(p) for p in policies]
    final = run_final_study(list(scenarios), list(policies), seeds, config, workers, progress)
    ratios = ratio_table(final)
    new, aria = next(s.label for s in specs if s.kind == "progress"), specs[2].label
    checks = target_check(ratios, new, aria)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"study_{name}_{part}.csv" for part in ("final", "ratios", "targets")]
    pd.DataFrame(final).to_csv(paths[0], index=False, float_format="%.6g")
    ratios.to_csv(paths[1], index=False, float_format="%.6g")
    pd.DataFrame(checks).to_csv(paths[2], index=False, float_format="%.6g")
    paths.append(out_dir / f"study_{name}_config.json")
    paths[-1].write_text(json.dumps({"study": name, "scenarios": list(scenarios), "policies": [s.label for s in specs],
                                     "seeds": seeds, "config": dataclasses.asdict(config)}, indent=2) + "\n")
    return format_study(ratios, checks, new), paths
