"""Per region at tau = 0: each method's p(t)-weighted discrepancy over RC's, regions by pool share.

The 12-region glyph world with no transfer (Zipf 1.2): regions ordered from the most to the least
common prompt, coloured by group (tick labels: region word and group). Bars: per seed, the
method's discrepancy on the region's held-out prompts over RC's on the same seed; mean over 3
seeds, error bars min to max. Below 1: better than RC there. Data: the committed
experiments/results/glyph_demo_gpu/eval/discrepancy.csv (t = "pt" rows) and the world's pool
shares from its world.json (or the same folder under --data).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aria_train.worlds import load_world_config, make_world
from paper_figures.common import experiment_dir, plt, save
from simulations.measured import seed_ratios


@dataclass(frozen=True)
class Config:
    experiment: str = "glyph_demo_gpu"
    methods: tuple[tuple[str, str, str], ...] = (("region-uniform", "region-uniform", "#55a868"),
                                                 ("aria", "ARIA beta 1", "#c44e52"),
                                                 ("aria-b2", "ARIA beta 2", "#dd8452"))


CONFIG = Config()


def plot_region_ratios(ax, folder: Path, methods: tuple[tuple[str, str, str], ...]) -> None:
    """Bars per region, most common prompt first: each of ``methods`` (name, label, colour)'s
    p(t)-weighted discrepancy over RC's on the same seed, mean over seeds, error bars min to max;
    the experiment ``folder``'s eval/discrepancy.csv and world.json. With more than 16 regions the
    tick labels shrink to the word and group, turned upright."""
    table = pd.read_csv(folder / "eval" / "discrepancy.csv")
    ratios = seed_ratios(table[table["t"] == "pt"], value="discrepancy", keys=("region",))
    pool = make_world(load_world_config(folder / "world.json")).tables()["pool"]
    shares = pool["region"].value_counts(normalize=True)
    names = table.drop_duplicates("region").set_index("region")
    order = shares.sort_values(ascending=False).index.tolist()
    x = np.arange(len(order))
    width = 0.8 / len(methods)
    for i, (method, label, colour) in enumerate(methods):
        stats = ratios[ratios["method"] == method].groupby("region")["ratio"].agg(["mean", "min", "max"]).loc[order]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, stats["mean"], width, color=colour, label=label,
               yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]], capsize=2 if len(order) <= 16 else 0,
               error_kw={"lw": 0.7 if len(order) <= 16 else 0.4})
    ax.axhline(1.0, color="#4c72b0", lw=1, label="RC")
    if len(order) <= 16:
        ax.set_xticks(x, [f"{names.loc[r, 'region_name']}\n{names.loc[r, 'group']}\n{shares[r]:.1%}" for r in order],
                      fontsize=7)
    else:
        ax.set_xticks(x, [f"{names.loc[r, 'region_name']} {names.loc[r, 'group']}" for r in order], fontsize=6,
                      rotation=90)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylabel("p(t)-weighted discrepancy / RC's")
    ax.set_xlabel("region (word, group" + (", pool share" if len(order) <= 16 else "") + "), most common first")


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    fig, ax = plt.subplots(figsize=(11, 3.8))
    plot_region_ratios(ax, experiment_dir(data_dir, CONFIG.experiment), CONFIG.methods)
    ax.set_title("tau = 0: allocation moves discrepancy from the common regions to the rare ones")
    ax.legend(loc="upper left", frameon=False, ncol=4)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_regions")
