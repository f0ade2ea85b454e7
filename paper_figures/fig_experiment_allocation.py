"""ARIA's allocation and what its tracker believes, per region group, in H100 experiment 2 (seed 0).

Columns: ARIA whose tracker observes only the switched samples (those that showed a drawn prompt,
the default) and ARIA observing every non-null sample. Top: pi summed over each group's regions,
stacked; dashed lines mark the same boundaries for RC's shares of the drawn prompts (from the RC
run's switched_region_counts over the whole run). During the warm-up pi is RC's shares. Bottom:
the tracker's estimate averaged over each group (solid; timestep-normalised, 1 = average) and the
held-out relative discrepancy averaged over each group (markers, dashed; every 100 steps, 1 = mean
over held-out prompts). Data: runs/*-seed0/metrics.jsonl and eval/results.json of
experiments/results/world_h100_observe (or --data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import GROUP_COLOURS, experiment_dir, plt, save


@dataclass(frozen=True)
class Config:
    experiment: str = "world_h100_observe"
    runs: tuple = (("aria-seed0", "ARIA, observes switched samples"),
                   ("aria-observe-all-seed0", "ARIA, observes all samples"))
    reference: str = "rc-seed0"
    groups: tuple = ("seen", "unseen", "under")


CONFIG = Config()
GROUP_NAMES = {"seen": "seen", "unseen": "unseen", "under": "underrepresented"}


def colour(group: str) -> str:
    return GROUP_COLOURS["underrep" if group == "under" else group]  # common.py names it "underrep"


def region_groups(folder: Path) -> np.ndarray:
    """Group of each region id, from the evaluation's per-region records."""
    results = json.loads((folder / "eval" / "results.json").read_text())
    per_region = next(iter(results["discrepancy"].values()))["per_region"]
    groups = pd.Series({r["region"]: r["group"] for r in per_region}).sort_index()
    return groups.to_numpy()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_group(records: list[dict], key: str, groups: np.ndarray, how: str) -> pd.DataFrame:
    """One row per record that has `key`: its per-region list summed or averaged within each group
    (null entries, e.g. regions the tracker has not observed yet, are left out of the mean)."""
    rows = {}
    for rec in records:
        if rec.get(key) is None:
            continue
        values = np.array([np.nan if v is None else v for v in rec[key]], dtype=float)
        reduce = np.nansum if how == "sum" else np.nanmean
        rows[rec["step"]] = {g: reduce(values[groups == g]) if np.isfinite(values[groups == g]).any() else np.nan
                             for g in dict.fromkeys(groups)}
    return pd.DataFrame.from_dict(rows, orient="index")


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    cfg = CONFIG
    folder = experiment_dir(data_dir, cfg.experiment)
    groups = region_groups(folder)
    rc = read_metrics(folder / "runs" / cfg.reference / "metrics.jsonl")
    drawn = np.sum([r["switched_region_counts"] for r in rc], axis=0)
    rc_share = {g: drawn[groups == g].sum() / drawn.sum() for g in cfg.groups}
    uniform_share = {g: np.mean(groups == g) for g in cfg.groups}  # region-uniform, for the caption
    fig, axes = plt.subplots(2, len(cfg.runs), figsize=(10, 6.6), sharex=True, sharey="row", squeeze=False,
                             gridspec_kw={"height_ratios": [1.2, 1]})
    for col, (run, title) in enumerate(cfg.runs):
        records = read_metrics(folder / "runs" / run / "metrics.jsonl")
        top, bottom = axes[:, col]
        pi = by_group(records, "pi", groups, "sum")[list(cfg.groups)]
        top.stackplot(pi.index, pi.to_numpy().T, colors=[colour(g) for g in cfg.groups],
                      labels=[GROUP_NAMES[g] for g in cfg.groups], alpha=0.85, lw=0)
        # RC's stack boundaries, drawn where pi's boundaries are so the two read alike
        boundary = 0.0
        for g in cfg.groups[:-1]:
            boundary += rc_share[g]
            top.axhline(boundary, color="k", ls="--", lw=1)
        top.set_ylim(0, 1)
        top.set_title(title)
        final = pi.iloc[-20:].mean()  # the last 200 steps, to quote alongside RC's shares
        top.text(0.98, 0.04, "\n".join(["share: π over the last 200 steps | RC",
                                        *(f"{GROUP_NAMES[g]}: {final[g]:.1%} | {rc_share[g]:.1%}" for g in cfg.groups)]),
                 transform=top.transAxes, ha="right", va="bottom", fontsize=7,
                 bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 2})

        estimates = by_group(records, "estimates", groups, "mean")
        heldout = by_group(records, "heldout", groups, "mean")
        for g in cfg.groups:
            bottom.plot(estimates.index, estimates[g], color=colour(g), lw=1.3,
                        label=f"{GROUP_NAMES[g]}: tracker estimate")
            bottom.plot(heldout.index, heldout[g], color=colour(g), ls="--", marker="o", ms=4, lw=1,
                        label=f"{GROUP_NAMES[g]}: held-out")
        bottom.axhline(1, color="0.5", lw=0.8)
        bottom.set_xlabel("training step")
    axes[0, 0].set_ylabel("allocation π of drawn prompts\n(summed per group, stacked)")
    axes[1, 0].set_ylabel("relative discrepancy, group mean\n(1 = average)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="k", ls="--", lw=1))
    labels.append("RC's shares (group boundaries)")
    axes[0, -1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    axes[1, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.suptitle("experiment 2, seed 0 (region-uniform shares would be "
                 + ", ".join(f"{GROUP_NAMES[g]} {uniform_share[g]:.0%}" for g in cfg.groups) + ")", fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "fig_experiment_allocation")
