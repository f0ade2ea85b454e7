"""Allocation policies: from per-region discrepancy estimates to sampling probabilities.

Every policy follows `AllocationPolicy`: `probabilities(estimates)` returns a distribution over the
K regions (finite, >= 0, summing to 1 within 1e-12) with every entry >= `floors`; stateful
policies (EXP3, DoReMi, Progress) learn in `observe`. A NaN estimate means "region not observed yet" (the
trackers' convention) and is read as the largest observed estimate, so unknown regions are
explored rather than starved; if nothing is observed yet the weights are uniform.

`aria_theory.progress.ProgressPolicy` allocates by the estimated reducible part of the
discrepancy instead of its level, under the same interface.

ARIA (docs/design.md §4) draws region k ~ pi, then a prompt uniformly within k. With
`importance_weights(ids, pi, base)` the loss of each sample is reweighted by base_k / pi_k, which
keeps the expected gradient that of sampling from `base` (RC's region shares): the unbiased mode.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from aria_theory.tracker import JsonState, check_num_regions, check_unit, check_observations

_SUM_TOL = 1e-9  # accepted |sum - 1| of a distribution given by the caller


def check_distribution(p: ArrayLike, num_regions: int | None = None,
                       name: str = "probabilities") -> np.ndarray:
    """Validate a distribution (1-D, finite, >= 0, sums to 1 within 1e-9); return it as float64."""
    p = np.asarray(p)
    if p.ndim != 1 or p.size == 0 or (num_regions is not None and p.size != num_regions):
        want = "a non-empty 1-D array" if num_regions is None else f"shape ({num_regions},)"
        raise ValueError(f"{name} must be {want}, got shape {p.shape}")
    if p.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    if abs(p.sum() - 1.0) > _SUM_TOL:
        raise ValueError(f"{name} must sum to 1, got {p.sum()!r}")
    return p


def _normalise_shares(shares: ArrayLike, num_regions: int, name: str) -> np.ndarray:
    shares = np.asarray(shares)
    if shares.shape != (num_regions,) or shares.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be {num_regions} real numbers, got shape {shares.shape}")
    shares = shares.astype(np.float64)
    if not np.isfinite(shares).all() or (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(f"{name} must be finite, >= 0 and not all zero")
    return shares / shares.sum()


def _softmax(x: np.ndarray) -> np.ndarray:
    """softmax of finite x; subtracting the max first keeps exp in [0, 1]."""
    w = np.exp(x - x.max())
    return w / w.sum()


class AllocationPolicy(JsonState, ABC):
    """A map from tracker estimates (K,) to region sampling probabilities (K,)."""

    _registry: ClassVar[dict[str, type]] = {}

    def __init__(self, num_regions: int) -> None:
        self.num_regions = check_num_regions(num_regions)

    @property
    @abstractmethod
    def floors(self) -> np.ndarray:
        """float64 (K,): lower bounds that `probabilities` respects for any estimates."""

    @abstractmethod
    def probabilities(self, estimates: ArrayLike) -> np.ndarray:
        """A distribution over regions; entries >= floors. NaN estimates mean "not observed"."""

    def observe(self, region_ids: ArrayLike, values: ArrayLike, probabilities: ArrayLike) -> None:
        """Learn from observations `values` of regions `region_ids`, drawn with `probabilities`.
        Stateless policies only validate the input."""
        self._check_feedback(region_ids, values, probabilities)

    def _check_estimates(self, estimates: ArrayLike) -> np.ndarray:
        """float64 (K,) with NaN replaced by the largest observed estimate (0 if none)."""
        m = np.asarray(estimates)
        if m.shape != (self.num_regions,) or m.dtype.kind not in "iuf":
            raise ValueError(f"estimates must be {self.num_regions} real numbers, got shape {m.shape} "
                             f"dtype {m.dtype}")
        m = m.astype(np.float64)
        if np.isinf(m).any():
            raise ValueError("estimates must not be infinite")
        unknown = np.isnan(m)
        m[unknown] = 0.0 if unknown.all() else m[~unknown].max()
        return m

    def _check_feedback(self, region_ids: ArrayLike, values: ArrayLike,
                        probabilities: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, vals = check_observations(region_ids, values, self.num_regions)
        p = check_distribution(probabilities, self.num_regions)
        if (p[ids] <= 0).any():
            raise ValueError("an observed region had probability 0 under the given probabilities")
        return ids, vals, p


class UniformPolicy(AllocationPolicy):
    """Every region equally likely (region-uniform sampling)."""

    @property
    def floors(self) -> np.ndarray:
        return np.full(self.num_regions, 1.0 / self.num_regions)

    def probabilities(self, estimates: ArrayLike) -> np.ndarray:
        self._check_estimates(estimates)
        return self.floors

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions}


class PromptSharePolicy(AllocationPolicy):
    """What RC does: a uniform prompt from the pool lands in region k with k's share of the pool.

    shares: per-region prompt counts or fractions (normalised here).
    """

    def __init__(self, num_regions: int, shares: ArrayLike) -> None:
        super().__init__(num_regions)
        self.shares = _normalise_shares(shares, self.num_regions, "shares")

    @property
    def floors(self) -> np.ndarray:
        return self.shares.copy()

    def probabilities(self, estimates: ArrayLike) -> np.ndarray:
        self._check_estimates(estimates)
        return self.shares.copy()

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions, "shares": self.shares.tolist()}


class AriaPolicy(AllocationPolicy):
    """pi = (1 - eps) w / sum(w) + eps u, floors eps u (docs/design.md §4).

    w_k = max(m_k, 0)^beta, or softmax(m / tau) when tau is given (beta is then unused). beta = 0
    makes w uniform; with w all zero (no positive estimate) w is taken uniform too. u is `base`
    normalised (RC's region shares, say), uniform when None. eps in [0, 1]; eps > 0 keeps every
    region observed, so no estimate goes stale.
    """

    def __init__(self, num_regions: int, beta: float = 1.0, tau: float | None = None,
                 eps: float = 0.1, base: ArrayLike | None = None) -> None:
        super().__init__(num_regions)
        self.beta = float(beta)
        if not (np.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be finite and >= 0, got {beta}")
        self.tau = None if tau is None else float(tau)
        if self.tau is not None and not (np.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be None or finite and > 0, got {tau}")
        self.eps = check_unit("eps", eps, low_open=False)
        self.base = (np.full(self.num_regions, 1.0 / self.num_regions) if base is None
                     else _normalise_shares(base, self.num_regions, "base"))
        # the base as given, for config(): normalising an already normalised base again can move it
        # by an ulp, so a reloaded policy re-normalises the same numbers instead
        self._base_arg = None if base is None else np.asarray(base, np.float64).tolist()

    @property
    def floors(self) -> np.ndarray:
        return self.eps * self.base

    def probabilities(self, estimates: ArrayLike) -> np.ndarray:
        m = self._check_estimates(estimates)
        if self.tau is not None:
            # (m - max) / tau, not m / tau - max: the difference of finite floats stays finite
            # or overflows to -inf (weight 0, as intended), never inf - inf.
            with np.errstate(over="ignore"):
                w = _softmax((m - m.max()) / self.tau)
        else:
            pos = np.maximum(m, 0.0)
            top = pos.max()
            # scaling by the max first keeps pos^beta from overflowing
            w = np.ones_like(pos) if top == 0 else (pos / top) ** self.beta
            w = w / w.sum()
        return (1.0 - self.eps) * w + self.eps * self.base

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions, "beta": self.beta, "tau": self.tau, "eps": self.eps,
                "base": self._base_arg}


class Exp3Policy(AllocationPolicy):
    """EXP3 over regions: pi = (1 - gamma) softmax(s) + gamma / K, ignoring the tracker.

    After a batch of n draws, s_k += eta * (1/n) sum_{i: k_i = k} r_i / pi_{k_i}: the
    importance-weighted (unbiased) estimate of each region's mean reward per draw. The reward is
    the observed discrepancy divided by the largest value seen so far, clipped to [0, 1] (EXP3
    needs bounded rewards; the scale is learnt, so early rewards are relatively large).
    """

    _state_scalars = ("scale",)

    def __init__(self, num_regions: int, gamma: float = 0.1, eta: float = 0.01) -> None:
        super().__init__(num_regions)
        self.gamma = check_unit("gamma", gamma)
        self.eta = float(eta)
        if not (np.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"eta must be finite and > 0, got {eta}")
        self.scores = np.zeros(self.num_regions)  # log-weights, max kept at 0
        self.scale = 0.0

    @property
    def floors(self) -> np.ndarray:
        return np.full(self.num_regions, self.gamma / self.num_regions)

    def probabilities(self, estimates: ArrayLike) -> np.ndarray:
        self._check_estimates(estimates)
        return (1.0 - self.gamma) * _softmax(self.scores) + self.floors

    def observe(self, region_ids: ArrayLike, values: ArrayLike, probabilities: ArrayLike) -> None:
        ids, vals, p = self._check_feedback(region_ids, values, probabilities)
        if ids.size == 0:
            return
        self.scale = max(self.scale, float(vals.max()))
        # max(y, 0) <= scale, so the ratio lies in [0, 1] without overflow for a tiny scale
        reward = np.maximum(vals, 0.0) / self.scale if self.scale > 0 else np.zeros_like(vals)
        gain = np.bincount(ids, reward / p[ids], minlength=self.num_regions) / ids.size
        self.scores += self.eta * gain
        self.scores -= self.scores.max()

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions, "gamma": self.gamma, "eta": self.eta}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores}


class DoReMiPolicy(AllocationPolicy):
    """DoReMi-style weights: alpha <- normalise(alpha * exp(eta * lambda)), pi = (1-eps) alpha + eps/K.

    lambda_k is the mean over this batch's observations of region k of max(y - reference_k, 0),
    the excess discrepancy over a per-region reference (0 for regions not in the batch), as in
    DoReMi's per-domain excess loss. The tracker's estimates are not used. Here alpha drives
    sampling, where DoReMi reweights the loss of a uniform batch.
    """

    def __init__(self, num_regions: int, reference: ArrayLike, eta: float = 1.0,
                 eps: float = 0.1) -> None:
        super().__init__(num_regions)
        ref = np.asarray(reference)
        if ref.shape != (self.num_regions,) or ref.dtype.kind not in "iuf" or not np.isfinite(ref).all():
            raise ValueError(f"reference must be {self.num_regions} finite numbers, got shape {ref.shape}")
        self.reference = ref.astype(np.float64)
        self.eta = float(eta)
        if not (np.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"eta must be finite and > 0, got {eta}")
        self.eps = check_unit("eps", eps, low_open=False)
        self.scores = np.zeros(self.num_regions)  # log alpha, max kept at 0

    @property
    def floors(self) -> np.ndarray:
        return np.full(self.num_regions, self.eps / self.num_regions)

    def probabilities(self, estimates: ArrayLike) -> np.ndarray:
        self._check_estimates(estimates)
        return (1.0 - self.eps) * _softmax(self.scores) + self.floors

    def observe(self, region_ids: ArrayLike, values: ArrayLike, probabilities: ArrayLike) -> None:
        ids, vals, _ = self._check_feedback(region_ids, values, probabilities)
        if ids.size == 0:
            return
        excess = np.maximum(vals - self.reference[ids], 0.0)
        seen = np.bincount(ids, minlength=self.num_regions)
        mean_excess = np.bincount(ids, excess, minlength=self.num_regions) / np.maximum(seen, 1)
        self.scores += self.eta * mean_excess
        self.scores -= self.scores.max()

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions, "reference": self.reference.tolist(),
                "eta": self.eta, "eps": self.eps}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores}


def sample_regions(probabilities: ArrayLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """n region ids (int64) drawn independently from `probabilities` with `rng`."""
    p = check_distribution(probabilities)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return rng.choice(p.size, size=int(n), p=p).astype(np.int64)


def importance_weights(region_ids: ArrayLike, probabilities: ArrayLike, base: ArrayLike) -> np.ndarray:
    """base[r] / probabilities[r] per drawn region r: E_pi[w f] = E_base[f] (the unbiased mode)."""
    p = check_distribution(probabilities)
    b = check_distribution(base, p.size, "base")
    ids, _ = check_observations(region_ids, np.zeros(np.shape(region_ids)), p.size)
    if (p[ids] <= 0).any():
        raise ValueError("a drawn region has probability 0")
    return b[ids] / p[ids]

