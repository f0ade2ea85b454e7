"""Synthetic discrepancy processes that satisfy the tracker theory's assumptions by construction.

Drift: increments d with |d| <= delta on every path (docs/design.md §5: bounded drift), and
|d_{t+1} - d_t| <= ``slope_bound`` (bounded drift of the slope, for the slope estimators of
``aria_theory.bounds``; 2 delta unless a process promises less). Noise: mean 0
and variance exactly sigma^2, independent over time and of the drift (bounded variance); each
family records ``bound`` (b with |xi| <= b, or None) and ``subgaussian`` (a proxy s with
E exp(l xi) <= exp(l^2 s^2/2), or None). Every ``sample(n_paths, n_steps, rng)`` returns a
float array of shape (n_paths, n_steps) drawn from a ``numpy.random.Generator`` and raises
``AssertionError`` if a sample breaks its process's bound (a bug, never expected).

Time convention: column t of an increment array is d_t, and ``simulate`` returns aligned arrays
truth[:, t] = m_{t+1} = m_0 + d_0 + ... + d_t and observations[:, t] = truth[:, t] + xi_{t+1},
so a tracker fed observations[:, t] at step t should be compared with truth[:, t].

Registries: ``DRIFTS[name](delta, time_constant)`` builds a drift whose time scales (period,
regime length, decay time, adversarial switching) are set relative to the tracker's time
constant 1/a in steps; ``NOISES[name](sigma)`` builds a noise family. ``observation_mask``,
``simulate`` and ``track`` run a tracker on sampled paths.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Drift(abc.ABC):
    """Increments d_t with |d_t| <= delta (in discrepancy units per step) on every path."""

    delta: float

    def __post_init__(self) -> None:
        if not self.delta >= 0:
            raise ValueError(f"drift bound delta must be >= 0, got {self.delta}")

    @property
    def slope_bound(self) -> float:
        """gamma with |d_{t+1} - d_t| <= gamma on every path (bounded drift of the slope); the
        default 2 delta follows from |d| <= delta alone. Checked by `sample` up to float rounding."""
        return 2 * self.delta

    def sample(self, n_paths: int, n_steps: int, rng: np.random.Generator) -> np.ndarray:
        d = np.asarray(self._increments(n_paths, n_steps, rng), float)
        if d.shape != (n_paths, n_steps) or not np.all(np.abs(d) <= self.delta):
            raise AssertionError(f"{type(self).__name__} broke |d| <= delta = {self.delta}")
        if not np.all(np.abs(np.diff(d, axis=1)) <= self.slope_bound + 1e-12 * self.delta):
            raise AssertionError(f"{type(self).__name__} broke |d_t+1 - d_t| <= gamma = {self.slope_bound}")
        return d

    @abc.abstractmethod
    def _increments(self, n_paths: int, n_steps: int, rng: np.random.Generator) -> np.ndarray:
        """Increments of shape (n_paths, n_steps), each |d| <= delta by construction."""


@dataclass(frozen=True)
class RandomWalk(Drift):
    """Bounded random walk: d_t ~ Uniform[-delta, delta], independent."""

    def _increments(self, n_paths, n_steps, rng):
        return self.delta * rng.uniform(-1.0, 1.0, (n_paths, n_steps))


@dataclass(frozen=True)
class LinearTrend(Drift):
    """m_t = m_0 + g t with a slope g ~ Uniform[-delta, delta] per path."""

    slope_bound = property(lambda self: 0.0)

    def _increments(self, n_paths, n_steps, rng):
        slope = self.delta * rng.uniform(-1.0, 1.0, (n_paths, 1))
        return slope * np.ones(n_steps)


@dataclass(frozen=True)
class Sinusoid(Drift):
    """m_t oscillates with ``period`` steps and a random phase per path; the increments are
    d_t = delta cos(2 pi (t + phase)/period), so the amplitude of m is delta period/(2 pi)."""

    period: float = 100.0

    @property
    def slope_bound(self) -> float:
        """|cos(x + h) - cos(x)| <= 2 sin(h/2) with h = 2 pi/period."""
        return 2 * self.delta * math.sin(min(math.pi / self.period, math.pi / 2))

    def _increments(self, n_paths, n_steps, rng):
        phase = rng.uniform(0.0, self.period, (n_paths, 1))
        return self.delta * np.cos(2 * np.pi * (np.arange(n_steps) + phase) / self.period)


@dataclass(frozen=True)
class RegimeSwitch(Drift):
    """Piecewise-linear m: at each step a new slope ~ Uniform[-delta, delta] starts with
    probability 1/``mean_duration`` (a region whose difficulty changes course)."""

    mean_duration: float = 50.0

    def _increments(self, n_paths, n_steps, rng):
        regime = np.cumsum(rng.random((n_paths, n_steps)) < 1 / self.mean_duration, axis=1)
        slopes = self.delta * rng.uniform(-1.0, 1.0, (n_paths, n_steps + 1))
        return np.take_along_axis(slopes, regime, axis=1)


@dataclass(frozen=True)
class TrainingCurve(Drift):
    """A decaying, training-like discrepancy m_t = floor + gap exp(-t/tau) per path.

    The steepest step is the first, gap (1 - exp(-1/tau)) = r delta with r ~ Uniform[0.5, 1], so
    gap = r delta/(1 - exp(-1/tau)); the increments are d_t = -r delta exp(-t/tau)."""

    tau: float = 200.0

    @property
    def slope_bound(self) -> float:
        """|d_{t+1} - d_t| = r delta e^(-t/tau)(1 - e^(-1/tau)) <= delta (1 - e^(-1/tau))."""
        return self.delta * -math.expm1(-1 / self.tau)

    def _increments(self, n_paths, n_steps, rng):
        rate = self.delta * rng.uniform(0.5, 1.0, (n_paths, 1))
        return -rate * np.exp(-np.arange(n_steps) / self.tau)


@dataclass(frozen=True)
class ConstantSign(Drift):
    """Adversary: d_t = +delta or -delta (one sign per path) for all t. With noise at its
    bound of the same sign it attains the every-path bound of any step sequence."""

    slope_bound = property(lambda self: 0.0)

    def _increments(self, n_paths, n_steps, rng):
        sign = rng.choice([-1.0, 1.0], size=(n_paths, 1))
        return sign * self.delta * np.ones(n_steps)


@dataclass(frozen=True)
class AlternatingSign(Drift):
    """Adversary: |d_t| = delta with the sign flipped every ``half_period`` steps (set to the
    tracker's time constant, so the error swings between its largest values of both signs)."""

    half_period: int = 10

    def _increments(self, n_paths, n_steps, rng):
        offset = rng.integers(0, 2 * self.half_period, (n_paths, 1))
        flips = (np.arange(n_steps) + offset) // self.half_period
        return self.delta * np.where(flips % 2 == 0, 1.0, -1.0)


@dataclass(frozen=True)
class Noise(abc.ABC):
    """Observation noise with mean 0 and variance exactly sigma^2, independent over time."""

    sigma: float

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"noise sd sigma must be > 0, got {self.sigma}")

    @property
    def bound(self) -> float | None:
        """b with |xi| <= b surely, or None if unbounded."""
        return None

    @property
    @abc.abstractmethod
    def subgaussian(self) -> float | None:
        """Sub-Gaussian proxy s (E exp(l xi) <= exp(l^2 s^2/2) for all l), or None."""

    @property
    @abc.abstractmethod
    def fourth_moment(self) -> float:
        """E xi^4 (math.inf if infinite); sets the Monte Carlo error of variance estimates."""

    def sample(self, n_paths: int, n_steps: int, rng: np.random.Generator) -> np.ndarray:
        xi = np.asarray(self._draw((n_paths, n_steps), rng), float)
        if xi.shape != (n_paths, n_steps) or not np.all(np.isfinite(xi)):
            raise AssertionError(f"{type(self).__name__} drew a bad sample")
        if self.bound is not None and not np.all(np.abs(xi) <= self.bound):
            raise AssertionError(f"{type(self).__name__} broke |xi| <= b = {self.bound}")
        return xi

    @abc.abstractmethod
    def _draw(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Samples of the given shape."""


@dataclass(frozen=True)
class Gaussian(Noise):
    """N(0, sigma^2): unbounded, sigma-sub-Gaussian."""

    subgaussian = property(lambda self: self.sigma)
    fourth_moment = property(lambda self: 3 * self.sigma**4)

    def _draw(self, shape, rng):
        return self.sigma * rng.standard_normal(shape)


@dataclass(frozen=True)
class Uniform(Noise):
    """Uniform[-b, b], b = sqrt(3) sigma. Strictly sub-Gaussian: E exp(l xi) = sinh(l b)/(l b)
    <= exp(l^2 b^2/6) = exp(l^2 sigma^2/2), term by term since (2k+1)! >= 6^k k!."""

    bound = property(lambda self: math.sqrt(3) * self.sigma)
    subgaussian = property(lambda self: self.sigma)
    fourth_moment = property(lambda self: 9 * self.sigma**4 / 5)

    def _draw(self, shape, rng):
        return self.bound * rng.uniform(-1.0, 1.0, shape)


@dataclass(frozen=True)
class Rademacher(Noise):
    """+-sigma with probability 1/2 each: the extreme bounded noise (b = sigma); E exp(l xi) =
    cosh(l sigma) <= exp(l^2 sigma^2/2)."""

    bound = property(lambda self: self.sigma)
    subgaussian = property(lambda self: self.sigma)
    fourth_moment = property(lambda self: self.sigma**4)

    def _draw(self, shape, rng):
        return self.sigma * rng.choice([-1.0, 1.0], size=shape)


def _clipped_cauchy_moment(clip: float, power: int) -> float:
    """E min(|X|, c)^power for X standard Cauchy, power 2 or 4, in closed form:
    (2/pi) int_0^c x^power/(1+x^2) dx + c^power P(|X| > c), with P(|X| > c) = 1 - (2/pi) atan c."""
    inner = {2: clip - math.atan(clip), 4: clip**3 / 3 - clip + math.atan(clip)}[power]
    return 2 / math.pi * inner + clip**power * (1 - 2 / math.pi * math.atan(clip))


@dataclass(frozen=True)
class ClippedCauchy(Noise):
    """Heavy-tailed but bounded: a standard Cauchy clipped to [-clip, clip], scaled by
    sigma / sqrt(E min(X^2, clip^2)) so the variance is exactly sigma^2 (closed form). With the
    default clip = 20 about 3% of draws sit at the clip and b = 4.04 sigma; the kurtosis is 11.3.
    Sub-Gaussian only through its bound (Hoeffding: proxy b)."""

    clip: float = 20.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")

    @property
    def scale(self) -> float:
        return self.sigma / math.sqrt(_clipped_cauchy_moment(self.clip, 2))

    bound = property(lambda self: self.scale * self.clip)
    subgaussian = property(lambda self: self.bound)
    fourth_moment = property(lambda self: self.scale**4 * _clipped_cauchy_moment(self.clip, 4))

    def _draw(self, shape, rng):
        return self.scale * np.clip(rng.standard_cauchy(shape), -self.clip, self.clip)


@dataclass(frozen=True)
class StudentT(Noise):
    """sigma sqrt((nu-2)/nu) T_nu, variance exactly sigma^2 (nu > 2): unbounded, not sub-Gaussian.
    E xi^4 = 3 sigma^4 (nu-2)/(nu-4) for nu > 4 (the default nu = 5 keeps it finite, so Monte
    Carlo means of squared errors obey the central limit theorem)."""

    nu: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.nu > 2:
            raise ValueError(f"Student-t needs nu > 2 for a finite variance, got {self.nu}")

    subgaussian = property(lambda self: None)
    fourth_moment = property(lambda self: 3 * self.sigma**4 * (self.nu - 2) / (self.nu - 4) if self.nu > 4 else math.inf)

    def _draw(self, shape, rng):
        return self.sigma * math.sqrt((self.nu - 2) / self.nu) * rng.standard_t(self.nu, shape)


DRIFTS: dict[str, Callable[[float, float], Drift]] = {
    "random_walk": lambda delta, tc: RandomWalk(delta),
    "linear_trend": lambda delta, tc: LinearTrend(delta),
    "sinusoid": lambda delta, tc: Sinusoid(delta, period=2 * math.pi * tc),
    "regime_switch": lambda delta, tc: RegimeSwitch(delta, mean_duration=2 * tc),
    "training_curve": lambda delta, tc: TrainingCurve(delta, tau=5 * tc),
    "constant_sign": lambda delta, tc: ConstantSign(delta),
    "alternating_sign": lambda delta, tc: AlternatingSign(delta, half_period=max(1, round(tc))),
}
NOISES: dict[str, Callable[[float], Noise]] = {
    "gaussian": Gaussian,
    "uniform": Uniform,
    "rademacher": Rademacher,
    "clipped_cauchy": ClippedCauchy,
    "student_t": StudentT,
}


def observation_mask(n_paths: int, n_steps: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli(p) observation indicators of shape (n_paths, n_steps) (all True when p = 1)."""
    if not 0 < p <= 1:
        raise ValueError(f"observation probability p must be in (0, 1], got {p}")
    return np.ones((n_paths, n_steps), bool) if p == 1 else rng.random((n_paths, n_steps)) < p


def simulate(m0: float | np.ndarray, increments: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth, observations) from m_0 (scalar or per path), increments d and noise xi of shape
    (n_paths, n_steps): truth[:, t] = m_0 + sum_{s<=t} d_s, observations = truth + noise."""
    if np.shape(increments) != np.shape(noise):
        raise ValueError(f"increments {np.shape(increments)} and noise {np.shape(noise)} differ in shape")
    m0 = np.asarray(m0, float)
    truth = (m0[:, None] if m0.ndim else m0) + np.cumsum(increments, axis=-1)
    return truth, truth + noise


def track(tracker, observations: np.ndarray, observed: np.ndarray | None = None) -> np.ndarray:
    """Feed a (n_paths, n_steps) observation array to a tracker with one region per path, one
    ``update`` per step (only the paths where ``observed`` is True); return its estimates after
    each step, shape (n_paths, n_steps), NaN where a path has no estimate yet."""
    n_paths, n_steps = observations.shape
    if tracker.num_regions != n_paths:
        raise ValueError(f"tracker has {tracker.num_regions} regions for {n_paths} paths")
    estimates = np.empty((n_paths, n_steps))
    paths = np.arange(n_paths)
    for t in range(n_steps):
        seen = paths if observed is None else np.flatnonzero(observed[:, t])
        tracker.update(seen, observations[seen, t])
        estimates[:, t] = tracker.estimates
    return estimates
