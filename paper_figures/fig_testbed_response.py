"""A region's discrepancy against its switched draws, per student, in every 12-region test-bed cell.

One panel per cell. Each point is one student and region of a method that moves draws
(region-uniform, ARIA beta 1 / 2, progress): x = the region's switched draws over the run over
RC's on the same seed and region, y = its p(t)-weighted discrepancy over RC's (both log scale).
The line is the cell's fitted power law (simulations.headroom.fit_alpha), whose exponent and
correlation are in the panel's title with the headroom: the best split of the switched draws
over region-uniform's mean (mean over seeds). The blind cell (its two blind regions as crosses)
shows where the law breaks. Data: the committed experiments/results/<cell>/ (runs/*/metrics.jsonl,
eval/discrepancy.csv), or the same folders under --data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paper_figures.common import experiment_dir, plt, save
from simulations.headroom import CELLS, POLICIES, fit_alpha, headroom
from simulations.measured import region_draws


@dataclass(frozen=True)
class Config:
    cells: tuple[tuple[str, ...], ...] = CELLS + (("glyph_blind_tau0",),)
    titles: tuple[str, ...] = ("tau 0, s 0", "tau 0, s 1.2", "tau 0, s 1.6", "tau 0.5, s 1.2", "tau 1, s 1.2",
                               "tau 0, s 1.2, six easy regions", "tau 0, s 1.2, two regions blind")


CONFIG = Config()
COLOURS = {"region-uniform": "#55a868", "aria": "#c44e52", "aria-b2": "#dd8452", "progress": "#8172b2"}


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    columns = -(-len(CONFIG.cells) // 2)
    fig, axes = plt.subplots(2, columns, figsize=(3.7 * columns, 6.5), sharex=True, sharey=True)
    for ax in axes.flat[len(CONFIG.cells):]:
        ax.set_visible(False)
    for ax, cell, title in zip(axes.flat, CONFIG.cells, CONFIG.titles):
        folders = [experiment_dir(data_dir, name) for name in cell]
        every = region_draws(folders)
        best = headroom(every, cell[0])["best_over_uniform"].mean()
        rows = every[every["method"].isin(POLICIES) & (every["switched_ratio"] > 0)]
        blind = rows["group"] == "unseen-tail" if "blind" in cell[0] else np.zeros(len(rows), bool)
        for method, colour in COLOURS.items():
            for mask, marker in ((~blind, "o"), (blind, "x")):
                pick = rows[(rows["method"] == method).to_numpy() & mask]
                ax.scatter(pick["switched_ratio"], pick["ratio"], s=12, marker=marker, color=colour, alpha=0.7,
                           label=method if marker == "o" else None)
        alpha, corr = fit_alpha(rows)
        x = np.geomspace(rows["switched_ratio"].min(), rows["switched_ratio"].max(), 50)
        y = np.exp(np.polyfit(np.log(rows["switched_ratio"]), np.log(rows["ratio"]), 1)[1]) * x ** -alpha
        ax.plot(x, y, color="black", lw=1)
        ax.set_title(f"{title}\nalpha {alpha:.2f}, r {corr:.2f}, best split {best:.3f} of uniform", fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1, color="#4c72b0", lw=0.8)
        ax.axvline(1, color="#4c72b0", lw=0.8)
    for column in axes.T:  # the lowest panel in use of each column carries the x axis
        lowest = [ax for ax in column if ax.get_visible()][-1]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("switched draws / RC's (same seed, region)")
    for ax in axes[:, 0]:
        ax.set_ylabel("p(t)-weighted discrepancy / RC's")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 1.04))
    fig.suptitle("The trainer's response to draws: a power law with a flat optimum (12 regions, 3 seeds)", y=1.08)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_response")
