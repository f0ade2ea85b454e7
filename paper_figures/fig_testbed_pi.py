"""Where ARIA sends the switched draws: its allocation pi summed per region group over training.

One panel per test-bed world (12 regions, Zipf 1.2; tau = 0, 0.5, 1, and tau = 0 with teacher
noise on the two unseen-tail regions, a floor of the training loss, or with them blind to the
student, a floor of the evaluated error: stage 2; then the 48-region worlds at tau = 0, 0.5 and 1), four panels
a row; solid: ARIA beta 1,
dashed: the progress policy where it ran; mean over 3 seeds. Thin dotted: the group's share under
region-uniform sampling (regions in the group / all regions). Data: the "pi" of every metrics record in
the committed experiments/results/<cell>/runs/<method>-seed<N>/metrics.jsonl, region groups from
the cell's eval/discrepancy.csv (or the same folders under --data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from paper_figures.common import experiment_dir, plt, save
from simulations.measured import region_groups

GROUP_COLOURS = {"head": "#4c72b0", "mid": "#8c8c8c", "under": "#dd8452", "unseen-head": "#55a868",
                 "unseen-tail": "#c44e52"}


@dataclass(frozen=True)
class Config:
    # panel title -> (experiment folder with aria runs, folder with progress runs or "")
    panels: tuple[tuple[str, str, str], ...] = (
        ("tau = 0", "glyph_demo_gpu", "glyph_progress_tau0"),
        ("tau = 0.5", "glyph_small_map_tau05", "glyph_progress_tau05"),
        ("tau = 1", "glyph_small_map_tau1", ""),
        ("tau = 0, noisy unseen-tail (floor)", "glyph_floor_tau0", "glyph_progress_floor"),
        ("tau = 0, blind unseen-tail (floor)", "glyph_blind_tau0", "glyph_blind_tau0"),
        ("tau = 0, 48 regions", "glyph_map_tau0", "glyph_map_tau0"),
        ("tau = 0.5, 48 regions", "glyph_map_tau05", ""),
        ("tau = 1, 48 regions", "glyph_map_tau1", ""),
    )
    seeds: tuple[int, ...] = (0, 1, 2)


CONFIG = Config()


def group_pi(folder: Path, method: str, seeds: tuple[int, ...], groups: pd.Series) -> pd.DataFrame | None:
    """Per logged step (index) and group (columns): pi summed over the group, mean over seeds."""
    per_seed = []
    for seed in seeds:
        metrics = folder / "runs" / f"{method}-seed{seed}" / "metrics.jsonl"
        if not metrics.is_file():
            continue
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        pi = pd.DataFrame([r["pi"] for r in records if "pi" in r], index=[r["step"] for r in records if "pi" in r])
        per_seed.append(pi.T.groupby(groups.to_numpy()).sum().T)
    return sum(per_seed) / len(per_seed) if per_seed else None


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    panels = [(title, experiment_dir(data_dir, aria), experiment_dir(data_dir, progress) if progress else None)
              for title, aria, progress in CONFIG.panels]
    panels = [p for p in panels if (p[1] / "eval" / "discrepancy.csv").is_file()]
    if not panels:
        raise FileNotFoundError("no test-bed experiment found under experiments/results (or --data)")
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, aria_dir, progress_dir) in zip(axes.flat, panels):
        groups = pd.Series(region_groups(aria_dir)).sort_index()
        for method, folder, style in (("aria", aria_dir, "-"), ("progress", progress_dir, "--")):
            pi = group_pi(folder, method, CONFIG.seeds, groups) if folder is not None else None
            if pi is None:
                continue
            for group in pi.columns:
                ax.plot(pi.index, pi[group], style, color=GROUP_COLOURS.get(group, "black"), lw=1.3,
                        label=f"{group} ({'ARIA' if method == 'aria' else 'progress'})")
        for group, count in groups.value_counts().items():
            ax.axhline(count / len(groups), color=GROUP_COLOURS.get(group, "black"), lw=0.6, ls=":")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
    for row in axes:
        row[0].set_ylabel("pi summed over the group")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=5, frameon=False, bbox_to_anchor=(0.5, 1 + 0.12 / rows),
               fontsize=7)
    fig.tight_layout()
    return save(fig, out_dir, "fig_testbed_pi")
