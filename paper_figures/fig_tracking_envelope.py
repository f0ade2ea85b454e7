"""Tracking error of the region tracker over time, inside its every-path, RMS and 95% bounds.

Setting: one region per path, observed every step, bounded noise (uniform on [-b, b], sd
sigma = 1, b = sqrt(3)) and the adversarial drift d_t = +-delta (delta = 0.01), the
tracker as used (a_n = max(1/n, a), a = the exact optimum a* of f). Bounds from
`aria_theory.bounds` for that step sequence: every path (docs/design.md §5.1), the exact worst-case RMS
(§5.2) and the sub-Gaussian 95% bound (§5.4, proxy sigma for uniform noise).
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
    paths: int = 2000
    steps: int = 300
    eta: float = 0.05
    seed: int = 0


CONFIG = Config()


def main(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    """Computes its data (a few seconds); `data_dir` is not used."""
    cfg = CONFIG
    rng = np.random.default_rng(cfg.seed)
    a = float(bounds.optimal_step(cfg.sigma, cfg.delta))
    noise = processes.Uniform(cfg.sigma)
    drift = processes.DRIFTS["constant_sign"](cfg.delta, 1 / a)
    truth, obs = processes.simulate(0.0, drift.sample(cfg.paths, cfg.steps, rng),
                                    noise.sample(cfg.paths, cfg.steps, rng))
    err = np.abs(processes.track(RegionTracker(cfg.paths, step=a), obs) - truth)
    t = np.arange(1, cfg.steps + 1)
    steps = bounds.tracker_steps(np.ones(cfg.steps, bool), a, running_mean_start=True)
    every_path = bounds.envelope(steps, cfg.delta, noise.bound)
    bias = bounds.envelope(steps, cfg.delta)
    _, second = bounds.worst_case_moments(cfg.steps, a, cfg.sigma, cfg.delta, running_mean_start=True)
    high_prob = bias + bounds.subgaussian_radius(bounds.noise_variance(steps, noise.subgaussian), cfg.eta)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for path in range(5):
        ax.plot(t, err[path], color="0.75", lw=0.5, label="|error|, 5 sample paths" if path == 0 else None)
    ax.plot(t, np.quantile(err, 1 - cfg.eta, axis=0), color="#dd8452", lw=1.5,
            label=f"measured {1 - cfg.eta:.0%} quantile of |error|")
    ax.plot(t, np.sqrt(np.square(err).mean(axis=0)), color="#4c72b0", lw=1.5, label="measured RMS error")
    ax.plot(t, every_path, color="k", lw=1.5, label="every-path bound (§5.1)")
    ax.plot(t, high_prob, color="#dd8452", ls="--", lw=1.5, label=f"{1 - cfg.eta:.0%} bound (§5.4)")
    ax.plot(t, np.sqrt(second), color="k", ls=(0, (2, 2)), lw=1.2, label="worst-case RMS (§5.2, exact)")
    ax.plot(t, bias, color="#55a868", ls=":", lw=1.5, label="drift part (lag) of the bounds")
    ax.set_ylim(0, 1.1 * every_path.max())
    ax.set_xlim(0, cfg.steps)
    ax.set_xlabel("time step t (one observation per step)")
    ax.set_ylabel("|estimate - true discrepancy|\n(discrepancy units)")
    ax.set_title(f"Tracker a_n = max(1/n, a), a = a* = {a:.3f}; uniform noise sd {cfg.sigma:g}, "
                 f"drift ±{cfg.delta:g}/step")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return save(fig, out_dir, "fig_tracking_envelope")
