"""Per-region online trackers of a drifting mean: the teacher-student discrepancy of each region.

Every tracker follows `Tracker`. One `update` call is one step of time and carries any number of
observations: several of one region, none of most, or none at all. Observations of one region
within a call are applied in the order given, exactly as if they came one at a time; the work is
vectorised over regions, with one numpy pass per rank of an observation within its region (a
single pass when no region repeats, the common case).

Conventions shared by all trackers:
* `estimates` is NaN for a region never observed: it has no estimate yet. The allocation policies
  read NaN as "unknown" (see `aria_theory.allocation`).
* `staleness` counts `update` calls since the region was last observed (since creation if never).
* `state_dict()` is plain JSON data (lists, ints, floats, strings) with a "type" tag and the
  constructor's config; `load_state_dict` restores it exactly, so behaviour after a
  `json.dumps`/`json.loads` round trip is bitwise identical.

The model behind the step choice (docs/design.md §5): m_{t+1} = m_t + d_t with |d_t| <= delta,
y = m + xi with Var xi <= sigma^2; a constant-step EMA tracks with lag (1-a) delta / a and noise
variance a sigma^2 / (2-a).
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike


def check_observations(region_ids: ArrayLike, values: ArrayLike,
                       num_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch of observations; return (int64 ids, float64 values), or raise ValueError.

    Both must be 1-D of equal length (zero allowed); ids integers in [0, num_regions); values real
    and finite.
    """
    ids, vals = np.asarray(region_ids), np.asarray(values)
    if ids.ndim != 1 or vals.ndim != 1:
        raise ValueError(f"region_ids and values must be 1-D, got shapes {ids.shape} and {vals.shape}")
    if ids.shape != vals.shape:
        raise ValueError(f"region_ids and values differ in length: {ids.size} != {vals.size}")
    if ids.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"region_ids must have an integer dtype, got {ids.dtype}")
    if vals.dtype.kind not in "iuf":
        raise ValueError(f"values must be real numbers, got dtype {vals.dtype}")
    low, high = ids.min(), ids.max()
    if low < 0 or high >= num_regions:
        bad = low if low < 0 else high
        raise ValueError(f"region id {bad} out of range [0, {num_regions})")
    vals = vals.astype(np.float64, copy=False)
    if not np.isfinite(vals).all():
        raise ValueError("values must be finite (got NaN or inf)")
    return ids.astype(np.int64, copy=False), vals


def check_num_regions(num_regions: Any) -> int:
    """A positive int number of regions (numpy ints too; bools are refused), else ValueError."""
    if isinstance(num_regions, bool) or not isinstance(num_regions, (int, np.integer)) or num_regions < 1:
        raise ValueError(f"num_regions must be a positive integer, got {num_regions!r}")
    return int(num_regions)


def check_unit(name: str, value: Any, low_open: bool = True) -> float:
    """A number in (0, 1] (or [0, 1] when low_open is False)."""
    value = float(value)
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in {'(' if low_open else '['}0, 1], got {value}")
    return value


