"""docs/design.md §5 bounds against the tracker as implemented: exact worst cases, exact moments,
Monte Carlo with stated false-failure rates."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, strategies as st
from scipy import stats

from aria_theory import bounds, slope_bounds
from aria_theory.processes import (ConstantSign, RandomWalk, Rademacher, Uniform, ClippedCauchy,
                                   observation_mask, simulate, track)
from aria_theory.tracker import KalmanTracker, RegionTracker

RTOL = 1e-9  # worst-case statements are exact up to float rounding


# --- worst case: every path -------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """Drift d = delta * u and noise xi = b * v with u, v in [-1, 1]; observed steps."""
    a: float
    delta: float
    b: float
    m0: float
    initial: float
    u: tuple[float, ...]
    v: tuple[float, ...]
    observed: tuple[bool, ...]

    def run(self, running_mean_start: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """The tracker's errors (NaN before its first estimate) and the scale of the values."""
        d = self.delta * np.array([self.u])
        xi = self.b * np.array([self.v])
        truth, obs = simulate(self.m0, d, xi)
        tracker = RegionTracker(1, step=self.a, initial=self.initial, running_mean_start=running_mean_start)
        est = track(tracker, obs, np.array([self.observed]))
        return (est - truth)[0], float(np.abs(obs).max() + np.abs(truth).max())

    def aligned(self) -> bool:
        """-d, xi and e_0 all of one sign: the case where the every-path bound is attained."""
        e0 = self.initial - self.m0
        return any(all(x == s for x in self.u) and all(x == -s for x in self.v) and s * e0 <= 0
                   for s in (1.0, -1.0))


unit = st.one_of(st.sampled_from([-1.0, 1.0]), st.floats(-1.0, 1.0))


@st.composite
def scenarios(draw, steps=st.one_of(st.just(0.0), st.floats(0.01, 1.0)), irregular=False):
    n = draw(st.integers(1, 60))
    lists = lambda elem: draw(st.lists(elem, min_size=n, max_size=n).map(tuple))
    return Scenario(a=draw(steps), delta=draw(st.floats(0.0, 1.0)), b=draw(st.floats(0.0, 2.0)),
                    m0=draw(st.floats(-5.0, 5.0)), initial=draw(st.floats(-5.0, 5.0)), u=lists(unit), v=lists(unit),
                    observed=lists(st.booleans()) if irregular else (True,) * n)


TIGHT = [Scenario(0.1, 0.3, 1.0, 2.0, 1.0, (1.0,) * 40, (-1.0,) * 40, (True,) * 40),   # +delta, -b
         Scenario(0.7, 1.0, 0.5, -1.0, 3.0, (-1.0,) * 25, (1.0,) * 25, (True,) * 25),  # mirrored
         Scenario(1.0, 0.2, 0.0, 0.0, -4.0, (1.0,) * 5, (-1.0,) * 5, (True,) * 5)]     # a = 1


def check_envelope(errors: np.ndarray, bound: np.ndarray, scale: float, tight: bool, known_from: int = 0) -> None:
    """|error| within the bound wherever the tracker has an estimate, and it has one from step
    ``known_from`` on (its first observation for a running-mean start, else from the start), never
    before: a tracker that returned NaN would otherwise pass everything."""
    seen = ~np.isnan(errors)
    assert np.array_equal(seen, np.arange(len(errors)) >= known_from) and np.all(np.isfinite(bound[seen]))
    tol = RTOL * (bound + scale)
    assert np.all(np.abs(errors[seen]) <= bound[seen] + tol[seen])
    if tight:
        assert np.all(np.abs(errors[seen]) >= bound[seen] - tol[seen])


