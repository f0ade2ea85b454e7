"""Samples for unseen-region prompts in H100 experiment 2: teacher, RC and ARIA (seed 0).

One sample per unseen region (the first evaluated prompt of each; same prompt and seed in every
row), cropped from the evaluation's eval/grid_unseen.png, which `aria_train.diffusion.sampling.save_grid`
wrote with one row per model (teacher, then the students in results.json's order), a label column
of width 8 + 6 * (longest label) and images enlarged `scale` times with `pad` white pixels around
them. The label column is cut off and the rows are relabelled here. ARIA observes the switched
samples (the default). Data: experiments/results/world_h100_observe/eval (or --data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from paper_figures.common import experiment_dir, plt, save


@dataclass(frozen=True)
class Config:
    experiment: str = "world_h100_observe"
    rows: tuple = (("teacher", "teacher"), ("rc-seed0", "RC"), ("aria-seed0", "ARIA"))
    pad: int = 2  # save_grid's default, used by aria_train.evaluation.evaluate


CONFIG = Config()


def grid_rows(eval_dir: Path, pad: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """{model: its row of images without the label column} and the unseen regions' names."""
    results = json.loads((eval_dir / "results.json").read_text())
    labels = ["teacher", *results["students"]]
    grid = np.asarray(Image.open(eval_dir / "grid_unseen.png").convert("RGB"))
    # the tile size follows from the height (rows * (h + pad) + pad), so no scale is assumed
    h, rem = divmod(grid.shape[0] - pad, len(labels))
    h -= pad
    left = 8 + 6 * max(map(len, labels)) + pad
    cols, rem2 = divmod(grid.shape[1] - left, h + pad)  # square tiles
    if rem or rem2:
        raise ValueError(f"{eval_dir / 'grid_unseen.png'} {grid.shape} does not match save_grid's layout")
    rows = {label: grid[pad + r * (h + pad):pad + r * (h + pad) + h, left:left + cols * (h + pad) - pad]
            for r, label in enumerate(labels)}
    # one column per unseen region; the evaluation lists regions in id order (checked by eye
    # against the teacher row of the committed grid)
    per_region = next(iter(results["discrepancy"].values()))["per_region"]
    names = [r["region_name"] for r in sorted(per_region, key=lambda r: r["region"]) if r["group"] == "unseen"]
    return rows, names if len(names) == cols else [""] * cols


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cfg = CONFIG
    rows, names = grid_rows(experiment_dir(data_dir, cfg.experiment) / "eval", cfg.pad)
    tile = rows["teacher"].shape[0]
    fig, axes = plt.subplots(len(cfg.rows), 1, figsize=(5.2, 1.25 * len(cfg.rows) + 0.5), squeeze=False)
    for ax, (model, label) in zip(axes[:, 0], cfg.rows):
        ax.imshow(rows[model], interpolation="nearest")  # keep the pixels sharp; no smoothing
        ax.set_xticks(np.arange(len(names)) * (tile + cfg.pad) + tile / 2, names if ax is axes[0, 0] else [])
        ax.xaxis.tick_top()
        ax.tick_params(axis="x", length=0, labelsize=7.5)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle("unseen regions: teacher vs RC vs ARIA (seed 0)")
    fig.tight_layout()
    return save(fig, out_dir, "fig_experiment_samples")
