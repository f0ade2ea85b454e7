"""Teacher-student discrepancy and attribute accuracy per region group in the two H100 experiments.

Rows: experiment 1 (`world_h100`: KD, RC, region-uniform and ARIA, whose tracker observed every
non-null sample, see its NOTE.md) and experiment 2 (`world_h100_observe`: RC, region-uniform and
both ARIA observation modes side by side). Columns: mean per-region discrepancy of the student
against the teacher (lower is better) and attribute accuracy of student samples (higher is
better), averaged over each region group. Bars: mean over seeds of the group mean; error bars: std
over seeds. Both y-axes are zoomed (they do not start at 0) so the small differences show; the
two rows share them. Data: results.csv of each experiment (experiments/results/, or --data).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import experiment_dir, plt, save


@dataclass(frozen=True)
class Config:
    # (folder, title, {method in results.csv: label}) per experiment; the labels say what ARIA's
    # tracker observed, because experiment 1's "aria" is today's aria-observe-all
    experiments: tuple = (
        ("world_h100", "experiment 1",
         {"kd": "KD", "rc": "RC", "region-uniform": "region-uniform", "aria": "ARIA, observes all"}),
        ("world_h100_observe", "experiment 2",
         {"rc": "RC", "region-uniform": "region-uniform", "aria": "ARIA, observes switched",
          "aria-observe-all": "ARIA, observes all"}),
    )
    groups: tuple = ("seen", "unseen", "under", "all")


CONFIG = Config()
# one colour per method label, the same in both rows
METHOD_COLOURS = {"KD": "#8c8c8c", "RC": "#4c72b0", "region-uniform": "#55a868",
                  "ARIA, observes switched": "#c44e52", "ARIA, observes all": "#dd8452"}
METRICS = {"discrepancy": "discrepancy (lower is better)", "accuracy": "attribute accuracy (higher is better)"}


def _zoomed_limits(frames: list[pd.DataFrame]) -> tuple[float, float]:
    """y-limits around every bar top and error bar, with a margin, so differences stay visible."""
    low = min((f["mean"] - f["mean_std"]).min() for f in frames)
    high = max((f["mean"] + f["mean_std"]).max() for f in frames)
    margin = 0.15 * (high - low)
    return low - margin, high + margin


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cfg = CONFIG
    tables = [pd.read_csv(experiment_dir(data_dir, folder) / "results.csv") for folder, _, _ in cfg.experiments]
    fig, axes = plt.subplots(len(tables), len(METRICS), figsize=(10, 6.2), squeeze=False)
    x = np.arange(len(cfg.groups))
    for row, (table, (_, title, methods)) in enumerate(zip(tables, cfg.experiments)):
        for col, metric in enumerate(METRICS):
            ax = axes[row, col]
            width = 0.8 / len(methods)
            for i, (method, label) in enumerate(methods.items()):
                part = table[(table["metric"] == metric) & (table["method"] == method)].set_index("group")
                part = part.loc[list(cfg.groups)]
                ax.bar(x + (i - (len(methods) - 1) / 2) * width, part["mean"], width, yerr=part["mean_std"],
                       color=METHOD_COLOURS[label], label=label, capsize=2, error_kw={"lw": 0.8})
            ax.set_xticks(x, cfg.groups)
            ax.set_title(f"{title}: {metric} per region group")
            if row == len(tables) - 1:
                ax.set_xlabel("region group")
        seeds = int(table["seeds"].max())
        axes[row, -1].legend(title=f"mean ± std over {seeds} seeds", loc="upper left",
                             bbox_to_anchor=(1.02, 1), frameon=False)
    for col, metric in enumerate(METRICS):
        # the same zoomed range in both rows, so the experiments can be compared by eye
        frames = [t[t["metric"] == metric] for t in tables]
        for ax in axes[:, col]:
            ax.set_ylim(*_zoomed_limits(frames))
            ax.set_ylabel(f"{METRICS[metric]}\nzoomed: axis does not start at 0")
    fig.tight_layout()
    return save(fig, out_dir, "fig_experiment_groups")
