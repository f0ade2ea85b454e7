"""Check the tracker's error bounds (docs/design.md §5) by Monte Carlo over drift, noise, step, p.

Every grid cell (step a, noise sd sigma, drift bound delta, observation probability p, drift
process, noise family, tracker start) runs one `aria_theory.tracker.RegionTracker` with one
region per path (initial estimate = m_0 = 0), each region observed with probability p per step,
and checks each bound of `aria_theory.bounds` whose assumptions hold in that cell:

  every_path       |e_t| <= envelope over the realised steps (bounded noise), all paths and steps
  mse              E e_T^2 <= exact worst-case second moment (any drift independent of the noise)
  rmse_adaptive    sqrt(E e_T^2) <= bias + noise sd (Minkowski; p = 1, where steps are fixed)
  steady_state     E e_T^2 <= f(a) (p = 1) or the exact irregular steady state (constant start,
                   e_0 = 0, from where the worst-case MSE rises monotonically to it)
  subgaussian      P(|e_T| > bound) <= eta (sub-Gaussian noise; per path, given the steps)
  freedman         P(|e_T| > bound) <= eta (bounded noise)
  *_all            the same with ln(2 K T/eta') for all K paths and T steps at once
  slope_every_path |theta^ - d| <= slope_every_path_bound at every observation (bounded noise):
                   theta^ = (S(y) - F(y))/(S(z) - F(z)) from the tracker (step a) and a slow
                   tracker (step a/4) fed y and z = observation index, the quantity ProgressPolicy
                   tracks; d the latest increment; gamma = the drift's slope_bound (p = 1 and the
                   running-mean start only: the slope is per observation)
  slope_mse        E (theta^ - d)^2 <= slope_mse_bound at the last step (same cells, any noise)

"start" is the tracker's step rule: running_mean (a_n = max(1/n, a), the default tracker) or
constant (a from the first observation; the closed forms of §5 apply). With p < 1 the bounds
that depend on the steps use each path's realised observation times; a path never observed by
step T has no estimate and is left out of the checks at T.

Monte Carlo tolerance: the run's family-wise false-failure rate is --alpha, split evenly
(Bonferroni) over all its checks; each check fails only if its evidence against the bound is
significant at that level. every_path and slope_every_path are exact (tolerance 1e-9, float
rounding only); mse, slope_mse, rmse_adaptive and steady_state use a one-sided t-test on the mean
squared error (Student's t, n - 1 degrees of freedom; all noise families have finite fourth moments);
subgaussian and freedman count
paths outside the bound at eta and fail if the binomial tail P(Binomial(n, eta) >= count) is
below the level; *_all are computed at eta' = the level itself and fail on any violation. So a
correct tracker fails a run (exit status 1) with probability at most --alpha (up to the t-tests'
approximation, which errs towards passing for right-skewed squares); the per-check level is printed
with the summary.

Columns of results.csv: the cell, bound, measured, bound_value, ratio = measured/bound_value
(for per-path bounds: the path at the worst ratio, or at the (1 - eta) quantile of the ratios),
violations (paths or path-steps outside the bound; for the mean-square bounds 1 if the measured
mean exceeds it), trials (paths or path-steps), p_value (of the check's test), passed.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aria_theory import bounds, slope_bounds
from aria_theory.processes import DRIFTS, NOISES, observation_mask, simulate, track
from aria_theory.tracker import RegionTracker
from simulations.output import writable_folder

BOUNDS = ("every_path", "mse", "rmse_adaptive", "steady_state", "subgaussian", "subgaussian_all",
          "freedman", "freedman_all", "slope_every_path", "slope_mse")
ROUNDING = 1e-9  # relative tolerance of the exact every-path bound
SLOW_RATIO = 4  # the slope rows pair the tracker (step a) with a slow tracker of step a / SLOW_RATIO


@dataclass(frozen=True)
class BoundsCheckConfig:
    steps_a: tuple[float, ...] = (0.02, 0.1, 0.5)
    sigmas: tuple[float, ...] = (0.5, 2.0)
    deltas: tuple[float, ...] = (0.005, 0.05, 0.5)
    probs: tuple[float, ...] = (1.0, 0.2)
    drifts: tuple[str, ...] = tuple(DRIFTS)
    noises: tuple[str, ...] = tuple(NOISES)
    starts: tuple[str, ...] = ("running_mean", "constant")
    paths: int = 1000
    steps: int = 400
    seed: int = 0
    alpha: float = 1e-3
    eta: float = 0.05

    def cells(self) -> list[dict]:
        keys = ("a", "sigma", "delta", "p", "drift", "noise", "start")
        grid = (self.steps_a, self.sigmas, self.deltas, self.probs, self.drifts, self.noises, self.starts)
        return [dict(zip(keys, values)) for values in itertools.product(*grid)]


QUICK = dict(steps_a=(0.05, 0.3), sigmas=(1.0,), deltas=(0.01, 0.2), probs=(1.0, 0.3), paths=400, steps=200)


def applicable(cell: dict) -> list[str]:
    """The bounds whose assumptions hold in a cell (all drifts here are independent of the noise)."""
    noise = NOISES[cell["noise"]](cell["sigma"])
    bounded, subgaussian = noise.bound is not None, noise.subgaussian is not None
    slope = cell["p"] == 1.0 and cell["start"] == "running_mean"  # the slope is per observation
    rules = {"every_path": bounded, "mse": True, "rmse_adaptive": cell["p"] == 1.0,
             "steady_state": cell["start"] == "constant", "subgaussian": subgaussian,
             "subgaussian_all": subgaussian, "freedman": bounded, "freedman_all": bounded,
             "slope_every_path": slope and bounded, "slope_mse": slope}
    return [name for name in BOUNDS if rules[name]]


@functools.lru_cache(maxsize=None)
def _worst_case_mse(n_steps: int, a: float, sigma: float, delta: float, p: float, start: str) -> float:
    return float(bounds.worst_case_moments(n_steps, a, sigma, delta, p, 0.0, start == "running_mean")[1][-1])


def _t_test(squares: np.ndarray, bound: float) -> tuple[float, float]:
    """(measured mean, one-sided p-value of 'mean square > bound'): Student's t with n - 1 degrees of
    freedom. Not the normal distribution: with few paths the sample sd is often tiny, and a z-test
    rejected correct bounds at p ~ 1e-158 (--paths 2). Squares are right-skewed, which makes the t
    statistic left-skewed, so this upper-tail test errs on the side of passing."""
    from scipy import stats
    mean, sd = squares.mean(), squares.std(ddof=1)
    if sd == 0:
        return mean, float(mean <= bound)
    return mean, float(stats.t.sf((mean - bound) / (sd / np.sqrt(squares.size)), squares.size - 1))


def _row(name, measured, bound_value, violations, trials, p_value, level) -> dict:
    return {"bound": name, "measured": measured, "bound_value": bound_value,
            "ratio": measured / bound_value,
            "violations": int(violations), "trials": int(trials), "p_value": p_value, "passed": p_value >= level}


def _worst(err: np.ndarray, bound: np.ndarray, tol: np.ndarray | float = 0.0) -> tuple[float, float, int]:
    """|e| and bound at the largest ratio, and the number of entries with |e| > bound + tol (NaN
    errors, where there is no estimate, are skipped)."""
    ratio = np.abs(err) / bound
    i = np.unravel_index(np.nanargmax(ratio), ratio.shape)
    return float(abs(err[i])), float(bound[i]), int(np.sum(np.abs(err) > bound + tol))


def _quantile(err: np.ndarray, bound: np.ndarray, eta: float) -> tuple[float, float, int]:
    """|e| and bound of the path at the (1 - eta) quantile of |e|/bound, and the count outside."""
    order = np.argsort(np.abs(err) / bound)
    i = order[int(np.ceil((1 - eta) * err.size)) - 1]
    return float(abs(err[i])), float(bound[i]), int(np.sum(np.abs(err) > bound))


def check_cell(cell: dict, config: BoundsCheckConfig, index: int, level: float) -> list[dict]:
    """Simulate one cell and evaluate its applicable bounds; one row per bound."""
    from scipy import stats
    rng = np.random.default_rng([config.seed, index])
    a, sigma, delta, p = cell["a"], cell["sigma"], cell["delta"], cell["p"]
    n_paths, n_steps, eta = config.paths, config.steps, config.eta
    noise = NOISES[cell["noise"]](sigma)
    increments = DRIFTS[cell["drift"]](delta, 1 / a).sample(n_paths, n_steps, rng)
    truth, obs = simulate(0.0, increments, noise.sample(n_paths, n_steps, rng))
    observed = observation_mask(n_paths, n_steps, p, rng)
    running_mean_start = cell["start"] == "running_mean"
    tracker = RegionTracker(n_paths, step=a, initial=0.0, running_mean_start=running_mean_start)
    err = track(tracker, obs, observed) - truth  # NaN before a path's first observation
    steps = bounds.tracker_steps(observed if p < 1 else observed[:1], a, running_mean_start)  # p = 1: one row
    drift_part = np.broadcast_to(bounds.envelope(steps, delta), err.shape)
    var = np.broadcast_to(bounds.noise_variance(steps, sigma), err.shape)
    final = ~np.isnan(err[:, -1])
    e_final, n = err[final, -1], int(final.sum())
    n_estimated = int(np.sum(~np.isnan(err)))

    rows = []
    for name in applicable(cell):
        if name.startswith("slope_"):  # _slope_rows below
            continue
        if name == "every_path":
            env = np.broadcast_to(bounds.envelope(steps, delta, noise.bound), err.shape)
            tol = ROUNDING * (env + np.abs(truth) + np.abs(obs))
            m, b, k = _worst(err, env, tol)
            rows.append(_row(name, m, b, k, n_estimated, float(k == 0), level))
        elif name in ("mse", "rmse_adaptive", "steady_state"):
            bound = {"mse": lambda: _worst_case_mse(n_steps, a, sigma, delta, p, cell["start"]),
                     "rmse_adaptive": lambda: (drift_part[0, -1] + np.sqrt(var[0, -1])) ** 2,
                     "steady_state": lambda: float(bounds.irregular_steady_mse(a, sigma, delta, p))}[name]()
            m, p_value = _t_test(e_final**2, bound)
            if name == "rmse_adaptive":
                m, bound = np.sqrt(m), np.sqrt(bound)
            rows.append(_row(name, float(m), float(bound), m > bound, n, p_value, level))
        elif name in ("subgaussian", "freedman"):
            if name == "subgaussian":
                radius = bounds.subgaussian_radius(bounds.noise_variance(steps, noise.subgaussian)[..., -1], eta)
            else:
                radius = bounds.freedman_radius(var[:, -1] if p < 1 else var[0, -1],
                                                bounds.max_coefficient(steps)[..., -1] * noise.bound, eta)
            bound = np.broadcast_to(drift_part[:, -1] + radius, (n_paths,))[final]
            m, b, k = _quantile(e_final, bound, eta)
            rows.append(_row(name, m, b, k, n, float(stats.binom.sf(k - 1, n, eta)), level))
        else:  # *_all: union over paths and steps at eta' = level
            events = n_paths * n_steps
            if name == "subgaussian_all":
                radius = bounds.subgaussian_radius(bounds.noise_variance(steps, noise.subgaussian), level, events)
            else:
                radius = bounds.freedman_radius(var, bounds.max_coefficient(steps) * noise.bound, level, events)
            bound = np.broadcast_to(drift_part + radius, err.shape)
            m, b, k = _worst(err, bound)
            rows.append(_row(name, m, b, k, n_estimated, 1.0 if k == 0 else 0.0, level))
    if any(name.startswith("slope_") for name in applicable(cell)):
        rows += _slope_rows(cell, increments, obs, noise, level)
    return [{**cell, **row} for row in rows]


def _two_tracker_slope(obs: np.ndarray, a: float) -> np.ndarray:
    """theta^ = (S(y) - F(y)) / (S(z) - F(z)) with z = observation index, from two RegionTrackers
    (steps a and a / SLOW_RATIO) fed y and z side by side, as ProgressPolicy does; NaN while the
    two coincide (both still running means)."""
    n_paths, n_steps = obs.shape
    fast, slow = RegionTracker(2 * n_paths, step=a), RegionTracker(2 * n_paths, step=a / SLOW_RATIO)
    ids = np.arange(2 * n_paths)
    slope = np.empty((n_paths, n_steps))
    for t in range(n_steps):
        values = np.concatenate([obs[:, t], np.full(n_paths, float(t))])
        fast.update(ids, values)
        slow.update(ids, values)
        diff = slow.estimates - fast.estimates
        with np.errstate(invalid="ignore", divide="ignore"):
            slope[:, t] = np.where(diff[n_paths:] != 0, diff[:n_paths] / diff[n_paths:], np.nan)
    return slope


def _slope_rows(cell: dict, increments: np.ndarray, obs: np.ndarray, noise, level: float) -> list[dict]:
    """slope_every_path: |theta^_n - d_{n-1}| <= slope_bounds.slope_every_path_bound at every observation;
    slope_mse: E (theta^_N - d_{N-1})^2 <= slope_bounds.slope_mse_bound (t-test), with gamma the drift's
    slope_bound and the target the latest increment (the drift into the current observation)."""
    a, sigma, delta = cell["a"], cell["sigma"], cell["delta"]
    gamma = DRIFTS[cell["drift"]](delta, 1 / a).slope_bound
    n_steps = obs.shape[1]
    observed = np.ones(n_steps, bool)
    steps = bounds.tracker_steps(observed, a), bounds.tracker_steps(observed, a / SLOW_RATIO)
    err = _two_tracker_slope(obs, a) - increments  # column t: target d_t, t >= 1
    err[:, 0] = np.nan  # one observation: no slope
    rows = []
    for name in applicable(cell):
        if name == "slope_every_path":
            bound = np.broadcast_to(slope_bounds.slope_every_path_bound(*steps, delta, gamma, noise.bound), err.shape)
            scale = slope_bounds.slope_every_path_bound(*steps, 0.0, 0.0, 1.0) * np.abs(obs).max() + np.abs(increments)
            m, b, k = _worst(err, bound, ROUNDING * (bound + scale))
            rows.append(_row(name, m, b, k, int(np.sum(~np.isnan(err))), float(k == 0), level))
        elif name == "slope_mse":
            bound = float(slope_bounds.slope_mse_bound(*steps, sigma, delta, gamma)[-1])
            m, p_value = _t_test(err[:, -1] ** 2, bound)
            rows.append(_row(name, float(m), bound, m > bound, err.shape[0], p_value, level))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BoundsCheckConfig()
    parser.add_argument("--quick", action="store_true",
                        help="small grid (a in {0.05, 0.3}, sigma 1, delta in {0.01, 0.2}, p in {1, 0.3}, every drift, "
                             "noise and start; 400 paths x 200 steps): ~20 s on 2 cores")
    parser.add_argument("--out", type=Path, default=Path("results/bounds"),
                        help="output directory for results.csv and config.json (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed, >= 0 (default %(default)s)")
    parser.add_argument("--paths", type=int, default=None,
                        help=f"simulated paths (regions) per cell (default {defaults.paths}; {QUICK['paths']} with --quick)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"time steps per path (default {defaults.steps}; {QUICK['steps']} with --quick)")
    parser.add_argument("--alpha", type=float, default=defaults.alpha,
                        help="family-wise false-failure rate of the whole run, split over all checks "
                             "(probability; default %(default)s)")
    parser.add_argument("--eta", type=float, default=defaults.eta,
                        help="failure probability of the per-time high-probability bounds (probability; default %(default)s)")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes (count; default %(default)s: 1 with --quick, else one per core)")


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    overrides = {key: value for key, value in (("paths", args.paths), ("steps", args.steps)) if value is not None}
    config = BoundsCheckConfig(**{**(QUICK if args.quick else {}), **overrides, "seed": args.seed,
                                  "alpha": args.alpha, "eta": args.eta})
    if config.paths < 2:
        raise ValueError(f"--paths must be >= 2, got {config.paths}")
    # the slope checks need an estimate: two EMAs differ only after more than 1/a observations
    need = math.floor(1 / min(config.steps_a)) + 1
    if config.steps < need:
        raise ValueError(f"--steps must be >= {need}, got {config.steps}: the slope checks' two-EMA estimate exists "
                         f"only after more than 1/a observations (a = {min(config.steps_a):g})")
    if not (0 < config.alpha < 1 and 0 < config.eta < 1):
        raise ValueError(f"--alpha and --eta must be in (0, 1), got {config.alpha} and {config.eta}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    workers = args.workers or (1 if args.quick else os.cpu_count() or 1)
    writable_folder(args.out)
    cells = config.cells()
    n_checks = sum(len(applicable(cell)) for cell in cells)
    level = config.alpha / n_checks
    start = time.perf_counter()
    jobs = [(cell, config, i, level) for i, cell in enumerate(cells)]
    chunk = 8
    workers = min(workers, -(-len(jobs) // chunk))  # never more processes than chunks of jobs to give them
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        results = pool.map(_check_job, jobs, chunksize=chunk) if pool else map(_check_job, jobs)
        rows = [row for cell_rows in tqdm(results, total=len(jobs), disable=args.quick, desc="cells")
                for row in cell_rows]
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "results.csv", index=False)
    (args.out / "config.json").write_text(json.dumps(
        {**dataclasses.asdict(config), "checks": n_checks, "level_per_check": level}, indent=2) + "\n")

    summary = table.groupby("bound", sort=False).agg(
        cells=("ratio", "size"), max_ratio=("ratio", "max"), min_p_value=("p_value", "min"),
        violations=("passed", lambda s: int((~s).sum())))
    print(f"{time.perf_counter() - start:.1f} s; per-check level {level:.1e}; results in {args.out}")
    print(summary.reindex([b for b in BOUNDS if b in summary.index]).to_string(float_format="%.3g"))
    failed = int((~table["passed"]).sum())
    print(f"{len(cells)} cells, {n_checks} bound checks, {failed} violations")
    return 1 if failed else 0


def _check_job(job: tuple) -> list[dict]:
    return check_cell(*job)

