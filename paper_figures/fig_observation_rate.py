"""Tracking error against the probability p that a region is observed per step: the p^(-2/3) law.

Worst-case drift d_t = +-delta (delta = 0.001 per step), Gaussian noise sd sigma = 1; each step
observes the region with probability p and the tracker's step is tuned per p,
a_o* = (2 delta/(p sigma))^(2/3) (docs/design.md §5.8). The error is measured at every step, observed or
not. Dots: Monte Carlo with 2 standard errors; line: exact steady-state MSE at a_o*; dotted: the
design's approximation a sigma^2/2 + delta^2/(a p)^2; dashed: the exact MSE with the step tuned
for p = 1 and kept (it grows like p^-2). The slope of log MSE on log p is fitted to the dots.
Data: rates_observation.csv and rates_summary.csv of `aria sim rates`, else computed on the quick
settings of `simulations.rates`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import plt, read_csv, save
from simulations import rates

CONFIG = rates.QUICK


def load(data_dir: str | Path | None) -> tuple[pd.DataFrame, dict]:
    rows, summary = read_csv(data_dir, "rates_observation.csv"), read_csv(data_dir, "rates_summary.csv")
    if rows is None or summary is None:
        obs_rows, summary = rates.observation_sweep(CONFIG, np.random.default_rng(CONFIG.seed))
        return pd.DataFrame(obs_rows), {**summary, "sigma": CONFIG.sigma}
    return rows, dict(zip(summary["quantity"], summary["value"]))


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    rows, s = load(data_dir)
    rows = rows.sort_values("p")
    sigma, delta = s["sigma"], s["delta_p"]
    p_fine = np.geomspace(rows["p"].min(), 1.0, 200)
    a_fine = np.minimum(1.0, rates.bounds.irregular_optimal_step_closed_form(sigma, delta, p_fine))
    a_fixed = float(rates.bounds.irregular_optimal_step_closed_form(sigma, delta, 1.0))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(p_fine, rates.bounds.irregular_steady_mse(a_fine, sigma, delta, p_fine), color="#4c72b0", lw=1.3,
            label="theory: exact steady-state MSE at a_o*(p)")
    ax.plot(p_fine, rates.bounds.irregular_mse_approx(a_fine, sigma, delta, p_fine), color="#4c72b0", ls=":",
            lw=1.3, label="design approximation aσ²/2 + δ²/(ap)²")
    ax.plot(p_fine, rates.bounds.irregular_steady_mse(a_fixed, sigma, delta, p_fine), color="0.4", ls="--", lw=1,
            label=f"theory, step fixed at a_o*(1) = {a_fixed:.3f} (not retuned)")
    ax.errorbar(rows["p"], rows["mse"], yerr=2 * rows["se"], fmt="o", ms=5, color="#4c72b0", mfc="white",
                label="measured, step a_o*(p)")
    slope, slope_se = s["p_slope"], s["p_slope_se"]
    anchor = rows["mse"].iloc[-1] * (p_fine / rows["p"].iloc[-1]) ** slope
    ax.plot(p_fine, anchor, color="#c44e52", lw=1, alpha=0.8,
            label=f"fitted slope {slope:.3f} ± {slope_se:.3f} (law: -2/3)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.5 * rows["mse"].min(), 4 * rows["mse"].max())
    ax.set_xlabel("observation probability p per step (log scale)")
    ax.set_ylabel("steady-state MSE over all steps\n(discrepancy units², log scale)")
    ax.set_title(f"Error vs observation rate: σ = {sigma:g}, drift ±δ = {delta:g} per step")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    return save(fig, out_dir, "fig_observation_rate")
