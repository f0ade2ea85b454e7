"""Allocation by estimated *reducible* discrepancy (`ProgressPolicy`): ARIA on the gap above each
region's floor, fitted from each region's own learning curve and shrunk across regions by its
noise. Same interface as the policies of `aria_theory.allocation`; it keeps its own trackers, fed
through `observe`. The model, the estimator and its noise handling are in the class docstring;
the tracked slope's bounds are `aria_theory.slope_bounds.slope_every_path_bound` and `slope_mse_bound`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special
from scipy.optimize import brentq

from aria_theory.allocation import AllocationPolicy, _normalise_shares, check_distribution
from aria_theory.tracker import RegionTracker, check_observations, check_unit


class ProgressPolicy(AllocationPolicy):
    """Allocation by estimated *reducible* discrepancy: ARIA on the gap above each region's floor.

    Model (per region k, assumed, not checked): after T_k trained samples of region k its
    discrepancy is D_k = phi_k + c_k z(T_k), z(T) = exp(-rate T): an irreducible floor phi_k plus a
    reducible part x_k = c_k z(T_k) that every trained sample of the region shrinks by the factor
    exp(-rate) (the allocation simulator's dynamics without transfer, forgetting or process
    noise, with rate = r/B). Losses y are noisy readings of D at the time they are observed.

    Estimate (two-timescale regression): one RegionTracker with the fast step `fast` and one with
    the slow step `slow` (0: the running mean of all observations) each track, per region, the
    losses y and the regressor z(T) of the same observations (T = trained samples of the region
    before the observation's step). With F and S their estimates,
        theta^_k = (S_k(y) - F_k(y)) / (S_k(z) - F_k(z))   (`coefficient`),
        phi^_k = F_k(y) - theta^_k F_k(z).
    Both numerator and denominator are differences of two EMAs of one sequence, so under the
    model (and without noise) theta^ = c_k exactly as soon as S(z) != F(z); with noise it is the
    slope of y against z fitted over the slow EMA's memory, with the fast EMA as the current
    end. For z_i = i (per-observation slope) `aria_theory.slope_bounds.slope_every_path_bound` and
    `slope_mse_bound` bound its error (same functions with this z: the slope per unit z); see
    there for the derivation. While S(z) = F(z) (fewer than about 1/fast observations: both EMAs
    are still the same running mean) theta^ is not identified and the region counts as unknown.

    Noise (`shrink`, `resolution`): theta^ is a ratio whose denominator S(z) - F(z) is small
    for a region that is rarely trained, so with a few noisy losses per region and step its noise
    (and any drift of the losses that the region's own training does not explain, such as the
    trainer's timestep normalisation) is amplified without bound, and so is phi^ (an
    extrapolation to z = 0); with w = max(x^, 0)^beta normalised, a few such estimates decide pi
    (in the trainer: pi = 0.82 on one region). Both estimates are fixed linear combinations of
    the region's losses for a given regressor sequence,
        theta^ = sum_u h_u y_u,  phi^ = sum_u g_u y_u,  h = (s - f) / dz,  g = f - F(z) h,
    f and s the weights with which the fast and slow EMAs hold each loss (functions of the
    observation count only; `_sums` keeps sum f^2, sum s^2, sum f s) and dz = S(z) - F(z), so
    under white noise of variance sigma_k^2 their variances and covariance are exactly sigma_k^2
    times sums of products of g and h (`_variance_factors`). sigma_k^2 is the mean square of the
    region's one-step prediction errors y - (phi^ + theta^ z) (step `slow`, from the first
    identified fit; errors within rounding count as 0, so exact observations of the model give
    sigma^2 = 0; misfit of the model counts as noise). With `shrink` (default) the fit is
    replaced by its posterior mean under a prior shared by the regions' floors,
    phi_k ~ N(phi_bar, tau^2) (phi_bar, tau^2: Paule-Mandel empirical Bayes over the regions'
    phi^ and their variances v_k), and a flat one on c_k:
        phi~ = lambda phi^ + (1 - lambda) phi_bar,   lambda = tau^2 / (tau^2 + v),
        theta~ = theta^ + Cov(theta^, phi^) / (v + tau^2) (phi_bar - phi^),
        x~ = theta~ z(T now)   (`reducible`),   phi~   (`floor_estimates`),
    with posterior sd s = z(T now) sd(theta~) (`reducible_sd`). A well-identified fit
    (v << tau^2) keeps its estimates; a region that has barely been trained gets
    x~ ~ F(y) - phi_bar (ARIA on its level above the pooled floor); a heavily trained one
    (z(T now) ~ 0) gets x~ ~ 0 whatever its noise, as the model says. The allocation weight is
    the posterior mean of the reducible part's positive part,
        E[x^+] = x~ Phi(x~/s) + s phi(x~/s)   (`expected_reducible`; max(x~, 0) where s = 0),
    continuous in x~, and reducible parts below `resolution` times the mean standard error of
    the regions' fitted levels (sqrt(sigma^2 sum f^2)) are not told apart: that amount r0 is
    added to every region's weight in proportion to the base, so as every region's reducible
    part falls below it pi moves continuously to the base instead of jumping onto whichever
    region's estimate is least negative. shrink=False, resolution=0 is the policy without
    either (x~ = theta^ z, phi~ = phi^, w = max(x~, 0)^beta). The tracked quantity theta^
    (`coefficient`) and its bounds are the same either way.

    Allocation: w_k = E[x^+_k]^beta + r0^beta K u_k, unknown regions (not identified, or no
    prediction error yet, with `shrink`) taking the largest known E[x^+]^beta (they are explored, as
    AriaPolicy does with NaN estimates), then
        pi = (1 - eps) w / sum(w) + eps u,     u = `base` normalised (uniform when None),
    and pi = u when every w_k is 0 (no region shows reducible discrepancy). So pi is a
    distribution with pi_k >= eps u_k for any observations (`floors`).

    Limits (exact, noise-free observations of the model, once every region is identified; then
    sigma^2 = 0, the posterior is the fit itself, s = 0 and r0 = 0):
    * every floor phi_k = 0: x~_k = D_k(now), so pi = AriaPolicy(beta, eps=eps, base=base) of the
      true discrepancies; with equal floors phi it is ARIA on the gaps D_k - phi.
    * every region progresses alike (same c, same T): w is uniform and pi = (1 - eps)/K + eps u,
      region-uniform for a uniform base. With noise the fits are shrunk to a common one and pi
      stays near region-uniform (no region gets the bulk of the draws from a noisy slope).
    * a region at its floor (c_k = 0) gets w_k = 0: only the floor eps u_k. ARIA cannot tell such
      a region from a slow one and keeps drawing it in proportion to its level.
    Where the model is wrong: transfer between regions and forgetting change D without the
    region's own training (x^ reads forgetting as a smaller reducible part when the level rises
    after its last training, and a transfer-driven fall as a larger one); `rate` sets how fast
    the model expects a region to saturate, so it also decides how strongly heavily trained
    regions are discounted (x^ ~ exp(-rate T)): in worlds whose regions are alike apart from
    their training counts the policy behaves like balancing the trained counts. A drift shared
    by every region's losses that no region's training explains (the trainer's timestep
    normalisation divides by a lagging mean, so late in a run every normalised loss rises) reads
    as negative progress everywhere: x~ <= 0 for all regions, and pi then goes to the base
    (through `resolution`) rather than to whichever region looks least negative.

    Feedback: `observe(region_ids, values, probabilities, trained=None)` takes the tracker's
    observations and, in `trained`, the region of every sample trained on this step (default:
    the observed ones). `probabilities(estimates)` validates `estimates` (the shared tracker's)
    and does not use them: the policy keeps its own trackers, whose state (two RegionTrackers over
    2K entries: losses in 0..K-1, regressor in K..2K-1; one over K entries of squared prediction
    errors; and the trained counts) round-trips through JSON exactly like a tracker's, so every
    rank that feeds the same gathered observations in the same order holds bitwise the same state.

    rate: expected relative decrease of a region's reducible part per trained sample of it (> 0).
    fast, slow: EMA steps, 0 <= slow < fast <= 1 (slow = 0: running mean over all observations).
    beta, eps, base: as AriaPolicy.
    shrink: replace the fit by its posterior mean under the floors' shared prior (see above).
    resolution: reducible parts below this many standard errors of the fitted levels are not
        told apart (>= 0; 0: off).
    """

    _state_scalars = ("_time",)

    def __init__(self, num_regions: int, rate: float = 0.003, fast: float = 0.05, slow: float = 0.0,
                 beta: float = 1.0, eps: float = 0.2, base: ArrayLike | None = None,
                 shrink: bool = True, resolution: float = 0.03) -> None:
        super().__init__(num_regions)
        self.rate = float(rate)
        if not (np.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be finite and > 0, got {rate}")
        self.fast = check_unit("fast", fast)
        self.slow = check_unit("slow", slow, low_open=False)
        if not self.slow < self.fast:
            raise ValueError(f"slow ({self.slow}) must be smaller than fast ({self.fast})")
        self.beta = float(beta)
        if not (np.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be finite and >= 0, got {beta}")
        self.eps = check_unit("eps", eps, low_open=False)
        if not isinstance(shrink, (bool, np.bool_)):
            raise ValueError(f"shrink must be True or False, got {shrink!r}")
        self.shrink = bool(shrink)
        self.resolution = float(resolution)
        if not (np.isfinite(self.resolution) and self.resolution >= 0):
            raise ValueError(f"resolution must be finite and >= 0, got {resolution}")
        self.base = (np.full(self.num_regions, 1.0 / self.num_regions) if base is None
                     else _normalise_shares(base, self.num_regions, "base"))
        # the base as given, for config(): normalising an already normalised base again can move it
        # by an ulp, so a reloaded policy re-normalises the same numbers instead
        self._base_arg = None if base is None else np.asarray(base, np.float64).tolist()
        # entries 0..K-1 track the losses y, entries K..2K-1 the regressor z of the same observations
        self._fast = RegionTracker(2 * self.num_regions, step=self.fast)
        self._slow = RegionTracker(2 * self.num_regions, step=self.slow)
        # squared one-step prediction errors of each region's identified fit: its noise variance
        self._noise = RegionTracker(self.num_regions, step=self.slow)
        self.trained = np.zeros(self.num_regions, np.int64)  # T_k: samples of region k trained so far
        # (sum f^2, sum s^2, sum f s) of the two EMAs' weights after n observations, row n: derived
        # from (fast, slow) alone, so a cache, not state
        self._weight_sums = np.zeros((1, 3))

    @property
    def _time(self) -> int:
        """observe() calls so far (all trackers' time)."""
        return self._fast._time

    @_time.setter
    def _time(self, value: int) -> None:
        self._fast._time = self._slow._time = self._noise._time = int(value)

    @property
    def floors(self) -> np.ndarray:
        return self.eps * self.base

    @property
    def counts(self) -> np.ndarray:
        """int64 (K,): observations per region so far."""
        return self._fast.counts[:self.num_regions]

    def curve(self, trained: ArrayLike | None = None) -> np.ndarray:
        """z = exp(-rate T), float64: the learning-curve regressor after T trained samples (default:
        each region's count now). It underflows to 0 beyond rate T ~ 745, where the model's
        reducible part is gone."""
        t = self.trained if trained is None else np.asarray(trained)
        return np.exp(-self.rate * t.astype(np.float64))

    def _split(self, tracker: RegionTracker) -> tuple[np.ndarray, np.ndarray]:
        est = tracker._raw_estimates()
        return est[:self.num_regions], est[self.num_regions:]

    @property
    def coefficient(self) -> np.ndarray:
        """theta^ (K,) = (S(y) - F(y)) / (S(z) - F(z)), before any shrinkage (the quantity that
        `aria_theory.slope_bounds.slope_*` bound); NaN where not identified (S(z) = F(z) up to
        rounding) or not finite; 0 where z underflowed to 0 on every observation of the region.
        Differences within rounding of the values (4 ulp) count as 0, so a constant stream gives
        theta^ = 0 exactly, not the sign of a rounding error."""
        (fy, fz), (sy, sz) = self._split(self._fast), self._split(self._slow)
        ulp = 4 * np.finfo(np.float64).eps
        with np.errstate(over="ignore", invalid="ignore"):
            dy = sy - fy
            dz = sz - fz
            dy = np.where(np.abs(dy) <= ulp * (np.abs(sy) + np.abs(fy)), 0.0, dy)
            dz = np.where(np.abs(dz) <= ulp * (np.abs(sz) + np.abs(fz)), 0.0, dz)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            theta = dy / dz
        theta = np.where(dz > 0, theta, np.where(self._underflow(), 0.0, np.nan))
        return np.where(np.isfinite(theta), theta, np.nan)

    def _underflow(self) -> np.ndarray:
        """bool (K,): z was 0 on every observation of the region (its fit is 0 by convention)."""
        _, sz = self._split(self._slow)
        _, fz = self._split(self._fast)
        return (sz == 0) & (fz == 0) & (self.counts > 0)

    def _sums(self, n: np.ndarray) -> np.ndarray:
        """(K, 3): (sum f^2, sum s^2, sum f s) of the EMA weights after n observations, n = counts;
        f, s the weights with which the fast and slow EMAs hold each observation."""
        top = int(n.max(initial=0))
        have = self._weight_sums.shape[0]
        if top >= have:  # extend the cache (geometrically, so a run costs O(total count) once)
            rows = [self._weight_sums]
            ff, ss, fs = self._weight_sums[-1]
            new = np.empty((max(top + 1, 2 * have) - have, 3))
            for i, count in enumerate(range(have, have + new.shape[0])):
                a_f, a_s = max(1.0 / count, self.fast), max(1.0 / count, self.slow)
                ff = (1 - a_f) ** 2 * ff + a_f * a_f
                ss = (1 - a_s) ** 2 * ss + a_s * a_s
                fs = (1 - a_f) * (1 - a_s) * fs + a_f * a_s
                new[i] = ff, ss, fs
            rows.append(new)
            self._weight_sums = np.concatenate(rows)
        return self._weight_sums[n]

    def _noise_variance(self) -> np.ndarray:
        """sigma^2 (K,): mean square one-step prediction error; NaN before the first one."""
        return self._noise.estimates

    def _variance_factors(self, theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Var phi^, Var theta^, Cov(theta^, phi^)) / sigma^2 (K,) under white noise: phi^ and
        theta^ are sum_u g_u y_u and sum_u h_u y_u with h = (s - f) / dz, g = f - F(z) h (f, s the
        weights of the two EMAs, dz = S(z) - F(z)), so these are sums of products of g and h,
        written with the sums of f^2, s^2 and f s. NaN where theta^ is not identified; where z
        underflowed (theta^ = 0 by convention) phi^ = F(y): (sum f^2, 0, 0). `theta`: the
        coefficient, when the caller has it."""
        theta = self.coefficient if theta is None else theta
        fz, sz = self._split(self._fast)[1], self._split(self._slow)[1]
        ff, ss, fs = self._sums(self.counts).T
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            dz = sz - fz
            r = fz / dz
            gap = np.maximum(ss + ff - 2 * fs, 0.0)  # sum (s - f)^2
            var_phi = np.maximum((1 + r) ** 2 * ff - 2 * r * (1 + r) * fs + r * r * ss, 0.0)
            var_theta = gap / (dz * dz)
            cov = (fs - ff - r * gap) / dz
        underflow = self._underflow()
        nan = np.isnan(theta)
        return (np.where(nan, np.nan, np.where(underflow, ff, var_phi)),
                np.where(nan, np.nan, np.where(underflow, 0.0, var_theta)),
                np.where(nan, np.nan, np.where(underflow, 0.0, cov)))

    def _fit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x~, phi~, lambda, sd) (K,): the reducible part and the floor after shrinkage, the weight
        kept on the region's own floor estimate (1: none shrunk) and the posterior sd of x~; NaN
        where the region is not identified (or, shrinking, has no prediction error yet)."""
        theta = self.coefficient
        fy, fz = self._split(self._fast)
        z_now = self.curve()
        with np.errstate(over="ignore", invalid="ignore"):
            x_hat = theta * z_now
            phi_hat = fy - theta * fz
        known = ~np.isnan(theta)
        if not self.shrink:
            return x_hat, phi_hat, np.where(known, 1.0, np.nan), np.where(known, 0.0, np.nan)
        sigma2 = self._noise_variance()
        known &= ~np.isnan(sigma2)
        factors = self._variance_factors(theta)
        with np.errstate(over="ignore", invalid="ignore"):
            var_phi, var_theta, cov = (np.where(known, sigma2 * f, np.nan) for f in factors)
            var_phi = np.where(known & np.isnan(var_phi), np.inf, var_phi)  # overflow: no information
        phi, lam, tau2, target = _shrink(np.where(known, phi_hat, np.nan), var_phi)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # theta | phi: the regression of theta^ on phi^ moves theta^ with the shrunk floor
            total = var_phi + tau2
            gain = np.where((total > 0) & np.isfinite(total), cov / total, 0.0)
            theta_t = theta + np.where(lam == 1, 0.0, gain * (target - phi_hat))
            post = np.where(lam == 1, np.where(np.isfinite(var_theta), var_theta, 0.0),
                            np.maximum(var_theta - gain * cov, 0.0))
            x = np.where(known, theta_t * z_now, np.nan)
            sd = np.where(known, np.sqrt(post) * z_now, np.nan)
        bad = known & ~(np.isfinite(x) & np.isfinite(sd))  # near the float range: the raw fit, exact
        x, sd = np.where(bad, x_hat, x), np.where(bad, 0.0, sd)
        return x, np.where(known, phi, np.nan), lam, sd

    @property
    def reducible(self) -> np.ndarray:
        """x~ (K,): the estimated reducible discrepancy (posterior mean with `shrink`); NaN: unknown."""
        x = self._fit()[0]
        return np.where(np.isfinite(x), x, np.nan)

    @property
    def floor_estimates(self) -> np.ndarray:
        """phi~ (K,): the estimated irreducible floor (posterior mean with `shrink`); NaN: unknown."""
        phi = self._fit()[1]
        return np.where(np.isfinite(phi), phi, np.nan)

    @property
    def shrinkage(self) -> np.ndarray:
        """lambda (K,) in [0, 1]: the weight of the region's own floor estimate against the pooled
        one (1: not shrunk, 0: the pooled one); NaN: unknown."""
        return self._fit()[2]

    @property
    def reducible_sd(self) -> np.ndarray:
        """s (K,): the posterior sd of x~ (0: exact data, or shrink=False); NaN: unknown."""
        return self._fit()[3]

    @property
    def expected_reducible(self) -> np.ndarray:
        """E[max(x, 0)] (K,) under x ~ N(x~, s^2): x~ Phi(x~/s) + s phi(x~/s), max(x~, 0) where
        s = 0; what allocation raises to beta. NaN: unknown."""
        x, _, _, s = self._fit()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            t = x / s
            smooth = x * special.ndtr(t) + s * np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)
            w = np.where(s > 0, smooth, np.maximum(x, 0.0))
        return np.where(np.isfinite(w), np.maximum(w, 0.0), np.nan)

    def _pseudo_weight(self) -> float:
        """r0 = resolution * mean over identified regions of sqrt(sigma^2 sum f^2), the standard
        error of the fitted level now; 0 before any prediction error (and for exact data)."""
        if self.resolution == 0:
            return 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            se = np.sqrt(self._noise_variance() * self._sums(self.counts)[:, 0])
        ok = np.isfinite(se) & ~np.isnan(self.coefficient)
        r0 = float(self.resolution * se[ok].mean()) if ok.any() else 0.0
        return r0 if np.isfinite(r0) else 0.0

    def probabilities(self, estimates: ArrayLike) -> np.ndarray:
        self._check_estimates(estimates)
        x = self.expected_reducible
        unknown = np.isnan(x)
        pos = np.maximum(np.where(unknown, 0.0, x), 0.0)
        if unknown.any():
            pos[unknown] = 1.0 if unknown.all() else pos[~unknown].max()
        r0 = self._pseudo_weight()
        top = max(pos.max(), r0)
        if top == 0:
            return self.base.copy()
        w = (pos / top) ** self.beta  # scaling by the max first keeps pos^beta from overflowing
        if r0 > 0:
            w = w + (r0 / top) ** self.beta * self.num_regions * self.base
        return (1.0 - self.eps) * w / w.sum() + self.eps * self.base

    def observe(self, region_ids: ArrayLike, values: ArrayLike, probabilities: ArrayLike,
                trained: ArrayLike | None = None) -> None:
        """Fold in observations `values` of `region_ids` and count `trained` (region ids of every
        sample trained on this step; default: region_ids). `probabilities` (this step's pi) is
        validated as a distribution only: the observations need not have been drawn from it
        (paired samples are observed too when the tracker sees every sample). Raises ValueError on
        bad input before changing any state."""
        ids, vals = check_observations(region_ids, values, self.num_regions)
        check_distribution(probabilities, self.num_regions)
        if trained is None:
            trained_ids = ids
        else:
            trained_ids, _ = check_observations(trained, np.zeros(np.shape(trained)), self.num_regions)
        z = self.curve()[ids]
        # one-step prediction errors of the identified fits (all against the fit before this call)
        (fy, fz), (sy, sz) = self._split(self._fast), self._split(self._slow)
        theta = self.coefficient[ids]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trend = theta * (z - fz[ids])
            error = (vals - fy[ids]) - trend
            # within the rounding of its terms: 0, so that exact data give sigma^2 = 0 exactly. theta^
            # carries the rounding of S(y) - F(y) divided by S(z) - F(z), times z - F(z) here.
            slope_rounding = (np.abs(sy[ids]) + np.abs(fy[ids])) * np.abs(z - fz[ids]) / np.abs(sz[ids] - fz[ids])
            scale = (np.abs(vals) + np.abs(fy[ids]) + np.abs(trend) + np.abs(theta * fz[ids])
                     + np.where(np.isfinite(slope_rounding), slope_rounding, 0.0))
            error = np.where(np.abs(error) <= 8 * np.finfo(np.float64).eps * scale, 0.0, error)
            square = np.minimum(error * error, _BIG)  # inf -> _BIG: the tracker takes finite values
        known = ~np.isnan(square)
        self._noise.update(ids[known], square[known])
        both = np.concatenate([ids, ids + self.num_regions])
        self._fast.update(both, np.concatenate([vals, z]))
        self._slow.update(both, np.concatenate([vals, z]))
        self.trained += np.bincount(trained_ids, minlength=self.num_regions)

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions, "rate": self.rate, "fast": self.fast, "slow": self.slow,
                "beta": self.beta, "eps": self.eps, "base": self._base_arg, "shrink": self.shrink,
                "resolution": self.resolution}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"trained": self.trained}
        for name, tracker in (("fast", self._fast), ("slow", self._slow), ("noise", self._noise)):
            arrays.update({f"{name}.{key}": arr for key, arr in tracker._state_arrays().items()})
        return arrays


