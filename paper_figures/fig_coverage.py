"""High-probability bounds hold: measured violation rate against the nominal failure probability eta.

The tracker as used (a_n = max(1/n, a*), a* the exact optimum for sigma = 1, delta = 0.01) under
the worst-case drift d_t = +-delta and four noise families of sd 1. For sub-Gaussian noise
(Gaussian, uniform, Rademacher) the bound is the sub-Gaussian one of docs/design.md §5.4; for the
heavy-tailed but bounded clipped Cauchy it is Freedman's (bounded noise); both with the drift
part and the noise variance of the realised step sequence (`aria_theory.bounds`). A bound holds
when its violation rate stays below eta (the diagonal). Left: at the last step, against eta.
Right: at every step, for eta = 0.05. Zero violations are drawn at 1/paths (open triangles on
the left; the floor of the curves on the right).
Computes its data (seconds).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aria_theory import bounds, processes
from aria_theory.tracker import RegionTracker
from paper_figures.common import plt, save


@dataclass(frozen=True)
class Config:
    sigma: float = 1.0
    delta: float = 0.01
    paths: int = 40000
    steps: int = 150
    etas: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)
    eta_over_time: float = 0.05
    seed: int = 0


CONFIG = Config()
NOISES = {"gaussian": "#4c72b0", "uniform": "#55a868", "rademacher": "#8172b2", "clipped_cauchy": "#c44e52"}


def radius(noise: processes.Noise, steps: np.ndarray, eta: float) -> np.ndarray:
    """Noise part of the high-probability bound at each step: sub-Gaussian when the noise is
    sigma-sub-Gaussian, else Freedman with its bound b (sharper than Hoeffding's proxy b)."""
    if noise.subgaussian == noise.sigma:
        return bounds.subgaussian_radius(bounds.noise_variance(steps, noise.subgaussian), eta)
    return bounds.freedman_radius(bounds.noise_variance(steps, noise.sigma),
                                  bounds.max_coefficient(steps) * noise.bound, eta)


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    """Computes its data; `data_dir` is not used."""
    cfg = CONFIG
    rng = np.random.default_rng(cfg.seed)
    a = float(bounds.optimal_step(cfg.sigma, cfg.delta))
    steps = bounds.tracker_steps(np.ones(cfg.steps, bool), a, running_mean_start=True)
    bias = bounds.envelope(steps, cfg.delta)
    t = np.arange(1, cfg.steps + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    for name, colour in NOISES.items():
        noise = processes.NOISES[name](cfg.sigma)
        drift = processes.DRIFTS["constant_sign"](cfg.delta, 1 / a)
        truth, obs = processes.simulate(0.0, drift.sample(cfg.paths, cfg.steps, rng),
                                        noise.sample(cfg.paths, cfg.steps, rng))
        err = np.abs(processes.track(RegionTracker(cfg.paths, step=a), obs) - truth)
        kind = "Freedman" if name == "clipped_cauchy" else "sub-Gaussian"
        rate = np.array([(err[:, -1] > bias[-1] + radius(noise, steps, eta)[-1]).mean() for eta in cfg.etas])
        _plot_rates(left, np.array(cfg.etas), rate, cfg.paths, colour, f"{name} ({kind})")
        over_time = (err > bias + radius(noise, steps, cfg.eta_over_time)).mean(axis=0)
        right.plot(t, np.maximum(over_time, 1.0 / cfg.paths), color=colour, lw=1.2)
    grid = np.array([min(cfg.etas), max(cfg.etas)])
    left.plot(grid, grid, color="k", lw=1, ls="--", label="nominal: rate = η")
    right.axhline(cfg.eta_over_time, color="k", lw=1, ls="--")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_ylim(0.5 / cfg.paths, 1.0)
        ax.set_ylabel(f"fraction of {cfg.paths} paths with |error| > bound")
    left.set_xscale("log")
    left.set_xlabel(f"nominal failure probability η (log scale); measured at step {cfg.steps}")
    right.set_xlabel("time step t (dashed: nominal η)")
    left.set_title("Violation rate vs η at the last step")
    right.set_title(f"Violation rate over time, η = {cfg.eta_over_time:g}")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=5, frameon=False)
    fig.suptitle(f"High-probability bounds (§5.4), tracker a* = {a:.3f}, noise sd {cfg.sigma:g}, "
                 f"drift ±{cfg.delta:g}/step", y=1.02)
    fig.tight_layout()
    return save(fig, out_dir, "fig_coverage")


def _plot_rates(ax, x: np.ndarray, rate: np.ndarray, paths: int, colour: str, label: str) -> None:
    """Rates on a log axis; zero counts are drawn at 1/paths as open triangles."""
    zero = rate == 0
    ax.plot(x[~zero], rate[~zero], "o-", color=colour, ms=4, lw=1.2, label=label)
    ax.plot(x[zero], np.full(zero.sum(), 1.0 / paths), "v", color=colour, mfc="white", ms=5)
