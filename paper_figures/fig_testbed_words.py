"""Does the transfer knob move the trainer once the prompt names the glyph's parts? Two glyph world families.

One panel per region group; x = tau (the fraction of glyph cells shared between regions of the
same part). Solid, filled: the map's worlds, whose region word names no part (one made-up word
per region), so nothing can transfer through the text. Dotted, squares: the same worlds with
`word_parts` (the region word is two words, one per part, e.g. "tegiz govok"), so a shared cell
comes with a shared word. Trainer: per seed, the method's p(t)-weighted group mean over RC's on the
same seed; mean +- sd over 3 seeds. Grey dashed, open: the allocation simulator's ARIA prediction
(it models the shared cells as transferring through the text whatever the prompt says, so it is
the same for both families). Below 1: better than RC. Data: the committed experiments/results/
<cell>/eval/summary.csv (Config) and glyph_map_sim/measured_vs_predicted.csv, or --data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paper_figures.common import plt, save
from paper_figures.fig_testbed_map import finish_tau_axes, map_ratios, predictions


@dataclass(frozen=True)
class Config:
    # tau -> experiment folders under experiments/results, as fig_testbed_map.Config.cells
    cells: tuple[tuple[float, tuple[str, ...]], ...] = (
        (0.0, ("glyph_demo_gpu",)), (0.5, ("glyph_small_map_tau05",)), (1.0, ("glyph_small_map_tau1",)))
    word_cells: tuple[tuple[float, tuple[str, ...]], ...] = (
        (0.0, ("glyph_words_map_tau0",)), (0.5, ("glyph_words_map_tau05",)), (1.0, ("glyph_words_map_tau1",)))
    predicted: str = "glyph_map_sim"  # folder of measured_vs_predicted.csv


CONFIG = Config()
GROUPS = ("head", "under", "unseen-tail", "unseen-head", "all", "weighted")
METHODS = {"region-uniform": ("region-uniform", "#55a868"), "aria": ("ARIA beta 1", "#c44e52")}
FAMILIES = (("cells", "words name no part", "o-"), ("word_cells", "words name the parts", "s:"))


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    measured = {key: map_ratios(data_dir, getattr(CONFIG, key)) for key, _, _ in FAMILIES}
    predicted = predictions(data_dir, CONFIG.predicted, CONFIG.cells)  # the first family's: the simulator's are the same
    if predicted is not None:
        predicted = predicted[predicted["method"] == "aria"]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    for ax, group in zip(axes.flat, GROUPS):
        for i, (method, (label, colour)) in enumerate(METHODS.items()):
            for j, (key, family, style) in enumerate(FAMILIES):
                rows = measured[key]
                rows = rows[(rows["method"] == method) & (rows["group"] == group)].sort_values("tau")
                offset = (2 * i + j - 1.5) * 0.02  # side by side at each tau, so error bars stay readable
                ax.errorbar(rows["tau"] + offset, rows["mean"], rows["sd"], fmt=style, color=colour, ms=4,
                            lw=1.2, capsize=2, label=f"{label}, {family}")
        if predicted is not None:
            p = predicted[predicted["group"] == group].groupby("tau")["predicted"].mean().sort_index()
            ax.plot(p.index, p.to_numpy(), "o--", mfc="none", color="#7f7f7f", ms=4, lw=0.8,
                    label="ARIA beta 1, simulator")
    finish_tau_axes(axes, GROUPS)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.07))
    fig.suptitle("Test bed: prompts that name the glyph's parts against prompts that do not (12 regions, Zipf 1.2)",
                 y=1.11)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_words")