@given(scenarios(steps=st.floats(0.01, 1.0)))
@example(TIGHT[0]).via("constant drift +delta, noise -b")
@example(TIGHT[1]).via("constant drift -delta, noise +b")
@example(TIGHT[2]).via("a = 1")
def test_every_path_bound_constant_step(sc: Scenario) -> None:
    """§5.1 closed form for the pure EMA (running_mean_start=False), e_0 = initial - m_0."""
    errors, scale = sc.run(running_mean_start=False)
    t = np.arange(1, len(sc.u) + 1)
    check_envelope(errors, bounds.every_path_bound(t, sc.a, sc.delta, sc.b, sc.initial - sc.m0), scale, sc.aligned())


@given(scenarios(irregular=True))
@example(TIGHT[0]).via("constant drift +delta, noise -b")
@example(TIGHT[1]).via("constant drift -delta, noise +b")
@example(Scenario(0.0, 0.05, 1.0, 0.0, 0.0, (1.0,) * 30, (-1.0,) * 30, (True,) * 30)).via("running mean")
@example(Scenario(0.2, 0.3, 0.4, 1.0, 0.0, (1.0,) * 30, (-1.0,) * 30, (False, True, True) * 10)).via("gaps")
def test_every_path_envelope_default_tracker(sc: Scenario) -> None:
    """Envelope recursion over the realised observation times for a_n = max(1/n, a)."""
    errors, scale = sc.run(running_mean_start=True)
    steps = bounds.tracker_steps(sc.observed, sc.a, running_mean_start=True)
    first_observation = int(np.argmax(sc.observed)) if any(sc.observed) else len(sc.observed)
    check_envelope(errors, bounds.envelope(steps, sc.delta, sc.b, sc.initial - sc.m0), scale, sc.aligned(),
                   known_from=first_observation)


@given(scenarios(irregular=True))
def test_tracker_steps_match_implementation(sc: Scenario) -> None:
    tracker = RegionTracker(1, step=sc.a)
    used = []
    for seen in sc.observed:
        used.append(tracker.steps[0] if seen else 0.0)
        tracker.update([0] if seen else [], [1.0] if seen else [])
    assert np.array_equal(np.array(used), bounds.tracker_steps(sc.observed, sc.a))


def test_step_sequence_functions_equal_closed_forms() -> None:
    t = np.arange(1, 301)
    for a, delta, sigma, b, e0 in itertools.product([0.01, 0.3, 1.0], [0.0, 0.1], [0.5, 2.0], [0.0, 1.5], [0.0, -2.0]):
        steps = bounds.tracker_steps(np.ones(300, bool), a, running_mean_start=False)
        np.testing.assert_allclose(bounds.envelope(steps, delta, b, e0), bounds.every_path_bound(t, a, delta, b, e0),
                                   rtol=1e-12, atol=1e-14)
        v = bounds.noise_variance(steps, sigma)
        np.testing.assert_allclose(v, bounds.mse_bound(t, a, sigma, 0.0), rtol=1e-12)
        r = bounds.max_coefficient(steps)
        np.testing.assert_allclose(r, a)
        b_drift = bounds.envelope(steps, delta, 0.0, e0)
        for eta, k in [(0.1, 1), (1e-3, 50)]:
            np.testing.assert_allclose(b_drift + bounds.subgaussian_radius(v, eta, k),
                                       bounds.subgaussian_bound(t, a, sigma, delta, eta, e0, k), rtol=1e-12)
            np.testing.assert_allclose(b_drift + bounds.freedman_radius(v, r * b, eta, k),
                                       bounds.freedman_bound(t, a, sigma, delta, b, eta, e0, k), rtol=1e-12)


def test_freedman_radius_is_the_root_and_below_design_form() -> None:
    v, r, eta = np.meshgrid([1e-4, 0.1, 3.0], [0.0, 0.05, 1.0], [1e-6, 0.05], indexing="ij")
    x = bounds.freedman_radius(v, r, eta)
    log_term = np.log(2 / eta)
    np.testing.assert_allclose(x**2, 2 * (v + r * x / 3) * log_term, rtol=1e-12)
    assert np.all(x <= np.sqrt(2 * v * log_term) + 2 / 3 * r * log_term)


# --- exact moments ----------------------------------------------------------------------------

