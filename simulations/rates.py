"""Rates: measured tracking MSE against the step size, the observation probability and time.

Three Monte Carlo studies of `aria_theory.tracker.RegionTracker` (one region per path, so one
`update` per step moves all paths at once), each next to its theory from `aria_theory.bounds`
(docs/design.md §5, with the corrections in that module's docstring). Noise is Gaussian with sd
`sigma`; drift comes from `aria_theory.processes`.

1. Step size. Steady-state MSE against the step a over a range spanning both optima:
   * worst-case bounded drift (``constant_sign``: d_t = +-delta for all t): measured against
     f(a) = a sigma^2/(2-a) + (1-a)^2 delta^2/a^2, which it equals in steady state, with the
     exact minimiser of f, the closed form a* = (2 delta/sigma)^(2/3) and the minimax lower
     bound (no estimator does better in the worst case);
   * a bounded random walk (``random_walk``: d_t ~ U[-delta, delta], step variance
     q = delta^2/3): measured against the EMA's MSE [(1-a)^2 q + a^2 sigma^2]/[1 - (1-a)^2],
     minimal at the Kalman gain a = K with value K sigma^2.
   The tracker's running-mean start is discarded with a burn-in of `burn_in_taus`/a steps.
2. Observation probability. Each step observes each path with probability p; the step is
   tuned per p, a_o* = (2 delta/(p sigma))^(2/3); the error (measured at every step, seen or
   not) is compared with the exact steady-state MSE and should grow like p^(-2/3): the slope
   of log MSE on log p is fitted by least squares and reported.
3. Running mean under a trend (constant_sign drift): its MSE grows like delta^2 t^2/4 without
   bound, while the tracker with step a* stays at f(a*); theory from `running_mean_mse` and the
   exact `worst_case_moments`.

Outputs (tidy CSV, one row per measured point): rates_step.csv, rates_observation.csv,
rates_running_mean.csv, and rates_summary.csv (quantity, value) with the reference constants and
the fitted slope.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aria_theory import bounds, processes
from aria_theory.tracker import RegionTracker, RunningMeanTracker
from simulations.output import writable_folder


@dataclass(frozen=True)
class RatesConfig:
    """Model and Monte Carlo sizes; sigma, delta in discrepancy units (delta per step)."""

    sigma: float = 1.0
    delta: float = 0.01           # drift bound for the step-size and running-mean studies
    delta_p: float = 0.001        # drift bound for the observation-probability study
    paths: int = 1000
    window: int = 2000            # steps averaged after the burn-in
    burn_in_taus: float = 8.0     # burn-in = burn_in_taus / (p a) steps
    num_steps_grid: int = 13      # step sizes in the step-size sweep
    p_grid: tuple[float, ...] = (0.03, 0.06, 0.12, 0.25, 0.5, 1.0)
    running_mean_steps: int = 4000
    seed: int = 0


QUICK = RatesConfig(paths=200, window=1000, num_steps_grid=9, p_grid=(0.05, 0.1, 0.25, 0.5, 1.0),
                    running_mean_steps=2000)


def _measure(a: float, drift: processes.Drift, cfg: RatesConfig, rng: np.random.Generator,
             p: float = 1.0, paths: int | None = None) -> tuple[float, float]:
    """Steady-state MSE of RegionTracker(step a) and its standard error over paths."""
    paths = paths or cfg.paths
    burn = int(np.ceil(cfg.burn_in_taus / (p * a)))
    steps = burn + cfg.window
    noise = processes.Gaussian(cfg.sigma)
    truth, obs = processes.simulate(0.0, drift.sample(paths, steps, rng), noise.sample(paths, steps, rng))
    mask = None if p == 1 else processes.observation_mask(paths, steps, p, rng)
    if mask is not None:
        mask[:, 0] = True  # every path has an estimate from the first step on
    est = processes.track(RegionTracker(paths, step=a), obs, mask)
    sq = np.square(est[:, burn:] - truth[:, burn:]).mean(axis=1)
    return float(sq.mean()), float(sq.std(ddof=1) / np.sqrt(paths))


def random_walk_ema_mse(a: np.ndarray, q: float, sigma: float) -> np.ndarray:
    """Steady-state MSE of an EMA with step a for a random walk with step variance q:
    V = (1-a)^2 (V + q) + a^2 sigma^2, so V = [(1-a)^2 q + a^2 sigma^2] / [1 - (1-a)^2]."""
    a = np.asarray(a, float)
    return ((1 - a) ** 2 * q + a**2 * sigma**2) / (1 - (1 - a) ** 2)


def step_sweep(cfg: RatesConfig, rng: np.random.Generator) -> tuple[list[dict], dict]:
    sigma, delta = cfg.sigma, cfg.delta
    q = delta**2 / 3  # variance of U[-delta, delta]
    a_star = float(bounds.optimal_step(sigma, delta))
    gain = float(bounds.kalman_gain(q, sigma))
    grid = np.geomspace(gain / 3, min(0.9, 8 * a_star), cfg.num_steps_grid)
    rows = []
    for name, theory in (("constant_sign", lambda a: bounds.steady_state_mse(a, sigma, delta)),
                         ("random_walk", lambda a: random_walk_ema_mse(a, q, sigma))):
        drift = processes.DRIFTS[name](delta, 1.0)
        for a in grid:
            mse, se = _measure(float(a), drift, cfg, rng)
            rows.append({"drift": name, "a": float(a), "mse": mse, "se": se, "theory": float(theory(a))})
    summary = {
        "sigma": sigma, "delta": delta, "random_walk_q": q,
        "a_star_exact": a_star, "a_star_closed_form": float(bounds.optimal_step_closed_form(sigma, delta)),
        "f_at_a_star": float(bounds.steady_state_mse(a_star, sigma, delta)),
        "f_closed_form": float(bounds.optimal_mse_closed_form(sigma, delta)),
        "minimax_lower_bound": float(bounds.minimax_lower_bound(sigma, delta)),
        "minimax_bayes_lower_bound": float(bounds.minimax_bayes_lower_bound(sigma, delta)),
        "kalman_gain": gain, "kalman_mse": float(bounds.kalman_mse(q, sigma)),
    }
    for name in ("constant_sign", "random_walk"):
        best = min((r for r in rows if r["drift"] == name), key=lambda r: r["mse"])
        summary[f"measured_argmin_a_{name}"] = best["a"]
        summary[f"measured_min_mse_{name}"] = best["mse"]
    return rows, summary


def fit_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of log y on log x and its standard error (needs >= 3 points)."""
    (slope, _), cov = np.polyfit(np.log(x), np.log(y), 1, cov=True)
    return float(slope), float(np.sqrt(cov[0, 0]))


