"""Which condition each training sample is shown: RC's switch and the pluggable prompt sampler.

Random conditioning (docs/design.md §2): each paired sample (x, c) at timestep t keeps its caption with
probability 1 - p(t); otherwise the caption is replaced by a prompt that a ConditionSampler
draws from the pool, and the sample is no longer "paired". Independently, any condition becomes
the null text with probability null_prob (classifier-free guidance).

A ConditionSampler decides only WHICH prompt replaces a caption. RC draws uniformly over the
pool; region-based samplers draw a region k first and then a prompt uniformly within it (the
ablation here draws k uniformly; ARIA draws k ~ pi from its tracker, fed by ``observe``).
All randomness comes from the numpy Generator passed in, so a run resumes exactly when that
Generator's state is restored.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from aria_theory.allocation import sample_regions

NULL_PROMPT = -1  # prompt id standing for the null text ""


def switch_probability(t: np.ndarray | int, T: int, schedule: str = "exp", lam: float = 5.0) -> np.ndarray:
    """RC's probability of replacing the caption at timestep t in {0..T-1} (docs/design.md §2).

    exp: ``exp(-lam * (1 - t/T))`` (p(0) = e^-lam, rising to ~1 at t = T);
    sigmoid: ``1 / (1 + exp(-20 * (t/T - 0.7)))``. Returns float64 of t's shape.
    """
    x = np.asarray(t, dtype=np.float64) / T
    if schedule == "exp":
        return np.exp(-lam * (1.0 - x))
    if schedule == "sigmoid":
        return 1.0 / (1.0 + np.exp(-20.0 * (x - 0.7)))
    raise ValueError(f"unknown switch schedule {schedule!r} (exp or sigmoid)")


class ConditionSampler(ABC):
    """Draws the pool rows of replacing prompts; may learn from per-sample observations.

    ``state_dict`` must return what ``load_state_dict`` needs to continue exactly: JSON values
    and numpy arrays (the checkpoint stores them losslessly).
    """

    @abstractmethod
    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Pool row indices (n,) int64 of n replacing prompts."""

    def observe(self, region_ids: np.ndarray, values: np.ndarray, timesteps: np.ndarray,
                switched: np.ndarray | None = None, trained: np.ndarray | None = None) -> None:
        """Per-sample discrepancies ``values`` (n,) of samples conditioned on prompts of
        ``region_ids`` (n,) at ``timesteps`` (n,), gathered over all ranks; ``switched`` (n,)
        says which samples showed a drawn prompt (None: all); ``trained`` (m,) holds the region
        of every sample whose gradients were used (None: ``region_ids``). Default: ignored."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state, checkpoint holds {sorted(state)}")

    def metrics(self) -> dict:
        """Values to log with the training metrics (e.g. allocation, estimates). Default none."""
        return {}

    def loss_weights(self, regions: np.ndarray) -> np.ndarray:
        """Loss weight of each drawn prompt given its region (n,); 1 unless a sampler corrects
        its draw by importance weighting."""
        return np.ones(len(regions))


class UniformPoolSampler(ConditionSampler):
    """RC: every pool prompt equally likely."""

    def __init__(self, pool_size: int):
        if pool_size <= 0:
            raise ValueError("the prompt pool is empty")
        self.pool_size = int(pool_size)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.pool_size, size=n, dtype=np.int64)


class RegionIndex:
    """The pool's prompts grouped by region, for drawing a uniform prompt within given regions."""

    def __init__(self, regions: np.ndarray, num_regions: int | None = None):
        regions = np.asarray(regions)
        if regions.ndim != 1 or regions.size == 0:
            raise ValueError("region labels must be a non-empty 1-D array")
        low, high = int(regions.min()), int(regions.max())
        if low < 0:
            raise ValueError(f"region labels must be >= 0, got {low}")
        self.num_regions = high + 1 if num_regions is None else int(num_regions)
        if high >= self.num_regions:
            raise ValueError(f"region label {high} out of range for K = {self.num_regions}")
        self.sizes = np.bincount(regions, minlength=self.num_regions).astype(np.int64)
        if (self.sizes == 0).any():
            empty = np.flatnonzero(self.sizes == 0)
            raise ValueError(f"regions without prompts in the pool: {empty[:10].tolist()}")
        # Pool rows, region-major (a stable sort, so rows keep pool order within a region). Labels
        # below 2^16 are sorted as uint8 / uint16, for which numpy's stable sort is a radix sort:
        # O(N) instead of a merge sort of int64 (~10x faster at 10^7 rows, the same order).
        keys = regions.astype(np.uint8 if high < 2**8 else np.uint16, copy=False) if high < 2**16 else regions
        self.order = np.argsort(keys, kind="stable").astype(np.int64, copy=False)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

    def draw_within(self, regions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn pool row of each given region, (n,) int64."""
        regions = np.asarray(regions, dtype=np.int64)
        offsets = rng.integers(0, self.sizes[regions], dtype=np.int64) if regions.size else regions
        return self.order[self.starts[regions] + offsets]


class RegionPolicySampler(ConditionSampler):
    """Region k ~ ``probabilities()``, then a prompt uniformly within k (aria_theory's
    ``sample_regions``, so two samplers with the same pi draw exactly the same prompts)."""

    def __init__(self, regions: np.ndarray, num_regions: int | None = None):
        self.index = RegionIndex(regions, num_regions)

    @abstractmethod
    def probabilities(self) -> np.ndarray:
        """The current distribution over regions, (K,) float64."""

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.index.draw_within(sample_regions(self.probabilities(), n, rng), rng)


class RegionUniformSampler(RegionPolicySampler):
    """Ablation: region k uniform over the K regions, then a prompt uniformly within k."""

    def probabilities(self) -> np.ndarray:
        return np.full(self.index.num_regions, 1.0 / self.index.num_regions)

    def state_dict(self) -> dict:
        return {"num_regions": self.index.num_regions}

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_regions") != self.index.num_regions:
            raise ValueError(f"K mismatch: the checkpoint's sampler has {state.get('num_regions')} regions, "
                             f"the pool has {self.index.num_regions}")


def make_sampler(name: str, pool_size: int, regions: np.ndarray | None) -> ConditionSampler:
    """The sampler called ``name`` for a pool of ``pool_size`` prompts with region labels."""
    if name == "uniform":
        return UniformPoolSampler(pool_size)
    if name == "region":
        if regions is None:
            raise ValueError("sampler 'region' needs a pool with a region column")
        return RegionUniformSampler(regions)
    raise ValueError(f"unknown condition sampler {name!r}")


def random_conditioning(
    paired_prompt_ids: np.ndarray,
    t: np.ndarray,
    T: int,
    sampler: ConditionSampler,
    rng: np.random.Generator,
    schedule: str = "exp",
    lam: float = 5.0,
    null_prob: float = 0.1,
    enabled: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RC's switch then null-text dropout for one batch.

    ``paired_prompt_ids`` (n,): pool rows of the samples' own captions; ``t`` (n,): their
    timesteps. ``enabled=False`` (KD) never switches. Returns ``(prompt_ids, paired, switched)``:
    the pool row of each sample's condition or NULL_PROMPT (-1) for the null text, and boolean
    masks; ``paired = ~switched`` (a paired sample whose caption was then nulled stays paired,
    as in RC's code). Draw order (fixed, for exact resumption): switch uniforms, the sampler's
    draws for the switched samples, null uniforms.
    """
    prompt_ids = np.array(paired_prompt_ids, dtype=np.int64, copy=True)
    n = prompt_ids.shape[0]
    if enabled:
        switched = rng.random(n) < switch_probability(t, T, schedule, lam)
        prompt_ids[switched] = sampler.draw(int(switched.sum()), rng)
    else:
        switched = np.zeros(n, dtype=bool)
    nulled = rng.random(n) < null_prob
    prompt_ids[nulled] = NULL_PROMPT
    return prompt_ids, ~switched, switched
