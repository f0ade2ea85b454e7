"""Does ARIA's gain over balancing grow with the difficulty gap? Teacher by teacher, on the easy-regions worlds.

The worlds with six easy regions of twelve (tau = 0): an easy region's glyph is one world-wide template except on
``easy_cells`` cells of its own: 3 of 16 (glyph_small_easy_c3.json, the largest gap), 4 (glyph_small_easy.json),
8 (glyph_small_easy_c8.json, a smaller gap) or 12 (glyph_small_easy_c12.json, the smallest). x = how far a
teacher's easy regions are from the hard ones for a student that draws every region equally: the easy regions'
mean p(t)-weighted discrepancy over the hard regions' mean, for the region-uniform students (mean over seeds;
1 = no gap). y = a policy's p(t)-weighted discrepancy on all regions over region-uniform's on the same seed:
small markers, one teacher's geometric mean over its seeds with the 95% t-interval over those seeds (hollow
grey: teachers that miss the gate in a region, left out of the cells' tests); large markers, a cell's
geometric mean over its gate-passing teachers at their mean x, with the 95% t-interval over the teachers' means
(one replicate per teacher, so a teacher's own effect is noise; with two or three teachers the interval is wide
and may run off the axes). Black dashes: a teacher's headroom, the best
split of the draws under the power law fitted to its own students (simulations.headroom: the gain that draws
alone could explain, by that model). Grey dashed line: the least-squares line of ln ratio on the gap over every
gate-passing teacher of all cells, with Pearson's r (scripts/gap_gain_relation.py tests it with gap and ratio
from disjoint seeds). The 12-region tau = 0 world without easy regions (one teacher, its seeds merged as in
fig_testbed_verdicts) is drawn at x = 1. Data: the committed
experiments/results/<folder>/ (eval/summary.csv, eval/discrepancy.csv, world.json), or the same under --data.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from aria_train.evaluation.allocation_split import paired_test
from aria_train.worlds.glyph.codes import easy_layout
from aria_train.worlds.kinds import load_world_config
from paper_figures.common import experiment_dir, plt, save
from paper_figures.fig_testbed_verdicts import METHODS, cell_ratios, interval
from simulations.headroom import POLICIES, cell_headroom

REFERENCE = "region-uniform"


@dataclass(frozen=True)
class Config:
    # (cell label, colour, marker, ((experiment folder, passes the gate), ...)): one folder per teacher and
    # student set (a teacher whose students ran in two folders gives two entries)
    cells: tuple[tuple[str, str, str, tuple[tuple[str, bool], ...]], ...] = (
        ("easy regions own 3 cells of 16", "#55a868", "^", (
            ("glyph_easy_c3_tau0_seeds_teacher2000_seed0", True), ("glyph_easy_c3_tau0_seeds_teacher2000_seed1", True),
            ("glyph_easy_c3_tau0_seeds_teacher2000_seed2", True))),
        ("easy regions own 4 cells of 16", "#c44e52", "o", (
            ("glyph_easy_tau0_seeds_teacher2000", True), ("glyph_easy_tau0_seeds_cpu_teacher", True),
            ("glyph_easy_tau0_seeds_teacher2000_seed1", True), ("glyph_easy_tau0_seeds_teacher2000_seed2", True),
            ("glyph_easy_tau0_seeds_teacher2000_seed2_cpu_b2", True), ("glyph_easy_tau0_seeds_teacher2000_seed3", True),
            ("glyph_easy_tau0_seeds_teacher1000", False), ("glyph_easy_tau0_seeds_teacher2000_seed4", False),
            ("glyph_easy_tau0_seeds_cpu_teacher_seed1", False))),
        ("easy regions own 8 cells of 16", "#4c72b0", "s", (
            ("glyph_easy_c8_tau0_seeds_teacher2000_seed0", True), ("glyph_easy_c8_tau0_seeds_teacher2000_seed1", True),
            ("glyph_easy_c8_tau0_seeds_teacher2000_seed2", True), ("glyph_easy_c8_tau0_seeds_teacher2000_seed3", True),
            ("glyph_easy_c8_tau0_seeds_teacher2000_seed4", True),
            ("glyph_easy_c8_tau0_seeds_teacher2000_seed5_cpu", True))),
        ("easy regions own 12 cells of 16", "#8172b2", "D", (
            ("glyph_easy_c12_tau0_seeds_teacher2000_seed0", True),
            ("glyph_easy_c12_tau0_seeds_teacher2000_seed1_cpu", True))),
    )
    # the world without easy regions, drawn at x = 1 (its folders merged, one teacher)
    no_gap: tuple[str, ...] = ("glyph_demo_gpu", "glyph_text_signal_tau0", "glyph_progress_tau0",
                               "glyph_progress_tau0_seeds", "glyph_aria_tau0_seeds", "glyph_tau0_seeds_7_10")
    methods: tuple[str, ...] = ("aria", "aria-b2")


CONFIG = Config()


def easy_and_hard(folder: Path, seeds: Collection[int] | None = None) -> tuple[float, float]:
    """The easy regions' and the other regions' mean p(t)-weighted discrepancy, for the region-uniform students
    of an experiment folder on a world with easy regions (eval/discrepancy.csv; mean over seeds, or over
    ``seeds`` only)."""
    config = load_world_config(folder / "world.json")
    easy = easy_layout(config)[0]
    rows = pd.read_csv(folder / "eval" / "discrepancy.csv")
    rows = rows[(rows["t"] == "pt") & rows["model"].str.startswith(f"{REFERENCE}-seed")]
    if seeds is not None:
        rows = rows[rows["model"].isin([f"{REFERENCE}-seed{seed}" for seed in seeds])]
    if rows.empty:
        raise FileNotFoundError(f"{folder}: no {REFERENCE} students (of these seeds) in eval/discrepancy.csv")
    by_kind = rows.groupby(rows["region"].isin(easy))["discrepancy"].mean()
    return float(by_kind[True]), float(by_kind[False])


def difficulty_gap(folder: Path, seeds: Collection[int] | None = None) -> float:
    """The easy regions' mean p(t)-weighted discrepancy over the other regions' mean (``easy_and_hard``)."""
    easy, hard = easy_and_hard(folder, seeds)
    return easy / hard


def teacher_headroom(folders: list[Path], seeds: Collection[int] | None = None,
                     fit_on: Collection[str] = POLICIES) -> tuple[float, float]:
    """(headroom, alpha) of one teacher's experiment folders (a cell: folders run beside the first on its world):
    the best split of the draws under the power law fitted to the students of ``fit_on`` (simulations.headroom;
    geometric mean of best_over_uniform over seeds) and the law's exponent, from ``seeds``' students only if
    given; (nan, nan) without the runs, whose metrics hold the draws."""
    if not all((folder / "runs").is_dir() for folder in folders):
        return np.nan, np.nan
    model = cell_headroom(folders, seeds, fit_on)
    return float(np.exp(np.log(model["best_over_uniform"]).mean())), float(model["alpha"].iloc[0])


def teacher_points(data_dir: str | Path | None, folders: tuple[tuple[str, bool], ...]) -> pd.DataFrame:
    """Per (folder, method): x (difficulty_gap), the paired test over its seeds (ratio, interval), the gate,
    and the headroom (``teacher_headroom``)."""
    rows = []
    for name, passes in folders:
        folder = experiment_dir(data_dir, name)
        if not (folder / "eval" / "discrepancy.csv").is_file():
            continue
        gap = difficulty_gap(folder)
        best, _ = teacher_headroom([folder])
        tests = paired_test(cell_ratios(data_dir, (name,), REFERENCE))
        for _, test in tests.iterrows():
            low, high = interval(test)
            rows.append({"folder": name, "method": test["method"], "gap": gap, "ratio": test["ratio"],
                         "low": low, "high": high, "passes": passes, "headroom": best})
    return pd.DataFrame(rows)


def cell_point(points: pd.DataFrame) -> tuple[float, float, float, float] | None:
    """(mean x, geometric mean ratio, 95% interval) over the gate-passing teachers of one cell and method: the
    paired test with one replicate per teacher (its geometric mean over seeds); None with fewer than 2."""
    kept = points[points["passes"]]
    tests = paired_test(kept[["method", "ratio"]])
    if tests.empty:
        return None
    low, high = interval(tests.iloc[0])
    return float(kept["gap"].mean()), float(tests.iloc[0]["ratio"]), low, high


def gap_gain_fit(gap: np.ndarray, log_ratio: np.ndarray) -> tuple[float, float, float, float]:
    """(slope, intercept, r, p) of the least-squares line of ln ratio on the gap over teachers, with Pearson's r and
    its two-sided p (r = 0): how a teacher's gain follows its own gap (scripts/gap_gain_relation.py)."""
    from scipy.stats import pearsonr

    slope, intercept = np.polyfit(gap, log_ratio, 1)
    r, p = pearsonr(gap, log_ratio)
    return float(slope), float(intercept), float(r), float(p)


