"""Allocation policies compared at equal update budgets: final discrepancy relative to RC, per seed.

Allocation simulator (`simulations.allocation`; its docstring states the model) on three
worlds: imbalanced (reducible discrepancy in rare and unseen regions: ARIA should help),
high_floor (three seen regions 90% irreducible: ARIA should not help) and balanced (equal
shares, identical regions: nothing to gain). Each bar is the mean over seeds of a policy's final
true discrepancy divided by RC's on the same seed (below 1: better than RC); dots are the seeds.
Columns: mean over regions, worst region, mean over unseen regions, mean reducible part
(D - floor). "progress" is ProgressPolicy (allocation by estimated reducible discrepancy).
Data: allocation_final.csv of `aria sim allocation`, else computed with `CONFIG`
(fewer steps than the command's default, so further from steady state).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from paper_figures.common import plt, read_csv, save
from simulations import allocation as sim


@dataclass(frozen=True)
class Config:
    scenarios: tuple[str, ...] = ("imbalanced", "high_floor", "balanced")
    policies: tuple[str, ...] = sim.DEFAULT_POLICIES
    seeds: int = 5
    sim: sim.SimConfig = field(default_factory=lambda: sim.SimConfig(steps=800, batch=32, log_every=800))


CONFIG = Config()
METRICS = {"mean": "mean over regions", "worst": "worst region", "unseen": "unseen regions",
           "excess": "reducible part D - floor"}


def _colour(policy: str) -> str:
    if policy.startswith("ARIA-IW"):
        return "#8c8cd9"
    if policy.startswith("ARIA"):
        return "#4c72b0"
    if policy.startswith("progress"):
        return "#8172b3"
    return {"RC": "0.5", "uniform": "#55a868", "EXP3": "#dd8452", "DoReMi": "#937860"}.get(
        policy, "k" if policy.startswith("oracle") else "0.3")


def load(data_dir: str | Path | None) -> pd.DataFrame:
    final = read_csv(data_dir, "allocation_final.csv")
    if final is not None:
        return final
    cfg = CONFIG
    return pd.DataFrame(sim.run_final_study(list(cfg.scenarios), list(cfg.policies), list(range(cfg.seeds)), cfg.sim,
                                            os.cpu_count() or 1, sim.progress_bar("fig_allocation_policies: simulated")))


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    final = load(data_dir)
    scenarios = [s for s in dict.fromkeys(final["scenario"]) if s in CONFIG.scenarios] or list(dict.fromkeys(final["scenario"]))
    policies = [p for p in dict.fromkeys(final["policy"]) if p != "RC"]
    fig, axes = plt.subplots(len(scenarios), len(METRICS), figsize=(11, 2.2 + 2.3 * len(scenarios)),
                             sharey=True, squeeze=False)
    y = np.arange(len(policies))[::-1]
    for row, scenario in enumerate(scenarios):
        wide = final[final["scenario"] == scenario].pivot_table(
            index=["policy", "seed"], columns="metric", values="value", dropna=False)
        ratio = wide / wide.xs("RC", level="policy")
        for col, (metric, title) in enumerate(METRICS.items()):
            ax = axes[row, col]
            ax.axvline(1.0, color="0.5", lw=1)
            if metric not in ratio or ratio[metric].isna().all():
                ax.text(0.5, 0.5, f"no {metric} regions", transform=ax.transAxes, ha="center", va="center")
                continue
            for yi, policy in zip(y, policies):
                values = ratio[metric].xs(policy, level="policy").to_numpy()
                ax.barh(yi, values.mean() - 1, left=1, height=0.7, color=_colour(policy), alpha=0.8)
                ax.plot(values, np.full(values.shape, yi), "o", ms=2.5, color="k", alpha=0.7)
            ax.xaxis.set_major_locator(MaxNLocator(3))
            ax.ticklabel_format(axis="x", useOffset=False)
            if row == 0:
                ax.set_title(title)
            if row == len(scenarios) - 1:
                ax.set_xlabel("final discrepancy / RC's, same seed")
        axes[row, 0].set_ylabel(scenario, fontsize=10, fontweight="bold")
    for ax in axes[:, 0]:
        ax.set_yticks(y, policies)
    n_seeds = final["seed"].nunique()
    fig.suptitle(f"Policies vs RC at equal budgets (bars: mean over {n_seeds} seeds, dots: seeds; "
                 "left of 1 = lower discrepancy than RC)", y=1.0)
    fig.tight_layout()
    return save(fig, out_dir, "fig_allocation_policies")
