"""The test bed's map: each method's p(t)-weighted discrepancy over RC's against the transfer knob tau.

One panel per region group; x = tau (the fraction of glyph cells shared between regions: 0 = no
transfer, 1 = fully compositional), on the 12-region glyph worlds at Zipf 1.2. Filled markers:
the trainer (per seed, the method's group mean over RC's on the same seed; mean +- sd over 3
seeds). Open markers, dashed: the allocation simulator's prediction for the same world and
methods (5 seeds). Below 1: better than RC. Data: the committed experiments/results/<cell>/eval/
summary.csv of every map cell (MAP_CELLS) and glyph_map_sim/measured_vs_predicted.csv, written by
`aria sim allocation --measured ...` (docs/test_bed.md, "The map"), or the same folders under --data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from paper_figures.common import experiment_dir, plt, save
from simulations.measured import MEASURED_METRIC, seed_ratios


@dataclass(frozen=True)
class Config:
    # tau -> experiment folders under experiments/results (later ones: runs made after the cell, beside its rc)
    cells: tuple[tuple[float, tuple[str, ...]], ...] = (
        (0.0, ("glyph_demo_gpu", "glyph_text_signal_tau0", "glyph_progress_tau0")),
        (0.5, ("glyph_small_map_tau05", "glyph_progress_tau05")),
        (1.0, ("glyph_small_map_tau1",)),
    )
    predicted: str = "glyph_map_sim"  # folder of measured_vs_predicted.csv


CONFIG = Config()
GROUPS = ("head", "under", "unseen-tail", "unseen-head", "all", "weighted")
# progress: the fixed policy's runs (glyph_progress_*), which replace glyph_demo_gpu's older ones
METHODS = {"region-uniform": ("region-uniform", "#55a868"), "aria": ("ARIA beta 1", "#c44e52"),
           "aria-b2": ("ARIA beta 2", "#dd8452"), "aria-text": ("ARIA beta 1, text signal", "#937860"),
           "progress": ("progress policy", "#8172b2")}


def cell_summary(data_dir: str | Path | None, names: tuple[str, ...]) -> pd.DataFrame | None:
    """The eval/summary.csv rows of one cell's experiment folders ``names``: the first folder's, where a
    later folder's students (runs made after the cell, e.g. a revised policy or more seeds) replace
    those of the same name and add the others, its rc students left out (a cell's rc are its first
    folder's); None when the first folder has no summary."""
    folders = [experiment_dir(data_dir, name) / "eval" / "summary.csv" for name in names]
    if not folders[0].is_file():
        return None
    rows = pd.read_csv(folders[0])
    for later in (pd.read_csv(f) for f in folders[1:] if f.is_file()):
        later = later[~later["model"].str.startswith("rc-seed")]
        rows = pd.concat([rows[~rows["model"].isin(set(later["model"]))], later])
    return rows


def map_ratios(data_dir: str | Path | None, cells: tuple[tuple[float, tuple[str, ...]], ...],
               knob: str = "tau") -> pd.DataFrame:
    """Per (knob value, method, group) of ``cells`` (Config.cells' form, keyed by the value of the
    world's ``knob``, a column of the result): mean and sd over seeds of the ratio to RC's on the same seed.
    Cells whose folders are missing are left out; later folders of a cell (runs made after the
    cell, e.g. a revised policy) borrow the rc students of its first folder and replace the
    students of the same name there."""
    frames = []
    for value, names in cells:
        rows = cell_summary(data_dir, names)
        if rows is None:
            continue
        ratios = seed_ratios(rows[rows["metric"] == MEASURED_METRIC])
        stats = ratios.groupby(["method", "group"])["ratio"].agg(mean="mean", sd="std").reset_index()
        frames.append(stats.assign(**{knob: value}))
    if not frames:
        raise FileNotFoundError("no map cell found under experiments/results (or --data)")
    return pd.concat(frames, ignore_index=True)


def predictions(data_dir: str | Path | None, folder: str, cells: tuple[tuple[float, tuple[str, ...]], ...],
                knob: str = "tau"):
    """The simulator's predictions (``folder``/measured_vs_predicted.csv, written by `aria sim
    allocation --measured`) for the experiments of ``cells``, with each row's value of ``knob`` (read
    from its scenario, e.g. "testbed:k=12:s=1.2:tau=0"); None without the file."""
    path = experiment_dir(data_dir, folder) / "measured_vs_predicted.csv"
    if not path.is_file():
        return None
    predicted = pd.read_csv(path)
    predicted = predicted[predicted["experiment"].isin({name for _, names in cells for name in names})]
    values = predicted["scenario"].str.extract(rf":{knob}=([0-9.]+)")[0].astype(float)
    return predicted.assign(**{knob: values})


def finish_tau_axes(axes, groups: tuple[str, ...], ticks: tuple[float, ...] = (0, 0.5, 1),
                    xlabel: str = "tau (shared fraction of the glyph)") -> None:
    """A grid of ratio-to-RC panels against a world knob (tau unless told): the RC line, group
    titles, the knob's ticks, axis labels."""
    margin = 0.1 * (max(ticks) - min(ticks))
    for ax, group in zip(axes.flat, groups):
        ax.axhline(1.0, color="#4c72b0", lw=1)
        ax.set_title(group)
        ax.set_xticks(list(ticks))
        ax.set_xlim(min(ticks) - margin, max(ticks) + margin)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel("p(t)-weighted discrepancy / RC's")


def plot_ratios(axes, groups: tuple[str, ...], methods: dict, measured: pd.DataFrame, predicted, knob: str = "tau",
                spacing: float = 0.02, center: float = 1.5) -> None:
    """One panel per group: each method's measured ratio to RC (filled, solid, sd bars) and, where
    ``predicted`` has it, the simulator's (open, dashed), against ``knob``. Method i is shifted by
    (i - center) * spacing, so that error bars at the same knob value stay readable."""
    for ax, group in zip(axes.flat, groups):
        for i, (method, (label, colour)) in enumerate(methods.items()):
            rows = measured[(measured["method"] == method) & (measured["group"] == group)].sort_values(knob)
            if rows.empty:
                continue
            offset = (i - center) * spacing
            ax.errorbar(rows[knob] + offset, rows["mean"], rows["sd"], fmt="o-", color=colour, ms=4, lw=1.2,
                        capsize=2, label=f"{label}, trainer")
            if predicted is not None:
                p = predicted[(predicted["method"] == method) & (predicted["group"] == group)]
                p = p.groupby(knob)["predicted"].mean().sort_index()
                if p.empty:  # no simulator counterpart (the text signal)
                    continue
                ax.plot(p.index + offset, p.to_numpy(), "o--", mfc="none", color=colour, ms=4, lw=0.8,
                        label=f"{label}, simulator")


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    measured = map_ratios(data_dir, CONFIG.cells)
    predicted = predictions(data_dir, CONFIG.predicted, CONFIG.cells)
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    plot_ratios(axes, GROUPS, METHODS, measured, predicted)
    finish_tau_axes(axes, GROUPS)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 1.06))
    fig.suptitle("Test bed map (12 regions, Zipf 1.2): below the blue line a method beats RC", y=1.1)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_map")
