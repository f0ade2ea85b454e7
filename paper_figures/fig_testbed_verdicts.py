"""Does tracking beat balancing? Every test-bed cell's paired verdict against region-uniform, seed by seed.

One row per cell (the 12-region glyph worlds, then the 48-region ones); x = a policy's p(t)-weighted
discrepancy on all regions over region-uniform's on the same seed (log scale; left of 1: the policy
better). Small dots: the seeds; large marker and bar: the geometric mean and its 95% t-interval,
from the paired test of allocation_test.csv (aria_train.evaluation.allocation_split.paired_test),
filled where that test is significant (the interval leaves out 1). Policies: ARIA beta 1 and 2, ARIA
on the text signal and the progress policy, where a cell ran them. Data: eval/summary.csv of the committed
experiments/results/<cell>/ folders (Config.cells; a cell's later folders add seeds or replace the
students of the same name, as in fig_testbed_map), or the same folders under --data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from aria_train.evaluation.allocation_split import paired_test
from paper_figures.common import plt, save
from paper_figures.fig_testbed_map import cell_summary
from simulations.measured import MEASURED_METRIC, seed_ratios


@dataclass(frozen=True)
class Config:
    # (row label, experiment folders under experiments/results), top to bottom
    cells: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("tau = 0", ("glyph_demo_gpu", "glyph_text_signal_tau0", "glyph_progress_tau0", "glyph_progress_tau0_seeds",
                     "glyph_aria_tau0_seeds", "glyph_tau0_seeds_7_10")),
        ("tau = 0.5", ("glyph_small_map_tau05", "glyph_progress_tau05")),
        ("tau = 1", ("glyph_small_map_tau1", "glyph_small_map_tau1_seeds", "glyph_small_map_tau1_seeds_b2")),
        ("words name the parts, tau = 0", ("glyph_words_map_tau0",)),
        ("words name the parts, tau = 0.5", ("glyph_words_map_tau05",)),
        ("words name the parts, tau = 1", ("glyph_words_map_tau1",)),
        ("tau = 0, Zipf s = 0", ("glyph_zipf_s0",)),
        ("tau = 0, Zipf s = 1.6", ("glyph_zipf_s16",)),
        ("tau = 0, six easy regions", ("glyph_easy_tau0",)),
        ("six easy regions, 2000 steps, teacher seed 0", ("glyph_easy_tau0_seeds_teacher2000",)),
        ("six easy regions, teacher trained on a CPU", ("glyph_easy_tau0_seeds_cpu_teacher",)),
        ("six easy regions, 2000 steps, teacher seed 1", ("glyph_easy_tau0_seeds_teacher2000_seed1",)),
        ("six easy regions, 2000 steps, teacher seed 2", ("glyph_easy_tau0_seeds_teacher2000_seed2",)),
        ("six easy regions, teacher seed 2, students on a CPU", ("glyph_easy_tau0_seeds_teacher2000_seed2_cpu_b2",)),
        ("six easy regions, 2000 steps, teacher seed 3", ("glyph_easy_tau0_seeds_teacher2000_seed3",)),
        ("six easy regions, teacher missing the gate", ("glyph_easy_tau0_seeds_teacher1000",)),
        ("six easy regions, teacher seed 4, missing the gate", ("glyph_easy_tau0_seeds_teacher2000_seed4",)),
        ("six easy regions, CPU teacher seed 1, missing the gate", ("glyph_easy_tau0_seeds_cpu_teacher_seed1",)),
        ("six easy regions of 3 cells, teacher seed 0 (seeds 6-11 on a CPU)",
         ("glyph_easy_c3_tau0_seeds_teacher2000_seed0", "glyph_easy_c3_tau0_seeds_teacher2000_seed0_seeds6_11_cpu")),
        ("six easy regions of 3 cells, teacher seed 1 (seeds 6-11 on a CPU)",
         ("glyph_easy_c3_tau0_seeds_teacher2000_seed1", "glyph_easy_c3_tau0_seeds_teacher2000_seed1_seeds6_11_cpu")),
        ("six easy regions of 3 cells, teacher seed 2 (seeds 6-9 on a CPU)",
         ("glyph_easy_c3_tau0_seeds_teacher2000_seed2", "glyph_easy_c3_tau0_seeds_teacher2000_seed2_seeds6_9_cpu")),
        ("six easy regions of 8 cells, teacher seed 0", ("glyph_easy_c8_tau0_seeds_teacher2000_seed0",)),
        ("six easy regions of 8 cells, teacher seed 1", ("glyph_easy_c8_tau0_seeds_teacher2000_seed1",)),
        ("six easy regions of 8 cells, teacher seed 2", ("glyph_easy_c8_tau0_seeds_teacher2000_seed2",)),
        ("six easy regions of 8 cells, teacher seed 3", ("glyph_easy_c8_tau0_seeds_teacher2000_seed3",)),
        ("six easy regions of 8 cells, teacher seed 4", ("glyph_easy_c8_tau0_seeds_teacher2000_seed4",)),
        ("six easy regions of 8 cells, teacher seed 5, students on a CPU", ("glyph_easy_c8_tau0_seeds_teacher2000_seed5_cpu",)),
        ("six easy regions of 12 cells, teacher seed 0 (seeds 6-11 on a CPU)",
         ("glyph_easy_c12_tau0_seeds_teacher2000_seed0", "glyph_easy_c12_tau0_seeds_teacher2000_seed0_seeds6_11_cpu")),
        ("six easy regions of 12 cells, teacher seed 1 (seeds 0-9 on a CPU)",
         ("glyph_easy_c12_tau0_seeds_teacher2000_seed1_cpu", "glyph_easy_c12_tau0_seeds_teacher2000_seed1_seeds6_9_cpu")),
        ("tau = 0, noisy unseen tail", ("glyph_floor_tau0", "glyph_progress_floor")),
        ("tau = 0, blind unseen tail", ("glyph_blind_tau0",)),
        ("48 regions, tau = 0", ("glyph_map_tau0",)),
        ("48 regions, tau = 0.5", ("glyph_map_tau05", "glyph_map_tau05_seeds")),
        ("48 regions, tau = 1, first teacher", ("glyph_map_tau1",)),
        ("48 regions, tau = 1, teacher of 2000 steps", ("glyph_map_tau1_teacher2000",)),
        ("48 regions, tau = 1, second teacher of 2000", ("glyph_map_tau1_teacher2000_four",)),
    )
    reference: str = "region-uniform"


CONFIG = Config()
METHODS = {"aria": ("ARIA beta 1", "#c44e52", "o"), "aria-b2": ("ARIA beta 2", "#dd8452", "s"),
           "aria-text": ("ARIA beta 1, text signal", "#937860", "D"), "progress": ("progress policy", "#8172b2", "^")}


def cell_ratios(data_dir: str | Path | None, folders: tuple[str, ...], reference: str) -> pd.DataFrame:
    """Per student of METHODS in one cell (columns method, seed, ratio): its p(t)-weighted discrepancy
    on all regions over the ``reference`` student's of the same seed, from the cell's folders merged as
    the map's (fig_testbed_map.cell_summary); an empty frame without them."""
    rows = cell_summary(data_dir, folders)
    if rows is None:
        return pd.DataFrame(columns=["method", "seed", "ratio"])
    rows = rows[(rows["metric"] == MEASURED_METRIC) & (rows["group"] == "all")]
    ratios = seed_ratios(rows, reference=reference)
    ratios = ratios[ratios["method"].isin(list(METHODS))]
    return pd.DataFrame({"method": ratios["method"], "seed": ratios["seed"].astype(int), "ratio": ratios["ratio"]})