def observation_sweep(cfg: RatesConfig, rng: np.random.Generator) -> tuple[list[dict], dict]:
    sigma, delta = cfg.sigma, cfg.delta_p
    drift = processes.DRIFTS["constant_sign"](delta, 1.0)
    rows = []
    for p in cfg.p_grid:
        a = float(min(1.0, bounds.irregular_optimal_step_closed_form(sigma, delta, p)))
        mse, se = _measure(a, drift, cfg, rng, p=p)
        rows.append({"p": p, "a": a, "mse": mse, "se": se,
                     "theory": float(bounds.irregular_steady_mse(a, sigma, delta, p)),
                     "theory_approx": float(bounds.irregular_mse_approx(a, sigma, delta, p))})
    p = np.array([r["p"] for r in rows])
    slope, slope_se = fit_slope(p, np.array([r["mse"] for r in rows]))
    theory_slope, _ = fit_slope(p, np.array([r["theory"] for r in rows]))
    return rows, {"delta_p": delta, "p_slope": slope, "p_slope_se": slope_se,
                  "p_slope_theory": theory_slope, "p_slope_law": -2 / 3}


def running_mean_study(cfg: RatesConfig, rng: np.random.Generator) -> tuple[list[dict], dict]:
    sigma, delta, steps = cfg.sigma, cfg.delta, cfg.running_mean_steps
    paths = cfg.paths
    a_star = float(bounds.optimal_step(sigma, delta))
    drift = processes.DRIFTS["constant_sign"](delta, 1.0)
    truth, obs = processes.simulate(0.0, drift.sample(paths, steps, rng),
                                    processes.Gaussian(sigma).sample(paths, steps, rng))
    t = np.unique(np.geomspace(1, steps, 40).astype(int))  # observations so far
    _, ema_theory = bounds.worst_case_moments(steps, a_star, sigma, delta, running_mean_start=True)
    rows = []
    for name, tracker, theory in (
            ("running_mean", RunningMeanTracker(paths), bounds.running_mean_mse(np.arange(1, steps + 1), sigma, delta)),
            ("tracker_a_star", RegionTracker(paths, step=a_star), ema_theory)):
        err = processes.track(tracker, obs) - truth
        mse = np.square(err).mean(axis=0)
        for n in t:
            rows.append({"tracker": name, "t": int(n), "mse": float(mse[n - 1]), "theory": float(theory[n - 1])})
    last = {r["tracker"]: r["mse"] for r in rows if r["t"] == t[-1]}
    return rows, {"running_mean_final_mse": last["running_mean"], "tracker_final_mse": last["tracker_a_star"],
                  "running_mean_steps": steps}


