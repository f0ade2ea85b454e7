"""Error bounds for ProgressPolicy's tracked slope (aria_theory.progress), as vectorised numpy functions;
the tracker's own bounds, and the conventions shared with them, are in aria_theory.bounds.

The two-timescale regression of ProgressPolicy (:func:`two_ema_coefficients`). Two
EMAs F (steps a_n) and S (steps b_n <= a_n, both starting at 1) of the same observations
y_i = D_i + xi_i and of a known regressor z_i (z_i = i: slope per observation; ProgressPolicy:
z = exp(-rate T)). With weights W^F[n, i], W^S[n, i] (rows sum to 1) the estimate
theta^_n = (S_n(y) - F_n(y)) / (S_n(z) - F_n(z)) = sum_i c[n, i] y_i, c = (W^S - W^F)/(S_n(z) - F_n(z)),
is linear in y with sum_i c = 0 and sum_i c z_i = 1. Write the levels through their slopes per
unit z, D_{u+1} - D_u = theta_u (z_{u+1} - z_u); summation by parts gives
    theta^_n = sum_{u<n} K[n, u] theta_u + sum_i c[n, i] xi_i,  K[n, u] = (z_{u+1} - z_u) sum_{i>u} c[n, i],
with sum_u K[n, u] = 1 (take theta constant). The weight of the observations after u is
1 - prod_{i>u}(1 - a_i) in F and 1 - prod_{i>u}(1 - b_i) in S, so sum_{i>u}(W^S - W^F) <= 0 when
b <= a; for monotone z the slow EMA of z lags behind the fast one, so S_n(z) - F_n(z) has the
sign opposite to z_{u+1} - z_u, and every K[n, u] >= 0. Hence, for the target theta_{n-1} (the
latest slope),
    theta^_n - theta_{n-1} = sum_u K[n, u] (theta_u - theta_{n-1}) + sum_i c[n, i] xi_i,
and under |theta| <= delta, |theta_{u+1} - theta_u| <= gamma, |xi| <= b:
    |theta^_n - theta_{n-1}| <= sum_u K[n, u] min(gamma (n-1-u), 2 delta) + b sum_i |c[n, i]|
on every path (:func:`slope_every_path_bound`), attained by theta_u = max(-delta, delta -
gamma (n-1-u)) (feasible: a ramp from -delta up to theta_{n-1} = delta) with xi_i = -b sign(c[n, i]).
With the drift independent of the noise and E[xi^2 | past] <= sigma^2 the cross term vanishes:
E(theta^_n - theta_{n-1})^2 <= (drift part)^2 + sigma^2 sum_i c[n, i]^2 (:func:`slope_mse_bound`),
exact for the same ramp and noise variance sigma^2. Steady state (constant steps a_s < a_f,
z_i = i): K_j = ((1-a_s)^j - (1-a_f)^j)/L for the slope j observations back, L = 1/a_s - 1/a_f;
the unclipped bias is gamma ((1-a_s)/a_s + (1-a_f)/a_f) (the estimate is the slope as it was
the sum of the two lags ago), the noise variance
sigma^2 [a_f/(2-a_f) + a_s/(2-a_s) - 2 a_f a_s/(a_f + a_s - a_f a_s)] / L^2
(:func:`slope_steady_state_bias`, :func:`slope_steady_state_variance`). Before S(z) differs from
F(z) (while both are still the same running mean) theta^ is not identified (NaN). Checked by
hypothesis on adversarial sequences (exact, with the attaining path pinned), by Monte Carlo in
tests/theory/test_theory_progress.py, and as rows slope_every_path and slope_mse of `aria sim bounds`.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def ema_weights(steps: ArrayLike) -> np.ndarray:
    """W[..., n, i]: weight of observation i in the estimate after observation n (0-based), for a
    step sequence (last axis) whose first step is 1 (the running-mean start wipes the initial
    value, so each row sums to 1): W_n = (1 - a_n) W_{n-1} + a_n e_n."""
    steps = np.asarray(steps, float)
    if not np.all(steps[..., :1] == 1.0) or np.any((steps < 0) | (steps > 1)):
        raise ValueError("steps must lie in [0, 1] and start with 1 (the running-mean start)")
    n = steps.shape[-1]
    weights = np.zeros(steps.shape + (n,))
    row = np.zeros(steps.shape[:-1] + (n,))
    for t in range(n):
        row = (1 - steps[..., t, None]) * row
        row[..., t] += steps[..., t]
        weights[..., t, :] = row
    return weights


def two_ema_coefficients(steps_fast: ArrayLike, steps_slow: ArrayLike,
                         z: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of theta^_n = (S_n(y) - F_n(y)) / (S_n(z) - F_n(z)), the two-timescale
    regression of observations y on a known regressor z (default z_i = i: the slope per
    observation); F and S are EMAs with steps ``steps_fast`` >= ``steps_slow`` (both starting at 1).

    Returns (c, K), both (..., N, N), NaN in rows n where S_n(z) = F_n(z) (not identified yet):
    theta^_n = sum_i c[n, i] y_i, and for levels with D_{u+1} - D_u = theta_u (z_{u+1} - z_u),
    theta^_n = sum_u K[n, u] theta_u + sum_i c[n, i] xi_i with K[n, u] = (z_{u+1} - z_u)
    sum_{i > u} c[n, i] (u < n; 0 otherwise) and sum_u K[n, u] = 1 exactly."""
    wf, ws = ema_weights(steps_fast), ema_weights(steps_slow)
    n = wf.shape[-1]
    zz = np.arange(n, dtype=float) if z is None else np.asarray(z, float)
    gap = ((ws - wf) * zz[..., None, :]).sum(-1)  # S_n(z) - F_n(z)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where((gap != 0)[..., None], (ws - wf) / gap[..., None], np.nan)
    later = np.flip(np.cumsum(np.flip(c, -1), -1), -1)  # sum_{i >= u} c[n, i]
    later = np.concatenate([later[..., 1:], np.zeros(later.shape[:-1] + (1,))], -1)  # sum_{i > u}
    dz = np.diff(np.broadcast_to(zz, c.shape[:-2] + (n,)), axis=-1)
    dz = np.concatenate([dz, np.zeros(dz.shape[:-1] + (1,))], -1)
    below = np.arange(n)[None, :] < np.arange(n)[:, None]  # u < n
    return c, np.where(below, dz[..., None, :] * later, 0.0)