def interval(test: pd.Series) -> tuple[float, float]:
    """The two-sided 95% t-interval of the geometric-mean ratio of one row of ``paired_test`` (on ln
    ratio, its critical value): it leaves out 1 exactly where the row is ``significant``."""
    half = test["critical"] * test["sd_log"] / np.sqrt(test["seeds"])
    return float(np.exp(np.log(test["ratio"]) - half)), float(np.exp(np.log(test["ratio"]) + half))


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cells = [(label, cell_ratios(data_dir, folders, CONFIG.reference)) for label, folders in CONFIG.cells]
    cells = [(label, ratios) for label, ratios in cells if not ratios.empty]
    if not cells:
        raise FileNotFoundError("no test-bed cell with region-uniform runs under experiments/results (or --data)")
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(cells) + 1.4))
    for row, (label, ratios) in enumerate(cells):
        tests = paired_test(ratios).set_index("method")  # methods with 2 seeds or more
        present = [method for method in METHODS if method in tests.index]
        offsets = {method: 0.15 * (i - (len(present) - 1) / 2) for i, method in enumerate(present)}
        for method in present:
            name, colour, marker = METHODS[method]
            part, test = ratios[ratios["method"] == method], tests.loc[method]
            y = row + offsets[method]
            low, high = interval(test)
            ax.scatter(part["ratio"], np.full(len(part), y), s=9, color=colour, alpha=0.55, linewidths=0)
            ax.plot([low, high], [y, y], color=colour, lw=1.4)
            ax.scatter([test["ratio"]], [y], s=42, marker=marker, edgecolors=colour, linewidths=1.2, zorder=3,
                       facecolors=colour if test["significant"] else "white")
            ax.annotate(f"{len(part)}", (high, y), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=6, color=colour)
    ax.axvline(1, color="black", lw=0.8)
    ax.set_xscale("log")
    ticks = [0.8, 0.9, 1.0, 1.1, 1.2]
    ax.set_xticks(ticks, [f"{t:.1f}" for t in ticks], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_yticks(range(len(cells)), [label for label, _ in cells])
    ax.set_ylim(len(cells) - 0.5, -0.5)
    twelve = sum(not label.startswith("48 regions") for label, _ in cells)
    if 0 < twelve < len(cells):
        ax.axhline(twelve - 0.5, color="grey", lw=0.6, ls=":")
        ax.set_ylabel("12-region worlds above the dotted line, 48-region below")
    ax.set_xlabel("p(t)-weighted discrepancy, all regions, over region-uniform's on the same seed "
                  "(< 1: the policy better)")
    ax.set_title("Each policy against region-uniform, cell by cell: seeds (dots), geometric mean and 95% interval\n"
                 "(filled: the interval leaves out 1; small numbers: seeds)", pad=26)
    handles = [Line2D([], [], color=colour, marker=marker, markerfacecolor=colour, lw=1.4, label=name)
               for name, colour, marker in METHODS.values()]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_verdicts")