def run_rates(cfg: RatesConfig) -> dict[str, object]:
    """All three studies; returns the row lists and the summary dict."""
    rng = np.random.default_rng(cfg.seed)
    step_rows, summary = step_sweep(cfg, rng)
    obs_rows, obs_summary = observation_sweep(cfg, rng)
    rm_rows, rm_summary = running_mean_study(cfg, rng)
    return {"step": step_rows, "observation": obs_rows, "running_mean": rm_rows,
            "summary": {**summary, **obs_summary, **rm_summary, "paths": cfg.paths, "seed": cfg.seed}}


def write_rates(result: dict[str, object], out_dir: Path) -> list[Path]:
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("step", "observation", "running_mean"):
        path = out_dir / f"rates_{name}.csv"
        pd.DataFrame(result[name]).to_csv(path, index=False, float_format="%.8g")
        paths.append(path)
    path = out_dir / "rates_summary.csv"
    pd.DataFrame(list(result["summary"].items()), columns=["quantity", "value"]).to_csv(
        path, index=False, float_format="%.8g")
    return paths + [path]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = RatesConfig()
    parser.add_argument("--sigma", type=float, default=d.sigma, help="noise sd (discrepancy units; default %(default)s)")
    parser.add_argument("--delta", type=float, default=d.delta,
                        help="drift bound per step for the step-size and running-mean studies (discrepancy units per step; "
                        "default %(default)s)")
    parser.add_argument("--delta-p", type=float, default=d.delta_p,
                        help="drift bound per step for the observation-probability study (discrepancy units per step; "
                        "default %(default)s)")
    # Default None = not given: --quick then supplies its value, and a flag given explicitly wins.
    parser.add_argument("--paths", type=int, default=None,
                        help=f"Monte Carlo paths (default {d.paths}; --quick: {QUICK.paths})")
    parser.add_argument("--window", type=int, default=None,
                        help=f"steps averaged after the burn-in (default {d.window}; --quick: {QUICK.window})")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed, >= 0 (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer paths, steps and grid points (seconds); --paths and --window given explicitly "
                        "keep their values")
    parser.add_argument("--out", type=Path, default=Path("results/rates"),
                        help="folder for the CSV outputs (default %(default)s)")


def rates_config(args: argparse.Namespace) -> RatesConfig:
    """The run's RatesConfig: the defaults (QUICK's with --quick), then every flag given explicitly.
    A value out of range is a ValueError naming the flag, raised before anything runs or is written."""
    for flag in ("sigma", "delta", "delta_p"):
        value = getattr(args, flag)
        if not 1e-100 <= value <= 1e100:  # squared and divided by one another: both must stay finite and > 0
            raise ValueError(f"--{flag.replace('_', '-')} must be a number in [1e-100, 1e100], got {value}")
    if args.paths is not None and args.paths < 2:
        raise ValueError(f"--paths must be >= 2, got {args.paths}")
    if args.window is not None and args.window < 1:
        raise ValueError(f"--window must be >= 1, got {args.window}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    given = {name: getattr(args, name) for name in ("paths", "window") if getattr(args, name) is not None}
    return dataclasses.replace(QUICK if args.quick else RatesConfig(), sigma=args.sigma, delta=args.delta,
                               delta_p=args.delta_p, seed=args.seed, **given)


def run(args: argparse.Namespace) -> int:
    cfg = rates_config(args)
    writable_folder(args.out)
    result = run_rates(cfg)
    for path in write_rates(result, args.out):
        print(f"wrote {path}")
    s = result["summary"]
    print(f"step size: exact a* = {s['a_star_exact']:.4g} (closed form {s['a_star_closed_form']:.4g}), "
          f"f(a*) = {s['f_at_a_star']:.4g}; measured argmin {s['measured_argmin_a_constant_sign']:.4g}, "
          f"min {s['measured_min_mse_constant_sign']:.4g}; minimax lower bound {s['minimax_lower_bound']:.4g} "
          f"(total variation), {s['minimax_bayes_lower_bound']:.4g} (Bayes risk of the two-point prior)")
    print(f"random walk: Kalman gain {s['kalman_gain']:.4g}, Kalman MSE {s['kalman_mse']:.4g}; "
          f"measured argmin {s['measured_argmin_a_random_walk']:.4g}, min {s['measured_min_mse_random_walk']:.4g}")
    print(f"observation probability: fitted slope of log MSE on log p = {s['p_slope']:.3f} "
          f"+- {s['p_slope_se']:.3f} (theory at the same points {s['p_slope_theory']:.3f}, law -2/3)")
    print(f"running mean after {s['running_mean_steps']} steps: MSE {s['running_mean_final_mse']:.4g} "
          f"vs tracker {s['tracker_final_mse']:.4g}")
    return 0