def _slope_drift_bound(K: np.ndarray, delta: ArrayLike, gamma: ArrayLike) -> np.ndarray:
    """sum_u |K[n, u]| min(gamma (n - 1 - u), 2 delta): bound on |sum_u K[n, u] (theta_u - theta_{n-1})|."""
    n = K.shape[-1]
    age = np.maximum(np.arange(n)[:, None] - 1 - np.arange(n)[None, :], 0)  # n - 1 - u (rows n, cols u)
    delta, gamma = np.asarray(delta, float)[..., None, None], np.asarray(gamma, float)[..., None, None]
    return (np.abs(K) * np.minimum(gamma * age, 2 * delta)).sum(-1)


def slope_every_path_bound(steps_fast: ArrayLike, steps_slow: ArrayLike, delta: ArrayLike, gamma: ArrayLike,
                           b: ArrayLike, z: ArrayLike | None = None) -> np.ndarray:
    """|theta^_n - theta_{n-1}| <= sum_u K[n,u] min(gamma (n-1-u), 2 delta) + b sum_i |c[n,i]| on every path.

    theta^ as in :func:`two_ema_coefficients`; the levels obey D_{u+1} - D_u = theta_u (z_{u+1} - z_u)
    with |theta_u| <= delta (bounded drift of the level per unit of z) and |theta_{u+1} - theta_u| <=
    gamma (bounded drift of the slope), the noise |xi| <= b; nothing else (no independence, no zero
    mean). With z_i = i, theta_u is the increment d_u = D_{u+1} - D_u. Value after each observation
    (last axis), NaN while not identified. Attained when K >= 0 (fast steps >= slow steps, z
    monotone) by theta_u = max(-delta, theta_{n-1} - gamma (n-1-u)) with theta_{n-1} = delta and
    xi_i = b sign(c[n, i]) (or all signs flipped)."""
    c, K = two_ema_coefficients(steps_fast, steps_slow, z)
    return _slope_drift_bound(K, delta, gamma) + np.asarray(b, float)[..., None] * np.abs(c).sum(-1)


def slope_mse_bound(steps_fast: ArrayLike, steps_slow: ArrayLike, sigma: ArrayLike, delta: ArrayLike,
                    gamma: ArrayLike, z: ArrayLike | None = None) -> np.ndarray:
    """E (theta^_n - theta_{n-1})^2 <= (drift part of :func:`slope_every_path_bound`)^2 + sigma^2 sum_i c[n,i]^2.

    Drift independent of the noise (it may be random) with |theta| <= delta, |Delta theta| <= gamma;
    noise a martingale difference sequence with E[xi^2 | past] <= sigma^2. Exact for the extreme
    drift path of :func:`slope_every_path_bound` and noise variance sigma^2."""
    c, K = two_ema_coefficients(steps_fast, steps_slow, z)
    variance = np.square(np.asarray(sigma, float))[..., None] * np.square(c).sum(-1)
    return np.square(_slope_drift_bound(K, delta, gamma)) + variance


