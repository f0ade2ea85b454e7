"""Does adaptive allocation need imbalance? The test bed's tau = 0 world at three Zipf exponents.

One panel per region group; x = the Zipf exponent s of the pool's region shares (0: every region
holds the same share of the pool; 1.2: the map's worlds; 1.6: steeper), at tau = 0 (no glyph cell
shared, so nothing transfers between regions). Same teacher and regions at every s; the paired
set follows the shares. Filled, solid: the trainer (per seed, the method's p(t)-weighted group mean
over RC's on the same seed; mean +- sd over 3 seeds). Open, dashed: the allocation simulator's
prediction for the same world and methods. Below 1: better than RC. Data: the committed
experiments/results/<cell>/eval/summary.csv (Config) and glyph_map_sim/measured_vs_predicted.csv,
or the same folders under --data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paper_figures.common import plt, save
from paper_figures.fig_testbed_map import finish_tau_axes, map_ratios, plot_ratios, predictions


@dataclass(frozen=True)
class Config:
    # s -> experiment folders under experiments/results, as fig_testbed_map.Config.cells
    cells: tuple[tuple[float, tuple[str, ...]], ...] = (
        (0.0, ("glyph_zipf_s0",)),
        (1.2, ("glyph_demo_gpu", "glyph_progress_tau0")),
        (1.6, ("glyph_zipf_s16",)),
    )
    predicted: str = "glyph_map_sim"  # folder of measured_vs_predicted.csv


CONFIG = Config()
GROUPS = ("head", "under", "unseen-tail", "unseen-head", "all", "weighted")
METHODS = {"region-uniform": ("region-uniform", "#55a868"), "aria": ("ARIA beta 1", "#c44e52"),
           "progress": ("progress policy", "#8172b2")}


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    measured = map_ratios(data_dir, CONFIG.cells, knob="s")
    predicted = predictions(data_dir, CONFIG.predicted, CONFIG.cells, knob="s")
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    plot_ratios(axes, GROUPS, METHODS, measured, predicted, knob="s", spacing=0.04, center=1)
    finish_tau_axes(axes, GROUPS, ticks=tuple(s for s, _ in CONFIG.cells), xlabel="Zipf exponent s of the pool")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.07))
    fig.suptitle("Test bed, tau = 0 (12 regions): the gain over RC against the pool's imbalance", y=1.11)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_zipf")
