"""Does ARIA's gain over balancing follow a teacher's headroom? The teachers of fig_gap_map, on another x.

x = a teacher's headroom (fig_gap_map.teacher_headroom): the best split of the switched draws under the power law
D_k = c_k s_k^-alpha fitted to its own students, over region-uniform's mean (simulations.headroom; < 1: some
split beats region-uniform). It combines what the difficulty gap measures (how far the regions' levels c_k
spread) with how much the regions respond to draws (alpha, 0.05-0.61 over these teachers), which the gap leaves
out. y = a policy's p(t)-weighted discrepancy on all regions over region-uniform's on the same seed, each gate-
passing teacher's geometric mean over its seeds with the 95% t-interval over those seeds, marked by world as in
fig_gap_map. Grey dashed line: the least-squares line of ln ratio on ln headroom over the teachers, with Pearson's
r; dotted: ratio = headroom (a policy that reached the best split and nothing else). Alpha is read from the
policies' own students, so the headroom is a property of the teacher measured through ARIA;
scripts/gap_gain_relation.py tests it with headroom and ratio from disjoint seeds and against the gap.
Black-edged white stars: ARIA-free forecasts (CONFIG.forecasts; gap_gain_relation.py --forecast), a teacher
drawn at the headroom fitted on its region-uniform students against RC students of the same seeds alone (no
tracking policy's student), at its ratio over all its seeds: where the grey line meets that x is the forecast.
Data: the committed experiments/results/<folder>/ (eval/, runs/*/metrics), or the same under --data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from aria_train.evaluation.allocation_split import paired_test
from paper_figures.common import experiment_dir, plt, save
from paper_figures.fig_gap_map import CONFIG as GAP_MAP
from paper_figures.fig_gap_map import (RATIO_LABEL, REFERENCE, cell_handles, gap_gain_fit, ratio_axis, teacher_headroom,
                                      teacher_points)
from paper_figures.fig_testbed_verdicts import cell_ratios, interval

C3, C12 = "glyph_easy_c3_tau0_seeds_teacher2000", "glyph_easy_c12_tau0_seeds_teacher2000"


@dataclass(frozen=True)
class Config:
    # the teachers and their cells: fig_gap_map's
    cells: tuple = GAP_MAP.cells
    methods: tuple[str, ...] = GAP_MAP.methods
    # ARIA-free forecasts: (headroom cell: a folder of region-uniform students and one of rc students of the same
    # seeds; the teacher's folders whose ratios over all their seeds are measured)
    forecasts: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
        (("glyph_easy_tau0",), ("glyph_easy_tau0",)),  # the first six-easy teacher: RC among its students
        ((f"{C12}_seed1_cpu", f"{C12}_seed1_cpu_rc"), (f"{C12}_seed1_cpu", f"{C12}_seed1_seeds6_9_cpu")),
        ((f"{C12}_seed0_seeds6_11_cpu", f"{C12}_seed0_seeds6_11_cpu_rc"), (f"{C12}_seed0", f"{C12}_seed0_seeds6_11_cpu")),
        ((f"{C3}_seed1_seeds6_11_cpu", f"{C3}_seed1_seeds6_11_cpu_rc"), (f"{C3}_seed1", f"{C3}_seed1_seeds6_11_cpu")),
    )


CONFIG = Config()


def forecast_points(data_dir: str | Path | None) -> pd.DataFrame:
    """Per forecast of CONFIG whose folders are there, and method: the ARIA-free headroom (alpha fitted on
    region-uniform's students against rc's alone) and the paired test over the teacher's seeds (ratio, interval)."""
    rows = []
    for cell, folders in CONFIG.forecasts:
        paths = [experiment_dir(data_dir, name) for name in cell]
        if not all((path / "eval" / "discrepancy.csv").is_file() for path in paths):
            continue
        best, _ = teacher_headroom(paths, fit_on=(REFERENCE,))
        for _, test in paired_test(cell_ratios(data_dir, folders, REFERENCE)).iterrows():
            low, high = interval(test)
            rows.append({"teacher": folders[0], "method": test["method"], "headroom": best, "ratio": test["ratio"],
                         "low": low, "high": high})
    return pd.DataFrame(rows, columns=["teacher", "method", "headroom", "ratio", "low", "high"])


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cells = [(label, colour, marker, teacher_points(data_dir, folders).query("passes"))
             for label, colour, marker, folders in CONFIG.cells]
    cells = [(label, colour, marker, points.dropna(subset=["headroom"])) for label, colour, marker, points in cells]
    cells = [cell for cell in cells if not cell[3].empty]
    if not cells:
        raise FileNotFoundError("no easy-regions experiment with its runs under experiments/results (or --data)")
    forecasts = forecast_points(data_dir)
    fig, axes = plt.subplots(1, len(CONFIG.methods), figsize=(5.2 * len(CONFIG.methods), 4.6), sharey=True,
                             squeeze=False)
    for ax, method in zip(axes[0], CONFIG.methods):
        teachers = pd.concat([points for *_, points in cells]).query("method == @method")
        low = min(teachers["headroom"].min(), forecasts["headroom"].min()) if len(forecasts) else teachers["headroom"].min()
        xs = np.array([low, 1.0]) if len(teachers) else np.array([0.9, 1.0])
        ax.plot(xs, xs, color="black", lw=0.8, ls=":", zorder=2)
        if len(teachers) >= 3:
            slope, intercept, r, p = gap_gain_fit(np.log(teachers["headroom"].to_numpy()),
                                                  np.log(teachers["ratio"].to_numpy()))
            ax.plot(xs, np.exp(intercept) * xs ** slope, color="dimgrey", lw=1.2, ls="--", zorder=2)
            ax.text(0.03, 0.96, f"grey line: least squares of ln ratio on ln headroom over\n{len(teachers)} "
                    f"gate-passing teachers: ratio = {np.exp(intercept):.3f} x headroom^{slope:.2f},\n"
                    f"r = {r:.2f}, p = {p:.2g}", transform=ax.transAxes, fontsize=8, color="dimgrey", va="top")
        for label, colour, marker, points in cells:
            for _, point in points[points["method"] == method].iterrows():
                ax.plot([point["headroom"]] * 2, [point["low"], point["high"]], color=colour, lw=0.8, alpha=0.6)
                ax.scatter([point["headroom"]], [point["ratio"]], s=30, marker=marker, color=colour, alpha=0.85,
                           zorder=3)
        for _, point in forecasts[forecasts["method"] == method].iterrows():
            ax.plot([point["headroom"]] * 2, [point["low"], point["high"]], color="black", lw=0.8, alpha=0.6)
            ax.scatter([point["headroom"]], [point["ratio"]], s=110, marker="*", facecolors="white",
                       edgecolors="black", linewidths=0.9, zorder=4)
        ratio_axis(ax, method)
        ax.set_xlabel("teacher's headroom: best split of the draws over region-uniform\n"
                      "(power law fitted to its students; 1: no split beats uniform)")
    axes[0][0].set_ylabel(RATIO_LABEL)
    handles = cell_handles(cells) + [
        Line2D([], [], color="black", ls=":", lw=0.8, label="ratio = headroom"),
        Line2D([], [], color="black", marker="*", markerfacecolor="white", markersize=11, lw=0,
               label="ARIA-free headroom (RC and region-uniform only), all seeds")]
    fig.suptitle("Gain over balancing against the teacher's headroom: one marker a teacher (its seeds' geometric "
                 "mean, 95% interval)", y=0.99, fontsize=10)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return save(fig, out_dir, "fig_headroom_map")
