"""ProgressPolicy (allocation by estimated reducible discrepancy) and the bounds on the quantity it
tracks, the two-timescale EMA regression: valid pi, the ARIA / region-uniform limits, exact JSON
state, every-path bounds exact on adversarial sequences, MSE bounds by Monte Carlo with a pre-set
false-failure rate, steady-state closed forms."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aria_theory import bounds
from aria_theory.allocation import AllocationPolicy, AriaPolicy, ProgressPolicy
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
    "base": st.sampled_from([None, [0.4, 0.3, 0.2, 0.1], [1.0, 0.0, 0.0, 3.0]])})


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


def test_nothing_observed_or_nothing_reducible_gives_the_base():
    base = np.array([0.1, 0.2, 0.3, 0.4])
    policy = ProgressPolicy(K, eps=0.3, base=base)
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


@pytest.mark.parametrize("beta,eps,base", [(1.0, 0.2, None), (2.0, 0.1, [0.1, 0.2, 0.3, 0.4]), (0.5, 0.0, None)])
def test_zero_floors_give_aria_on_the_true_discrepancy(beta, eps, base):
    policy = ProgressPolicy(K, rate=0.01, fast=0.1, beta=beta, eps=eps, base=base)
    c, trained = np.array([1.0, 0.5, 2.0, 0.8]), np.array([1, 3, 2, 1])
    d_now = run_model(policy, c, np.zeros(K), trained)
    np.testing.assert_allclose(policy.reducible, d_now, rtol=1e-9)
    aria = AriaPolicy(K, beta=beta, eps=eps, base=base).probabilities(d_now)
    np.testing.assert_allclose(policy.probabilities([np.nan] * K), aria, rtol=1e-9)


def test_equal_floors_give_aria_on_the_gap_and_floors_are_recovered():
    policy = ProgressPolicy(K, rate=0.01, fast=0.1, slow=0.02, beta=1.0, eps=0.2)
    phi, c = np.full(K, 0.3), np.array([1.0, 0.5, 2.0, 0.8])
    d_now = run_model(policy, c, phi, np.array([2, 1, 1, 3]))
    np.testing.assert_allclose(policy.floor_estimates, phi, rtol=1e-9)
    aria = AriaPolicy(K, beta=1.0, eps=0.2).probabilities(d_now - phi)
    np.testing.assert_allclose(policy.probabilities([np.nan] * K), aria, rtol=1e-9)


def test_regions_progressing_alike_give_region_uniform_and_a_stuck_region_its_floor():
    policy = ProgressPolicy(K, rate=0.01, fast=0.1, eps=0.2)
    run_model(policy, np.full(K, 0.7), np.full(K, 0.1), np.full(K, 2))
    np.testing.assert_allclose(policy.probabilities([np.nan] * K), 1 / K, rtol=1e-12)
    stuck = ProgressPolicy(K, rate=0.01, fast=0.1, eps=0.2)  # region 0 sits at a high floor
    run_model(stuck, np.array([0.0, 0.7, 0.7, 0.7]), np.array([0.9, 0.1, 0.1, 0.1]), np.full(K, 2))
    p = stuck.probabilities([np.nan] * K)
    assert p[0] == pytest.approx(0.2 / K, rel=1e-9)
    np.testing.assert_allclose(p[1:], (1 - p[0]) / 3, rtol=1e-9)


def test_observations_need_not_come_from_pi():
    """Paired samples are observed too: a region with pi = 0 (eps = 0) may still be observed."""
    policy = ProgressPolicy(2, rate=0.1, fast=1.0, eps=0.0)
    policy.observe([0, 1], [1.0, 1.0], [1.0, 0.0], trained=[0, 1])
    assert policy.counts.tolist() == [1, 1] and policy.trained.tolist() == [1, 1]


def test_unknown_regions_are_explored():
    policy = ProgressPolicy(3, rate=0.01, fast=0.2, eps=0.0)
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


@pytest.mark.parametrize("bad", [
    dict(region_ids=[0], values=[1.0], probabilities=np.full(K, 0.25), trained=[K]),
    dict(region_ids=[0], values=[1.0], probabilities=np.full(K, 0.25), trained=[0.5]),
    dict(region_ids=[0], values=[np.inf], probabilities=np.full(K, 0.25)),
    dict(region_ids=[0], values=[1.0], probabilities=np.full(K, 0.3)),
    dict(region_ids=[0, 1], values=[1.0], probabilities=np.full(K, 0.25)),
])
def test_bad_feedback_is_rejected_and_state_untouched(bad):
    policy = ProgressPolicy(K)
    feed(policy, [([(0, 1.0), (1, 2.0)], [0, 0, 1])])
    before = json.dumps(policy.state_dict())
    with pytest.raises(ValueError):
        policy.observe(**bad)
    assert json.dumps(policy.state_dict()) == before


@pytest.mark.parametrize("kwargs", [dict(rate=0.0), dict(rate=np.inf), dict(fast=0.0), dict(fast=0.1, slow=0.1),
                                    dict(slow=-0.1), dict(beta=-1.0), dict(eps=1.5), dict(base=[1.0] * 3)])
def test_bad_config_is_rejected(kwargs):
    with pytest.raises(ValueError):
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
            c, _ = bounds.two_ema_coefficients(self.steps()[0], self.steps()[1], z)
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
    bound = bounds.slope_every_path_bound(*path.steps(), path.delta, path.gamma, path.b)
    scale = bounds.slope_every_path_bound(*path.steps(), 0.0, 0.0, 1.0) * np.abs(level + xi).max() + path.delta
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
    bound = bounds.slope_every_path_bound(*path.steps(), path.delta, path.gamma, path.b, z=z)
    scale = (bounds.slope_every_path_bound(*path.steps(), 0.0, 0.0, 1.0, z=z) * np.abs(level + xi).max()
             + path.delta)
    known = ~np.isnan(errors)
    # the policy also reads a difference within rounding as "not identified": allow it to know less
    assert np.all(~np.isnan(bound[known]))
    tol = RTOL * (bound + scale)
    assert np.all(np.abs(errors[known]) <= bound[known] + tol[known])
    if path.worst and known[-1]:
        assert abs(abs(errors[-1]) - bound[-1]) <= tol[-1]


def test_coefficients_sum_to_one_and_are_nonnegative() -> None:
    """sum_u K[n, u] = 1 (unbiased for a constant slope), K >= 0 when fast >= slow and z is monotone."""
    n = 80
    for fast, slow in [(0.05, 0.0), (0.3, 0.1), (1.0, 0.02)]:
        for z in (None, np.exp(-0.02 * np.cumsum(np.random.default_rng(0).integers(1, 5, n)))):
            c, K_ = bounds.two_ema_coefficients(bounds.tracker_steps(np.ones(n, bool), fast),
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
    every = bounds.slope_every_path_bound(*steps, delta, gamma, 0.7)[-1]
    closed = (bounds.slope_steady_state_bias(fast, slow, delta, gamma)
              + bounds.slope_steady_state_noise_bound(fast, slow, 0.7))
    assert every == pytest.approx(float(closed), rel=1e-9)
    mse = bounds.slope_mse_bound(*steps, 1.3, delta, gamma)[-1]
    assert mse == pytest.approx(float(bounds.slope_steady_state_mse(fast, slow, 1.3, delta, gamma)), rel=1e-9)
    if np.isinf(delta):  # unclipped: the slope of (x_s + x_f) observations ago, x = (1 - a)/a
        lag = (1 - slow) / slow + (1 - fast) / fast
        assert bounds.slope_steady_state_bias(fast, slow, delta, gamma) == pytest.approx(gamma * lag, rel=1e-12)


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
    mse = bounds.slope_mse_bound(*steps, sigma, delta, gamma, z=z)[-1]
    cap = bounds.slope_every_path_bound(*steps, delta, gamma, b, z=z)[-1]
    assert np.all(np.abs(err) <= cap * (1 + RTOL))
    x, mu = err**2 / cap**2, mse / cap**2  # X in [0, 1] with E X <= mu
    radius = bernstein_radius(mu, PATHS, level)
    assert x.mean() - mu <= radius, (x.mean() * cap**2, mse, radius * cap**2)
    assert radius * cap**2 < 0.5 * mse  # the check has power: it would catch a bound 1.5x too small
    if kind == "ramp":  # the bound is the exact MSE here, so the mean must not fall below it either
        assert mu - x.mean() <= bernstein_radius(mu, PATHS, level)  # Bernstein for -X: Var X <= E X = mu
