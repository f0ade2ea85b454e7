"""Synthetic processes: every registered drift and noise meets its stated assumptions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from aria_theory.processes import (DRIFTS, NOISES, AlternatingSign, ClippedCauchy, ConstantSign, Drift, Sinusoid,
                                   StudentT, TrainingCurve, observation_mask, simulate, track)
from aria_theory.tracker import RegionTracker


@pytest.mark.parametrize("name", sorted(DRIFTS))
@pytest.mark.parametrize("delta,time_constant", [(0.0, 5.0), (1e-3, 1.0), (0.37, 20.0), (5.0, 300.0)])
def test_drift_increments_are_bounded_exactly(name, delta, time_constant) -> None:
    drift = DRIFTS[name](delta, time_constant)
    d = drift.sample(64, 700, np.random.default_rng(0))
    assert d.shape == (64, 700) and d.dtype == np.float64
    assert np.all(np.abs(d) <= delta)  # no tolerance: the bound holds in floating point
    if delta > 0 and name not in ("training_curve", "linear_trend"):  # they use most of the room
        assert np.abs(d).max() >= 0.9 * delta


@pytest.mark.parametrize("name", sorted(DRIFTS))
@pytest.mark.parametrize("time_constant", [1.0, 3.3, 40.0])
def test_drift_slope_changes_are_bounded(name, time_constant) -> None:
    drift = DRIFTS[name](0.3, time_constant)
    d = drift.sample(64, 500, np.random.default_rng(5))
    assert 0 <= drift.slope_bound <= 2 * drift.delta
    assert np.abs(np.diff(d, axis=1)).max() <= drift.slope_bound * (1 + 1e-9)
    if name in ("linear_trend", "constant_sign"):
        assert drift.slope_bound == 0.0
    if name in ("sinusoid", "training_curve", "alternating_sign"):  # the bound is (nearly) reached
        assert np.abs(np.diff(d, axis=1)).max() >= 0.95 * drift.slope_bound


def test_drift_sampling_checks_its_bound() -> None:
    class Broken(Drift):
        def _increments(self, n_paths, n_steps, rng):
            return np.full((n_paths, n_steps), 2 * self.delta)

    with pytest.raises(AssertionError, match="delta"):
        Broken(0.1).sample(2, 3, np.random.default_rng(0))

    class Jumpy(Drift):  # |d| <= delta but the slope changes faster than promised
        slope_bound = property(lambda self: 0.5 * self.delta)

        def _increments(self, n_paths, n_steps, rng):
            return self.delta * np.where(np.arange(n_steps) % 2 == 0, 1.0, -1.0) * np.ones((n_paths, 1))

    with pytest.raises(AssertionError, match="gamma"):
        Jumpy(0.1).sample(2, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="delta must be >= 0"):
        ConstantSign(-1.0)


def test_drift_shapes_are_what_they_claim() -> None:
    rng = np.random.default_rng(1)
    d = TrainingCurve(0.2, tau=30.0).sample(5, 400, rng)
    t = np.arange(401)
    truth = np.concatenate([np.zeros((5, 1)), np.cumsum(d, axis=1)], axis=1)
    rate = -d[:, :1]
    gap = rate / (1 - np.exp(-1 / 30.0))  # m_t = floor + gap exp(-t/tau), floor = -gap
    np.testing.assert_allclose(truth, -gap + gap * np.exp(-t / 30.0), atol=1e-12)
    d = Sinusoid(0.1, period=40.0).sample(3, 400, rng)
    np.testing.assert_allclose(d[:, 40:], d[:, :-40], atol=1e-12)  # periodic increments, zero mean
    np.testing.assert_allclose(d[:, :400].sum(axis=1), 0.0, atol=1e-12)
    d = AlternatingSign(0.5, half_period=7).sample(4, 70, rng)
    assert np.all(np.abs(d) == 0.5) and np.all(d[:, 7:] == -d[:, :-7])
    d = ConstantSign(0.3).sample(10, 20, rng)
    assert np.all(np.abs(d) == 0.3) and np.all(d == d[:, :1])


# Monte Carlo moments by the median of means: N draws in K blocks. A block's mean is off by more
# than 2 sqrt(var K / N) with probability <= 1/4 (Chebyshev), the median of the K block means only
# if half of them are (Hoeffding: <= exp(-K / 8)). This needs a finite variance and nothing more:
# for the mean square a finite fourth moment, which Student-t with 5 degrees of freedom has -- but
# not a finite sixth, so a normal (CLT) interval for its mean square has no rate to rely on.
# Family-wise false-failure rate ALPHA over the 2 * len(NOISES) * len(SIGMAS) checks (Bonferroni).
ALPHA, N, SIGMAS = 1e-6, 1_000_000, [0.3, 2.0]
K = math.ceil(8 * math.log(2 * len(NOISES) * len(SIGMAS) / ALPHA))


def median_of_means(x: np.ndarray) -> float:
    x = x.reshape(-1)
    return float(np.median(x[: K * (len(x) // K)].reshape(K, -1).mean(axis=1)))


@pytest.mark.parametrize("name", sorted(NOISES))
@pytest.mark.parametrize("sigma", SIGMAS)
def test_noise_moments_and_bound(name, sigma) -> None:
    noise = NOISES[name](sigma)
    xi = noise.sample(1000, N // 1000, np.random.default_rng(sorted(NOISES).index(name)))
    n = K * (N // K)
    assert abs(median_of_means(xi)) <= 2 * math.sqrt(sigma**2 * K / n)
    assert math.isfinite(noise.fourth_moment)
    rounding = 1e-12 * sigma**2  # Rademacher's xi^2 is sigma^2 exactly: no variance, only float sums
    assert abs(median_of_means(xi**2) - sigma**2) <= 2 * math.sqrt((noise.fourth_moment - sigma**4) * K / n) + rounding
    if noise.bound is not None:
        assert np.abs(xi).max() <= noise.bound
    if noise.subgaussian is not None:
        assert noise.subgaussian >= sigma  # a sub-Gaussian proxy bounds the sd


@pytest.mark.parametrize("name", sorted(NOISES))
def test_subgaussian_proxy_bounds_the_mgf(name) -> None:
    """E exp(l xi) <= exp(l^2 s^2/2), computed exactly for the bounded and Gaussian families."""
    noise = NOISES[name](1.3)
    s, lam = noise.subgaussian, np.linspace(-8, 8, 160)  # excludes 0
    mgf = {"gaussian": lambda: np.exp(lam**2 * 1.3**2 / 2),
           "uniform": lambda: np.sinh(lam * noise.bound) / (lam * noise.bound),
           "rademacher": lambda: np.cosh(lam * 1.3)}
    if name in mgf:
        assert np.all(mgf[name]() <= np.exp(lam**2 * s**2 / 2) * (1 + 1e-12))
    elif name == "clipped_cauchy":  # Hoeffding's lemma for |xi| <= b
        assert s == noise.bound
    else:
        assert s is None and noise.bound is None


def test_clipped_cauchy_moments_by_quadrature() -> None:
    noise = ClippedCauchy(1.0, clip=7.0)
    for power, value in [(2, 1.0), (4, noise.fourth_moment)]:
        tail = 7.0**power * (1 - 2 / math.pi * math.atan(7.0))
        inner = integrate.quad(lambda x: 2 * x**power / (math.pi * (1 + x * x)), 0, 7.0)[0]
        assert noise.scale**power * (inner + tail) == pytest.approx(value, rel=1e-12)
    assert noise.bound == pytest.approx(noise.scale * 7.0)


def test_student_t_needs_finite_variance() -> None:
    with pytest.raises(ValueError, match="nu > 2"):
        StudentT(1.0, nu=2.0)
    assert StudentT(1.0, nu=3.0).fourth_moment == math.inf
    assert StudentT(2.0, nu=6.0).fourth_moment == pytest.approx(3 * 16 * 4 / 2)


def test_simulate_aligns_truth_and_observations() -> None:
    d = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    xi = np.array([[0.1, 0.0, -0.1], [0.0, 0.2, 0.0]])
    truth, obs = simulate(np.array([10.0, 0.0]), d, xi)
    np.testing.assert_array_equal(truth, [[11.0, 13.0, 16.0], [0.0, -1.0, -0.5]])
    np.testing.assert_array_equal(obs, truth + xi)
    with pytest.raises(ValueError, match="shape"):
        simulate(0.0, d, xi[:, :2])


def test_observation_mask_and_track() -> None:
    rng = np.random.default_rng(3)
    mask = observation_mask(500, 400, 0.25, rng)
    # 200000 Bernoulli(0.25): the mean is within 6 sd (false-failure rate < 1e-8)
    assert abs(mask.mean() - 0.25) <= 6 * math.sqrt(0.25 * 0.75 / mask.size)
    assert observation_mask(2, 3, 1.0, rng).all()
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        observation_mask(2, 3, 0.0, rng)
    obs = rng.normal(size=(3, 6))
    seen = np.array([[True] * 6, [False, True, False, True, False, False], [False] * 6])
    est = track(RegionTracker(3, step=0.5), obs, seen)
    assert np.isnan(est[1, 0]) and est[1, 1] == obs[1, 1] and np.isnan(est[2]).all()
    assert est[1, 3] == pytest.approx((obs[1, 1] + obs[1, 3]) / 2) and est[1, 5] == est[1, 3]
