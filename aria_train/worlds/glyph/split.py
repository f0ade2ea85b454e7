"""The glyph world's imbalance: Zipf pool shares over a seeded ranking, groups, prompt counts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aria_train.worlds.glyph.config import GlyphWorldConfig

RANK_STREAM = 5  # seed-stream tag of the rarity ranking (see codes.py)
UNPAIRED = ("unseen-head", "unseen-tail")


@dataclass(frozen=True)
class Split:
    """Per region (index = region id): Zipf rank (1 = commonest), pool share, group, counts."""

    rank: np.ndarray  # int64 (K,)
    share: np.ndarray  # float64 (K,), sums to 1
    group: tuple[str, ...]
    pool: np.ndarray  # int64 (K,): round(pool_total * share)
    paired: np.ndarray  # int64 (K,): 0 for unseen groups


def zipf_shares(num_regions: int, exponent: float) -> np.ndarray:
    """Share of rank r = 1..K: r^-s / sum_k k^-s (uniform for s = 0)."""
    weights = np.arange(1, num_regions + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def group_of_rank(rank: int, config: GlyphWorldConfig) -> str:
    """The group of the region of Zipf rank ``rank`` (1 = commonest); see config.py."""
    k = config.num_regions
    if rank in config.unseen_head_ranks:
        return "unseen-head"
    if rank > k - config.unseen_tail:
        return "unseen-tail"
    if rank > k - config.unseen_tail - config.under_regions:
        return "under"
    return "head" if rank <= config.head_ranks else "mid"


def make_split(config: GlyphWorldConfig) -> Split:
    """The split of ``config``; ValueError if a seen region would get more pairs than pool prompts."""
    k = config.num_regions
    # rank[region]: a seeded permutation, so which regions are rare has nothing to do with their glyphs.
    rank = np.empty(k, np.int64)
    rank[np.random.default_rng([config.seed, RANK_STREAM]).permutation(k)] = np.arange(1, k + 1)
    share = zipf_shares(k, config.zipf_exponent)[rank - 1]
    group = tuple(group_of_rank(int(r), config) for r in rank)
    pool = np.rint(config.pool_total * share).astype(np.int64)  # half to even; the tests use the same
    if pool.min() < 1:
        raise ValueError(f"pool_total {config.pool_total} leaves the rarest region without pool prompts")
    seen = np.array([g not in UNPAIRED for g in group])
    paired = np.where(seen, np.maximum(config.paired_min, np.rint(config.paired_total * share / share[seen].sum())), 0)
    paired = paired.astype(np.int64)
    over = np.flatnonzero(paired > pool)
    if len(over):
        raise ValueError(f"regions {over.tolist()} would get more paired prompts than pool prompts; "
                         "lower paired_total / paired_min or raise pool_total")
    return Split(rank, share, group, pool, paired)
