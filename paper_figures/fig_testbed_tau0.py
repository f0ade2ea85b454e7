"""Test bed at tau = 0: each method's p(t)-weighted discrepancy over RC's, measured and predicted.

Per region group: measured in the trainer (bars) beside the allocation simulator's prediction
for the same world (diamonds).

Measured: `aria experiment experiments/glyph_demo_gpu.json` (12-region glyph world, 3 seeds);
per seed, the method's group mean divided by RC's group mean of the same seed; bar = mean over
seeds, error bar = min to max. Predicted: `aria sim allocation --scenarios
testbed:k=12:s=1.2:tau=0:tail=2:head=1:under=3 ...` (5 seeds), the mean over seeds of the same
ratio of the final true discrepancy. Below 1: the method beats RC on that group. Data: the
committed experiments/results/glyph_demo_gpu/eval/summary.csv and glyph_demo_sim/allocation_final.csv
(or the same folders under --data).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import plt, save
from paper_figures.fig_experiment_groups import experiment_dir

@dataclass(frozen=True)
class Config:
    experiment: str = "glyph_demo_gpu"  # experiments/results/<experiment>/eval/summary.csv
    simulation: str = "glyph_demo_sim"  # experiments/results/<simulation>/allocation_final.csv


CONFIG = Config()
GROUPS = ("head", "mid", "under", "unseen-head", "unseen-tail", "all", "weighted")
SIM_GROUPS = {"head": "head", "mid": "mid", "under": "under", "unseen-head": "unseen_head",
              "unseen-tail": "unseen_tail", "all": "mean", "weighted": "prompt_weighted"}
# trainer method -> (label, simulator policy, colour)
METHODS = {"region-uniform": ("region-uniform", "uniform", "#55a868"),
           "aria": ("ARIA beta 1", "ARIA b=1 e=0.2 a=0.05", "#c44e52"),
           "aria-b2": ("ARIA beta 2", "ARIA b=2 e=0.2 a=0.05", "#dd8452"),
           "progress": ("progress policy", "progress r=0.003 b=1 e=0.2", "#8172b2")}
METRIC = "discrepancy_pt"


def measured_ratios(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (method, group, seed): the method's group mean over RC's of the same seed."""
    part = summary[summary["metric"] == METRIC].copy()
    part["method"], part["seed"] = part["model"].str.rsplit("-seed", n=1).str[0], part["model"].str.rsplit("-seed", n=1).str[1]
    rc = part[part["method"] == "rc"].set_index(["group", "seed"])["mean"]
    part["ratio"] = part["mean"].to_numpy() / rc.loc[list(zip(part["group"], part["seed"]))].to_numpy()
    return part


def predicted_ratios(final: pd.DataFrame) -> pd.DataFrame:
    """Per (policy, metric): the mean over seeds of the policy's final value over RC's of the same seed."""
    final = final[final["scenario"].str.contains("tau=0:")]
    rc = final[final["policy"] == "RC"].set_index(["seed", "metric"])["value"]
    ratio = final["value"].to_numpy() / rc.loc[list(zip(final["seed"], final["metric"]))].to_numpy()
    return final.assign(ratio=ratio).groupby(["policy", "metric"])["ratio"].mean()


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    measured = measured_ratios(pd.read_csv(experiment_dir(data_dir, CONFIG.experiment) / "eval" / "summary.csv"))
    predicted = predicted_ratios(pd.read_csv(experiment_dir(data_dir, CONFIG.simulation) / "allocation_final.csv"))
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = np.arange(len(GROUPS))
    width = 0.8 / len(METHODS)
    for i, (method, (label, policy, colour)) in enumerate(METHODS.items()):
        stats = measured[measured["method"] == method].groupby("group")["ratio"].agg(["mean", "min", "max"])
        stats = stats.loc[list(GROUPS)]
        pos = x + (i - (len(METHODS) - 1) / 2) * width
        ax.bar(pos, stats["mean"], width, color=colour, label=f"{label}, trainer (3 seeds)",
               yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]], capsize=2, error_kw={"lw": 0.8})
        ax.plot(pos, [predicted[(policy, SIM_GROUPS[g])] for g in GROUPS], "D", color="black", ms=4,
                label="simulator's prediction (5 seeds)" if i == 0 else None)
    ax.axhline(1.0, color="#4c72b0", lw=1, label="RC")
    ax.set_xticks(x, GROUPS)
    ax.set_xlabel("region group")
    ax.set_ylabel("p(t)-weighted discrepancy / RC's\n(below 1: better than RC)")
    ax.set_title("Test bed, tau = 0 (nothing transfers), Zipf 1.2: where allocation wins and loses")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_tau0")
