"""A running mean does not track a trend: its MSE grows like t^2 while the constant-step tracker's stays flat.

Worst-case drift d_t = +-delta (delta = 0.01 per step), Gaussian noise sd sigma = 1, one
observation per step. Running mean: a_n = 1/n, theory delta^2 (t-1)^2/4 + sigma^2/t (its lag
grows without bound, docs/design.md §5.8). Tracker: a_n = max(1/n, a*), theory the exact worst-case
second moment. Data: rates_running_mean.csv of `aria sim rates`, else computed on the quick
settings of `simulations.rates`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import plt, read_csv, save
from simulations import rates

CONFIG = rates.QUICK


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    rows, summary = read_csv(data_dir, "rates_running_mean.csv"), read_csv(data_dir, "rates_summary.csv")
    if rows is None or summary is None:
        rows = pd.DataFrame(rates.running_mean_study(CONFIG, np.random.default_rng(CONFIG.seed))[0])
        sigma, delta = CONFIG.sigma, CONFIG.delta
    else:
        s = dict(zip(summary["quantity"], summary["value"]))
        sigma, delta = s["sigma"], s["delta"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names = {"running_mean": ("#c44e52", "running mean (a_n = 1/n)"),
             "tracker_a_star": ("#4c72b0", "ARIA tracker (a_n = max(1/n, a*))")}
    for tracker, (colour, name) in names.items():
        d = rows[rows["tracker"] == tracker].sort_values("t")
        ax.plot(d["t"], d["theory"], color=colour, lw=1.3, label=f"{name}: theory")
        ax.plot(d["t"], d["mse"], "o", ms=3.5, color=colour, mfc="white", label=f"{name}: measured")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("observations t (one per step, log scale)")
    ax.set_ylabel("MSE of the estimate\n(discrepancy units², log scale)")
    ax.set_title(f"Tracking a linear trend of {delta:g} per step in Gaussian noise of sd {sigma:g}")
    ax.legend(loc="upper left")
    return save(fig, out_dir, "fig_running_mean")
