"""Named worlds of the simulator: clustered worlds (imbalanced, high_floor, strong_transfer), a balanced
one, and the test-bed world whose knobs are a real glyph-world run's (`testbed_world`, "testbed:key=value")."""
from __future__ import annotations

from typing import Callable

import numpy as np

from simulations.allocation.world import World


def _draw_difficulty(rng: np.random.Generator, seen: np.ndarray, high_floors: int,
                     base_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region: initial D ~ lognormal around 1 (sd 0.2 in log), floor 5% of it except
    ``high_floors`` random seen regions at 90% (irreducible), rate ``base_rate`` * lognormal(sd 0.3);
    drawn in this order, so a world's other draws do not depend on them."""
    k = seen.shape[0]
    initial = np.exp(0.2 * rng.standard_normal(k))
    floor = 0.05 * initial
    if high_floors:
        stuck = rng.choice(np.flatnonzero(seen), size=high_floors, replace=False)
        floor[stuck] = 0.9 * initial[stuck]
    return initial, floor, base_rate * np.exp(0.3 * rng.standard_normal(k))


def _clustered_world(seed: int, *, num_regions: int = 16, clusters: int = 4, zipf: float = 1.2,
                     unseen_clusters: int = 1, within: float = 0.3, across: float = 0.005,
                     high_floors: int = 0, base_rate: float = 0.1) -> World:
    """Regions in equal clusters of consecutive indices, ordered from the most to the least
    common: share q_k ~ (k + 1)^-zipf times a lognormal factor (sd 0.2 in log), so the last
    `unseen_clusters` clusters, the unseen ones, are also rare in the pool. Initial D ~ lognormal
    around 1 (sd 0.2 in log); floors 5% of it, except `high_floors` random seen regions whose
    floor is 90% of it (irreducible); rates `base_rate` * lognormal(sd 0.3). Transfer T[j, k] is
    `within` inside a cluster and `across` between clusters."""
    rng = np.random.default_rng([seed, 101])
    size = num_regions // clusters
    cluster = np.arange(num_regions) // size
    shares = (1.0 + np.arange(num_regions)) ** -zipf * np.exp(0.2 * rng.standard_normal(num_regions))
    shares /= shares.sum()
    seen = cluster < clusters - unseen_clusters
    initial, floor, rate = _draw_difficulty(rng, seen, high_floors, base_rate)
    transfer = np.where(cluster[:, None] == cluster[None, :], within, across)
    np.fill_diagonal(transfer, 1.0)
    return World(shares, seen, initial, floor, rate, transfer, forget=5e-4, process_noise=0.01)


def _balanced_world(seed: int, num_regions: int = 16) -> World:
    """Equal shares, all seen, identical regions, no transfer: RC is region-uniform already."""
    del seed  # the world is the same for every seed; only the run's noise differs
    ones = np.ones(num_regions)
    return World(ones / num_regions, ones.astype(bool), ones.copy(), 0.05 * ones, 0.1 * ones,
                 np.eye(num_regions), forget=5e-4, process_noise=0.01)


SCENARIOS: dict[str, tuple[Callable[[int], World], str]] = {
    "imbalanced": (_clustered_world, "Zipf shares, one unseen cluster, weak transfer: ARIA should help"),
    "high_floor": (lambda seed: _clustered_world(seed, high_floors=3),
                   "as imbalanced, but 3 seen regions are 90% irreducible: ARIA should not help"),
    "balanced": (_balanced_world, "equal shares, identical regions, no transfer: nothing to gain"),
    "strong_transfer": (lambda seed: _clustered_world(seed, within=0.9, across=0.5),
                        "as imbalanced, but training any region helps all: allocation matters little"),
    "tb_imbalanced": (lambda seed: testbed_world(seed),
                      "test-bed world: Zipf 1.2, unseen tail and head, underrepresented regions, no shared "
                      "part, switched samples observed: ARIA should help"),
    "tb_high_floor": (lambda seed: testbed_world(seed, high_floors=3),
                      "as tb_imbalanced, but 3 seen regions are 90% irreducible: ARIA should not help"),
    "tb_tail_floor": (lambda seed: testbed_world(seed, tail_floors=2),
                      "as tb_imbalanced, but 2 of the 3 unseen-tail regions are 90% irreducible: rare and "
                      "stuck, so balancing training counts should not help there"),
    "tb_balanced": (lambda seed: testbed_world(seed, zipf=0.0, unseen_tail=0, unseen_head=0, under=0),
                    "test-bed world with equal shares, all regions seen and paired alike: nothing to gain"),
}
DEFAULT_SCENARIOS = ("imbalanced", "high_floor", "balanced", "strong_transfer")


def testbed_world(seed: int, *, num_regions: int = 16, zipf: float = 1.2, tau: float = 0.0,
                  unseen_tail: int = 3, unseen_head: int = 1, under: int = 3, under_pairs: float = 0.2,
                  high_floors: int = 0, tail_floors: int = 0, base_rate: float = 0.1,
                  observe: str = "switched", easy: int = 0, easy_frac: float = 1.0,
                  response_alpha: float = float("inf")) -> World:
    """The test-bed world: the knobs of a real distillation run, one at a time.

    Shares: Zipf, q ~ (rank + 1)^-zipf (zipf = 0: equal), over a seeded permutation of the
    regions (region k has rank perm[k]; rank 0 is the most common). Groups by rank: the last
    `unseen_tail` ranks have no paired images (unseen_tail); ranks 1..`unseen_head` have none
    either (unseen_head: common but unpaired, a control); the `under` seen ranks just before the
    tail are underrepresented (under: small share and few pairs, their paired-sample weight is
    `under_pairs` times their share); the other seen regions are head (rank < K/4) or mid.
    Discrepancy: initial D ~ lognormal around 1 (sd 0.2 in log), floor 5% of it, except
    `high_floors` random seen regions and `tail_floors` random unseen-tail regions at 90% (a
    stuck rare region looks like a neglected one to anything that counts samples); of the
    reducible rest a fraction `tau` is one
    shared (compositional) part that every trained sample reduces at rate `base_rate`, the rest
    is region-specific (rate `base_rate` * lognormal(sd 0.3), no transfer between regions).
    Forgetting 5e-4 and process noise 0.01 per step as in the other scenarios. `observe`:
    which losses the tracker sees ("switched", what the trainer does by default, or "all").
    `easy` regions spread evenly over the rarity order (the glyph world's easy_regions) start at
    `easy_frac` of their drawn discrepancy, floor included: only their own bits (easy_cells / C
    of the glyph) are left to learn, their template being assumed learnt like a shared attribute.
    `response_alpha`: World.response_alpha (inf: exponential response to draws)."""
    k = int(num_regions)
    rules = {"k >= 2": k >= 2, "s >= 0": zipf >= 0, "0 <= tau <= 1": 0 <= tau <= 1,
             "tail, head, under, floors >= 0": min(unseen_tail, unseen_head, under, high_floors) >= 0,
             "head + tail + under < k - 1": unseen_head + unseen_tail + under < k - 1,
             "0 < pairs <= 1": 0 < under_pairs <= 1, "0 <= tailfloors <= tail": 0 <= tail_floors <= unseen_tail,
             "0 <= easy <= k": 0 <= easy <= k, "0 < easyfrac <= 1": 0 < easy_frac <= 1}
    broken = [rule for rule, holds in rules.items() if not holds]
    if broken:
        raise ValueError(f"bad test-bed world: needs {', '.join(broken)} (k={k}, s={zipf}, tau={tau}, tail={unseen_tail}, "
                         f"head={unseen_head}, under={under}, pairs={under_pairs}, tailfloors={tail_floors}, "
                         f"easy={easy}, easyfrac={easy_frac})")
    rng = np.random.default_rng([seed, 202])
    rank = rng.permutation(k)
    shares = (1.0 + rank) ** -float(zipf)
    shares /= shares.sum()
    by_rank = np.empty(k, object)
    by_rank[:] = "mid"
    by_rank[:max(k // 4, 1)] = "head"
    by_rank[1:1 + unseen_head] = "unseen_head"
    by_rank[k - unseen_tail - under:k - unseen_tail] = "under"
    by_rank[k - unseen_tail:] = "unseen_tail"
    labels = tuple(str(g) for g in by_rank[rank])
    seen = np.array([not g.startswith("unseen") for g in labels])
    paired_weight = shares * np.where(np.array(labels) == "under", under_pairs, 1.0)
    initial, floor, rate = _draw_difficulty(rng, seen, high_floors, base_rate)
    if tail_floors:  # drawn after everything else, so the other knobs' worlds do not change
        stuck = rng.choice(np.flatnonzero(np.array(labels) == "unseen_tail"), size=tail_floors, replace=False)
        floor[stuck] = 0.9 * initial[stuck]
    if easy:  # spread evenly over the rarity order, as the glyph world's easy regions; no draw
        chosen = np.argsort(rank)[np.floor((np.arange(easy) + 0.5) * k / easy).astype(int)]
        initial[chosen] *= easy_frac
        floor[chosen] *= easy_frac
    return World(shares, seen, initial, floor, rate, np.eye(k), forget=5e-4, process_noise=0.01,
                 shared=float(tau), shared_rate=base_rate, paired_weight=paired_weight, labels=labels,
                 observe=observe, response_alpha=float(response_alpha))


_TESTBED_KEYS = {"k": "num_regions", "s": "zipf", "tau": "tau", "tail": "unseen_tail", "head": "unseen_head",
                 "under": "under", "pairs": "under_pairs", "floors": "high_floors", "tailfloors": "tail_floors",
                 "rate": "base_rate", "observe": "observe", "easy": "easy", "easyfrac": "easy_frac",
                 "alpha": "response_alpha"}


def parse_testbed(scenario: str) -> dict:
    """Keyword arguments of `testbed_world` from "testbed[:key=value...]" (keys: k, s, tau, tail,
    head, under, pairs, floors, tailfloors, rate, observe=all|switched, easy, easyfrac, alpha)."""
    name, *pairs = scenario.split(":")
    if name != "testbed":
        raise ValueError(f"not a test-bed scenario: {scenario!r}")
    kwargs = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in _TESTBED_KEYS or not value:
            raise ValueError(f"test-bed scenarios take {', '.join(_TESTBED_KEYS)} as key=value, got {pair!r}")
        if key == "observe":
            kwargs["observe"] = value
            continue
        kind = int if key in ("k", "tail", "head", "under", "floors", "tailfloors", "easy") else float
        try:
            kwargs[_TESTBED_KEYS[key]] = kind(value)
        except ValueError:
            raise ValueError(f"test-bed key {key} takes {'an integer' if kind is int else 'a number'}, got {value!r} "
                             f"in {scenario!r}") from None
    return kwargs


def build_world(scenario: str, seed: int) -> World:
    """A scenario by name (SCENARIOS), or a test-bed world "testbed:key=value:..." (`parse_testbed`)."""
    if scenario.startswith("testbed"):
        return testbed_world(seed, **parse_testbed(scenario))
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)} or testbed[:key=value...]")
    return SCENARIOS[scenario][0](seed)


def describe(scenario: str) -> str:
    """One line on a scenario."""
    if scenario in SCENARIOS:
        return SCENARIOS[scenario][1]
    kwargs = {**{"zipf": 1.2, "tau": 0.0, "high_floors": 0, "tail_floors": 0, "observe": "switched"},
              **parse_testbed(scenario)}
    floors = f"{kwargs['high_floors']} seen + {kwargs['tail_floors']} unseen-tail high floors"
    return (f"test-bed world: Zipf s={kwargs['zipf']:g}, shared fraction tau={kwargs['tau']:g}, {floors}, "
            f"tracker observes {kwargs['observe']} samples")