class JsonState:
    """State as JSON: {"type", "config", "arrays", "scalars"}.

    A subclass gives `config()` (its constructor's keyword arguments), `_state_arrays()` (its live
    numpy arrays, by name) and `_state_scalars` (names of int/float attributes). Each root class
    (Tracker, AllocationPolicy) holds a `_registry` of its concrete subclasses by name, so
    `Root.from_state_dict` rebuilds the right class.
    """

    _registry: ClassVar[dict[str, type]]
    _state_scalars: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if hasattr(cls, "_registry") and not inspect.isabstract(cls):
            cls._registry[cls.__name__] = cls

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "config": self.config(),
            "arrays": {name: arr.tolist() for name, arr in self._state_arrays().items()},
            "scalars": {name: getattr(self, name) for name in self._state_scalars},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Any:
        """A new object of the class named by state["type"] (a subclass of cls), restored."""
        kind = cls._registry.get(state.get("type"))
        if kind is None or not issubclass(kind, cls):
            raise ValueError(f"state of type {state.get('type')!r} is not a {cls.__name__}")
        obj = kind(**state["config"])
        arrays = obj._state_arrays()
        if set(arrays) != set(state["arrays"]):
            raise ValueError(f"state arrays {sorted(state['arrays'])} != expected {sorted(arrays)}")
        for name, arr in arrays.items():
            loaded = np.asarray(state["arrays"][name], dtype=arr.dtype)
            if loaded.shape != arr.shape:
                raise ValueError(f"state array {name!r} has shape {loaded.shape}, expected {arr.shape}")
            arr[...] = loaded
        for name in obj._state_scalars:
            setattr(obj, name, type(getattr(obj, name))(state["scalars"][name]))
        return obj

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore config and state from `state_dict()` output of the same type."""
        if state.get("type") != type(self).__name__:
            raise ValueError(f"cannot load a {state.get('type')!r} state into a {type(self).__name__}")
        self.__dict__.update(self.from_state_dict(state).__dict__)


class Tracker(JsonState, ABC):
    """Per-region online estimate of a drifting mean; see the module docstring for conventions."""

    _registry: ClassVar[dict[str, type]] = {}
    _state_scalars = ("_time",)

    def __init__(self, num_regions: int) -> None:
        self.num_regions = check_num_regions(num_regions)
        self._time = 0  # number of update calls so far
        self._counts = np.zeros(self.num_regions, np.int64)
        self._last = np.zeros(self.num_regions, np.int64)  # time of the last observation (0: creation)
        self._all = np.arange(self.num_regions)

    def update(self, region_ids: ArrayLike, values: ArrayLike) -> None:
        """One step of time with observations `values[i]` of regions `region_ids[i]`.

        Raises ValueError on bad input before changing any state.
        """
        ids, vals = check_observations(region_ids, values, self.num_regions)
        self._time += 1
        if ids.size == 0:
            return
        if ids.size == self.num_regions and np.array_equal(ids, self._all):
            self._observe(slice(None), vals)  # every region once, in order: views, no gathers
            return
        if np.bincount(ids, minlength=self.num_regions).max() <= 1:  # no region repeats
            self._observe(ids, vals)
            return
        # rank[i] = how many earlier observations of the same region this call holds; pass r
        # applies every region's r-th observation at once, which keeps the sequential order.
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        rank = np.arange(ids.size) - np.searchsorted(sorted_ids, sorted_ids, side="left")
        by_rank = order[np.argsort(rank, kind="stable")]
        start = 0
        for size in np.bincount(rank):
            sel = by_rank[start:start + size]
            self._observe(ids[sel], vals[sel])
            start += size

    def _observe(self, ids: np.ndarray | slice, vals: np.ndarray) -> None:
        self._observe_unique(ids, vals)
        self._counts[ids] += 1
        self._last[ids] = self._time

    @abstractmethod
    def _observe_unique(self, ids: np.ndarray | slice, vals: np.ndarray) -> None:
        """Apply one observation to each of the distinct regions `ids` (an index array, or
        slice(None) for all regions in order); `self._counts[ids]` and `self._last[ids]` still
        describe the state before it."""

    @abstractmethod
    def _raw_estimates(self) -> np.ndarray:
        """The internal estimate array (any finite placeholder for never-observed regions)."""

    @property
    def estimates(self) -> np.ndarray:
        """float64 (K,) copy; NaN for regions never observed."""
        est = np.array(self._raw_estimates(), dtype=np.float64)
        est[self._counts == 0] = np.nan
        return est

    @property
    def counts(self) -> np.ndarray:
        """int64 (K,): observations per region so far."""
        return self._counts.copy()

    @property
    def staleness(self) -> np.ndarray:
        """int64 (K,): update calls since each region was last observed (since creation if never)."""
        return self._time - self._last

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self._counts, "last": self._last}


class AutoStep:
    """Online choice of the EMA step per region: a = min(1, (2 delta/sigma)^(2/3)), docs/design.md §5.5.

    Per region and per observation, without knowing sigma or delta:
    * sigma^2 from half the mean squared successive difference of the observations (biased up by
      delta^2/2, negligible for delta << sigma);
    * delta from the gap g = fast - slow between two EMAs (steps max(1/n, fast), max(1/n, slow)).
      Under a constant drift delta per observation and white noise of variance sigma^2, exactly
      E g_n^2 = delta^2 (L_slow,n - L_fast,n)^2 + sigma^2 G_n, where L is each EMA's lag per unit
      drift and G the noise variance of the gap per unit noise variance; both follow from the
      step sequences and are tracked alongside. Averaging g^2, (L_s - L_f)^2 and G with the same
      weights (step max(1/n, slow)) gives delta^2 = (avg g^2 - sigma^2 avg G) / avg (L_s - L_f)^2.
    The closed form is the small-delta/sigma approximation of the exact minimiser of the
    steady-state MSE (within a few percent for delta/sigma <= 0.01). The step is clipped to
    [slow, 1]; with fewer than two observations, or no evidence of drift yet, it is `slow`.
    Estimates are per region (regions may drift at different rates); delta is per observation.
    """

    _ARRAYS = ("prev", "half_sq_diff", "fast_est", "slow_est", "lag_fast", "lag_slow",
               "var_fast", "var_slow", "cov", "avg_gap_sq", "avg_lag_sq", "avg_gap_var")

    def __init__(self, num_regions: int, fast: float = 0.1, slow: float = 0.001) -> None:
        self.num_regions = check_num_regions(num_regions)
        self.fast, self.slow = check_unit("fast", fast), check_unit("slow", slow)
        if not self.slow < self.fast:
            raise ValueError(f"slow ({self.slow}) must be smaller than fast ({self.fast})")
        self.arrays = {name: np.zeros(self.num_regions) for name in self._ARRAYS}

    def config(self) -> dict[str, float]:
        return {"fast": self.fast, "slow": self.slow}

    def steps(self, ids: np.ndarray, n_prev: np.ndarray) -> np.ndarray:
        """The step for the next observation of regions `ids`, which have `n_prev` observations."""
        s = self.arrays
        sigma2 = s["half_sq_diff"][ids]
        lag_sq = s["avg_lag_sq"][ids]
        excess = np.maximum(s["avg_gap_sq"][ids] - sigma2 * s["avg_gap_var"][ids], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.sqrt(excess / lag_sq)
            step = np.minimum(1.0, np.cbrt((2.0 * delta / np.sqrt(sigma2)) ** 2))
        known = (n_prev >= 2) & (lag_sq > 0) & (delta > 0)
        return np.where(known, np.clip(step, self.slow, 1.0), self.slow)

    def observe(self, ids: np.ndarray, vals: np.ndarray, n_prev: np.ndarray) -> None:
        """Fold one observation into the statistics of each distinct region in `ids`."""
        s = self.arrays
        n = n_prev + 1
        avg = np.maximum(1.0 / n, self.slow)
        diffs = np.maximum(n_prev, 1)  # successive differences seen, including this one
        d_step = np.where(n_prev >= 1, np.maximum(1.0 / diffs, self.slow), 0.0)
        diff = vals - s["prev"][ids]
        s["half_sq_diff"][ids] += d_step * (0.5 * diff * diff - s["half_sq_diff"][ids])
        s["prev"][ids] = vals
        a_f, a_s = np.maximum(1.0 / n, self.fast), avg
        s["fast_est"][ids] = (1 - a_f) * s["fast_est"][ids] + a_f * vals
        s["slow_est"][ids] = (1 - a_s) * s["slow_est"][ids] + a_s * vals
        s["lag_fast"][ids] = (1 - a_f) * (s["lag_fast"][ids] + 1)
        s["lag_slow"][ids] = (1 - a_s) * (s["lag_slow"][ids] + 1)
        s["var_fast"][ids] = (1 - a_f) ** 2 * s["var_fast"][ids] + a_f ** 2
        s["var_slow"][ids] = (1 - a_s) ** 2 * s["var_slow"][ids] + a_s ** 2
        s["cov"][ids] = (1 - a_f) * (1 - a_s) * s["cov"][ids] + a_f * a_s
        gap = s["fast_est"][ids] - s["slow_est"][ids]
        lag_gap = s["lag_slow"][ids] - s["lag_fast"][ids]
        gap_var = s["var_fast"][ids] + s["var_slow"][ids] - 2 * s["cov"][ids]
        for name, x in (("avg_gap_sq", gap * gap), ("avg_lag_sq", lag_gap * lag_gap),
                        ("avg_gap_var", gap_var)):
            s[name][ids] += avg * (x - s[name][ids])


class RegionTracker(Tracker):
    """The ARIA tracker: per region, m <- (1 - a_n) m + a_n y with a_n = max(1/n, a).

    n counts the region's observations including this one, so the estimate is the running mean
    while 1/n >= a and a constant-step EMA afterwards.

    step: a in (0, 1]; 0 gives the plain running mean; "auto" (or a dict of `AutoStep` options,
        e.g. {"fast": 0.1, "slow": 0.001}) picks a per region online with `AutoStep`.
    initial: the estimate before the first observation; it matters only without the running-mean
        start (a_1 = 1 overwrites it), where e_0 = initial - m_0 enters docs/design.md §5's bounds.
    running_mean_start: False uses the constant step a from the first observation (pure EMA).
    """

    def __init__(self, num_regions: int, step: float | str | dict = 0.05, initial: float = 0.0,
                 running_mean_start: bool = True) -> None:
        super().__init__(num_regions)
        self.running_mean_start = bool(running_mean_start)
        self.initial = float(initial)
        if not np.isfinite(self.initial):
            raise ValueError(f"initial must be finite, got {initial}")
        self._auto: AutoStep | None = None
        if isinstance(step, (str, dict)):
            if step != "auto" and not isinstance(step, dict):
                raise ValueError(f"step must be a number, 'auto' or a dict of AutoStep options, got {step!r}")
            if not self.running_mean_start:
                raise ValueError("step='auto' needs running_mean_start=True")
            self._auto = AutoStep(self.num_regions, **({} if step == "auto" else step))
            self.step: float | str = "auto"
        else:
            # step 0 is the running mean, which needs the running-mean start
            self.step = check_unit("step", step, low_open=not self.running_mean_start)
        self._est = np.full(self.num_regions, self.initial)

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions,
                "step": self._auto.config() if self._auto else self.step,
                "initial": self.initial, "running_mean_start": self.running_mean_start}

    def _base_steps(self, ids: np.ndarray, n_prev: np.ndarray) -> np.ndarray | float:
        return self._auto.steps(ids, n_prev) if self._auto else self.step

    def _observe_unique(self, ids: np.ndarray | slice, vals: np.ndarray) -> None:
        n_prev = self._counts[ids]
        a = self._base_steps(ids, n_prev)
        if self.running_mean_start:
            a = np.maximum(1.0 / (n_prev + 1), a)
        if self._auto:
            self._auto.observe(ids, vals, n_prev)
        # (1-a) m + a y, not m + a (y - m): with a = 1 it returns y exactly.
        self._est[ids] = (1.0 - a) * self._est[ids] + a * vals

    @property
    def steps(self) -> np.ndarray:
        """float64 (K,): the step the next observation of each region will use."""
        a = np.broadcast_to(self._base_steps(np.arange(self.num_regions), self._counts),
                            (self.num_regions,)).astype(np.float64)
        return np.maximum(1.0 / (self._counts + 1), a) if self.running_mean_start else a

    def _raw_estimates(self) -> np.ndarray:
        return self._est

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {**super()._state_arrays(), "estimates": self._est}
        if self._auto:
            arrays.update({f"auto.{name}": arr for name, arr in self._auto.arrays.items()})
        return arrays


class RunningMeanTracker(RegionTracker):
    """The plain running mean per region (RegionTracker with step 0). Under a trend its lag grows
    without bound; it is kept as the baseline that fails to track."""

    def __init__(self, num_regions: int) -> None:
        super().__init__(num_regions, step=0.0)

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions}


class KalmanTracker(Tracker):
    """Scalar Kalman filter per region for the random walk m_{t+1} = m_t + N(0, q), y = m + N(0, r).

    The prior variance grows by q for every update call since the region's last observation, so
    irregular observation is handled exactly; observations within one call share a time. With
    prior_var=None the prior is diffuse: the first observation is taken as the estimate (variance
    r). Regular observation converges to the textbook gain K = (sqrt(l^2 + 4l) - l)/2, l = q/r,
    with posterior variance K r (docs/design.md §5.7).
    """

    def __init__(self, num_regions: int, q: float, r: float, initial: float = 0.0,
                 prior_var: float | None = None) -> None:
        super().__init__(num_regions)
        self.q, self.r, self.initial = float(q), float(r), float(initial)
        if not (np.isfinite(self.q) and self.q >= 0 and np.isfinite(self.r) and self.r > 0):
            raise ValueError(f"need q >= 0 and r > 0 (finite), got q={q}, r={r}")
        if not np.isfinite(self.initial):
            raise ValueError(f"initial must be finite, got {initial}")
        self.prior_var = None if prior_var is None else float(prior_var)
        if self.prior_var is not None and not (np.isfinite(self.prior_var) and self.prior_var >= 0):
            raise ValueError(f"prior_var must be None or finite and >= 0, got {prior_var}")
        self._est = np.full(self.num_regions, self.initial)
        # posterior variance at the time of the last observation (prior_var, or 0 if diffuse, before)
        self._var = np.full(self.num_regions, self.prior_var or 0.0)

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions, "q": self.q, "r": self.r,
                "initial": self.initial, "prior_var": self.prior_var}

    def _observe_unique(self, ids: np.ndarray | slice, vals: np.ndarray) -> None:
        prior = self._var[ids] + self.q * (self._time - self._last[ids])
        gain = prior / (prior + self.r)
        if self.prior_var is None:
            gain[self._counts[ids] == 0] = 1.0
        self._est[ids] = (1.0 - gain) * self._est[ids] + gain * vals
        self._var[ids] = gain * self.r  # = (1 - gain) prior, and r for the diffuse first step

    @property
    def variances(self) -> np.ndarray:
        """float64 (K,): the filter's error variance now (NaN if never observed, diffuse prior)."""
        var = self._var + self.q * self.staleness
        if self.prior_var is None:
            var[self._counts == 0] = np.nan
        return var

    def _raw_estimates(self) -> np.ndarray:
        return self._est

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {**super()._state_arrays(), "estimates": self._est, "variances": self._var}


class DiscountedTracker(Tracker):
    """Discounted mean S/W per region: every update call multiplies S and W by gamma, then each
    observation adds y to S and 1 to W. The discount is applied lazily (gamma^elapsed at the next
    observation), which leaves S/W unchanged; observations within one call are not discounted
    against each other."""

    def __init__(self, num_regions: int, gamma: float = 0.99) -> None:
        super().__init__(num_regions)
        self.gamma = check_unit("gamma", gamma)
        self._sum = np.zeros(self.num_regions)
        self._weight = np.zeros(self.num_regions)

    def config(self) -> dict[str, Any]:
        return {"num_regions": self.num_regions, "gamma": self.gamma}

    def _observe_unique(self, ids: np.ndarray | slice, vals: np.ndarray) -> None:
        decay = self.gamma ** (self._time - self._last[ids]).astype(np.float64)
        self._sum[ids] = decay * self._sum[ids] + vals
        self._weight[ids] = decay * self._weight[ids] + 1.0

    def _raw_estimates(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._sum / self._weight

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {**super()._state_arrays(), "sums": self._sum, "weights": self._weight}