RATIO_LABEL = "p(t)-weighted discrepancy, all regions,\nover region-uniform's on the same seed (< 1: better)"


def ratio_axis(ax, method: str) -> None:
    """A panel's y: a policy's ratio to region-uniform on a log scale, 1 marked, titled by the policy."""
    ax.axhline(1, color="black", lw=0.8)
    ax.set_yscale("log")
    ticks = [0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1]
    ax.set_yticks(ticks, [f"{t:.2f}" for t in ticks])
    ax.set_yticks([], minor=True)
    ax.set_ylim(0.78, 1.12)  # a cell of two teachers has a wide interval: its bar runs off the axes
    ax.set_title(f"{METHODS[method][0]} over region-uniform")


def cell_handles(cells: list) -> list[Line2D]:
    """Legend entries of the cells (label, colour, marker, ...), one marker each."""
    return [Line2D([], [], color=colour, marker=marker, lw=0, markersize=8, label=label)
            for label, colour, marker, *_ in cells]


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cells = [(label, colour, marker, teacher_points(data_dir, folders))
             for label, colour, marker, folders in CONFIG.cells]
    cells = [cell for cell in cells if not cell[3].empty]
    if not cells:
        raise FileNotFoundError("no easy-regions experiment under experiments/results (or --data)")
    no_gap = paired_test(cell_ratios(data_dir, CONFIG.no_gap, REFERENCE)).set_index("method")
    fig, axes = plt.subplots(1, len(CONFIG.methods), figsize=(5.2 * len(CONFIG.methods), 4.6), sharey=True,
                             squeeze=False)
    for ax, method in zip(axes[0], CONFIG.methods):
        passing = pd.concat([points for *_, points in cells]).query("passes and method == @method")
        if len(passing) >= 3:
            slope, intercept, r, p = gap_gain_fit(passing["gap"].to_numpy(), np.log(passing["ratio"].to_numpy()))
            xs = np.linspace(passing["gap"].min(), passing["gap"].max(), 2)
            ax.plot(xs, np.exp(intercept + slope * xs), color="dimgrey", lw=1.2, ls="--", zorder=2)
            ax.text(0.03, 0.04, f"grey line: least squares of ln ratio on the gap over\n{len(passing)} gate-passing "
                    f"teachers, r = {r:.2f}, p = {p:.3f}", transform=ax.transAxes, fontsize=8, color="dimgrey")
        for label, colour, marker, points in cells:
            points = points[points["method"] == method]
            for _, p in points.iterrows():
                face, edge = (colour, colour) if p["passes"] else ("white", "grey")
                ax.plot([p["gap"], p["gap"]], [p["low"], p["high"]], color=edge, lw=0.8, alpha=0.6)
                ax.scatter([p["gap"]], [p["ratio"]], s=22, marker=marker, facecolors=face, edgecolors=edge,
                           alpha=0.8, zorder=3)
                ax.scatter([p["gap"]], [p["headroom"]], s=60, marker="_", color="black", linewidths=1.2, zorder=3)
            summary = cell_point(points)
            if summary is not None:
                x, ratio, low, high = summary
                ax.plot([x, x], [low, high], color=colour, lw=2.4, alpha=0.5)
                ax.scatter([x], [ratio], s=110, marker=marker, color=colour, edgecolors="black", linewidths=0.8,
                           zorder=4)
        if method in no_gap.index:
            test = no_gap.loc[method]
            low, high = interval(test)
            ax.plot([1, 1], [low, high], color="black", lw=2.4, alpha=0.4)
            ax.scatter([1], [test["ratio"]], s=80, marker="X", color="black", zorder=4)
        ratio_axis(ax, method)
        ax.set_xlim(0.25, 1.08)
        ax.set_xlabel("easy regions' discrepancy over the hard ones' at equal draws\n(region-uniform students; 1: no gap)")
    axes[0][0].set_ylabel(RATIO_LABEL)
    handles = cell_handles(cells) + [
        Line2D([], [], color="grey", marker="o", markerfacecolor="white", lw=0, label="teacher missing the gate"),
        Line2D([], [], color="black", marker="X", lw=0, markersize=8, label="no easy regions (one teacher)"),
        Line2D([], [], color="black", marker="_", lw=0, markersize=9, markeredgewidth=1.2,
               label="best split under the fitted power law")]
    fig.suptitle("Gain over balancing against the difficulty gap: small markers one teacher (6 seeds, 95% interval), "
                 "large ones a cell over its teachers", y=0.99, fontsize=10)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.84))
    return save(fig, out_dir, "fig_gap_map")
