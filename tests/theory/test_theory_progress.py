"""ProgressPolicy (allocation by estimated reducible discrepancy) and the bounds on the quantity it
tracks, the two-timescale EMA regression: valid pi, the ARIA / region-uniform limits, exact JSON
state, every-path bounds exact on adversarial sequences, MSE bounds by Monte Carlo with a pre-set
false-failure rate, steady-state closed forms; and its noise handling (shrinkage of the fits
across regions, the expected positive part, the resolution): exact variance factors, the
empirical-Bayes step, no collapse of pi under trainer-like noise where the raw fit collapses."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aria_theory import bounds, slope_bounds
from aria_theory.allocation import AllocationPolicy, AriaPolicy
from aria_theory.progress import ProgressPolicy, _shrink  # _shrink: the EB step
from aria_theory.tracker import RegionTracker

RTOL = 1e-9  # worst-case statements are exact up to float rounding
K = 4


# --- valid distributions ----------------------------------------------------------------------

finite = st.one_of(st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e-300, 5.0]), st.floats(-1e6, 1e6))
call = st.tuples(st.lists(st.tuples(st.integers(0, K - 1), finite), max_size=6),
                 st.lists(st.integers(0, K - 1), max_size=12))
configs = st.fixed_dictionaries({
    "rate": st.sampled_from([1e-6, 0.003, 0.5, 50.0]), "fast": st.sampled_from([0.05, 0.3, 1.0]),
    "slow": st.sampled_from([0.0, 0.01]), "beta": st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    "eps": st.sampled_from([0.0, 0.2, 1.0]),
    "base": st.sampled_from([None, [0.4, 0.3, 0.2, 0.1], [1.0, 0.0, 0.0, 3.0]]),
    "shrink": st.booleans(), "resolution": st.sampled_from([0.0, 0.03, 5.0])})
NOISE = [dict(shrink=True), dict(shrink=True, resolution=0.0), dict(shrink=False, resolution=0.0)]


def feed(policy: ProgressPolicy, calls) -> None:
    """Each call observes its (region, value) pairs under the policy's current pi and trains its
    list of regions (None when the list is empty: the observed ones are the trained ones)."""
    for observations, trained in calls:
        pi = policy.probabilities(np.full(policy.num_regions, np.nan))
        policy.observe([r for r, _ in observations], [y for _, y in observations], pi, trained=trained or None)


def assert_valid(policy, p):
    assert p.shape == (policy.num_regions,) and p.dtype == np.float64
    assert np.isfinite(p).all() and (p >= 0).all()
    assert abs(p.sum() - 1.0) <= 1e-12
    assert (p >= policy.floors).all()


@given(config=configs, calls=st.lists(call, max_size=25))
@settings(max_examples=120)
def test_pi_is_a_distribution_above_the_floors(config, calls):
    policy = ProgressPolicy(K, **config)
    feed(policy, calls)
    assert_valid(policy, policy.probabilities([1.0, np.nan, -3.0, 0.0]))


@pytest.mark.parametrize("noise", NOISE)
def test_nothing_observed_or_nothing_reducible_gives_the_base(noise):
    base = np.array([0.1, 0.2, 0.3, 0.4])
    policy = ProgressPolicy(K, eps=0.3, base=base, **noise)
    np.testing.assert_allclose(policy.probabilities([np.nan] * K), 0.7 / K + 0.3 * base, rtol=1e-14)  # all unknown
    for _ in range(200):  # a constant stream: no progress anywhere
        policy.observe(np.arange(K), np.full(K, 2.5), policy.probabilities([0.0] * K))
    assert np.all(policy.coefficient == 0.0)
    np.testing.assert_array_equal(policy.probabilities([0.0] * K), base)


# --- the limits ---------------------------------------------------------------------------------

def run_model(policy, c, phi, trained_per_call, calls=120):
    """Noise-free observations of D_k = phi_k + c_k exp(-rate T_k): every region observed once per
    call, trained trained_per_call[k] times; returns D now."""
    k = policy.num_regions
    ids = np.arange(k)
    for _ in range(calls):
        y = phi + c * policy.curve()
        policy.observe(ids, y, np.full(k, 1 / k), trained=np.repeat(ids, trained_per_call))
    return phi + c * policy.curve()


@pytest.mark.parametrize("noise", NOISE)
@pytest.mark.parametrize("beta,eps,base", [(1.0, 0.2, None), (2.0, 0.1, [0.1, 0.2, 0.3, 0.4]), (0.5, 0.0, None)])
def test_zero_floors_give_aria_on_the_true_discrepancy(beta, eps, base, noise):
    policy = ProgressPolicy(K, rate=0.01, fast=0.1, beta=beta, eps=eps, base=base, **noise)
    c, trained = np.array([1.0, 0.5, 2.0, 0.8]), np.array([1, 3, 2, 1])
    d_now = run_model(policy, c, np.zeros(K), trained)
    np.testing.assert_allclose(policy.reducible, d_now, rtol=1e-9)
    aria = AriaPolicy(K, beta=beta, eps=eps, base=base).probabilities(d_now)
    np.testing.assert_allclose(policy.probabilities([np.nan] * K), aria, rtol=1e-9)


@pytest.mark.parametrize("noise", NOISE)
def test_equal_floors_give_aria_on_the_gap_and_floors_are_recovered(noise):
    policy = ProgressPolicy(K, rate=0.01, fast=0.1, slow=0.02, beta=1.0, eps=0.2, **noise)
    phi, c = np.full(K, 0.3), np.array([1.0, 0.5, 2.0, 0.8])
    d_now = run_model(policy, c, phi, np.array([2, 1, 1, 3]))
    np.testing.assert_allclose(policy.floor_estimates, phi, rtol=1e-9)
    aria = AriaPolicy(K, beta=1.0, eps=0.2).probabilities(d_now - phi)
    np.testing.assert_allclose(policy.probabilities([np.nan] * K), aria, rtol=1e-9)


@pytest.mark.parametrize("noise", NOISE)
def test_regions_progressing_alike_give_region_uniform_and_a_stuck_region_its_floor(noise):
    policy = ProgressPolicy(K, rate=0.01, fast=0.1, eps=0.2, **noise)
    run_model(policy, np.full(K, 0.7), np.full(K, 0.1), np.full(K, 2))
    np.testing.assert_allclose(policy.probabilities([np.nan] * K), 1 / K, rtol=1e-12)
    stuck = ProgressPolicy(K, rate=0.01, fast=0.1, eps=0.2, **noise)  # region 0 sits at a high floor
    run_model(stuck, np.array([0.0, 0.7, 0.7, 0.7]), np.array([0.9, 0.1, 0.1, 0.1]), np.full(K, 2))
    p = stuck.probabilities([np.nan] * K)
    assert p[0] == pytest.approx(0.2 / K, rel=1e-9)
    np.testing.assert_allclose(p[1:], (1 - p[0]) / 3, rtol=1e-9)


def test_observations_need_not_come_from_pi():
    """Paired samples are observed too: a region with pi = 0 (eps = 0) may still be observed."""
    policy = ProgressPolicy(2, rate=0.1, fast=1.0, eps=0.0)
    policy.observe([0, 1], [1.0, 1.0], [1.0, 0.0], trained=[0, 1])
    assert policy.counts.tolist() == [1, 1] and policy.trained.tolist() == [1, 1]


@pytest.mark.parametrize("noise", NOISE)
def test_unknown_regions_are_explored(noise):
    policy = ProgressPolicy(3, rate=0.01, fast=0.2, eps=0.0, **noise)
    for _ in range(30):  # region 2 never observed
        policy.observe([0, 1], 1.0 + policy.curve()[:2] * [1.0, 2.0], [0.5, 0.5, 0.0], trained=[0, 1])
    assert np.isnan(policy.reducible[2]) and policy.reducible[1] > policy.reducible[0] > 0
    p = policy.probabilities([np.nan] * 3)
    assert p[2] == pytest.approx(p[1]) and p[2] > p[0]


# --- state ---------------------------------------------------------------------------------------

@given(before=st.lists(call, max_size=12), after=st.lists(call, max_size=12), config=configs)
@settings(max_examples=40)
def test_state_round_trips_through_json_exactly(before, after, config):
    original = ProgressPolicy(K, **config)
    feed(original, before)
    state = json.loads(json.dumps(original.state_dict()))
    rebuilt = AllocationPolicy.from_state_dict(state)
    loaded = ProgressPolicy(K, rate=1.0, fast=0.9, slow=0.5)
    loaded.load_state_dict(state)
    twin = ProgressPolicy(K, **config)  # another rank fed the same observations in the same order
    feed(twin, before)
    for policy in (original, rebuilt, loaded, twin):
        feed(policy, after)
    reference = json.dumps(original.state_dict())
    for copy in (rebuilt, loaded, twin):
        assert type(copy) is ProgressPolicy and json.dumps(copy.state_dict()) == reference
        np.testing.assert_array_equal(copy.probabilities([0.0] * K), original.probabilities([0.0] * K))
        np.testing.assert_array_equal(copy.reducible, original.reducible)


@pytest.mark.parametrize("bad, needle", [
    (dict(region_ids=[0], values=[1.0], probabilities=np.full(K, 0.25), trained=[K]), "out of range"),
    (dict(region_ids=[0], values=[1.0], probabilities=np.full(K, 0.25), trained=[0.5]), "integer dtype"),
    (dict(region_ids=[0], values=[np.inf], probabilities=np.full(K, 0.25)), "values must be finite"),
    (dict(region_ids=[0], values=[1.0], probabilities=np.full(K, 0.3)), "must sum to 1"),
    (dict(region_ids=[0, 1], values=[1.0], probabilities=np.full(K, 0.25)), "differ in length"),
])
def test_bad_feedback_is_rejected_and_state_untouched(bad, needle):
    policy = ProgressPolicy(K)
    feed(policy, [([(0, 1.0), (1, 2.0)], [0, 0, 1])])
    before = json.dumps(policy.state_dict())
    with pytest.raises(ValueError, match=needle):
        policy.observe(**bad)
    assert json.dumps(policy.state_dict()) == before


@pytest.mark.parametrize("kwargs, needle", [
    (dict(rate=0.0), "rate must be finite and > 0"), (dict(rate=np.inf), "rate must be finite and > 0"),
    (dict(fast=0.0), r"fast must be in \(0, 1\]"), (dict(fast=0.1, slow=0.1), "must be smaller than fast"),
    (dict(slow=-0.1), r"slow must be in \[0, 1\]"), (dict(beta=-1.0), "beta must be"),
    (dict(eps=1.5), "eps must be in"), (dict(base=[1.0] * 3), f"base must be {K} real numbers"),
    (dict(shrink="floor"), "shrink must be True or False"), (dict(shrink=None), "shrink must be True or False"),
    (dict(resolution=-0.1), "resolution must be finite and >= 0"),
    (dict(resolution=np.nan), "resolution must be finite and >= 0"),
    (dict(resolution=np.inf), "resolution must be finite and >= 0"),
])
def test_bad_config_is_rejected(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ProgressPolicy(K, **kwargs)


# --- every path: the two-timescale regression -------------------------------------------------

@dataclass(frozen=True)
class Path:
    """Slopes theta_u = delta * u_u (clipped to |theta_{u+1} - theta_u| <= gamma), noise xi = b v,
    trained samples per observation (the policy's regressor z = exp(-rate T)), or z_i = i."""
    fast: float
    slow: float
    delta: float
    gamma: float
    b: float
    level0: float
    u: tuple[float, ...]
    v: tuple[float, ...]
    trained: tuple[int, ...]
    worst: bool = False  # replace u, v by the path that attains the bound at the last observation

    def regressor(self, rate: float | None) -> np.ndarray:
        if rate is None:
            return np.arange(len(self.u), dtype=float)
        return np.exp(-rate * np.concatenate([[0.0], np.cumsum(self.trained[:-1])]))

    def slopes_and_noise(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.u)
        if self.worst:
            c, _ = slope_bounds.two_ema_coefficients(self.steps()[0], self.steps()[1], z)
            theta = np.maximum(-self.delta, self.delta - self.gamma * (n - 2 - np.arange(n)))
            return theta, -self.b * np.nan_to_num(np.sign(c[-1]))  # c[-1] is NaN if not identified yet
        theta = np.empty(n)
        theta[0] = self.delta * self.u[0]
        for i in range(1, n):  # a step of at most gamma toward delta * u_i, inside [-delta, delta]
            theta[i] = np.clip(theta[i - 1] + np.clip(self.delta * self.u[i] - theta[i - 1], -self.gamma, self.gamma),
                               -self.delta, self.delta)
        return theta, self.b * np.array(self.v)

    def steps(self) -> tuple[np.ndarray, np.ndarray]:
        observed = np.ones(len(self.u), bool)
        return bounds.tracker_steps(observed, self.fast), bounds.tracker_steps(observed, self.slow)


unit = st.one_of(st.sampled_from([-1.0, 1.0]), st.floats(-1.0, 1.0))


@st.composite
def paths(draw):
    n = draw(st.integers(2, 70))
    fast = draw(st.sampled_from([0.05, 0.2, 0.5, 1.0]))
    lists = lambda elem: tuple(draw(st.lists(elem, min_size=n, max_size=n)))
    return Path(fast=fast, slow=draw(st.sampled_from([0.0, 0.01, fast / 4])), delta=draw(st.floats(0.0, 2.0)),
                gamma=draw(st.floats(0.0, 1.0)), b=draw(st.floats(0.0, 2.0)), level0=draw(st.floats(-5.0, 5.0)),
                u=lists(unit), v=lists(unit), trained=lists(st.integers(1, 4)), worst=draw(st.booleans()))


WORST = [Path(0.2, 0.05, 1.0, 0.1, 0.5, 1.0, (0.0,) * 40, (0.0,) * 40, (1,) * 40, True),   # ramp, clipped
         Path(0.5, 0.0, 0.3, 0.02, 1.0, -2.0, (0.0,) * 30, (0.0,) * 30, (2,) * 30, True),  # running-mean slow
         Path(1.0, 0.1, 2.0, 0.0, 0.2, 0.0, (0.0,) * 25, (0.0,) * 25, (3,) * 25, True)]    # gamma = 0, a_f = 1


def check(errors: np.ndarray, bound: np.ndarray, scale: np.ndarray, tight: bool) -> None:
    known = ~np.isnan(errors)
    assert np.array_equal(known, ~np.isnan(bound))  # identified exactly when the bound says so
    tol = RTOL * (bound + scale)
    assert np.all(np.abs(errors[known]) <= bound[known] + tol[known])
    if tight and known[-1]:
        assert abs(abs(errors[-1]) - bound[-1]) <= tol[-1]


def two_tracker_slope(y: np.ndarray, z: np.ndarray, fast: float, slow: float) -> np.ndarray:
    """(S(y) - F(y)) / (S(z) - F(z)) after each observation, from two RegionTrackers."""
    f, s = RegionTracker(2, step=fast), RegionTracker(2, step=slow)
    out = []
    for yi, zi in zip(y, z):
        f.update([0, 1], [yi, zi])
        s.update([0, 1], [yi, zi])
        diff = s.estimates - f.estimates
        out.append(diff[0] / diff[1] if diff[1] != 0 else np.nan)
    return np.array(out)


@given(paths())
@example(WORST[0]).via("clipped ramp, noise against the coefficients")
@example(WORST[1]).via("running-mean slow EMA")
@example(WORST[2]).via("constant slope, a_f = 1")
def test_every_path_bound_of_the_slope_per_observation(path: Path) -> None:
    """z_i = i: theta^ is the slope per observation; target the latest increment."""
    z = path.regressor(None)
    theta, xi = path.slopes_and_noise(z)
    level = path.level0 + np.concatenate([[0.0], np.cumsum(theta[:-1] * np.diff(z))])
    errors = two_tracker_slope(level + xi, z, path.fast, path.slow) - np.concatenate([[0.0], theta[:-1]])
    bound = slope_bounds.slope_every_path_bound(*path.steps(), path.delta, path.gamma, path.b)
    scale = slope_bounds.slope_every_path_bound(*path.steps(), 0.0, 0.0, 1.0) * np.abs(level + xi).max() + path.delta
    check(errors, bound, scale, path.worst)


@given(paths())
@example(WORST[0]).via("clipped ramp, noise against the coefficients")
@example(WORST[1]).via("running-mean slow EMA")
@example(WORST[2]).via("constant slope, a_f = 1")
def test_every_path_bound_of_the_policys_coefficient(path: Path) -> None:
    """ProgressPolicy itself, regressor z = exp(-rate T) with T its trained counts: theta^ is the
    slope of the losses against z; target theta_{n-1}, D_{u+1} - D_u = theta_u (z_{u+1} - z_u)."""
    rate = 0.05
    policy = ProgressPolicy(1, rate=rate, fast=path.fast, slow=path.slow)
    z = path.regressor(rate)
    theta, xi = path.slopes_and_noise(z)
    level = path.level0 + np.concatenate([[0.0], np.cumsum(theta[:-1] * np.diff(z))])
    estimates = []
    for i, trained in enumerate(path.trained):
        assert policy.curve()[0] == z[i]
        policy.observe([0], [level[i] + xi[i]], [1.0], trained=[0] * trained)
        estimates.append(policy.coefficient[0])
    errors = np.array(estimates) - np.concatenate([[0.0], theta[:-1]])
    bound = slope_bounds.slope_every_path_bound(*path.steps(), path.delta, path.gamma, path.b, z=z)
    scale = (slope_bounds.slope_every_path_bound(*path.steps(), 0.0, 0.0, 1.0, z=z) * np.abs(level + xi).max()
             + path.delta)
    known = ~np.isnan(errors)
    # the policy also reads a difference within rounding as "not identified": allow it to know less,
    # but not nothing: where the bound is known at the end, so is the estimate (the pinned worst paths too)
    assert np.all(~np.isnan(bound[known])) and (known[-1] or np.isnan(bound[-1]))
    tol = RTOL * (bound + scale)
    assert np.all(np.abs(errors[known]) <= bound[known] + tol[known])
    if path.worst and known[-1]:  # known wherever the bound is (above); for the pinned worst paths it is
        assert abs(abs(errors[-1]) - bound[-1]) <= tol[-1]


def test_the_pinned_worst_paths_reach_their_tightness_check() -> None:
    for path in WORST:
        assert not np.isnan(slope_bounds.slope_every_path_bound(*path.steps(), path.delta, path.gamma, path.b,
                                                                z=path.regressor(0.05))[-1])


def test_coefficients_sum_to_one_and_are_nonnegative() -> None:
    """sum_u K[n, u] = 1 (unbiased for a constant slope), K >= 0 when fast >= slow and z is monotone."""
    n = 80
    for fast, slow in [(0.05, 0.0), (0.3, 0.1), (1.0, 0.02)]:
        for z in (None, np.exp(-0.02 * np.cumsum(np.random.default_rng(0).integers(1, 5, n)))):
            c, K_ = slope_bounds.two_ema_coefficients(bounds.tracker_steps(np.ones(n, bool), fast),
                                                bounds.tracker_steps(np.ones(n, bool), slow), z)
            rows = ~np.isnan(c[:, 0])
            np.testing.assert_allclose(K_[rows].sum(-1), 1.0, rtol=1e-10)
            np.testing.assert_allclose(c[rows].sum(-1), 0.0, atol=1e-10 * np.abs(c[rows]).max())
            assert np.all(K_[rows] >= -1e-15)


@pytest.mark.parametrize("fast,slow", [(0.1, 0.02), (0.3, 0.05), (1.0, 0.1), (0.05, 0.049)])
@pytest.mark.parametrize("delta,gamma", [(1.0, 1e-3), (0.1, 0.01), (np.inf, 1e-3), (0.5, 0.0)])
def test_steady_state_closed_forms_are_the_limits(fast, slow, delta, gamma) -> None:
    n = int(40 / slow)
    steps = bounds.tracker_steps(np.ones(n, bool), fast), bounds.tracker_steps(np.ones(n, bool), slow)
    every = slope_bounds.slope_every_path_bound(*steps, delta, gamma, 0.7)[-1]
    closed = (slope_bounds.slope_steady_state_bias(fast, slow, delta, gamma)
              + slope_bounds.slope_steady_state_noise_bound(fast, slow, 0.7))
    assert every == pytest.approx(float(closed), rel=1e-9)
    mse = slope_bounds.slope_mse_bound(*steps, 1.3, delta, gamma)[-1]
    assert mse == pytest.approx(float(slope_bounds.slope_steady_state_mse(fast, slow, 1.3, delta, gamma)), rel=1e-9)
    if np.isinf(delta):  # unclipped: the slope of (x_s + x_f) observations ago, x = (1 - a)/a
        lag = (1 - slow) / slow + (1 - fast) / fast
        assert slope_bounds.slope_steady_state_bias(fast, slow, delta, gamma) == pytest.approx(gamma * lag, rel=1e-12)


# --- mean square: Monte Carlo with a pre-set false-failure rate --------------------------------
# Family-wise false-failure rate ALPHA, split evenly (Bonferroni) over the MC_CHECKS one-sided
# checks. Each check is exact, not asymptotic: the squared errors divided by the every-path bound
# squared are X in [0, 1], so Var X <= E X and Bernstein's inequality gives
# P(mean X - E X >= t) <= exp(-n t^2 / (2 (mu + t/3))) for any mu >= E X.
ALPHA = 1e-4
MC_CASES = [("ramp", 0.2, 0.05), ("random", 0.1, 0.0), ("ramp", 0.5, 0.0)]  # slope path, fast, slow
MC_CHECKS = len(MC_CASES) + sum(kind == "ramp" for kind, _, _ in MC_CASES)  # ramps are checked both ways
PATHS, N_OBS, RATE = 10_000, 60, 0.03


def bernstein_radius(mu: float, n: int, level: float) -> float:
    """t with exp(-n t^2 / (2 (mu + t/3))) = level: the root of n t^2 = 2 (mu + t/3) ln(1/level)."""
    log_term = np.log(1 / level)
    third = log_term / (3 * n)
    return third + np.sqrt(third**2 + 2 * mu * log_term / n)


@pytest.mark.parametrize("case", range(len(MC_CASES)))
def test_monte_carlo_mse_of_the_policys_coefficient(case) -> None:
    kind, fast, slow = MC_CASES[case]
    level = ALPHA / MC_CHECKS
    rng = np.random.default_rng(500 + case)
    delta, gamma, b = 1.0, 0.05, 2.0
    sigma = b / np.sqrt(3)  # uniform noise on [-b, b]
    trained = rng.integers(1, 4, N_OBS)  # the same training for every path, so one regressor
    z = np.exp(-RATE * np.concatenate([[0.0], np.cumsum(trained[:-1])]))
    if kind == "ramp":  # the extreme path of the bound at the last observation, for every path
        theta = np.broadcast_to(np.maximum(-delta, delta - gamma * (N_OBS - 2 - np.arange(N_OBS))), (PATHS, N_OBS))
    else:  # independent bounded random slopes
        theta = np.clip(np.cumsum(rng.uniform(-gamma, gamma, (PATHS, N_OBS)), axis=1), -delta, delta)
    level_path = np.concatenate([np.zeros((PATHS, 1)), np.cumsum(theta[:, :-1] * np.diff(z), axis=1)], axis=1)
    y = level_path + rng.uniform(-b, b, (PATHS, N_OBS))
    policy = ProgressPolicy(PATHS, rate=RATE, fast=fast, slow=slow)
    ids = np.arange(PATHS)
    for i in range(N_OBS):
        policy.observe(ids, y[:, i], np.full(PATHS, 1 / PATHS), trained=np.repeat(ids, trained[i]))
    err = policy.coefficient - theta[:, -2]
    steps = bounds.tracker_steps(np.ones(N_OBS, bool), fast), bounds.tracker_steps(np.ones(N_OBS, bool), slow)
    mse = slope_bounds.slope_mse_bound(*steps, sigma, delta, gamma, z=z)[-1]
    cap = slope_bounds.slope_every_path_bound(*steps, delta, gamma, b, z=z)[-1]
    assert np.all(np.abs(err) <= cap * (1 + RTOL))
    x, mu = err**2 / cap**2, mse / cap**2  # X in [0, 1] with E X <= mu
    radius = bernstein_radius(mu, PATHS, level)
    assert x.mean() - mu <= radius, (x.mean() * cap**2, mse, radius * cap**2)
    assert radius * cap**2 < 0.5 * mse  # the check has power: it would catch a bound 1.5x too small
    if kind == "ramp":  # the bound is the exact MSE here, so the mean must not fall below it either
        assert mu - x.mean() <= bernstein_radius(mu, PATHS, level)  # Bernstein for -X: Var X <= E X = mu


# --- noise: shrinkage across regions, the expected positive part, the resolution ------------------


@pytest.mark.parametrize("fast,slow", [(0.05, 0.0), (0.3, 0.1), (1.0, 0.02), (0.5, 0.0)])
def test_variance_factors_are_the_exact_noise_gains_of_the_fit(fast, slow):
    """phi^ and theta^ are linear in the losses for a given regressor sequence: fed the unit
    impulse y = e_j (region j of N, all trained alike so that they share z), region j's estimates
    are the weights g_j and h_j, and the factors the policy derives from its EMA weight sums are
    sum g^2, sum h^2 and sum g h."""
    n = 60
    trained = np.random.default_rng(3).integers(1, 4, n)
    policy = ProgressPolicy(n, rate=0.02, fast=fast, slow=slow, shrink=False, resolution=0.0)
    ids = np.arange(n)
    for i in range(n):
        policy.observe(ids, (ids == i).astype(float), np.full(n, 1 / n), trained=np.repeat(ids, trained[i]))
    h, g = policy.coefficient, policy.floor_estimates  # with shrink=False: theta^ and phi^
    assert np.isfinite(h).all()
    var_phi, var_theta, cov = (f[0] for f in policy._variance_factors())
    np.testing.assert_allclose([var_phi, var_theta, cov], [g @ g, h @ h, g @ h], rtol=1e-9)


def test_the_noise_variance_is_the_mean_square_prediction_error():
    """Exact model plus white noise sigma: sigma^2 is estimated from one-step prediction errors,
    which include the fit's own error, so slightly above sigma^2 (+6% with the default steps)."""
    k, n, sigma = 2000, 300, 0.3
    rng = np.random.default_rng(1)
    policy = ProgressPolicy(k, rate=0.01)
    ids = np.arange(k)
    for _ in range(n):
        policy.observe(ids, 0.2 + policy.curve() + sigma * rng.standard_normal(k), np.full(k, 1 / k), trained=ids)
    ratio = policy._noise_variance().mean() / sigma**2
    assert 1.0 < ratio < 1.1


def test_the_raw_fit_and_its_bounds_are_unchanged_and_shrink_false_is_the_old_rule():
    """coefficient (what aria_theory.bounds bounds) does not depend on the noise handling, and
    shrink=False, resolution=0 allocate by max(theta^ z, 0)^beta as before."""
    rng = np.random.default_rng(4)
    new, old = ProgressPolicy(6, rate=0.02, fast=0.2, beta=2.0), ProgressPolicy(6, rate=0.02, fast=0.2, beta=2.0,
                                                                               shrink=False, resolution=0.0)
    for _ in range(80):
        ids = rng.integers(0, 6, 5)
        y = rng.gamma(2.0, 0.5, 5)
        for policy in (new, old):
            policy.observe(ids, y, np.full(6, 1 / 6), trained=np.repeat(ids, 2))
    np.testing.assert_array_equal(new.coefficient, old.coefficient)
    x = old.coefficient * old.curve()
    assert np.isfinite(x).all()
    w = np.maximum(x, 0.0) ** 2
    expected = 0.8 * w / w.sum() + 0.2 / 6 if w.sum() > 0 else np.full(6, 1 / 6)
    np.testing.assert_allclose(old.probabilities([0.0] * 6), expected, rtol=1e-12)
    np.testing.assert_array_equal(old.reducible, x)
    assert np.all(old.reducible_sd == 0) and np.all(old.shrinkage == 1)


def test_shrink_keeps_exact_values_and_equal_values():
    value = np.array([0.3, -1.0, 2.0, np.nan])
    shrunk, lam, tau2, _ = _shrink(value, np.array([0.0, 0.0, 0.0, 1.0]))
    np.testing.assert_array_equal(shrunk, value)
    np.testing.assert_array_equal(lam, [1.0, 1.0, 1.0, np.nan])
    shrunk, lam, tau2, target = _shrink(np.full(4, 0.7), np.array([0.1, 2.0, np.inf, 0.0]))
    np.testing.assert_array_equal(shrunk, 0.7)
    assert tau2 == 0 and target == 0.7


def test_shrink_solves_the_paule_mandel_equation_and_is_equivariant():
    rng = np.random.default_rng(5)
    value, var = rng.normal(0, 1, 12), rng.uniform(0.1, 2.0, 12)
    shrunk, lam, tau2, target = _shrink(value, var)
    assert tau2 > 0
    w = 1 / (var + tau2)
    assert target == pytest.approx((w * value).sum() / w.sum(), rel=1e-9)
    assert ((value - target) ** 2 * w).sum() == pytest.approx(value.size - 1, rel=1e-6)
    np.testing.assert_allclose(lam, tau2 / (tau2 + var), rtol=1e-12)
    np.testing.assert_allclose(shrunk, lam * value + (1 - lam) * target, rtol=1e-12)
    scaled = _shrink(-3.0 * value + 7.0, 9.0 * var)
    np.testing.assert_allclose(scaled[0], -3.0 * shrunk + 7.0, rtol=1e-9)
    assert scaled[2] == pytest.approx(9.0 * tau2, rel=1e-6)
    # no information (var = inf) takes the pooled value; consistent values (tau^2 = 0) all do
    shrunk, lam, _, target = _shrink(np.append(value, 50.0), np.append(var, np.inf))
    assert lam[-1] == 0 and shrunk[-1] == target
    shrunk, lam, tau2, target = _shrink(np.array([1.0, 1.1, 0.9]), np.array([10.0, 10.0, 10.0]))
    assert tau2 == 0 and np.all(lam == 0) and np.allclose(shrunk, 1.0)


def test_shrink_near_the_float_range_stays_finite():
    for value in ([1e300, -1e300, 0.0], [1.7e308, -1.7e308, 1.0]):
        for var in ([1.0, 1.0, 1.0], [1e300, 1e-300, 0.0], [np.inf, 1.0, 1e308]):
            with np.errstate(all="raise"):
                shrunk, lam, tau2, target = _shrink(np.array(value), np.array(var))
            assert np.isfinite(shrunk).all() and np.isfinite(tau2) and ((lam >= 0) & (lam <= 1)).all()


@given(config=configs, calls=st.lists(call, max_size=25))
@settings(max_examples=60)
def test_expected_reducible_is_the_positive_part_smoothed(config, calls):
    """E[x^+] >= max(x~, 0), equal where s = 0, and the posterior sd is >= 0."""
    policy = ProgressPolicy(K, **config)
    feed(policy, calls)
    x, s, e = policy.reducible, policy.reducible_sd, policy.expected_reducible
    known = ~np.isnan(e)
    assert np.array_equal(known, ~np.isnan(x)) and (s[known] >= 0).all()
    assert (e[known] >= np.maximum(x[known], 0.0) * (1 - 1e-12)).all()
    exact = known & (s == 0)
    np.testing.assert_array_equal(e[exact], np.maximum(x[exact], 0.0))


def closed_loop(policy, steps=400, k=12, seed=0):
    """The trainer's situation: k alike regions (same curve, floor and noise), 12 draws per step
    from pi observed with gamma(2) noise (CV 0.71), 52 paired samples uniformly; returns the
    largest pi after 40 steps."""
    rng = np.random.default_rng(seed)
    top = 0.0
    for step in range(steps):
        pi = policy.probabilities(np.zeros(k))
        if step > 40:
            top = max(top, pi.max())
        drawn, paired = rng.choice(k, 12, p=pi), rng.integers(0, k, 52)
        level = 0.3 + 0.7 * np.exp(-0.002 * policy.trained)
        policy.observe(drawn, level[drawn] * rng.gamma(2.0, 0.5, 12), pi, trained=np.concatenate([drawn, paired]))
    return top


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alike_regions_under_trainer_like_noise_stay_near_uniform(seed):
    """The failure in the trainer: with ~1 noisy loss per region and step the raw fit piles the
    draws onto one region (pi 0.6-0.82 here, 0.82 in the trainer); the shrunk one stays within
    about twice region-uniform (1/12 = 0.083)."""
    assert closed_loop(ProgressPolicy(12), seed=seed) < 0.25
    assert closed_loop(ProgressPolicy(12, shrink=False, resolution=0.0), seed=seed) > 0.5


def test_a_heavily_trained_region_stays_at_its_floor_whatever_its_noise():
    """Region 0 sits at a high floor and is trained 100x as often (z ~ 0 after a few steps): its
    reducible estimate is ~0 however noisy its losses, so shrinking its floor toward the others'
    does not revive it (x~ = theta~ z, not level - shrunk floor)."""
    k = 4
    rng = np.random.default_rng(6)
    policy = ProgressPolicy(k, rate=0.003, fast=0.1)
    ids = np.arange(k)
    for _ in range(300):
        level = np.array([0.9, 0.1, 0.1, 0.1]) + np.array([0.0, 0.7, 0.7, 0.7]) * policy.curve()
        policy.observe(ids, level * rng.gamma(2.0, 0.5, k), np.full(k, 1 / k),
                       trained=np.concatenate([np.zeros(100, int), ids[1:]]))
    assert abs(policy.reducible[0]) < 1e-9 and policy.reducible[1:].min() > 0.05
    p = policy.probabilities([np.nan] * k)
    assert p[0] < 0.2 / k + 0.01 and p[1:].min() > 0.25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resolution_moves_pi_to_the_base_when_nothing_is_left(seed):
    """Every region trained out (z ~ 0) and its losses drifting up together (what the trainer's
    timestep normalisation does late in a run): every x~ and its sd are ~1e-5, below the
    resolution, and pi stays near the base; without the resolution the draws jump onto
    whichever region looks least negative."""
    base = np.array([0.1, 0.2, 0.3, 0.4])
    far = []
    for resolution in (0.03, 0.0):
        rng = np.random.default_rng(seed)
        policy = ProgressPolicy(K, rate=0.01, fast=0.1, eps=0.2, base=base, resolution=resolution)
        worst = 0.0
        for step in range(400):
            pi = policy.probabilities([0.0] * K)
            if step >= 200:
                worst = max(worst, np.abs(pi - base).max())
            policy.observe(np.arange(K), (0.5 + 0.002 * step) * rng.gamma(2.0, 0.5, K), pi,
                           trained=np.repeat(np.arange(K), 3))
        far.append(worst)
    assert far[0] < 0.05 and far[1] > 0.5