_BIG = 1e300  # squared errors are capped here: finite, and (1 - a) m + a y of two of them stays finite


def _shrink(value: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Normal-normal empirical Bayes across regions: (shrunk value, lambda) (K,), tau^2 and m.

    value_k ~ N(mu_k, var_k) given mu_k, mu_k ~ N(m, tau^2) across regions. Over the regions with a
    finite var (var = inf: no information), tau^2 is the Paule-Mandel estimate (the root of
    sum (value - m)^2 / (var + tau^2) = n - 1, 0 if there is none; it lies below the sample
    variance of the values, and handles var = 0), m the mean of the values with weights
    1 / (var + tau^2) (of those with var = 0 when tau^2 = 0), and
    shrunk = lambda value + (1 - lambda) m, lambda = tau^2 / (tau^2 + var): 1 where var = 0 (the
    value is exact and is returned unchanged), 0 where var = inf. NaN values or variances
    (unknown) give NaN lambda and leave the value as it is. The computation runs on values
    centred and scaled to [-1, 1], so it neither overflows nor depends on the units."""
    known = ~np.isnan(value) & ~np.isnan(var)
    lam = np.where(known, 1.0, np.nan)
    noisy = known & (var > 0)
    if not noisy.any():
        return value, lam, 0.0, 0.0
    usable = known & np.isfinite(var)
    if not usable.any():  # no region carries information: nothing to shrink toward
        return value, lam, 0.0, 0.0
    centre = float(np.median(value[usable]))
    with np.errstate(over="ignore", invalid="ignore"):
        spread = float(np.max(np.abs(value[usable] - centre)))
    if not np.isfinite(spread):  # values near the float range: leave them
        return value, lam, 0.0, 0.0
    tau2 = 0.0
    if spread == 0:  # every informative region has the same value: shrink to it
        target_u = 0.0
    else:
        u = (value[usable] - centre) / spread
        with np.errstate(over="ignore", divide="ignore"):
            v = var[usable] / (spread * spread)  # inf on overflow: no information
        finite = np.isfinite(v)
        u, v = u[finite], v[finite]
        exact = v == 0

        def mean_at(tau2: float) -> float:
            if tau2 == 0 and exact.any():
                return float(u[exact].mean())
            w = (v.min() + tau2) / (v + tau2)  # 1 / (v + tau2), scaled to (0, 1]
            return float((w * u).sum() / w.sum())

        def excess(tau2: float) -> float:  # decreasing in tau2; capped so that it stays finite
            with np.errstate(over="ignore", divide="ignore"):
                total = float(((u - mean_at(tau2)) ** 2 / (v + tau2)).sum())
            return min(total, _BIG) - (u.size - 1)

        high = float(u.var(ddof=1)) if u.size > 1 else 0.0
        low = 1e-12 * high
        if high == 0 or excess(low) <= 0:
            tau2_u = 0.0
        elif excess(high) >= 0:
            tau2_u = high
        else:
            tau2_u = float(brentq(excess, low, high, xtol=1e-14 * high, rtol=1e-10))
        target_u = mean_at(tau2_u) if u.size else 0.0
        with np.errstate(over="ignore"):
            tau2 = tau2_u * spread * spread
    target = centre + target_u * spread
    with np.errstate(over="ignore", invalid="ignore"):
        lam = np.where(noisy, np.where(np.isinf(var), 0.0, tau2 / (tau2 + var)), lam)
        lam = np.where(noisy & ~np.isfinite(lam), 0.0, lam)  # 0/0: tau2 = 0 and var tiny
        shrunk = np.where(noisy, lam * value + (1 - lam) * target, value)
    if not (np.isfinite(target) and np.isfinite(tau2) and np.isfinite(shrunk[known]).all()):
        return value, np.where(known, 1.0, np.nan), 0.0, 0.0
    return shrunk, lam, tau2, target