def _geometric_sums(q: np.ndarray, J: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sum_{j=1}^J q^j, sum_{j=1}^J (j-1) q^j and sum_{j>J} q^j for q in [0, 1)."""
    qj = np.power(q, J)
    head = q * (1 - qj) / (1 - q)
    weighted = q * (1 - (J + 1) * qj + J * qj * q) / (1 - q) ** 2 - head
    return head, weighted, qj * q / (1 - q)


def slope_steady_state_bias(a_fast: ArrayLike, a_slow: ArrayLike, delta: ArrayLike, gamma: ArrayLike) -> np.ndarray:
    """Steady-state drift part of :func:`slope_every_path_bound` for constant steps a_s < a_f and z_i = i:
    sum_{j>=1} K_j min(gamma (j-1), 2 delta), K_j = ((1-a_s)^j - (1-a_f)^j)/L, L = 1/a_s - 1/a_f.
    Without the clip (delta = inf) it is gamma ((1-a_s)/a_s + (1-a_f)/a_f): the estimate is the
    slope as it was (1-a_s)/a_s + (1-a_f)/a_f observations ago, the sum of the two EMAs' lags."""
    a_f, a_s = np.asarray(a_fast, float), np.asarray(a_slow, float)
    delta, gamma = np.asarray(delta, float), np.asarray(gamma, float)
    lag_gap = 1 / a_s - 1 / a_f
    with np.errstate(divide="ignore", invalid="ignore"):
        J = np.where(gamma > 0, np.ceil(2 * delta / np.where(gamma > 0, gamma, 1.0)), np.inf)
    J = np.minimum(J, 1e15)  # j - 1 < J: the unclipped terms
    total = 0.0
    for q, sign in ((1 - a_s, 1.0), (1 - a_f, -1.0)):
        _, weighted, tail = _geometric_sums(q, J)
        with np.errstate(invalid="ignore"):  # inf * 0 when delta = inf: no clipped terms
            clipped = np.where(tail > 0, 2 * delta * tail, 0.0)
        total = total + sign * (gamma * weighted + clipped)
    return total / lag_gap


def slope_steady_state_variance(a_fast: ArrayLike, a_slow: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """Steady-state sigma^2 sum c_j^2 for constant steps and z_i = i:
    sigma^2 [a_f/(2-a_f) + a_s/(2-a_s) - 2 a_f a_s/(a_f + a_s - a_f a_s)] / L^2, L = 1/a_s - 1/a_f."""
    a_f, a_s = np.asarray(a_fast, float), np.asarray(a_slow, float)
    gain = a_f / (2 - a_f) + a_s / (2 - a_s) - 2 * a_f * a_s / (a_f + a_s - a_f * a_s)
    return np.square(sigma) * gain / np.square(1 / a_s - 1 / a_f)


def slope_steady_state_noise_bound(a_fast: ArrayLike, a_slow: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Steady-state b sum_j |c_j| = (2 b / L) max_J ((1-a_s)^J - (1-a_f)^J) (the weights differ in
    sign once, so the maximum partial sum is half the absolute sum); J over the integers near
    the real maximiser ln(ln(1-a_f)/ln(1-a_s)) / ln((1-a_s)/(1-a_f))."""
    a_f, a_s = np.asarray(a_fast, float), np.asarray(a_slow, float)
    q_f, q_s = 1 - a_f, 1 - a_s
    with np.errstate(divide="ignore", invalid="ignore"):
        j_star = np.where(q_f > 0, np.log(np.log(q_f) / np.log(q_s)) / np.log(q_s / q_f), 0.0)
    best = np.zeros(np.broadcast(a_f, a_s).shape)
    for shift in (-1.0, 0.0, 1.0, 2.0):
        J = np.maximum(np.floor(j_star) + shift, 0.0)
        best = np.maximum(best, np.power(q_s, J) - np.power(q_f, J))
    return 2 * np.asarray(b, float) * best / (1 / a_s - 1 / a_f)


def slope_steady_state_mse(a_fast: ArrayLike, a_slow: ArrayLike, sigma: ArrayLike, delta: ArrayLike,
                           gamma: ArrayLike) -> np.ndarray:
    """Steady state of :func:`slope_mse_bound`: bias^2 + variance (constant steps, z_i = i)."""
    return np.square(slope_steady_state_bias(a_fast, a_slow, delta, gamma)) + \
        slope_steady_state_variance(a_fast, a_slow, sigma)
