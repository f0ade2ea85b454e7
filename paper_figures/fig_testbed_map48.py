"""The 48-region cells, tau = 0, 0.5 and 1: each method's p(t)-weighted discrepancy over RC's, per group and per region.

The glyph worlds with 48 regions (Zipf 1.2, 1000 steps of 64, 3 seeds; teachers of 5000 steps,
glyph accuracy 1.00 in every region; at tau = 1 2000 steps, >= 0.958) with no transfer (tau = 0),
half the glyph cells shared (tau = 0.5) and all of them (tau = 1). Top: per region group and cell,
the trainer's ratio to RC on the same seed (filled, mean +- sd over seeds) beside the allocation simulator's prediction for the same world (open;
power-law response with alpha = 1, 5 seeds). Below: per region of each cell, most common prompt
first, bars as in fig_testbed_regions. Below 1: better than RC. Data: the committed
experiments/results/glyph_map_tau{0,05,1}/ (eval/discrepancy.csv, world.json) and
glyph_map_sim/measured_48_regions/measured_vs_predicted_alpha1.csv, written by `aria sim allocation
--measured experiments/results/glyph_map_tau0 experiments/results/glyph_map_tau05
experiments/results/glyph_map_tau1 --measured-alpha 1`
(docs/test_bed.md, "The 48-region map"), or the same folders under --data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import experiment_dir, plt, save
from paper_figures.fig_testbed_regions import plot_region_ratios


@dataclass(frozen=True)
class Config:
    cells: tuple[tuple[str, str], ...] = (("glyph_map_tau0", "tau = 0"), ("glyph_map_tau05", "tau = 0.5"),
                                          ("glyph_map_tau1", "tau = 1"))
    predicted: str = "glyph_map_sim/measured_48_regions"  # folder of measured_vs_predicted_alpha1.csv
    groups: tuple[str, ...] = ("head", "mid", "under", "unseen-head", "unseen-tail", "all", "weighted")
    methods: tuple[tuple[str, str, str], ...] = (("region-uniform", "region-uniform", "#55a868"),
                                                 ("aria", "ARIA beta 1", "#c44e52"),
                                                 ("aria-b2", "ARIA beta 2", "#dd8452"),
                                                 ("progress", "progress policy", "#8172b2"))


CONFIG = Config()


def plot_groups(ax, table: pd.DataFrame, groups: tuple[str, ...], methods: tuple[tuple[str, str, str], ...]) -> None:
    """Per group (x) and method: measured ratio to RC with its sd (filled) and the prediction (open),
    from one experiment's rows of measured_vs_predicted.csv."""
    x = np.arange(len(groups))
    width = 0.8 / len(methods)
    for i, (method, label, colour) in enumerate(methods):
        rows = table[table["method"] == method].set_index("group").reindex(list(groups))
        offset = (i - (len(methods) - 1) / 2) * width
        ax.errorbar(x + offset, rows["measured"], rows["measured_sd"], fmt="o", color=colour, ms=5, capsize=2,
                    label=f"{label}, trainer")
        ax.plot(x + offset, rows["predicted"], "o", mfc="none", color=colour, ms=7, label=f"{label}, simulator")
    ax.axhline(1.0, color="#4c72b0", lw=1, label="RC")
    ax.set_xticks(x, list(groups))
    ax.set_ylabel("p(t)-weighted discrepancy / RC's")


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    predicted = pd.read_csv(experiment_dir(data_dir, CONFIG.predicted) / "measured_vs_predicted_alpha1.csv")
    cells = len(CONFIG.cells)
    fig = plt.figure(figsize=(13, 4 + 4 * cells))
    grid = fig.add_gridspec(1 + cells, cells, height_ratios=[1] + [1.3] * cells)
    for i, (experiment, label) in enumerate(CONFIG.cells):
        rows = predicted[predicted["experiment"] == experiment]
        methods = tuple(m for m in CONFIG.methods if m[0] in set(rows["method"]))  # the progress policy: tau = 0 only
        top = fig.add_subplot(grid[0, i])
        plot_groups(top, rows, CONFIG.groups, methods)
        top.set_title(f"48 regions, {label}: per group\n(filled: trainer, mean +- sd of 3 seeds; open: simulator)",
                      fontsize=9)
        top.tick_params(axis="x", labelsize=7, rotation=25)
        if i == 0:  # the legend gets its own space above the data, which it covered at unseen-head
            low, high = top.get_ylim()
            top.set_ylim(low, high + 0.6 * (high - low))
            top.legend(loc="upper left", frameon=False, ncol=2, fontsize=6)
        bottom = fig.add_subplot(grid[1 + i, :])
        plot_region_ratios(bottom, experiment_dir(data_dir, experiment), methods[:3])
        bottom.set_title(f"{label}: per region (mean of 3 seeds, bars min to max)")
        bottom.legend(loc="upper left", frameon=False, ncol=4, fontsize=7)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_map48")