@given(a=st.floats(0.01, 1.0), sigma=st.floats(0.0, 3.0), delta=st.floats(0.0, 1.0), e0=st.floats(-5.0, 5.0),
       u=st.lists(unit, min_size=1, max_size=80))
@example(a=0.2, sigma=1.0, delta=0.1, e0=-3.0, u=[1.0] * 80).via("constant drift: equality")
def test_mse_bound_dominates_any_drift(a, sigma, delta, e0, u) -> None:
    """Bias/variance recursion under a drift independent of the noise (noise variance sigma^2)."""
    bias, var, mse = e0, 0.0, []
    for ut in u:
        bias, var = (1 - a) * (bias - delta * ut), (1 - a) ** 2 * var + a**2 * sigma**2
        mse.append(bias**2 + var)
    t = np.arange(1, len(u) + 1)
    bound = bounds.mse_bound(t, a, sigma, delta, e0)
    assert np.all(np.array(mse) <= bound * (1 + RTOL))
    assert np.all(np.sqrt(mse) <= bounds.rmse_bound_adaptive(t, a, sigma, delta, e0) * (1 + RTOL))
    if all(x == 1.0 for x in u) and e0 <= 0:
        np.testing.assert_allclose(mse, bound, rtol=RTOL)


def test_worst_case_moments_equal_closed_form_at_p1() -> None:
    t = np.arange(1, 401)
    a, sigma, delta, e0 = np.meshgrid([0.02, 0.3, 1.0], [0.5, 2.0], [0.0, 0.05], [0.0, 3.0], indexing="ij")
    mean, second = bounds.worst_case_moments(400, a, sigma, delta, 1.0, e0)
    np.testing.assert_allclose(second, bounds.mse_bound(t, a[..., None], sigma[..., None], delta[..., None],
                                                       e0[..., None]), rtol=1e-11)
    np.testing.assert_allclose(-mean, bounds.every_path_bound(t, a[..., None], delta[..., None], 0.0, e0[..., None]),
                               rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("running_mean_start", [False, True])
@pytest.mark.parametrize("p", [1.0, 0.6, 0.15])
def test_worst_case_moments_by_enumerating_observation_times(p, running_mean_start) -> None:
    """Exact: average the conditional moments over all 2^T observation patterns."""
    n, a, sigma, delta, e0 = 10, 0.3, 1.5, 0.2, 2.0
    patterns = np.array(list(itertools.product([False, True], repeat=n)))
    weights = np.prod(np.where(patterns, p, 1 - p), axis=1)
    steps = bounds.tracker_steps(patterns, a, running_mean_start)
    drift_part = bounds.envelope(steps, delta, 0.0, e0)  # exact conditional mean magnitude
    second = drift_part**2 + bounds.noise_variance(steps, sigma)
    mean, exact = bounds.worst_case_moments(n, a, sigma, delta, p, e0, running_mean_start)
    np.testing.assert_allclose(exact, weights @ second, rtol=1e-12)
    np.testing.assert_allclose(-mean, weights @ drift_part, rtol=1e-12)


def test_cross_term_matters_in_the_transient() -> None:
    """The design's 'tempting' form without the cross term is below the exact worst-case MSE."""
    a, delta, e0 = 0.5, 1.0, 4.0
    tempting = (1 - a) ** 2 * e0**2 + ((1 - a) / a) ** 2 * delta**2
    _, exact = bounds.worst_case_moments(1, a, 0.0, delta, 1.0, e0)
    assert exact[0] == pytest.approx(6.25) and tempting < exact[0]


@pytest.mark.parametrize("p", [1.0, 0.5, 0.05])
@pytest.mark.parametrize("a", [0.03, 0.4, 1.0])
def test_irregular_steady_state_is_the_recursion_limit(a, p) -> None:
    sigma, delta = 1.3, 0.02
    mean, second = bounds.worst_case_moments(int(30 / (a * p)), a, sigma, delta, p)  # (1 - pa)^t < 1e-13
    assert mean[-1] == pytest.approx(bounds.irregular_steady_mean(a, delta, p), rel=1e-9)
    assert second[-1] == pytest.approx(bounds.irregular_steady_mse(a, sigma, delta, p), rel=1e-9)
    assert np.all(np.diff(second) >= -1e-15)  # from e_0 = 0 the MSE rises to the steady state
    if p == 1.0:
        assert second[-1] == pytest.approx(bounds.steady_state_mse(a, sigma, delta), rel=1e-9)


def test_irregular_approximation_and_its_optimum() -> None:
    sigma, delta, p = 1.0, 1e-6, np.array([1.0, 0.3, 0.05])
    a_opt = bounds.irregular_optimal_step_closed_form(sigma, delta, p)
    np.testing.assert_allclose(bounds.irregular_steady_mse(a_opt, sigma, delta, p) /
                               bounds.irregular_mse_approx(a_opt, sigma, delta, p), 1.0, rtol=0.05)
    h = 1e-4 * a_opt
    slope = bounds.irregular_mse_approx(a_opt + h, sigma, delta, p) - bounds.irregular_mse_approx(a_opt - h, sigma, delta, p)
    np.testing.assert_allclose(slope / (2 * h), 0.0, atol=1e-6)
    # the approximation is not a bound (docs/design.md §5.9 correction 3)
    assert bounds.irregular_mse_approx(0.5, 0.0, 1.0, 0.1) < bounds.irregular_steady_mse(0.5, 0.0, 1.0, 0.1)


def test_running_mean_lag() -> None:
    t, delta, sigma = np.arange(1, 201), 0.05, 0.7
    _, second = bounds.worst_case_moments(200, 0.0, sigma, delta, 1.0, running_mean_start=True)
    np.testing.assert_allclose(second, bounds.running_mean_mse(t, sigma, delta), rtol=1e-10)
    truth, obs = simulate(1.0, np.full((1, 200), delta), np.zeros((1, 200)))  # noiseless trend
    est = track(RegionTracker(1, step=0.0), obs)
    np.testing.assert_allclose(truth - est, bounds.running_mean_lag(t, delta)[None], rtol=1e-9, atol=1e-12)


# --- steady state, optimum, lower bound, Kalman ------------------------------------------------

SIGMA_DELTA = [(1.0, d) for d in (1e-5, 1e-3, 0.05, 0.3, 0.5, 1.0, 5.0)] + [(3.0, 0.01)]


@pytest.mark.parametrize("sigma,delta", SIGMA_DELTA)
def test_exact_optimal_step(sigma, delta) -> None:
    a = float(bounds.optimal_step(sigma, delta))
    assert 0 < a < 1
    f = lambda x: bounds.steady_state_mse(x, sigma, delta)
    h = 1e-6 * min(a, 1 - a)
    assert abs(f(a + h) - f(a - h)) / (2 * h) <= 1e-5 * f(a) / a  # f'(a*) = 0
    grid = np.linspace(1e-4, 1.0, 20001)
    assert f(a) <= f(grid).min() * (1 + 1e-12)
    assert f(a) < f(1.0) == pytest.approx(sigma**2)  # a = 1 is never optimal (docs/design.md §5.9 correction 1)


def test_closed_form_optimum_is_the_small_drift_limit() -> None:
    sigma, delta = 1.0, np.array([1e-8, 1e-6])
    np.testing.assert_allclose(bounds.optimal_step(sigma, delta) / bounds.optimal_step_closed_form(sigma, delta),
                               1.0, rtol=2e-3)
    f_opt = bounds.steady_state_mse(bounds.optimal_step(sigma, delta), sigma, delta)
    np.testing.assert_allclose(f_opt / bounds.optimal_mse_closed_form(sigma, delta), 1.0, rtol=2e-3)
    assert float(bounds.optimal_mse_closed_form(1.0, 1.0)) == pytest.approx(1.1906, abs=1e-4)  # its constant


def test_lower_bound_constant_and_maximisation() -> None:
    assert bounds.lower_bound_constant(one_sided=True) == pytest.approx(0.41927, abs=1e-5)
    assert bounds.lower_bound_constant() == pytest.approx(0.41927 * 2 ** (2 / 3), abs=1e-5)
    for sigma, delta, one_sided in [(1.0, 0.01, False), (2.0, 0.3, True)]:
        n = np.arange(1, 5000)
        brute = bounds.two_point_lower_bound(n, sigma, delta, one_sided).max()
        assert bounds.minimax_lower_bound(sigma, delta, one_sided) == pytest.approx(brute, rel=1e-12)
    delta = np.array([1e-4, 1e-6])
    ratio = bounds.minimax_lower_bound(1.0, delta) / delta ** (2 / 3)
    np.testing.assert_allclose(ratio, bounds.lower_bound_constant(), rtol=5e-3)


@pytest.mark.parametrize("sigma,delta", SIGMA_DELTA)
def test_lower_bound_below_the_tuned_ema(sigma, delta) -> None:
    """The tuned EMA's worst-case steady-state MSE is achievable, so it cannot beat the lower bound."""
    lower = bounds.minimax_lower_bound(sigma, delta)
    achieved = bounds.steady_state_mse(bounds.optimal_step(sigma, delta), sigma, delta)
    assert 0 < lower <= achieved
    if delta / sigma < 1e-2:  # the tuned EMA is within a factor ~1.8 of optimal
        assert achieved / lower < 1.85


def test_two_point_bayes_factor_by_quadrature() -> None:
    from scipy import integrate
    s = np.array([1e-3, 0.1, 0.5, 1.937, 3.0, 6.0, 12.0])
    for si, value in zip(s, bounds.two_point_bayes_factor(s)):
        def f(x):  # sech^2 written with exp(-|u|) so it never overflows
            u = abs(si * x / 2)
            return stats.norm.pdf(x - si / 2) * 4 * np.exp(-2 * u) / (1 + np.exp(-2 * u)) ** 2
        exact = integrate.quad(f, -np.inf, np.inf, epsabs=0, epsrel=1e-12, limit=400, points=None)[0]
        assert value == pytest.approx(exact, rel=1e-9, abs=1e-300)
    assert bounds.two_point_bayes_factor(0.0) == pytest.approx(1.0, rel=1e-12)  # no information: risk (Delta/2)^2


def test_two_point_bayes_risk_by_monte_carlo() -> None:
    """The reduction to one dimension: simulate the two drift paths of the construction (n = 4 last
    steps, Gaussian noise), estimate with the posterior mean from the full likelihood, and compare
    the mean squared error with (Delta/2)^2 R(||mu||/sigma). Y = 4 error^2/Delta^2 lies in [0, 1],
    so Var Y <= E Y and Bernstein's inequality bounds each tail exactly; the check fails with
    probability < 2e-6 when the formula is right (fixed seed: deterministic)."""
    rng = np.random.default_rng(7)
    n, sigma, delta, draws = 4, 1.0, 0.3, 1_000_000
    gap = 2 * delta
    mu = gap * np.arange(1, n + 1)  # mean difference of the observations of the two paths
    big_delta = n * gap
    theta = rng.choice([-1.0, 1.0], draws)
    y = theta[:, None] * mu / 2 + sigma * rng.standard_normal((draws, n))
    log_ratio = -(np.square(y - mu / 2).sum(1) - np.square(y + mu / 2).sum(1)) / (2 * sigma**2)
    estimate = big_delta / 2 * np.tanh(log_ratio / 2)  # posterior mean of theta Delta/2
    y_scaled = 4 * np.square(estimate - theta * big_delta / 2) / big_delta**2
    expected = 4 * float(bounds.two_point_bayes_lower_bound(n, sigma, delta)) / big_delta**2
    assert expected == pytest.approx(float(bounds.two_point_bayes_factor(np.linalg.norm(mu) / sigma)))
    log_term = np.log(1 / 1e-6)
    third = log_term / (3 * draws)
    radius = third + np.sqrt(third**2 + 2 * expected * log_term / draws)
    assert abs(y_scaled.mean() - expected) <= radius
    assert radius < 0.02 * expected  # a 2% error in the formula would be caught


def test_bayes_lower_bound_sharpens_le_cam() -> None:
    n = np.arange(1, 400)
    for sigma, delta, one_sided in [(1.0, 0.01, False), (2.0, 0.3, True), (0.5, 1e-3, False)]:
        tv = bounds.two_point_lower_bound(n, sigma, delta, one_sided)
        bayes = bounds.two_point_bayes_lower_bound(n, sigma, delta, one_sided)
        assert np.all(bayes >= tv * (1 - 1e-12) - 1e-300)  # equal (0) only where both underflow
        assert np.all(bayes <= 2 * tv * (1 + 1e-12) + 1e-300)  # R(s) <= 4 Phi(-s/2)
        brute = bounds.two_point_bayes_lower_bound(np.arange(1, 1000), sigma, delta, one_sided).max()  # n* <= 90
        assert bounds.minimax_bayes_lower_bound(sigma, delta, one_sided) == pytest.approx(brute, rel=1e-12)
    assert bounds.bayes_lower_bound_constant() == pytest.approx(0.93632, abs=1e-5)
    assert bounds.bayes_lower_bound_constant(one_sided=True) == pytest.approx(0.93632 / 2 ** (2 / 3), abs=1e-5)
    assert 3 * 2 ** (-4 / 3) / bounds.bayes_lower_bound_constant() == pytest.approx(1.2715, abs=1e-4)
    delta = np.array([1e-4, 1e-6])
    np.testing.assert_allclose(bounds.minimax_bayes_lower_bound(1.0, delta) / delta ** (2 / 3),
                               bounds.bayes_lower_bound_constant(), rtol=5e-3)


@pytest.mark.parametrize("sigma,delta", SIGMA_DELTA)
def test_bayes_lower_bound_below_the_tuned_ema(sigma, delta) -> None:
    lower = bounds.minimax_bayes_lower_bound(sigma, delta)
    achieved = bounds.steady_state_mse(bounds.optimal_step(sigma, delta), sigma, delta)
    assert bounds.minimax_lower_bound(sigma, delta) <= lower <= achieved
    if delta / sigma < 1e-2:  # the tuned EMA is within a factor ~1.27 of any estimator
        assert achieved / lower < 1.3


@pytest.mark.parametrize("q,sigma", [(1e-4, 1.0), (0.01, 1.0), (0.5, 2.0), (10.0, 0.3)])
def test_kalman_steady_state(q, sigma) -> None:
    k = float(bounds.kalman_gain(q, sigma))
    lam = q / sigma**2
    assert k**2 + lam * k - lam == pytest.approx(0.0, abs=1e-14 * max(1.0, lam))
    var = 1e6  # iterate the filter's variance recursion from a vague prior
    for _ in range(int(20 / k)):
        prior = var + q
        var = prior * sigma**2 / (prior + sigma**2)
    assert var == pytest.approx(float(bounds.kalman_mse(q, sigma)), rel=1e-9)
    ema = 0.0  # EMA with a = K under the random walk: steady-state MSE is K sigma^2
    for _ in range(int(20 / k)):
        ema = (1 - k) ** 2 * (ema + q) + k**2 * sigma**2
    assert ema == pytest.approx(k * sigma**2, rel=1e-9)
    tracker = KalmanTracker(1, q=q, r=sigma**2)  # the implementation converges to the same
    for _ in range(int(20 / k)):
        tracker.update([0], [0.0])
    assert tracker.variances[0] == pytest.approx(k * sigma**2, rel=1e-9)


# --- Monte Carlo ------------------------------------------------------------------------------
# Family-wise false-failure rate ALPHA for this section, split evenly (Bonferroni) over the
# MC_CHECKS one-sided checks below. Every check is exact (Hoeffding or binomial), not asymptotic.
ALPHA = 1e-4
MC_CASES = [  # (drift, noise, p, running_mean_start)
    (ConstantSign(0.02), Uniform(1.0), 1.0, False),
    (ConstantSign(0.02), Rademacher(1.0), 1.0, True),
    (RandomWalk(0.05), ClippedCauchy(1.0), 0.5, True),
    (ConstantSign(0.01), Uniform(0.5), 0.3, False),
]
MC_CHECKS = 4 * len(MC_CASES)
A, PATHS, STEPS, ETA = 0.1, 4000, 150, 0.1


def _simulate_case(drift, noise, p, running_mean_start, seed) -> tuple[np.ndarray, np.ndarray]:
    """Errors (NaN before a path's first estimate) and the tracker's steps, both (PATHS, STEPS)."""
    rng = np.random.default_rng(seed)
    truth, obs = simulate(0.0, drift.sample(PATHS, STEPS, rng), noise.sample(PATHS, STEPS, rng))
    observed = observation_mask(PATHS, STEPS, p, rng)
    tracker = RegionTracker(PATHS, step=A, initial=0.0, running_mean_start=running_mean_start)
    return track(tracker, obs, observed) - truth, bounds.tracker_steps(observed, A, running_mean_start)


@pytest.mark.parametrize("case", range(len(MC_CASES)))
def test_monte_carlo_mse_and_coverage(case) -> None:
    drift, noise, p, rms = MC_CASES[case]
    err, steps = _simulate_case(drift, noise, p, rms, seed=1000 + case)
    level = ALPHA / MC_CHECKS
    drift_part = bounds.envelope(steps, drift.delta)
    var = bounds.noise_variance(steps, noise.sigma)
    seen = ~np.isnan(err[:, -1])
    e, n = err[seen, -1], int(seen.sum())
    assert n > 0.99 * PATHS

    # 1. MSE, conditional on the observation times: E[e^2 | times] <= drift_part^2 + var, and
    # |e| <= cap on every path. With X = e^2/cap^2 in [0, 1], Hoeffding gives
    # P(mean(X - bound/cap^2) >= sqrt(ln(1/level)/(2n))) <= level.
    mse_bound = (drift_part**2 + var)[seen, -1]
    cap = bounds.envelope(steps, drift.delta, noise.bound)[seen, -1]
    assert np.mean((e**2 - mse_bound) / cap**2) <= np.sqrt(np.log(1 / level) / (2 * n))
    if p == 1.0:  # here the conditional bound is the exact worst-case MSE of the recursion
        _, exact = bounds.worst_case_moments(STEPS, A, noise.sigma, drift.delta, 1.0, 0.0, rms)
        assert mse_bound[0] == pytest.approx(exact[-1], rel=1e-10)

    # 2-3. coverage at t = T (sub-Gaussian, Freedman): each path violates with probability
    # <= ETA, so violations are stochastically below Binomial(n, ETA); fail if P(Bin >= k) < level.
    proxy_var = bounds.noise_variance(steps, noise.subgaussian)
    coef = bounds.max_coefficient(steps)
    radii = {"subgaussian": bounds.subgaussian_radius(proxy_var, ETA),
             "freedman": bounds.freedman_radius(var, coef * noise.bound, ETA)}
    for name, radius in radii.items():
        k = int(np.sum(np.abs(e) > (drift_part + radius)[seen, -1]))
        assert stats.binom.sf(k - 1, n, ETA) >= level, f"{name}: {k} of {n} paths outside"

    # 4. all paths and all steps at once (union over K = PATHS regions, T = STEPS steps) at
    # eta = level: any violation fails, which happens with probability <= level.
    uniform = drift_part + bounds.subgaussian_radius(proxy_var, level, PATHS * STEPS)
    estimated = ~np.isnan(err)
    assert np.all(np.abs(err[estimated]) <= uniform[estimated])


# --- aria sim bounds ----------------------------------------------------------------------------

def _run_bounds_check(out, *extra: str) -> int:
    import argparse
    from simulations import bounds_check
    parser = argparse.ArgumentParser()
    bounds_check.add_arguments(parser)
    return bounds_check.run(parser.parse_args(["--quick", "--paths", "40", "--steps", "30", "--out", str(out), *extra]))


def test_bounds_check_runs_and_writes_results(tmp_path, capsys) -> None:
    import json
    import pandas as pd
    assert _run_bounds_check(tmp_path) == 0
    table = pd.read_csv(tmp_path / "results.csv")
    config = json.loads((tmp_path / "config.json").read_text())
    assert len(table) == config["checks"] and table["passed"].all()
    assert set(table["bound"]) == {"every_path", "mse", "rmse_adaptive", "steady_state", "subgaussian",
                                   "subgaussian_all", "freedman", "freedman_all", "slope_every_path", "slope_mse"}
    slope = table[table["bound"].str.startswith("slope_")]
    assert set(slope["p"]) == {1.0} and set(slope["start"]) == {"running_mean"}
    every = table[table["bound"] == "every_path"]
    assert set(every["noise"]) == {"uniform", "rademacher", "clipped_cauchy"} and (every["ratio"] <= 1 + RTOL).all()
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"560 cells, {config['checks']} bound checks, 0 violations"


def test_the_mean_square_test_does_not_reject_a_bound_on_two_close_paths() -> None:
    """`aria sim bounds --paths 2` failed 6-10 correct mean-square checks per run (p down to 1e-158)
    under a z-test: two squares close together give a tiny sample sd. Student's t with one degree
    of freedom treats them as the two draws they are; with many paths it equals the z-test."""
    from scipy import stats
    from simulations.bounds_check import _t_test
    mean, p = _t_test(np.array([0.4500, 0.4526]), 0.177)
    assert mean == pytest.approx(0.4513) and p > 1e-3
    squares = np.random.default_rng(0).chisquare(1, 4000)
    z = (squares.mean() - 1.05) / (squares.std(ddof=1) / np.sqrt(squares.size))
    assert _t_test(squares, 1.05)[1] == pytest.approx(stats.norm.sf(z), rel=0.05)


def test_bounds_check_detects_a_wrong_bound(monkeypatch) -> None:
    from simulations.bounds_check import BoundsCheckConfig, check_cell
    cell = dict(a=0.2, sigma=1.0, delta=0.05, p=1.0, drift="constant_sign", noise="rademacher", start="constant")
    config = BoundsCheckConfig(paths=50, steps=40)
    assert all(row["passed"] for row in check_cell(cell, config, 0, 1e-6))
    true_envelope = bounds.envelope
    monkeypatch.setattr(bounds, "envelope", lambda steps, delta, b=0.0, e0=0.0: 0.9 * true_envelope(steps, delta, b, e0))
    failed = {row["bound"] for row in check_cell(cell, config, 0, 1e-6) if not row["passed"]}
    assert "every_path" in failed


def test_bounds_check_slope_rows_detect_a_wrong_bound(monkeypatch) -> None:
    from simulations.bounds_check import BoundsCheckConfig, check_cell
    cell = dict(a=0.3, sigma=1.0, delta=0.05, p=1.0, drift="constant_sign", noise="rademacher", start="running_mean")
    config = BoundsCheckConfig(paths=200, steps=40)
    rows = check_cell(cell, config, 0, 1e-6)
    assert {row["bound"] for row in rows} >= {"slope_every_path", "slope_mse"} and all(row["passed"] for row in rows)
    true_bound, true_mse = slope_bounds.slope_every_path_bound, slope_bounds.slope_mse_bound
    monkeypatch.setattr(slope_bounds, "slope_every_path_bound", lambda *a, **k: 0.5 * true_bound(*a, **k))
    monkeypatch.setattr(slope_bounds, "slope_mse_bound", lambda *a, **k: 0.5 * true_mse(*a, **k))
    failed = {row["bound"] for row in check_cell(cell, config, 0, 1e-6) if not row["passed"]}
    assert failed == {"slope_every_path", "slope_mse"}
