"""Tracking-error bounds for the region tracker (docs/design.md §5), as vectorised numpy functions.

Model (one region). Discrepancy m_{t+1} = m_t + d_t with |d_t| <= delta (bounded drift);
observation y_{t+1} = m_{t+1} + xi_{t+1} with E[xi | past] = 0 and E[xi^2 | past] <= sigma^2,
where "past" contains all earlier noise, all drift and the observation times (so the drift is
allowed to react to earlier noise only where a statement says so). The tracker moves its
estimate by a step a_n in (0, 1] at each observation: m^ <- (1 - a_n) m^ + a_n y. The error
e_t = m^_t - m_t (after t time steps) obeys

    e_{t+1} = (1 - a_{t+1}) (e_t - d_t) + a_{t+1} xi_{t+1},        a_{t+1} = 0 if not observed,

so e_t = P_t e_0 - sum_s C_s d_s + sum_s D_s xi_s with coefficients P_t, C_s, D_s >= 0 that
depend only on the step sequence. Every bound below follows from that one representation:
the drift part is at most P_t |e_0| + delta sum_s C_s on every path (attained by d_s = +delta,
e_0 <= 0), and the noise part is a martingale with predictable variance <= sigma^2 sum_s D_s^2
and increments <= (max_s D_s) b. Conventions: ``t`` counts time steps (t = 0 is the start),
the constant step ``a`` is in (0, 1], ``e0`` is the initial error (initial estimate - m_0),
``b`` a bound on |xi|, ``s`` a sub-Gaussian proxy (E exp(l xi | past) <= exp(l^2 s^2 / 2)),
``eta`` a failure probability. All functions broadcast over their array arguments.

Two families of functions: closed forms for a constant step and a step every time step
(``running_mean_start=False`` in the tracker, p = 1), and step-sequence versions
(:func:`tracker_steps`, :func:`envelope`, :func:`noise_variance`, :func:`max_coefficient`,
:func:`worst_case_moments`) for the tracker as used: a_n = max(1/n, a) (n = the region's
observation count, so the first observation sets the estimate and wipes e_0) and observations
at arbitrary times. The step-sequence versions equal the closed forms for a constant step.

What was checked (by hand, then numerically in tests/theory/test_bounds.py):
* the error recursion and its unrolled form; §5.1 (every path) exactly, including when it is
  attained (constant drift +delta, noise -b, e_0 <= 0); the envelope recursion
  B_{t+1} = (1 - a_{t+1})(B_t + delta) + a_{t+1} b for any step sequence.
* §5.2 (MSE, drift independent of the noise, with the cross term): exact under constant drift;
  the "tempting" form without the cross term is indeed false in the transient (e.g. a = 0.5,
  t = 1, e_0 = 4 delta, sigma = 0: true 6.25 delta^2, tempting 5 delta^2).
* §5.3 (Minkowski, adaptive drift) and §5.4 (sub-Gaussian, union over K regions and T steps:
  ln(2/eta) -> ln(2KT/eta)); Freedman/Bernstein for |xi| <= b: the exact root of
  x^2 = 2 (v + R x / 3) ln(2/eta) is used, R = max_s D_s b (= a b for a constant step); it is at
  most the design's sqrt(2 v ln(2/eta)) + (2/3) a b ln(2/eta).
* §5.5: f'(a) = 2 sigma^2/(2-a)^2 - 2 delta^2 (1-a)/a^3, so f'(a) = 0 iff
  sigma^2 a^3 = delta^2 (1-a)(2-a)^2: the left side increases from 0, the right side decreases
  to 0 on [0, 1], hence exactly one root in (0, 1) for delta > 0; a* -> (2 delta/sigma)^(2/3) and
  f(a*) -> 3 * 2^(-4/3) sigma^(4/3) delta^(2/3) = 1.1906... as delta/sigma -> 0.
* §5.7 (Kalman): Riccati K^2 + lambda K - lambda = 0, filtered MSE K sigma^2, and the EMA with
  a = K has steady-state MSE (1-K)^2 q + K^2 sigma^2 over 1 - (1-K)^2, which equals K sigma^2
  exactly when K solves the Riccati equation.
* §5.8 (Bernoulli(p) observations, constant drift delta): the first and second moments obey
  linear recursions (the observation indicator is independent of the error and of the noise):
  mu' = (1 - p a)(mu - delta) and S' = c (S - 2 mu delta + delta^2) + p a^2 sigma^2 with
  c = p (1-a)^2 + 1 - p, giving mu = -delta (1 - p a)/(p a) and
  S = [c (delta^2 - 2 mu delta) + p a^2 sigma^2] / (1 - c). Written out,
  S = a sigma^2/(2-a) + c delta^2 (2 - p a) / (p^2 a^2 (2-a)): the noise part does not depend on
  p (the estimate is frozen between observations), and p = 1 gives f(a). Because C_s >= 0 on
  every path, constant drift is the worst case for the second moment among all drift
  independent of the noise, even drift that depends on the observation times. From e_0 = 0 the
  worst-case second moment rises monotonically to S (reverse time: the observation indicators
  are i.i.d., so e_t's drift and noise parts grow in distribution with t), so S bounds E e_t^2
  at every t, not only in the limit.
* §5.8 running mean under a trend d_t = delta: after t observations the mean error is
  -delta (t-1)/2 (unbounded lag) and the MSE delta^2 (t-1)^2/4 + sigma^2/t.

Corrections to docs/design.md §5 (for the issue note):
1. §5.5 "use a = 1 when delta >~ sigma/2" is wrong: the exact minimiser of f is always < 1
   (f'(1) = 2 sigma^2 > 0); only the small-a closed form exceeds 1. At delta = sigma/2 the exact
   a* = 0.589 gives f = 0.539 sigma^2 against f(1) = sigma^2; at delta = sigma, a* = 0.742,
   f = 0.711 sigma^2. The closed form 1.19 sigma^(4/3) delta^(2/3) overestimates f(a*) there.
2. §5.6 the lower-bound constant 0.21 is too small. Le Cam with one path drifting +delta over
   the last n steps: sup_n (n delta)^2/4 (1 - TV_n) -> 0.4193 sigma^(4/3) delta^(2/3). With the
   mirrored pair (one path +delta, the other -delta; both in the model) the gap grows at 2 delta:
   0.4193 * 2^(2/3) = 0.6655 sigma^(4/3) delta^(2/3) (:func:`minimax_lower_bound`). The same
   construction gives more through the Bayes risk of its two-point prior instead of the total
   variation bound on it: (Delta/2)^2 R(s), R(s) = E sech^2(s X/2), X ~ N(s/2, 1), s = ||mu||/sigma
   (:func:`two_point_bayes_factor`; R(s) >= 2 Phi(-s/2) = 1 - TV). Maximised over n (s* = 1.937,
   R(s*) = 0.4698) it tends to 0.9363 sigma^(4/3) delta^(2/3) (0.5898 one-sided;
   :func:`minimax_bayes_lower_bound`), the sharpest constant this pair of paths gives (1/2-1/2 is
   the least favourable prior on two points). The tuned EMA is therefore within a factor
   1.1906 / 0.9363 = 1.27 of any estimator as delta/sigma -> 0 (not ~5.7, and not only 1.79).
3. §5.8 a_o sigma^2/2 + delta^2/(a_o p)^2 is only the small-a, small-(pa) leading term, neither
   exact nor a bound (p = 0.1, a = 0.5: exact drift part 481 delta^2 vs 400 delta^2): use
   :func:`irregular_steady_mse`.
4. §5.3/§5.4 hold with the sharper finite-t terms (1-a)(1-(1-a)^t) delta / a and
   v_t = a sigma^2 (1-(1-a)^{2t})/(2-a) (used here); the design's steady-state terms bound them.
   For noise that is bounded but not sigma-sub-Gaussian, the sub-Gaussian proxy is b (Hoeffding),
   not sigma.
5. The tracker of §4 (a_n = max(1/n, a)) is not the constant-step EMA the closed forms assume:
   its first observation wipes e_0 and its noise variance is sigma^2/n for n < 1/a, above
   a sigma^2/(2-a). Use the step-sequence functions for it.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special


def _bias(t: ArrayLike, a: ArrayLike, delta: ArrayLike, e0: ArrayLike) -> np.ndarray:
    """Every-path bound on the drift part: (1-a)^t |e0| + (1-a)(1-(1-a)^t) delta / a."""
    t, a = np.asarray(t, float), np.asarray(a, float)
    decay = np.power(1 - a, t)
    return decay * np.abs(e0) + (1 - a) * (1 - decay) * np.asarray(delta, float) / a


def _noise_var(t: ArrayLike, a: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """Variance bound of the noise part: a sigma^2 (1 - (1-a)^{2t}) / (2 - a)."""
    t, a = np.asarray(t, float), np.asarray(a, float)
    return a * np.square(sigma) * (1 - np.power(1 - a, 2 * t)) / (2 - a)


# --- constant step a, one observation per time step (closed forms) ---------------------------

def every_path_bound(t: ArrayLike, a: ArrayLike, delta: ArrayLike, b: ArrayLike,
                     e0: ArrayLike = 0.0) -> np.ndarray:
    """§5.1: |e_t| <= (1-a)^t |e0| + (1-a)(1-(1-a)^t) delta/a + b (1-(1-a)^t) on every path.

    Assumes |d| <= delta and |xi| <= b only (no independence, no zero mean). Attained by
    d = +delta, xi = -b, e0 <= 0 (or all signs flipped)."""
    return _bias(t, a, delta, e0) + np.asarray(b, float) * (1 - np.power(1 - np.asarray(a, float), t))


def mse_bound(t: ArrayLike, a: ArrayLike, sigma: ArrayLike, delta: ArrayLike,
              e0: ArrayLike = 0.0) -> np.ndarray:
    """§5.2: E e_t^2 <= bias_t^2 + a sigma^2 (1-(1-a)^{2t})/(2-a), bias_t as in §5.1 (b = 0).

    Assumes the drift is independent of the noise (it may be random) and E[xi^2|past] <= sigma^2.
    Exact for d = +delta, e0 <= 0 and noise variance sigma^2."""
    return np.square(_bias(t, a, delta, e0)) + _noise_var(t, a, sigma)


def rmse_bound_adaptive(t: ArrayLike, a: ArrayLike, sigma: ArrayLike, delta: ArrayLike,
                        e0: ArrayLike = 0.0) -> np.ndarray:
    """§5.3: sqrt(E e_t^2) <= bias_t + sqrt(a sigma^2 (1-(1-a)^{2t})/(2-a)) (Minkowski).

    Holds for drift that reacts to past noise (|d| <= delta on every path); the noise need only be
    a martingale difference sequence with conditional variance <= sigma^2."""
    return _bias(t, a, delta, e0) + np.sqrt(_noise_var(t, a, sigma))


def subgaussian_bound(t: ArrayLike, a: ArrayLike, s: ArrayLike, delta: ArrayLike, eta: ArrayLike,
                      e0: ArrayLike = 0.0, n_events: ArrayLike = 1) -> np.ndarray:
    """§5.4: with probability >= 1 - eta, |e_t| <= bias_t + s sqrt(2 a (1-(1-a)^{2t}) ln(2 n/eta)/(2-a)).

    Noise conditionally s-sub-Gaussian; drift arbitrary (even adaptive) with |d| <= delta.
    ``n_events`` = K T makes it hold for K regions and T steps at once (union bound)."""
    return _bias(t, a, delta, e0) + subgaussian_radius(_noise_var(t, a, s), eta, n_events)


def freedman_bound(t: ArrayLike, a: ArrayLike, sigma: ArrayLike, delta: ArrayLike, b: ArrayLike,
                   eta: ArrayLike, e0: ArrayLike = 0.0, n_events: ArrayLike = 1) -> np.ndarray:
    """§5.4, bounded noise: with probability >= 1 - eta, |e_t| <= bias_t + Freedman radius.

    Noise |xi| <= b with conditional variance <= sigma^2; drift arbitrary with |d| <= delta.
    The radius is :func:`freedman_radius` with v = a sigma^2 (1-(1-a)^{2t})/(2-a), R = a b."""
    a = np.asarray(a, float)
    return _bias(t, a, delta, e0) + freedman_radius(_noise_var(t, a, sigma), a * np.asarray(b, float),
                                                    eta, n_events)


def subgaussian_radius(variance_proxy: ArrayLike, eta: ArrayLike, n_events: ArrayLike = 1) -> np.ndarray:
    """sqrt(2 v ln(2 n/eta)): |sum_s D_s xi_s| exceeds it with probability <= eta/n when
    v = s^2 sum_s D_s^2 (deterministic D_s, s-sub-Gaussian martingale differences)."""
    return np.sqrt(2 * np.asarray(variance_proxy, float) * np.log(2 * np.asarray(n_events, float) / eta))


def freedman_radius(variance: ArrayLike, increment_bound: ArrayLike, eta: ArrayLike,
                    n_events: ArrayLike = 1) -> np.ndarray:
    """Root x of x^2 = 2 (v + R x/3) L, L = ln(2 n/eta): x = R L/3 + sqrt((R L/3)^2 + 2 v L).

    Freedman: a martingale with increments <= R and predictable variance <= v exceeds x in
    absolute value with probability <= 2 exp(-x^2 / (2 (v + R x/3))) = eta/n."""
    log_term = np.log(2 * np.asarray(n_events, float) / eta)
    third = np.asarray(increment_bound, float) * log_term / 3
    return third + np.sqrt(third**2 + 2 * np.asarray(variance, float) * log_term)


# --- steady state and optimal step (§5.5), lower bound (§5.6), Kalman (§5.7) -----------------

def steady_state_mse(a: ArrayLike, sigma: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """§5.5: f(a) = a sigma^2/(2-a) + (1-a)^2 delta^2/a^2, the t -> inf limit of :func:`mse_bound`."""
    a = np.asarray(a, float)
    return a * np.square(sigma) / (2 - a) + np.square((1 - a) * np.asarray(delta, float) / a)


def optimal_step(sigma: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Exact minimiser of f on (0, 1]: the unique root in (0, 1) of sigma^2 a^3 = delta^2 (1-a)(2-a)^2.

    h(a) = sigma^2 a^3 - delta^2 (1-a)(2-a)^2 increases on [0, 1] from -4 delta^2 to sigma^2, so
    vectorised bisection to machine precision finds the root; delta = 0 gives 0 (no drift: never
    forget). sigma = 0 gives 1."""
    sigma2, delta2 = np.broadcast_arrays(np.square(np.asarray(sigma, float)), np.square(np.asarray(delta, float)))
    lo, hi = np.zeros(sigma2.shape), np.ones(sigma2.shape)
    for _ in range(64):  # halves [0, 1] down to ~5e-20
        mid = (lo + hi) / 2
        above = sigma2 * mid**3 >= delta2 * (1 - mid) * (2 - mid) ** 2
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return (lo + hi) / 2


