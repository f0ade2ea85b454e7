"""Steady-state tracking MSE against the step size a: measurement, theory, optima and the lower bound.

Two drifts of bound delta = 0.01 per step under Gaussian noise of sd sigma = 1 (docs/design.md §5.5-5.7):
the worst case d_t = +-delta, whose MSE is f(a) = a sigma^2/(2-a) + (1-a)^2 delta^2/a^2 (minimum
at the exact a*; the closed form (2 delta/sigma)^(2/3) is marked too), and a bounded random walk
(d_t ~ U[-delta, delta]) whose best linear tracker is the Kalman filter, an EMA with a = K. The
minimax lower bound holds for any estimator under the worst-case drift. Error bars: 2 standard
errors over paths. Data: rates_step.csv and rates_summary.csv of `aria sim rates`, else computed
on the quick settings of `simulations.rates`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import plt, read_csv, save
from simulations import rates

CONFIG = rates.QUICK


def load(data_dir: str | Path | None) -> tuple[pd.DataFrame, dict]:
    rows, summary = read_csv(data_dir, "rates_step.csv"), read_csv(data_dir, "rates_summary.csv")
    if rows is None or summary is None:
        step_rows, summary = rates.step_sweep(CONFIG, np.random.default_rng(CONFIG.seed))
        return pd.DataFrame(step_rows), summary
    return rows, dict(zip(summary["quantity"], summary["value"]))


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    rows, s = load(data_dir)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = {"constant_sign": ("#4c72b0", "worst-case drift ±δ"),
              "random_walk": ("#55a868", "random-walk drift U[-δ, δ]")}
    for drift, (colour, name) in styles.items():
        d = rows[rows["drift"] == drift].sort_values("a")
        a_fine = np.geomspace(d["a"].min(), d["a"].max(), 200)
        theory = (rates.bounds.steady_state_mse(a_fine, s["sigma"], s["delta"]) if drift == "constant_sign"
                  else rates.random_walk_ema_mse(a_fine, s["random_walk_q"], s["sigma"]))
        ax.plot(a_fine, theory, color=colour, lw=1.3,
                label=f"{name}: theory" + (" f(a)" if drift == "constant_sign" else " (EMA)"))
        ax.errorbar(d["a"], d["mse"], yerr=2 * d["se"], fmt="o", ms=4, color=colour, mfc="white",
                    label=f"{name}: measured")
    ax.axvline(s["a_star_exact"], color="#4c72b0", ls="--", lw=1, label=f"exact a* = {s['a_star_exact']:.3f}")
    ax.axvline(s["a_star_closed_form"], color="#4c72b0", ls=":", lw=1,
               label=f"closed form (2δ/σ)^(2/3) = {s['a_star_closed_form']:.3f}")
    ax.axhline(s["minimax_lower_bound"], color="#c44e52", ls="-.", lw=1,
               label=f"minimax lower bound, ±δ drift (any estimator) = {s['minimax_lower_bound']:.3f}")
    ax.axvline(s["kalman_gain"], color="#55a868", ls="--", lw=1, label=f"Kalman gain K = {s['kalman_gain']:.4f}")
    ax.axhline(s["kalman_mse"], color="#55a868", ls=":", lw=1, label=f"Kalman MSE K σ² = {s['kalman_mse']:.4f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tracker step a (per observation, log scale)")
    ax.set_ylabel("steady-state MSE of the estimate\n(discrepancy units², log scale)")
    ax.set_title(f"MSE vs step size: noise sd σ = {s['sigma']:g}, drift bound δ = {s['delta']:g} per step")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    return save(fig, out_dir, "fig_step_size")
