"""Allocation by level (ARIA) and by estimated reducible discrepancy (progress) with high floors.

Allocation simulator (`simulations.allocation`), scenario "high_floor", seed 0: 16 regions
ordered from the most to the least common prompt share, the last 4 unseen, and 3 seen regions
whose discrepancy is 90% irreducible (floor). Top: pi over training for ARIA (beta = 1, eps = 0.2,
tracker step 0.05) and for ProgressPolicy (rate 0.003, fast 0.05, slow = running mean, beta = 1,
eps = 0.2; its fits shrunk across regions by their noise, resolution 0.03: the defaults),
averaged over each logging interval and stacked by region; the high-floor regions
are hatched. Bottom: the true discrepancy of every region at the end of each run, split into
its irreducible floor (grey) and its reducible part (colour of the region's group), with the
run's mean pi per region (black dots, right axis). ARIA keeps drawing the high-floor regions in
proportion to their level; ProgressPolicy gives them about their floor eps/K and spends the
rest on regions that can still improve. Data: allocation_regions.csv of `aria sim allocation`
(with both policies on this scenario and seed), else one run per policy computed with `CONFIG`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paper_figures.common import GROUP_COLOURS, plt, region_colours, save, simulated_regions
from simulations import allocation as sim


@dataclass(frozen=True)
class Config:
    scenario: str = "high_floor"
    seed: int = 0
    policies: tuple[str, ...] = ("aria:beta=1:eps=0.2:a=0.05", "progress")
    sim: sim.SimConfig = field(default_factory=lambda: sim.SimConfig(log_every=25))


CONFIG = Config()
GROUP_NAMES = {"seen": "seen", "underrep": "underrepresented", "unseen": "unseen"}


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cfg = CONFIG
    regions, labels = simulated_regions(data_dir, cfg.scenario, cfg.seed, list(cfg.policies), cfg.sim)
    world = sim.build_world(CONFIG.scenario, CONFIG.seed)
    floor = world.floor
    stuck = floor > 0.5 * world.initial  # the high-floor regions
    fig, axes = plt.subplots(2, len(labels), figsize=(11, 7.2), squeeze=False,
                             gridspec_kw={"height_ratios": [1.2, 1]})
    for col, label in enumerate(labels):
        run = regions[regions["policy"] == label]
        info = run.drop_duplicates("region").set_index("region").sort_index()
        colours = region_colours(info["group"])
        pi = run.pivot(index="step", columns="region", values="pi").sort_index(axis=1)
        top = axes[0, col]
        layers = top.stackplot(pi.index, pi.to_numpy().T, colors=colours, lw=0.3, edgecolor="white")
        for region, layer in zip(pi.columns, layers):
            if stuck[region]:
                layer.set_hatch("////")
                layer.set_edgecolor("k")
        top.set_ylim(0, 1)
        top.set_title(label)
        top.set_xlabel("training step (updates of the student)")
        share_stuck = pi.loc[:, stuck[pi.columns]].sum(axis=1)
        top.text(0.98, 0.02, f"high-floor regions: {share_stuck.iloc[-1]:.0%} of π at the end",
                 transform=top.transAxes, ha="right", va="bottom", fontsize=7.5,
                 bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 1})
        final = run[run["step"] == run["step"].max()].set_index("region").sort_index()
        bottom = axes[1, col]
        x = np.arange(len(final))
        reducible = np.maximum(final["discrepancy"].to_numpy() - floor, 0.0)
        bottom.bar(x, floor, color="0.75", label="irreducible floor", hatch=None)
        bottom.bar(x, reducible, bottom=floor, color=colours, label="reducible part")
        for xi in x[stuck]:
            bottom.bar(xi, floor[xi], color="none", edgecolor="k", hatch="////", lw=0)
        bottom.set_xticks(x, [str(r) for r in final.index], fontsize=7)
        bottom.set_xlabel("region (most to least common prompt share)")
        right = bottom.twinx()
        right.plot(x, run.groupby("region")["pi"].mean().sort_index().to_numpy(), "o", color="k", ms=3.5)
        right.set_ylim(0, None)
        right.grid(False)
        if col == len(labels) - 1:
            right.set_ylabel("mean π over the run (dots)")
        if col == 0:
            top.set_ylabel("allocation π (stacked by region;\nhatched: 90% irreducible)")
            bottom.set_ylabel("true discrepancy at the end\n(grey: floor, colour: reducible)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=GROUP_COLOURS[g]) for g in GROUP_NAMES if g in set(regions["group"])]
    handles += [plt.Rectangle((0, 0), 1, 1, facecolor="0.75"),
                plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="k", hatch="////")]
    names = [GROUP_NAMES[g] for g in GROUP_NAMES if g in set(regions["group"])] + ["irreducible floor",
                                                                                   "high-floor region"]
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Scenario '{CONFIG.scenario}', seed {CONFIG.seed}: allocation by level (ARIA) vs by "
                 "estimated reducible discrepancy (progress)", y=1.0)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, out_dir, "fig_progress_allocation")
