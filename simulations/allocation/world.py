"""The simulator's regions (`World`) and run length (`SimConfig`): every assumption of the model lives
in these two (the model: simulations.allocation's docstring)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RC_SWITCH = (1 - np.exp(-5.0)) / 5  # mean of RC's p(t) = exp(-5 (1 - t/T)) over t ~ U[0, T)
METRICS = ("mean", "worst", "unseen", "underrep", "prompt_weighted", "excess")
GROUPS = ("head", "mid", "under", "unseen_tail", "unseen_head")  # test-bed region groups
TESTBED_METRICS = ("mean", *GROUPS, "prompt_weighted", "worst", "excess")


@dataclass(frozen=True)
class World:
    """The regions and their dynamics; arrays have one entry per region (K,)."""

    shares: np.ndarray     # q: prompt-pool share (sums to 1); RC's allocation
    seen: np.ndarray       # bool: has paired images
    initial: np.ndarray    # D at step 0 (discrepancy units, > floor)
    floor: np.ndarray      # irreducible part of D (>= 0)
    rate: np.ndarray       # r: x falls by exp(-r) per step when the whole batch is this region
    transfer: np.ndarray   # (K, K): T[j, k] = effect on k of training on j, T[k, k] = 1
    forget: float = 0.0    # f: per-step relaxation of x toward its initial value
    process_noise: float = 0.0  # s: sd of the per-step log-normal factor on x
    obs_shape: float = 2.0      # gamma shape of the per-sample loss noise
    underrep_share: float = 0.5  # underrepresented: seen and q < underrep_share / K
    shared: float = 0.0         # tau in [0, 1]: fraction of each region's reducible part that is shared
    shared_rate: float = 0.1    # r_s: the shared part falls by exp(-r_s) per step of any samples
    paired_weight: np.ndarray | None = None  # pairs per region (None: q of the seen regions)
    labels: tuple[str, ...] | None = None    # group of each region (test-bed worlds; see GROUPS)
    observe: str = "all"        # losses the tracker sees: "all" samples or only the "switched" ones
    response_alpha: float = float("inf")  # alpha > 0: x falls as a power law of the draws; inf: exponentially

    def __post_init__(self) -> None:
        k = self.shares.shape[0]
        for name in ("seen", "initial", "floor", "rate"):
            if getattr(self, name).shape != (k,):
                raise ValueError(f"World.{name} must have shape ({k},)")
        if self.transfer.shape != (k, k) or not np.allclose(np.diag(self.transfer), 1.0):
            raise ValueError(f"World.transfer must be ({k}, {k}) with ones on the diagonal")
        if abs(self.shares.sum() - 1) > 1e-9 or (self.shares < 0).any():
            raise ValueError("World.shares must be a distribution")
        if not self.seen.any():
            raise ValueError("World needs at least one seen region (paired samples come from them)")
        if (self.floor < 0).any() or (self.initial < self.floor).any():
            raise ValueError("World needs 0 <= floor <= initial")
        if not 0.0 <= self.shared <= 1.0 or not self.shared_rate >= 0:
            raise ValueError("World needs shared in [0, 1] and shared_rate >= 0")
        if self.paired_weight is not None and (self.paired_weight.shape != (k,) or (self.paired_weight < 0).any()
                                               or not (self.paired_weight * self.seen).sum() > 0):
            raise ValueError(f"World.paired_weight must be {k} numbers >= 0, positive on some seen region")
        if self.labels is not None and (len(self.labels) != k or not set(self.labels) <= set(GROUPS)):
            raise ValueError(f"World.labels must be {k} of {GROUPS}")
        if self.observe not in ("all", "switched"):
            raise ValueError(f"World.observe must be 'all' or 'switched', got {self.observe!r}")
        if not self.response_alpha > 0:
            raise ValueError(f"World.response_alpha must be > 0 (inf: exponential), got {self.response_alpha}")

    @property
    def num_regions(self) -> int:
        return int(self.shares.shape[0])

    @property
    def underrep(self) -> np.ndarray:
        if self.labels is not None:
            return np.array([label == "under" for label in self.labels])
        return self.seen & (self.shares < self.underrep_share / self.num_regions)

    @property
    def paired_shares(self) -> np.ndarray:
        """Region distribution of paired samples: q (or paired_weight) restricted to seen regions."""
        p = np.where(self.seen, self.shares if self.paired_weight is None else self.paired_weight, 0.0)
        return p / p.sum()

    def groups(self) -> list[str]:
        """Per-region label: `labels` (test-bed worlds), else "unseen", "underrep" or "seen"."""
        if self.labels is not None:
            return list(self.labels)
        return ["unseen" if not s else "underrep" if u else "seen" for s, u in zip(self.seen, self.underrep)]

    def metrics(self, discrepancy: np.ndarray) -> dict[str, float]:
        """Summaries of a true discrepancy vector: region mean, worst region, mean over unseen and
        over underrepresented regions (NaN if none), q-weighted mean (what RC's mixture weighs)
        and mean reducible part D - floor (the only part any allocation can change). Test-bed
        worlds (with `labels`) report the mean of each of GROUPS instead of unseen/underrep."""
        d = np.asarray(discrepancy)
        group = lambda mask: float(d[mask].mean()) if mask.any() else float("nan")
        if self.labels is not None:
            labels = np.array(self.labels)
            return {"mean": float(d.mean()), **{g: group(labels == g) for g in GROUPS},
                    "prompt_weighted": float(self.shares @ d), "worst": float(d.max()),
                    "excess": float((d - self.floor).mean())}
        return {"mean": float(d.mean()), "worst": float(d.max()), "unseen": group(~self.seen),
                "underrep": group(self.underrep), "prompt_weighted": float(self.shares @ d),
                "excess": float((d - self.floor).mean())}


@dataclass(frozen=True)
class SimConfig:
    """One run: `steps` updates of `batch` samples, a fraction `switch` of them allocated."""

    steps: int = 2000
    batch: int = 32
    switch: float = float(RC_SWITCH)
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.log_every < 1:
            raise ValueError("steps, batch and log_every must be >= 1")
        if not 0.0 <= self.switch <= 1.0:
            raise ValueError(f"switch must be in [0, 1], got {self.switch}")