def optimal_step_closed_form(sigma: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Small-delta/sigma approximation a* ~ (2 delta/sigma)^(2/3) (exceeds 1 once delta > sigma/2)."""
    return np.power(2 * np.asarray(delta, float) / np.asarray(sigma, float), 2 / 3)


def optimal_mse_closed_form(sigma: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """f(a*) ~ 3 * 2^(-4/3) sigma^(4/3) delta^(2/3) (= 1.1906...), exact as delta/sigma -> 0."""
    return 3 * 2 ** (-4 / 3) * np.power(sigma, 4 / 3) * np.power(delta, 2 / 3)


def two_point_lower_bound(n: ArrayLike, sigma: ArrayLike, delta: ArrayLike, one_sided: bool = False) -> np.ndarray:
    """Le Cam two-point bound from two drift paths that agree until n steps before t.

    Gaussian noise N(0, sigma^2), observations every step. One path stays flat (one-sided) or
    drifts -delta per step, the other drifts +delta, over the last n steps: their gap grows by
    g = delta (or 2 delta) per step, so the observation means differ by mu_j = g j, j = 1..n,
    ||mu||^2 = g^2 n(n+1)(2n+1)/6, TV = 2 Phi(||mu||/(2 sigma)) - 1, and every estimator has
    max_i E_i (m^ - m_i)^2 >= (Delta^2/4)(1 - TV) with Delta = n g."""
    n = np.asarray(n, float)
    gap = np.asarray(delta, float) * (1 if one_sided else 2)
    separation = gap * np.sqrt(n * (n + 1) * (2 * n + 1) / 6)
    return np.square(n * gap) / 2 * special.ndtr(-separation / (2 * np.asarray(sigma, float)))


def minimax_lower_bound(sigma: ArrayLike, delta: ArrayLike, one_sided: bool = False) -> np.ndarray:
    """§5.6: max over integer n >= 1 of :func:`two_point_lower_bound`: no estimator (knowing
    sigma, delta and the past) has a worst-case MSE below this, for t >= the maximising n.

    Asymptotically :func:`lower_bound_constant` * sigma^(4/3) delta^(2/3); the maximiser is near
    n = (2 sqrt(3) x* sigma / g)^(2/3), x* = 0.915, so n up to three times that is searched."""
    sigma, delta = np.broadcast_arrays(np.asarray(sigma, float), np.asarray(delta, float))
    gap = delta * (1 if one_sided else 2)
    with np.errstate(divide="ignore"):
        n_asym = np.where(gap > 0, (2 * np.sqrt(3) * sigma / np.where(gap > 0, gap, 1)) ** (2 / 3), 1.0)
    n = np.arange(1, int(3 * n_asym.max()) + 10, dtype=float)
    return two_point_lower_bound(n, sigma[..., None], delta[..., None], one_sided).max(axis=-1)


def lower_bound_constant(one_sided: bool = False) -> float:
    """lim_{delta/sigma -> 0} minimax_lower_bound / (sigma^(4/3) delta^(2/3)): 0.6655 (0.4193 one-sided).

    With g = gap slope and x = g n^(3/2)/(2 sqrt(3) sigma), the bound tends to
    (1/2)(2 sqrt(3))^(4/3) x^(4/3) Phi(-x) sigma^(4/3) g^(2/3); maximise over x."""
    res = optimize.minimize_scalar(lambda x: -x ** (4 / 3) * special.ndtr(-x), bounds=(0.1, 3), method="bounded",
                                   options={"xatol": 1e-12})
    return float(0.5 * (2 * np.sqrt(3)) ** (4 / 3) * -res.fun * (1 if one_sided else 2) ** (2 / 3))



def two_point_bayes_factor(separation: ArrayLike) -> np.ndarray:
    """R(s) = E sech^2(s X/2), X ~ N(s/2, 1): the Bayes risk of the two-point problem per (Delta/2)^2.

    Two means m_+ - m_- = Delta, prior 1/2 each, observations whose means differ by a vector mu
    in Gaussian noise N(0, sigma^2 I), s = ||mu||/sigma. The projection X of the centred data on
    mu/||mu||, divided by sigma, is sufficient and N(+-s/2, 1); the likelihood ratio is exp(s X),
    so the posterior mean is mid + (Delta/2) tanh(s X/2) and its squared-error risk is
    (Delta/2)^2 E[1 - tanh^2(s X/2)], the same under both points (symmetry). Folding the
    symmetric mixture onto x > 0 and using phi(x - s/2) e^(-s x) = phi(x + s/2) gives the stable form
        R(s) = 4 int_0^inf phi(x + s/2) / (1 + e^(-s x)) dx,
    between 2 Phi(-s/2) (= 1 - TV: the Le Cam bound) and 4 Phi(-s/2); computed by Simpson's rule
    on 4001 points over [0, min(12, 80/s)] (beyond it the integrand is below e^(-40) of its peak)."""
    s = np.asarray(separation, float)
    width = np.minimum(12.0, 80.0 / np.maximum(s, 1e-300))
    x = width[..., None] * np.linspace(0.0, 1.0, 4001)
    with np.errstate(over="ignore"):
        f = 4 * np.exp(-0.5 * np.square(x + s[..., None] / 2)) / np.sqrt(2 * np.pi) / (1 + np.exp(-s[..., None] * x))
    simpson = np.ones(4001)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    return (f * simpson).sum(-1) * width / (3 * 4000)


def two_point_bayes_lower_bound(n: ArrayLike, sigma: ArrayLike, delta: ArrayLike,
                                one_sided: bool = False) -> np.ndarray:
    """The Bayes risk of the two-point prior of :func:`two_point_lower_bound` itself:
    (Delta/2)^2 R(||mu||/sigma), Delta = n g, R = :func:`two_point_bayes_factor`. Every estimator has
    max_i E_i (m^ - m_i)^2 >= its Bayes risk under any prior on {path_+, path_-}, and 1/2-1/2 is
    the least favourable one (the Bayes risk is concave in the prior weight and symmetric), so this
    is the sharpest bound the construction gives; it is above the total-variation bound
    (Delta^2/4)(1 - TV) at every n."""
    n = np.asarray(n, float)
    gap = np.asarray(delta, float) * (1 if one_sided else 2)
    separation = gap * np.sqrt(n * (n + 1) * (2 * n + 1) / 6) / np.asarray(sigma, float)
    return np.square(n * gap / 2) * two_point_bayes_factor(separation)


def minimax_bayes_lower_bound(sigma: ArrayLike, delta: ArrayLike, one_sided: bool = False) -> np.ndarray:
    """§5.6 sharpened: max over integer n >= 1 of :func:`two_point_bayes_lower_bound`; no estimator has a
    worst-case MSE below it (for t >= the maximising n). Asymptotically
    :func:`bayes_lower_bound_constant` * sigma^(4/3) delta^(2/3); the maximiser is near
    n* = (sqrt(3) s* sigma/g)^(2/3), s* = 1.937. The bound is unimodal in n, so it is evaluated on
    400 geometrically spaced n up to 3 n* (ratio < 1.03 between neighbours), then at every integer
    within 3% of the best of them."""
    sigma, delta = np.broadcast_arrays(np.asarray(sigma, float), np.asarray(delta, float))
    out = np.empty(sigma.shape)
    for idx in np.ndindex(sigma.shape):
        gap = delta[idx] * (1 if one_sided else 2)
        n_asym = (np.sqrt(3) * 1.937 * sigma[idx] / gap) ** (2 / 3) if gap > 0 else 1.0
        coarse = np.unique(np.round(np.geomspace(1.0, 3 * n_asym + 10, 400)))
        best = coarse[np.argmax(two_point_bayes_lower_bound(coarse, sigma[idx], delta[idx], one_sided))]
        fine = np.arange(max(1.0, np.floor(best / 1.03) - 1), np.ceil(best * 1.03) + 2)
        out[idx] = two_point_bayes_lower_bound(fine, sigma[idx], delta[idx], one_sided).max()
    return out


def bayes_lower_bound_constant(one_sided: bool = False) -> float:
    """lim_{delta/sigma -> 0} minimax_bayes_lower_bound / (sigma^(4/3) delta^(2/3)): 0.9363 (0.5898 one-sided).

    With s = g n^(3/2)/(sqrt(3) sigma) the bound tends to (3^(2/3)/4) s^(4/3) R(s) sigma^(4/3) g^(2/3)
    (g = 2 delta, or delta one-sided); maximised at s* = 1.937, R(s*) = 0.4698. The tuned EMA's
    1.1906 sigma^(4/3) delta^(2/3) is therefore within a factor 1.2715 of any estimator."""
    res = optimize.minimize_scalar(lambda s: -s ** (4 / 3) * two_point_bayes_factor(s), bounds=(0.5, 4.0),
                                   method="bounded", options={"xatol": 1e-10})
    return float(3 ** (2 / 3) / 4 * -res.fun * (1 if one_sided else 2) ** (2 / 3))

def kalman_gain(q: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """§5.7: steady-state Kalman gain for a Gaussian random walk (step variance q) observed in
    N(0, sigma^2) noise: K = (sqrt(lambda^2 + 4 lambda) - lambda)/2, lambda = q/sigma^2, the
    root in (0, 1) of K^2 + lambda K - lambda = 0. The EMA with a = K is the steady-state filter."""
    lam = np.asarray(q, float) / np.square(sigma)
    return 2 * lam / (lam + np.sqrt(lam**2 + 4 * lam))  # = the root, without cancellation


def kalman_mse(q: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """§5.7: steady-state filtered MSE K sigma^2 (the minimum over all estimators, Gaussian case)."""
    return kalman_gain(q, sigma) * np.square(sigma)


# --- irregular observations (§5.8) ------------------------------------------------------------

def irregular_steady_mean(a: ArrayLike, delta: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Exact steady-state mean error mu = -delta (1 - p a)/(p a) under constant drift +delta,
    constant step a, each step observed independently with probability p."""
    pa = np.asarray(p, float) * np.asarray(a, float)
    return -np.asarray(delta, float) * (1 - pa) / pa


def irregular_steady_mse(a: ArrayLike, sigma: ArrayLike, delta: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Exact steady-state E e^2 = [c (delta^2 - 2 mu delta) + p a^2 sigma^2]/(1 - c),
    c = p (1-a)^2 + 1 - p, mu = :func:`irregular_steady_mean`.

    Under constant drift +delta and noise variance sigma^2 it is exact; it bounds the steady-state
    MSE for any drift independent of the noise (|d| <= delta) and noise variance <= sigma^2.
    p = 1 gives :func:`steady_state_mse`. From e_0 = 0 it bounds E e_t^2 at every t."""
    a, p, delta = np.asarray(a, float), np.asarray(p, float), np.asarray(delta, float)
    c = p * (1 - a) ** 2 + 1 - p
    mu = irregular_steady_mean(a, delta, p)
    return (c * (delta**2 - 2 * mu * delta) + p * a**2 * np.square(sigma)) / (1 - c)


def irregular_mse_approx(a: ArrayLike, sigma: ArrayLike, delta: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Design's approximation a sigma^2/2 + delta^2/(a p)^2: leading terms of
    :func:`irregular_steady_mse` for small a and p a; not a bound."""
    a = np.asarray(a, float)
    return a * np.square(sigma) / 2 + np.square(np.asarray(delta, float) / (a * np.asarray(p, float)))


def irregular_optimal_step_closed_form(sigma: ArrayLike, delta: ArrayLike, p: ArrayLike) -> np.ndarray:
    """a_o* = (2 delta/(p sigma))^(2/3), the minimiser of :func:`irregular_mse_approx`; the MSE
    there is 3 * 2^(-4/3) sigma^(4/3) (delta/p)^(2/3), growing like p^(-2/3)."""
    return np.power(2 * np.asarray(delta, float) / (np.asarray(p, float) * np.asarray(sigma, float)), 2 / 3)


def running_mean_lag(t: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Mean lag m_t - E m^_t = delta (t - 1)/2 of the running mean (a_n = 1/n) after t observations
    of a linear trend d = delta: it grows without bound."""
    return np.asarray(delta, float) * (np.asarray(t, float) - 1) / 2


def running_mean_mse(t: ArrayLike, sigma: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """E e_t^2 = delta^2 (t-1)^2/4 + sigma^2/t of the running mean under the trend d = delta."""
    return np.square(running_mean_lag(t, delta)) + np.square(sigma) / np.asarray(t, float)


# --- arbitrary step sequences (the tracker as used) --------------------------------------------

def tracker_steps(observed: ArrayLike, a: ArrayLike, running_mean_start: bool = True) -> np.ndarray:
    """Steps a_t (last axis = time) of a tracker that sees the region where ``observed`` is True:
    max(1/n, a) at its n-th observation (a if not ``running_mean_start``), 0 when unobserved."""
    observed = np.asarray(observed, bool)
    a = np.asarray(a, float)[..., None] if np.ndim(a) else float(a)
    if running_mean_start:
        step = np.maximum(1 / np.maximum(np.cumsum(observed, axis=-1), 1), a)
    else:
        step = np.broadcast_to(a, observed.shape)
    return np.where(observed, step, 0.0)


def envelope(steps: ArrayLike, delta: ArrayLike, b: ArrayLike = 0.0, e0: ArrayLike = 0.0) -> np.ndarray:
    """Every-path bound B_t on |e_t| for a step sequence (last axis = time, value after each step):
    B_0 = |e0|, B_{t+1} = (1 - a_{t+1})(B_t + delta) + a_{t+1} b. Equals :func:`every_path_bound`
    for a constant step; with b = 0 it bounds the drift part only. Attained by d = +delta,
    xi = -b, e0 <= 0."""
    steps = np.asarray(steps, float)
    bound, out = np.abs(np.asarray(e0, float)), []
    for t in range(steps.shape[-1]):
        bound = (1 - steps[..., t]) * (bound + delta) + steps[..., t] * b
        out.append(bound)
    return np.stack(np.broadcast_arrays(*out), axis=-1)


def noise_variance(steps: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """sigma^2 sum_s D_s^2 after each step: V_{t+1} = (1 - a_{t+1})^2 V_t + a_{t+1}^2 sigma^2, V_0 = 0.
    A variance bound (sigma = noise sd bound) or a sub-Gaussian proxy (sigma = proxy)."""
    steps = np.asarray(steps, float)
    var, out = 0.0, []
    for t in range(steps.shape[-1]):
        var = (1 - steps[..., t]) ** 2 * var + steps[..., t] ** 2 * np.square(sigma)
        out.append(var)
    return np.stack(np.broadcast_arrays(*out), axis=-1)


def max_coefficient(steps: ArrayLike) -> np.ndarray:
    """max_s D_s after each step: R_{t+1} = max((1 - a_{t+1}) R_t, a_{t+1}), R_0 = 0 (for Freedman)."""
    steps = np.asarray(steps, float)
    coef, out = 0.0, []
    for t in range(steps.shape[-1]):
        coef = np.maximum((1 - steps[..., t]) * coef, steps[..., t])
        out.append(coef)
    return np.stack(out, axis=-1)


def worst_case_moments(n_steps: int, a: ArrayLike, sigma: ArrayLike, delta: ArrayLike, p: ArrayLike = 1.0,
                       e0: ArrayLike = 0.0, running_mean_start: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and second moment of e_t, t = 1..n_steps (last axis), under the worst case for
    the MSE: constant drift +delta, e0 <= 0, noise variance sigma^2, each step observed
    independently with probability p, step a (or max(1/n, a) with ``running_mean_start``).

    The second moment bounds E e_t^2 for any drift independent of the noise with |d| <= delta
    (even drift depending on the observation times). The state is the observation count, capped
    at ceil(1/a) (where the step becomes a), carried as partial moments E[e^k 1{count = n}]."""
    a, sigma, delta, p, e0 = np.broadcast_arrays(*(np.asarray(x, float) for x in (a, sigma, delta, p, e0)))
    if running_mean_start:
        cap = n_steps if np.any(a <= 0) else int(min(n_steps, np.ceil(1 / a.min())))
        count_next = np.arange(1, cap + 2)  # the observation number reached from each state
        step = np.maximum(1 / count_next, a[..., None])
    else:
        step = a[..., None] * np.ones(1)
    n_states = step.shape[-1]
    mass = np.zeros(a.shape + (n_states,))
    mass[..., 0] = 1
    m1, m2 = mass * -np.abs(e0)[..., None], mass * np.square(e0)[..., None]
    delta, p, var = delta[..., None], p[..., None], np.square(sigma)[..., None]
    mean_out, second_out = np.empty(a.shape + (n_steps,)), np.empty(a.shape + (n_steps,))

    def advance(stay: np.ndarray, seen: np.ndarray) -> np.ndarray:
        # unobserved mass stays in its state; observed mass moves to count + 1 (last state absorbs)
        moved = np.concatenate([np.zeros(seen.shape[:-1] + (1,)), seen[..., :-1]], axis=-1)
        moved[..., -1] += seen[..., -1]
        return stay + moved

    for t in range(n_steps):
        d1, d2 = m1 - delta * mass, m2 - 2 * delta * m1 + delta**2 * mass  # after the drift
        m2 = advance((1 - p) * d2, p * ((1 - step) ** 2 * d2 + step**2 * var * mass))
        m1 = advance((1 - p) * d1, p * (1 - step) * d1)
        mass = advance((1 - p) * mass, p * mass)
        mean_out[..., t], second_out[..., t] = m1.sum(-1), m2.sum(-1)
    return mean_out, second_out
