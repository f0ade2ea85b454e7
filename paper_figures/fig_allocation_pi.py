"""ARIA's allocation pi over a simulated run (stacked by region) and the discrepancy it leaves per group.

Allocation simulator (`simulations.allocation`), scenario "imbalanced", seed 0: 16 regions
ordered from the most to the least common prompt share, the last 4 unseen (no paired images).
Top: ARIA's pi (beta = 1, eps = 0.2, tracker step 0.05), averaged over each logging interval,
stacked by region and coloured by group; the dashed line is RC's total share of the unseen
regions. pi steers only the switched samples (20% of each batch); the rest are paired samples.
Bottom: true discrepancy averaged over each group of regions, for ARIA (solid), RC (dashed) and
region-uniform sampling (dotted). Data: allocation_regions.csv of `aria sim allocation`, else one
run per policy computed with `CONFIG`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from paper_figures.common import GROUP_COLOURS, plt, region_colours, save, simulated_regions
from simulations import allocation as sim


@dataclass(frozen=True)
class Config:
    scenario: str = "imbalanced"
    seed: int = 0
    aria: str = "aria:beta=1:eps=0.2:a=0.05"
    compare: tuple[str, ...] = ("rc", "uniform")
    sim: sim.SimConfig = field(default_factory=lambda: sim.SimConfig(log_every=25))


CONFIG = Config()
GROUP_NAMES = {"seen": "seen", "underrep": "underrepresented", "unseen": "unseen"}


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cfg = CONFIG
    regions, labels = simulated_regions(data_dir, cfg.scenario, cfg.seed, [cfg.aria, *cfg.compare], cfg.sim)
    aria = regions[regions["policy"] == labels[0]]
    pi = aria.pivot(index="step", columns="region", values="pi")
    info = aria.drop_duplicates("region").set_index("region").sort_index()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 7.4), sharex=True,
                                      gridspec_kw={"height_ratios": [1.3, 1]})
    top.stackplot(pi.index, pi.to_numpy().T, colors=region_colours(info["group"]), lw=0.3, edgecolor="white")
    unseen_share = info.loc[info["group"] == "unseen", "share"].sum()
    top.axhline(1 - unseen_share, color="k", ls="--", lw=1)
    top.text(pi.index[-1], 1 - unseen_share, f"RC would give the unseen regions only the band "
             f"above this line ({unseen_share:.1%})  ", ha="right", va="top", fontsize=7.5,
             bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1})
    for group in dict.fromkeys(info["group"]):
        top.fill_between([], [], color=GROUP_COLOURS[group], label=GROUP_NAMES[group])
    top.set_ylim(0, 1)
    top.set_ylabel("allocation π (stacked by region,\nfrom most to least common)")
    top.set_title(f"{labels[0]}, scenario '{CONFIG.scenario}', seed {CONFIG.seed}")
    top.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, frameon=False)
    styles = dict(zip(labels, ["-", "--", ":"]))
    for label in labels:
        run = regions[regions["policy"] == label]
        for group, rows in run.groupby("group", sort=False):
            mean = rows.groupby("step")["discrepancy"].mean()
            bottom.plot(mean.index, mean.to_numpy(), ls=styles[label], color=GROUP_COLOURS[group], lw=1.4,
                        label=f"{GROUP_NAMES[group]}, {label}")
    bottom.set_yscale("log")
    bottom.set_xlabel("training step (updates of the student)")
    bottom.set_ylabel("true discrepancy, group mean\n(relative units, log scale)")
    bottom.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False, fontsize=7)
    fig.tight_layout()
    return save(fig, out_dir, "fig_allocation_pi")
