"""ARIA's condition sampler: the proven tracker of aria_theory decides which region replaces a caption.

RC's switch decision p(t) is unchanged (aria_train.conditioning.samplers); only the replacing prompt's
region changes. Per micro-batch (docs/design.md §4):

1. draw: region k ~ pi, then a prompt uniformly within k. pi = AriaPolicy(tracker estimates):
   ``(1 - eps) w / sum(w) + eps u`` with w_k = m_k^beta (or softmax(m / tau)), u uniform over
   regions (or RC's prompt shares). With ``policy="progress"`` pi is ProgressPolicy's instead:
   the same formula on the estimated *reducible* discrepancy above each region's floor, fitted
   from the region's learning curve against its count of trained samples. During the warm-up pi
   is RC's prompt shares, i.e. RC exactly in distribution.
2. observe: the output discrepancy ||out_T - out_S||^2 / D of every non-null sample that showed
   a drawn prompt (``observe="switched"``; "all" adds the paired samples) on its prompt's region,
   gathered from all processes in rank order, optionally divided by the running mean discrepancy
   of its timestep bin (the discrepancy grows with the noise level by orders of magnitude;
   normalising removes that variance so regions are compared on equal terms), then one
   ``RegionTracker.update``; the progress policy observes the same values, and counts as trained
   every non-null sample with a region whose gradients were used (paired ones too: they train
   their region whatever ``observe`` says). Why switched only by default: unseen regions are
   only ever seen on switched samples (a caption that does not match the image) while seen
   regions are mostly seen on paired ones, and mismatched samples have a larger discrepancy
   whatever their region; with "all" the tracker credits that difference to the region
   (measured on the H100: the estimates of unseen regions were 2.4x those of seen ones while
   their held-out discrepancy was 0.9x, experiments/results/, docs/test_bed.md, "Before the test bed").

The tracker, the policies and the timestep normaliser are aria_theory's own classes (RegionTracker
tracks the timestep bins as well): nothing here re-implements them. The shared tracker runs under
either policy (its estimates are logged and keep runs comparable). Because every process feeds
the same gathered observations in the same order to the same deterministic numpy code, every
rank holds bitwise the same tracker and policy state and the same pi; each rank draws its own
samples' regions from that pi with its own generator (seeded from the shared seed and its rank).

Unbiased mode: a switched sample drawn from region k gets the loss weight q_k / pi_k (q = RC's
region shares), which makes the expected gradient exactly RC's (aria_theory.allocation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from aria_theory.allocation import AriaPolicy, importance_weights
from aria_theory.progress import ProgressPolicy
from aria_theory.tracker import RegionTracker
from aria_train.conditioning.samplers import RegionPolicySampler
from aria_train.options import option


@dataclass(frozen=True)
class AriaOptions:
    """ARIA's options: the one definition. ``DistillConfig.aria`` holds one, and the option
    helper flattens it into ``--aria-*`` flags and ``aria_*`` JSON keys."""

    policy: Literal["aria", "progress"] = option("aria", "choice", "allocate by the tracked discrepancy m (aria) or by its estimated reducible part above each region's floor (progress)")
    beta: float = option(1.0, "exponent", "region weights w_k = m_k^beta of the tracked discrepancies m, or of the reducible estimates under policy progress (0 = region-uniform)")
    tau: float = option(0.0, "discrepancy units", "> 0 uses softmax(m / tau) weights instead of m^beta (policy aria only)")
    eps: float = option(0.2, "fraction", "floor, pi = (1 - eps) w / sum(w) + eps u, so every region keeps >= eps u_k")
    base: Literal["uniform", "shares"] = option("uniform", "choice", "the floor's distribution u, uniform over regions or RC's prompt shares")
    step: float | Literal["auto"] = option(0.05, "per observation", "tracker step a in (0, 1] (a_n = max(1/n, a)), or 'auto' (sigma and delta estimated online)")
    warmup: int = option(50, "optimizer steps", "steps drawn as RC (prompt shares) while the tracker warms up")
    normalise: Literal["timestep", "none"] = option("timestep", "choice", "divide each observed discrepancy by the running mean of its timestep bin, or not")
    timestep_bins: int = option(10, "bins", "equal-width timestep bins of the normalisation")
    observe: Literal["switched", "all"] = option("switched", "choice", "the tracker observes samples that showed a drawn prompt, or all non-null samples (paired ones too)")
    signal: Literal["output", "text"] = option("output", "choice", "what the tracker observes per sample: the output discrepancy ||S(c) - T(c)||^2 / D (output), or that of the prompt's effect ||(S(c) - S(null)) - (T(c) - T(null))||^2 / D (text: drops the part the image explains, not the prompt; one more forward of both UNets without gradients on the observed samples)")
    unbiased: bool = option(False, "flag", "weight a drawn sample's loss by q_k / pi_k (q = RC's region shares), keeping RC's expected gradient")
    progress_rate: float = option(0.003, "per trained sample", "policy progress: expected relative decrease of a region's reducible discrepancy per trained sample of it")
    progress_fast: float = option(0.05, "EMA step", "policy progress: step of the fast EMA of the learning-curve fit, in (0, 1]")
    progress_slow: float = option(0.0, "EMA step", "policy progress: step of the slow EMA, below the fast one (0 = running mean of all observations)")

    def validate(self) -> "AriaOptions":
        if self.step != "auto" and not 0.0 < self.step <= 1.0:
            raise ValueError(f"aria_step must be in (0, 1] or 'auto', got {self.step}")
        for name in ("beta", "tau", "warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"aria_{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"aria_eps must be in [0, 1], got {self.eps}")
        if self.timestep_bins < 1:
            raise ValueError(f"aria_timestep_bins must be >= 1, got {self.timestep_bins}")
        if self.policy == "progress" and self.tau:
            raise ValueError("aria_tau (softmax weights) applies to aria_policy 'aria' only")
        if not (np.isfinite(self.progress_rate) and self.progress_rate > 0):
            raise ValueError(f"aria_progress_rate must be finite and > 0, got {self.progress_rate}")
        if not 0.0 <= self.progress_slow < self.progress_fast <= 1.0:
            raise ValueError(f"aria_progress_slow and aria_progress_fast must satisfy 0 <= slow < fast <= 1, "
                             f"got slow {self.progress_slow}, fast {self.progress_fast}")
        return self


BIN_STEP = 0.01  # step of the timestep bins' running means: slow, they only set a scale


class TimestepNormaliser:
    """Divides each discrepancy by the running mean discrepancy of its timestep bin.

    The bin means are a RegionTracker over ``bins`` equal-width bins of [0, T) (running mean at
    start-up, then an EMA of step ``step``). A batch first updates the means, then is divided
    by them, so the first observation of a bin becomes exactly 1.
    """

    def __init__(self, num_timesteps: int, bins: int, step: float):
        if bins < 1 or bins > num_timesteps:
            raise ValueError(f"timestep bins must be in [1, {num_timesteps}], got {bins}")
        self.num_timesteps, self.bins = int(num_timesteps), int(bins)
        self.tracker = RegionTracker(self.bins, step=step)

    def __call__(self, values: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
        bins = np.asarray(timesteps, dtype=np.int64) * self.bins // self.num_timesteps
        self.tracker.update(bins, values)
        means = self.tracker.estimates[bins]
        return np.divide(values, means, out=np.zeros_like(values, dtype=np.float64), where=means > 0)


def _json_floats(values: np.ndarray) -> list[float | None]:
    """Per-region values for the metrics; NaN (region not observed or not identified yet) -> JSON null."""
    return [None if np.isnan(v) else float(v) for v in values]


class AriaSampler(RegionPolicySampler):
    """Region k ~ pi from the policy (after the warm-up), then a uniform prompt in k."""

    def __init__(self, regions: np.ndarray, num_timesteps: int, options: AriaOptions, num_regions: int | None = None,
                 batches_per_step: int = 1):
        """``batches_per_step``: micro-batches observed per optimizer step (gradient accumulation),
        which turns the warm-up from optimizer steps into observed micro-batches."""
        super().__init__(regions, num_regions)
        k = self.index.num_regions
        self.options = options
        self.shares = self.index.sizes / self.index.sizes.sum()  # RC's region distribution q
        self.tracker = RegionTracker(k, step=options.step)
        base = self.shares if options.base == "shares" else None
        self.policy: AriaPolicy | ProgressPolicy = (
            ProgressPolicy(k, rate=options.progress_rate, fast=options.progress_fast, slow=options.progress_slow,
                           beta=options.beta, eps=options.eps, base=base)
            if options.policy == "progress" else
            AriaPolicy(k, beta=options.beta, tau=options.tau or None, eps=options.eps, base=base))
        self.warmup_batches = options.warmup * batches_per_step
        self.normaliser = (TimestepNormaliser(num_timesteps, options.timestep_bins, BIN_STEP)
                           if options.normalise == "timestep" else None)
        self.observed_batches = 0

    @property
    def allocating(self) -> bool:
        """False during the warm-up (RC's shares), True afterwards."""
        return self.observed_batches >= self.warmup_batches

    def probabilities(self) -> np.ndarray:
        if not self.allocating:
            return self.shares
        return self.policy.probabilities(self.tracker.estimates)

    def loss_weights(self, regions: np.ndarray) -> np.ndarray:
        """q_k / pi_k per drawn region in unbiased mode, else ones."""
        if not self.options.unbiased:
            return np.ones(len(regions))
        return importance_weights(regions, self.probabilities(), self.shares)

    def observe(self, region_ids: np.ndarray, values: np.ndarray, timesteps: np.ndarray,
                switched: np.ndarray | None = None, trained: np.ndarray | None = None) -> None:
        """``trained`` (None: every given sample) counts the trained samples per region for the
        progress policy, whichever samples the tracker observes."""
        trained = region_ids if trained is None else trained
        pi = self.probabilities()  # this micro-batch's pi, before the observation moves it
        values = np.asarray(values, dtype=np.float64)
        if self.options.observe == "switched" and switched is not None:
            region_ids, values, timesteps = region_ids[switched], values[switched], timesteps[switched]
        if self.normaliser is not None:
            values = self.normaliser(values, timesteps)
        self.tracker.update(region_ids, values)
        if isinstance(self.policy, ProgressPolicy):
            # it learns during the warm-up too: its fit needs the learning curve from the start
            self.policy.observe(region_ids, values, pi, trained)
        self.observed_batches += 1

    def state_dict(self) -> dict:
        return {"num_regions": self.index.num_regions, "observed_batches": self.observed_batches,
                "tracker": self.tracker.state_dict(),
                "normaliser": self.normaliser.tracker.state_dict() if self.normaliser else None,
                "policy": self.policy.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``; checks everything before changing anything."""
        if state.get("num_regions") != self.index.num_regions or "tracker" not in state:
            raise ValueError(f"the checkpoint's sampler is not an ARIA sampler over {self.index.num_regions} regions")
        if (state["normaliser"] is None) != (self.normaliser is None):
            raise ValueError("the checkpoint's ARIA sampler differs in timestep normalisation")
        policy, kind, config = state.get("policy", {}), type(self.policy).__name__, self.policy.config()
        if policy.get("type") != kind:
            raise ValueError(f"the checkpoint's ARIA sampler allocates with {policy.get('type', 'no recorded policy')}, "
                             f"this one with {kind} (aria_policy {self.options.policy!r})")
        # loading a policy state also loads its options: refuse other ones rather than adopt them
        changed = [name for name in config if policy["config"].get(name) != config[name]]
        if changed:
            raise ValueError(f"the checkpoint's {kind} differs in {', '.join(changed)}")
        self.policy.load_state_dict(policy)
        self.tracker.load_state_dict(state["tracker"])
        if self.normaliser is not None:
            self.normaliser.tracker.load_state_dict(state["normaliser"])
        self.observed_batches = int(state["observed_batches"])

    def metrics(self) -> dict:
        metrics = {"pi": self.probabilities().tolist(), "estimates": _json_floats(self.tracker.estimates)}
        if isinstance(self.policy, ProgressPolicy):
            metrics["reducible"] = _json_floats(self.policy.reducible)
        return metrics

