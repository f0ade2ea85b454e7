"""Allocation dynamics: which regions stay misaligned under RC, ARIA and other allocations.

A toy model of a distillation run, small enough to run many seeds in seconds, built to show *when*
ARIA's allocation should help and when it should not. Every assumption is stated here and lives
in one `World` (the regions) and one `SimConfig` (the run); nothing is hidden in the loop.

Regions. K regions of the prompt pool. Region k holds a share q_k of the pool's prompts, so RC's
uniform prompt draw lands in k with probability q_k. *Seen* regions have paired images, *unseen*
ones none; *underrepresented* = seen with q_k < 0.5/K. Related regions form clusters.

Batches. Every step trains on B samples. Each is switched with probability rho (RC's mean switch
probability over timesteps, (1 - e^-5)/5 = 0.2 for its default schedule): its region is drawn
from the policy's allocation pi. Otherwise it is a paired sample, from a seen region with
probability proportional to q (or to World.paired_weight: how many pairs each region has). A
policy therefore only steers the switched part (docs/design.md §4), and every policy trains on
exactly `steps * B` samples: the same update budget.

Discrepancy. Region k's true teacher-student discrepancy is D_k = floor_k + x_k: floor_k cannot be
removed by training (capacity), x_k can. After a batch with c_j samples of region j (each
weighted by base_j / pi_j in the unbiased importance-weighted mode, else 1):
    x_k <- x_k exp(-r_k sum_j T_jk c_j / B)             training, with transfer T (T_kk = 1)
    x_k <- x_k + f (x0_k - x_k)                           forgetting (interference) at rate f
    x_k <- x_k exp(s z_k - s^2/2), z_k ~ N(0, 1)          process noise (mean preserving)
With a finite response exponent alpha (World.response_alpha) the training factor is instead
    x_k <- x_k exp(-r_k (x_k / x0_k)^(1/alpha) sum_j T_jk c_j / B)
so that, without forgetting and noise, x_k = x0_k (1 + r_k N_k / alpha)^-alpha after N_k batches'
worth of its samples: a power law in the draws, as the trainer's regions respond (exponent 0.2-0.36
in the glyph test bed, simulations/headroom.py), where the default alpha = inf is exp(-r_k N_k).
Training helps a region in proportion to its share of the batch; transfer T_jk between regions
of one cluster (and a weaker one across clusters) lets a region improve without being drawn.
With a shared fraction tau (World.shared) the reducible part starts split as (1 - tau) x0_k
region-specific and tau x0_k shared: D_k = floor_k + x_k + tau x0_k U, where one common level U
(starting at 1) falls by exp(-r_s sum_j c_j / B) per step, whatever the regions trained, and
forgets and carries process noise like x.

Observation. A policy never sees D. Each trained sample yields a loss D_k G, G ~ Gamma(shape,
1/shape) (mean 1, coefficient of variation 1/sqrt(shape)), measured before the step, like a
timestep-normalised squared error. All B losses (only the switched ones when World.observe is
"switched") feed one `aria_theory.tracker.RegionTracker` (one `update` per step); the switched
ones also feed `policy.observe`. The *oracle* is ARIA's
rule fed the true D instead of the tracker's estimates: it shows what tracking error costs.

Policies (`PolicySpec`): ``rc`` (PromptSharePolicy(q): RC), ``uniform`` (region-uniform),
``aria`` (AriaPolicy(beta, eps) on the tracker with step a; ``iw=1`` adds importance weights
q/pi, which keep RC's expected update; ``lag=L`` shows the tracker each step's losses L steps
late, as `aria distill --feedback-lag`), ``exp3`` (Exp3Policy), ``doremi`` (DoReMiPolicy whose
reference is the final discrepancy of an RC run with the same seed: a reference model trained on
RC's mixture, which costs a second run that the budget here does not charge), ``oracle``,
``progress`` (ProgressPolicy(rate, fast, slow, beta, eps): allocation by estimated reducible
discrepancy; it observes what the tracker observes and is told the region of every trained
sample), and two references for it: ``oracle_reducible`` (ARIA's rule fed the true reducible part
D - floor) and ``count`` (ARIA's rule fed exp(-rate * trained samples per region): the part of
ProgressPolicy's behaviour that comes from balancing training counts alone).

Test-bed world (`testbed_world`, scenarios "testbed:key=value:..." and tb_*): the knobs of a real
run one at a time. Zipf shares with exponent s over a seeded permutation of the regions; unseen
regions (no paired images) in the tail, and one or two among the most common as a control;
underrepresented = seen regions with a small share and few pairs (paired-sample weight
`under_pairs` times their share); each region's reducible part split into a region-specific part
and a part shared by all regions in proportion tau (tau = 1: all shared, compositional: every
trained sample reduces it, so allocation cannot matter; tau = 0: none); and the tracker sees only
the switched samples' losses, as the trainer does by default (World.observe). Groups: head, mid,
under, unseen_tail, unseen_head; metrics add the mean over all regions and the prompt-share-
weighted mean.

Studies (`--study`): STUDIES fixes scenarios and policies; every policy runs at the same budget
on every scenario and seed, and the tables give each policy's final discrepancy divided by RC's
on the same seed, per group (mean and sd over seeds), with a check of ProgressPolicy against its
target (within 2% of ARIA where ARIA beats region-uniform, of region-uniform elsewhere).

What the model leaves out, so where its answers stop: updates are deterministic given the
counts (no gradient noise, so importance weighting cannot reduce variance here, only move
effort back to RC's mixture); training one region never hurts another except through uniform
forgetting; shares, floors and rates are fixed in time; the loss is an unbiased, independent
reading of D. ARIA should help when reducible discrepancy sits in regions RC rarely draws
(unseen, underrepresented) and transfer from popular regions is weak; it should not when the
remaining discrepancy is irreducible (it cannot tell a high floor from a slow region and pays
for it), when shares are balanced and regions alike (RC is already region-uniform), or when
transfer is strong (allocation barely matters). `SCENARIOS` holds one world of each kind.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from aria_theory.allocation import (AllocationPolicy, AriaPolicy, DoReMiPolicy, Exp3Policy,
                                    PromptSharePolicy, UniformPolicy, importance_weights, sample_regions)
from aria_theory.progress import ProgressPolicy
from aria_theory.tracker import RegionTracker

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


# --- scenarios ---------------------------------------------------------------------------------

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
    initial = np.exp(0.2 * rng.standard_normal(num_regions))
    floor = 0.05 * initial
    if high_floors:
        stuck = rng.choice(np.flatnonzero(seen), size=high_floors, replace=False)
        floor[stuck] = 0.9 * initial[stuck]
    rate = base_rate * np.exp(0.3 * rng.standard_normal(num_regions))
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
    if not (k >= 2 and zipf >= 0 and 0 <= tau <= 1 and min(unseen_tail, unseen_head, under, high_floors) >= 0
            and unseen_head + unseen_tail + under < k - 1 and 0 < under_pairs <= 1
            and 0 <= tail_floors <= unseen_tail and 0 <= easy <= k and 0 < easy_frac <= 1):
        raise ValueError(f"bad test-bed world: k={k}, zipf={zipf}, tau={tau}, unseen_tail={unseen_tail}, "
                         f"unseen_head={unseen_head}, under={under}, under_pairs={under_pairs}, easy={easy}, easy_frac={easy_frac}")
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
    initial = np.exp(0.2 * rng.standard_normal(k))
    floor = 0.05 * initial
    if high_floors:
        stuck = rng.choice(np.flatnonzero(seen), size=high_floors, replace=False)
        floor[stuck] = 0.9 * initial[stuck]
    rate = base_rate * np.exp(0.3 * rng.standard_normal(k))
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
        elif key in ("k", "tail", "head", "under", "floors", "tailfloors", "easy"):
            kwargs[_TESTBED_KEYS[key]] = int(value)
        else:
            kwargs[_TESTBED_KEYS[key]] = float(value)
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


# --- policies ----------------------------------------------------------------------------------

_KINDS = {"rc": (), "uniform": (), "aria": ("beta", "eps", "a", "iw", "lag"), "exp3": ("gamma", "eta"),
          "doremi": ("eta", "eps"), "oracle": ("beta", "eps"),
          "oracle_reducible": ("beta", "eps"), "count": ("beta", "eps", "rate"),
          "progress": ("rate", "fast", "slow", "beta", "eps")}
_DEFAULTS = {"beta": 1.0, "eps": 0.2, "a": 0.05, "iw": 0.0, "gamma": 0.1, "eta": None, "fast": 0.05,
             "slow": 0.0, "rate": 0.003, "lag": 0.0}


@dataclass(frozen=True)
class PolicySpec:
    """A policy by kind and parameters, e.g. ``PolicySpec.parse("aria:beta=2:eps=0.2:a=0.05")``."""

    kind: str
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "PolicySpec":
        kind, *pairs = text.strip().split(":")
        if kind not in _KINDS:
            raise ValueError(f"unknown policy {kind!r}; choose from {', '.join(_KINDS)}")
        params = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key not in _KINDS[kind] or not value:
                raise ValueError(f"policy {kind!r} takes {', '.join(_KINDS[kind]) or 'no'} parameters "
                                 f"as key=value, got {pair!r}")
            params[key] = float(value)
        lag = params.get("lag", 0.0)
        if lag < 0 or lag != int(lag):
            raise ValueError(f"policy {kind!r}: lag is a whole number of steps >= 0, got {lag:g}")
        return cls(kind, params)

    def get(self, key: str) -> float | None:
        return self.params.get(key, _DEFAULTS.get(key))

    @property
    def label(self) -> str:
        if self.kind == "aria":
            iw = "-IW" if self.get("iw") else ""
            lag = f" lag={self.get('lag'):g}" if self.get("lag") else ""
            return f"ARIA{iw} b={self.get('beta'):g} e={self.get('eps'):g} a={self.get('a'):g}{lag}"
        if self.kind == "oracle_reducible":
            return f"oracle-reducible b={self.get('beta'):g} e={self.get('eps'):g}"
        if self.kind == "count":
            return f"count-control r={self.get('rate'):g}"
        if self.kind == "oracle":
            return f"oracle b={self.get('beta'):g} e={self.get('eps'):g}"
        if self.kind == "progress":
            steps = "".join(f" {key[0]}={self.get(key):g}" for key in ("fast", "slow")
                            if self.get(key) != _DEFAULTS[key])
            return f"progress r={self.get('rate'):g} b={self.get('beta'):g} e={self.get('eps'):g}{steps}"
        return {"rc": "RC", "uniform": "uniform", "exp3": "EXP3", "doremi": "DoReMi"}[self.kind]

    def build(self, world: World, reference: np.ndarray | None = None) -> AllocationPolicy:
        k = world.num_regions
        if self.kind == "rc":
            return PromptSharePolicy(k, world.shares)
        if self.kind == "uniform":
            return UniformPolicy(k)
        if self.kind in ("aria", "oracle", "oracle_reducible", "count"):
            return AriaPolicy(k, beta=self.get("beta"), eps=self.get("eps"))
        extra = {"eta": self.params["eta"]} if "eta" in self.params else {}
        if self.kind == "progress":
            return ProgressPolicy(k, rate=self.get("rate"), fast=self.get("fast"), slow=self.get("slow"),
                                  beta=self.get("beta"), eps=self.get("eps"))
        if self.kind == "exp3":
            return Exp3Policy(k, gamma=self.get("gamma"), **extra)
        if reference is None:
            raise ValueError("doremi needs a reference discrepancy")
        return DoReMiPolicy(k, reference, eps=self.get("eps"), **extra)


DEFAULT_POLICIES = ("rc", "uniform", "aria:beta=1:eps=0.2:a=0.05", "aria:beta=2:eps=0.2:a=0.05",
                    "aria:beta=1:eps=0.5:a=0.05", "aria:beta=1:eps=0.2:a=0.5",
                    "aria:beta=1:eps=0.2:a=0.05:iw=1", "exp3", "doremi:eta=0.01",
                    "oracle:beta=1:eps=0.2", "progress")
# DoReMi's eta = 0.01 is the best of {1, 0.1, 0.01} on seeds 0-2 of imbalanced, balanced and
# high_floor; with eta = 1 its weights collapse onto one region within a few hundred steps.


# --- one run -----------------------------------------------------------------------------------

@dataclass
class RunResult:
    """Per-step record of one run; `log_steps` index the rows of the (n_log, K) arrays."""

    log_steps: np.ndarray    # steps at which D was recorded (0 = before training, ..., steps)
    discrepancy: np.ndarray  # (n_log, K) true D
    estimates: np.ndarray    # (n_log, K) tracker estimates (NaN before a region's first loss)
    pi: np.ndarray           # (steps, K) allocation used at every step
    counts: np.ndarray       # (K,) samples trained per region, paired and switched
    samples: int             # total samples trained: steps * batch for every policy

    @property
    def final(self) -> np.ndarray:
        return self.discrepancy[-1]


def response_slowing(x: np.ndarray | float, x0: np.ndarray | float, alpha: float) -> np.ndarray | float:
    """(x / x0)^(1/alpha), the factor on a region's training rate that makes its reducible part
    fall as a power law of its draws (World.response_alpha); 1 for alpha = inf, and for x0 = 0."""
    if np.isinf(alpha):
        return 1.0
    ratio = np.divide(x, x0, out=np.zeros_like(np.asarray(x, float)), where=np.asarray(x0) > 0)
    return np.maximum(ratio, 0.0) ** (1.0 / alpha)


def simulate(world: World, config: SimConfig, spec: PolicySpec, seed: int,
             reference: np.ndarray | None = None) -> RunResult:
    """Run one policy on one world. Random streams are split by purpose and seeded by `seed`
    alone, so every policy meets the same process noise and observation-noise stream."""
    k, batch = world.num_regions, config.batch
    switch_rng, paired_rng, draw_rng, obs_rng, proc_rng = (np.random.default_rng([seed, i]) for i in range(5))
    policy = spec.build(world, reference)
    tracker = RegionTracker(k, step=spec.get("a"))
    use_iw = spec.kind == "aria" and bool(spec.get("iw"))
    # aria:lag=L: the tracker sees a step's losses L steps late (`aria distill --feedback-lag`)
    lag = int(spec.get("lag")) if spec.kind == "aria" else 0
    in_flight: list[tuple[np.ndarray, np.ndarray]] = []  # observations the tracker has not seen yet
    paired_p = world.paired_shares
    excess0 = world.initial - world.floor
    shared0 = excess0 * world.shared  # each region's shared part at level 1
    if world.shared:
        excess0 = excess0 * (1.0 - world.shared)  # the region-specific part
    excess = excess0.copy()
    level = 1.0  # the shared part's relative level, common to all regions

    def true_discrepancy() -> np.ndarray:
        return world.floor + excess + shared0 * level if world.shared else world.floor + excess

    log_steps, disc_log, est_log = [0], [true_discrepancy()], [tracker.estimates]
    pi_log = np.empty((config.steps, k))
    counts = np.zeros(k)
    samples = 0
    for step in range(1, config.steps + 1):
        disc = true_discrepancy()
        if spec.kind == "oracle":
            signal = disc
        elif spec.kind == "oracle_reducible":
            signal = disc - world.floor
        elif spec.kind == "count":  # trained samples per region so far, through the model's curve
            signal = np.exp(-spec.get("rate") * counts)
        else:
            signal = tracker.estimates
        pi = policy.probabilities(signal)
        pi_log[step - 1] = pi
        n_switch = int(switch_rng.binomial(batch, config.switch))
        switched = sample_regions(pi, n_switch, draw_rng)
        paired = sample_regions(paired_p, batch - n_switch, paired_rng)
        ids = np.concatenate([switched, paired])
        losses = disc[ids] * obs_rng.gamma(world.obs_shape, 1.0 / world.obs_shape, batch)
        seen_ids, seen_losses = (ids, losses) if world.observe == "all" else (switched, losses[:n_switch])
        in_flight.append((seen_ids, seen_losses))
        if len(in_flight) > lag:
            tracker.update(*in_flight.pop(0))
        if spec.kind == "progress":  # the tracker's observations, and which regions were trained
            policy.observe(seen_ids, seen_losses, pi, trained=ids)
        else:
            policy.observe(switched, losses[:n_switch], pi)
        weight = np.ones(batch)
        if use_iw:
            weight[:n_switch] = importance_weights(switched, pi, world.shares)
        trained = np.bincount(ids, weight, minlength=k)
        counts += np.bincount(ids, minlength=k)
        samples += ids.size
        slowing = response_slowing(excess, excess0, world.response_alpha)
        excess *= np.exp(-world.rate * slowing * (trained @ world.transfer) / batch)
        excess += world.forget * (excess0 - excess)
        if world.shared:  # every trained sample trains the shared part
            slowing = response_slowing(level, 1.0, world.response_alpha)
            level *= np.exp(-world.shared_rate * slowing * trained.sum() / batch)
            level += world.forget * (1.0 - level)
        if world.process_noise:
            s = world.process_noise
            excess *= np.exp(s * proc_rng.standard_normal(k) - s * s / 2)
            if world.shared:
                level *= np.exp(s * proc_rng.standard_normal() - s * s / 2)
        if step % config.log_every == 0 or step == config.steps:
            log_steps.append(step)
            disc_log.append(true_discrepancy())
            est_log.append(tracker.estimates)
    return RunResult(np.array(log_steps), np.array(disc_log), np.array(est_log), pi_log, counts, samples)


# --- a study: scenarios x policies x seeds -----------------------------------------------------

@dataclass
class Study:
    """Tidy tables of a study (lists of row dicts) and the per-run results for plotting."""

    history: list[dict] = field(default_factory=list)  # scenario, policy, seed, step, metric, value
    regions: list[dict] = field(default_factory=list)  # per logged step and region: D, estimate, pi
    final: list[dict] = field(default_factory=list)    # scenario, policy, seed, metric, value
    runs: dict[tuple[str, str, int], RunResult] = field(default_factory=dict)
    worlds: dict[tuple[str, int], World] = field(default_factory=dict)


def run_study(scenarios: list[str], specs: list[PolicySpec], seeds: list[int],
              config: SimConfig, progress: Callable[[str], None] | None = None) -> Study:
    """Every policy on every scenario and seed, at the same budget (`config`)."""
    study = Study()
    for scenario in scenarios:
        for seed in seeds:
            world = build_world(scenario, seed)
            study.worlds[scenario, seed] = world
            groups = world.groups()
            reference = None
            for spec in specs:
                if spec.kind == "doremi" and reference is None:
                    reference = simulate(world, config, PolicySpec("rc"), seed).final
                run = simulate(world, config, spec, seed, reference)
                study.runs[scenario, spec.label, seed] = run
                _record(study, scenario, spec.label, seed, world, groups, run, config)
            if progress:
                progress(f"{scenario}: seed {seed} done")
    return study


def _record(study: Study, scenario: str, label: str, seed: int, world: World, groups: list[str],
            run: RunResult, config: SimConfig) -> None:
    key = {"scenario": scenario, "policy": label, "seed": seed}
    for row, step in enumerate(run.log_steps):
        for metric, value in world.metrics(run.discrepancy[row]).items():
            study.history.append({**key, "step": int(step), "metric": metric, "value": value})
        # pi is averaged over the steps since the previous log (step 0 shows the first step's pi)
        lo = int(run.log_steps[row - 1]) if row else 0
        pi = run.pi[lo:max(int(step), 1)].mean(axis=0)
        for region in range(world.num_regions):
            study.regions.append({**key, "step": int(step), "region": region, "group": groups[region],
                                  "share": float(world.shares[region]),
                                  "discrepancy": float(run.discrepancy[row, region]),
                                  "estimate": float(run.estimates[row, region]), "pi": float(pi[region])})
    for metric, value in world.metrics(run.final).items():
        study.final.append({**key, "metric": metric, "value": value})


def summary_table(final_rows: list[dict]):
    """pandas DataFrame: per scenario and policy, mean and sd over seeds of each final metric."""
    import pandas as pd

    df = pd.DataFrame(final_rows)
    order = list(dict.fromkeys(df["policy"]))
    stats = df.groupby(["scenario", "policy", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    table = stats.reset_index()
    table["policy"] = pd.Categorical(table["policy"], order, ordered=True)
    return table.sort_values(["scenario", "policy"], kind="stable").reset_index(drop=True)


def format_table(final_rows: list[dict], references: tuple[str, ...] = ("RC", "uniform")) -> str:
    """Printable tables per scenario: final metrics (mean +- sd over seeds), then for each
    reference policy the paired ratio policy / reference on the same seed (mean over seeds, and
    on how many seeds the policy was lower), which removes the world-to-world spread."""
    import pandas as pd

    table = summary_table(final_rows)
    df = pd.DataFrame(final_rows)
    lines = []
    for scenario, block in table.groupby("scenario", sort=False):
        n = int(block["count"].max())
        metrics = METRICS if set(METRICS) <= set(block["metric"]) else TESTBED_METRICS
        lines.append(f"\n{scenario}: {describe(scenario)} "
                     f"(final true discrepancy, mean +- sd over {n} seeds)")
        lines.append(f"{'policy':<28}" + "".join(f"{m:>18}" for m in metrics))
        for policy, rows in block.groupby("policy", sort=False, observed=True):
            cells = rows.set_index("metric")
            lines.append(f"{policy:<28}" + "".join(
                f"{cells.loc[m, 'mean']:>10.4f} +-{cells.loc[m, 'std']:.4f}" if np.isfinite(cells.loc[m, "mean"])
                else f"{'-':>18}" for m in metrics))
        wide = df[df["scenario"] == scenario].pivot_table(index=["policy", "seed"], columns="metric",
                                                          values="value", sort=False,
                                                          dropna=False).reindex(columns=list(metrics))
        for ref in references:
            if ref not in wide.index.get_level_values("policy"):
                continue
            ratio = wide / wide.xs(ref, level="policy")
            lines.append(f"  paired ratio to {ref} (mean over seeds; seeds lower than {ref})")
            for policy in dict.fromkeys(wide.index.get_level_values("policy")):
                if policy == ref:
                    continue
                r = ratio.xs(policy, level="policy")
                lines.append(f"  {policy:<26}" + "".join(
                    f"{r[m].mean():>10.3f} ({int((r[m] < 1).sum())}/{len(r)})" if r[m].notna().any()
                    else f"{'-':>16}" for m in metrics))
    return "\n".join(lines)


def write_study(study: Study, out_dir: Path, meta: dict) -> list[Path]:
    """allocation_history.csv, allocation_regions.csv, allocation_final.csv, allocation_config.json."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in (("history", study.history), ("regions", study.regions), ("final", study.final)):
        path = out_dir / f"allocation_{name}.csv"
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.6g")
        paths.append(path)
    path = out_dir / "allocation_config.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return paths + [path]



# --- studies: a fixed set of policies at equal budgets, ratios to RC per group -------------------

STUDY_POLICIES = ("rc", "uniform", "aria:beta=1:eps=0.2:a=0.05", "aria:beta=2:eps=0.2:a=0.05", "exp3",
                  "doremi:eta=0.01", "progress")
STUDIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "policies": (("imbalanced", "high_floor", "balanced", "tb_imbalanced", "tb_high_floor", "tb_tail_floor",
                  "tb_balanced"),
                 STUDY_POLICIES + ("oracle_reducible:beta=1:eps=0.2", "count:rate=0.003"),
                 "ARIA's winning case, high floors and balanced shares, in the clustered worlds (the "
                 "tracker sees every sample) and in the test-bed world (it sees the switched ones)"),
    "map": (tuple(f"testbed:tau={tau:g}:s={s:g}" for tau in (0, 0.5, 1) for s in (0, 1.2, 1.6)), STUDY_POLICIES,
            "the test-bed world over the shared fraction tau in {0, 0.5, 1} and the Zipf exponent s in {0, 1.2, 1.6}"),
}
STUDY_COLUMNS = {"mean": "all", "head": "head", "mid": "mid", "under": "under", "unseen_tail": "unseen-tail",
                 "unseen_head": "unseen-head", "unseen": "unseen", "underrep": "under",
                 "prompt_weighted": "prompt-wtd"}
TARGET_TOLERANCE = 0.02  # the new policy's target: within 2% of the better of ARIA and region-uniform


def _final_job(job: tuple) -> list[dict]:
    """Final metrics of every policy on one scenario and seed (a DoReMi reference run when needed)."""
    scenario, seed, texts, config = job
    world = build_world(scenario, seed)
    reference, rows = None, []
    for spec in (PolicySpec.parse(text) for text in texts):
        if spec.kind == "doremi" and reference is None:
            reference = simulate(world, config, PolicySpec("rc"), seed).final
        run = simulate(world, config, spec, seed, reference)
        rows += [{"scenario": scenario, "policy": spec.label, "seed": seed, "metric": metric, "value": value}
                 for metric, value in world.metrics(run.final).items()]
    return rows


def run_final_study(scenarios: list[str], policies: list[str], seeds: list[int], config: SimConfig,
                    workers: int = 1, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Final-metric rows (scenario, policy, seed, metric, value) of every policy, scenario and seed;
    one process per (scenario, seed) job when workers > 1. The rows are the same for any workers."""
    import contextlib
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(scenario, seed, tuple(policies), config) for scenario in scenarios for seed in seeds]
    rows: list[dict] = []
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for job, job_rows in zip(jobs, pool.map(_final_job, jobs) if pool else map(_final_job, jobs)):
            rows += job_rows
            if progress:
                progress(f"{job[0]}: seed {job[1]} done")
    return rows


def ratio_table(final_rows: list[dict], reference: str = "RC"):
    """pandas DataFrame: per scenario, policy and metric, the paired ratio policy / reference on the
    same seed: mean, sd, min and max over seeds, and the number of seeds."""
    import pandas as pd

    df = pd.DataFrame(final_rows)
    ref = df[df["policy"] == reference].set_index(["scenario", "seed", "metric"])["value"]
    df = df.join(ref.rename("reference"), on=["scenario", "seed", "metric"])
    df["ratio"] = df["value"] / df["reference"]
    stats = df.groupby(["scenario", "policy", "metric"], sort=False)["ratio"].agg(
        mean="mean", sd="std", min="min", max="max", seeds="count")
    return stats.reset_index()


def target_check(ratios, new: str, aria: str, uniform: str = "uniform") -> list[dict]:
    """Per scenario and group: where ARIA beats region-uniform (lower mean ratio to RC) the new
    policy's target is ARIA's ratio, elsewhere region-uniform's; `excess` = new / target - 1."""
    rows = []
    for (scenario, metric), block in ratios.groupby(["scenario", "metric"], sort=False):
        if metric not in STUDY_COLUMNS:
            continue
        r = block.set_index("policy")["mean"]
        if not all(label in r.index for label in (new, aria, uniform)) or not np.isfinite(r[new]):
            continue
        aria_wins = r[aria] < r[uniform]
        target = r[aria] if aria_wins else r[uniform]
        rows.append({"scenario": scenario, "metric": metric, "target_policy": aria if aria_wins else uniform,
                     "target": target, "new": r[new], "excess": r[new] / target - 1,
                     "met": r[new] <= target * (1 + TARGET_TOLERANCE)})
    return rows


def format_study(ratios, checks: list[dict], new: str) -> str:
    """Tables per scenario: ratio to RC (mean +- sd over seeds) per group, then the target check."""
    lines = []
    for scenario, block in ratios.groupby("scenario", sort=False):
        present = block.groupby("metric")["mean"].apply(lambda v: v.notna().any())
        metrics = [m for m in STUDY_COLUMNS if present.get(m, False)]
        n = int(block["seeds"].max())
        lines.append(f"\n{scenario}: {describe(scenario)}")
        lines.append(f"  final true discrepancy / RC's on the same seed, mean +- sd over {n} seeds")
        lines.append(f"  {'policy':<30}" + "".join(f"{STUDY_COLUMNS[m]:>15}" for m in metrics))
        for policy, rows in block.groupby("policy", sort=False):
            cells = rows.set_index("metric")
            lines.append(f"  {policy:<30}" + "".join(
                f"{cells.loc[m, 'mean']:>8.3f} +-{cells.loc[m, 'sd']:.3f}" if np.isfinite(cells.loc[m, "mean"])
                else f"{'-':>15}" for m in metrics))
        mine = [c for c in checks if c["scenario"] == scenario]
        if mine:
            met = sum(c["met"] for c in mine)
            lines.append(f"  {new} vs target (ARIA where it beats region-uniform, else region-uniform; "
                         f"tolerance {TARGET_TOLERANCE:.0%}): met on {met}/{len(mine)} groups")
            lines.append("    " + ", ".join(f"{STUDY_COLUMNS[c['metric']]} {c['excess']:+.1%} vs "
                                             f"{'ARIA' if c['target_policy'].startswith('ARIA') else 'uniform'}"
                                             for c in mine))
    return "\n".join(lines)


def run_named_study(name: str, seeds: list[int], config: SimConfig, out_dir: Path, workers: int = 1,
                    progress: Callable[[str], None] | None = None) -> tuple[str, list[Path]]:
    """Run STUDIES[name]; write study_<name>_final.csv (as allocation_final.csv), study_<name>_ratios.csv,
    study_<name>_targets.csv and study_<name>_config.json; return the printed tables and the paths."""
    import pandas as pd

    scenarios, policies, _ = STUDIES[name]
    specs = [PolicySpec.parse(p) for p in policies]
    final = run_final_study(list(scenarios), list(policies), seeds, config, workers, progress)
    ratios = ratio_table(final)
    new, aria = next(s.label for s in specs if s.kind == "progress"), specs[2].label
    checks = target_check(ratios, new, aria)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"study_{name}_{part}.csv" for part in ("final", "ratios", "targets")]
    pd.DataFrame(final).to_csv(paths[0], index=False, float_format="%.6g")
    ratios.to_csv(paths[1], index=False, float_format="%.6g")
    pd.DataFrame(checks).to_csv(paths[2], index=False, float_format="%.6g")
    paths.append(out_dir / f"study_{name}_config.json")
    paths[-1].write_text(json.dumps({"study": name, "scenarios": list(scenarios), "policies": [s.label for s in specs],
                                     "seeds": seeds, "config": dataclasses.asdict(config)}, indent=2) + "\n")
    return format_study(ratios, checks, new), paths

# --- CLI ---------------------------------------------------------------------------------------

QUICK = SimConfig(steps=600, batch=32, log_every=20)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help="comma-separated scenarios (default %(default)s), or test-bed worlds "
                        "testbed[:key=value...] with keys k (regions), s (Zipf exponent), tau (shared "
                        "fraction in [0, 1]), tail, head (unseen regions there), under, pairs, floors, "
                        "tailfloors (90%% floors among seen / unseen-tail regions), rate, "
                        "observe=all|switched, easy, easyfrac (easy regions, spread over the rarity order, and "
                        "the fraction of the discrepancy they start at), alpha (exponent of a power-law "
                        "response to draws; default inf: exponential); " +
                        "; ".join(f"{k}: {v[1]}" for k, v in SCENARIOS.items()).replace("%", "%%"))
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                        help="comma-separated policies, each kind[:key=value...] with kinds "
                        "rc, uniform, aria (beta, eps, a = tracker step, iw = 1 for importance "
                        "weights), exp3 (gamma, eta), doremi (eta, eps), oracle (beta, eps), progress "
                        "(rate = expected relative fall of a region's reducible part per trained sample, "
                        "fast, slow = EMA steps, beta, eps; ProgressPolicy), oracle_reducible (beta, eps), "
                        "count (beta, eps, rate) (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds 0..N-1 (default %(default)s)")
    # Default None = not given: --quick then supplies its value, and a flag given explicitly wins.
    parser.add_argument("--steps", type=int, default=None,
                        help=f"updates per run (default {SimConfig.steps}; --quick: {QUICK.steps})")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"samples per update (default {SimConfig.batch}; --quick: {QUICK.batch})")
    parser.add_argument("--switch", type=float, default=None,
                        help="fraction of samples whose region the policy draws, the rest paired, in [0, 1] "
                        f"(default {SimConfig.switch:.4f} = RC's mean switch probability)")
    parser.add_argument("--log-every", type=int, default=None,
                        help=f"steps between logged rows (default {SimConfig.log_every}; --quick: {QUICK.log_every})")
    parser.add_argument("--quick", action="store_true",
                        help="small runs for a smoke test (steps, batch, log-every as stated above; flags given "
                        "explicitly keep their values)")
    parser.add_argument("--out", type=Path, default=Path("results/allocation"),
                        help="folder for the CSV and JSON outputs (default %(default)s)")
    parser.add_argument("--study", choices=sorted(STUDIES), default=None,
                        help="run a fixed study instead of --scenarios x --policies: " + "; ".join(
                            f"{k}: {v[2]}" for k, v in STUDIES.items()) + "; prints ratios to RC per region "
                        "group and writes study_<name>_*.csv (default: none)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes for --study and --measured (count; default %(default)s: one per core)")
    parser.add_argument("--measured", type=Path, nargs="+", default=None, metavar="EXPERIMENT",
                        help="instead: `aria experiment` folders on glyph worlds; simulate each one's world and "
                        "methods at its steps and batch, and print the trainer's ratios to RC per group beside "
                        "the simulator's (simulations.measured); writes measured_vs_predicted.csv (default: none)")
    parser.add_argument("--measured-alpha", type=float, default=None, metavar="ALPHA",
                        help="with --measured: simulate every world with a power-law response to draws of this "
                        "exponent (> 0; the trainer's cells measure 0.2-0.36, python -m simulations.headroom) "
                        "instead of the default exponential one (default: none)")


def sim_config(args: argparse.Namespace) -> SimConfig:
    """The run's SimConfig: the defaults (QUICK's with --quick), then every flag given explicitly.
    A count below 1, a --switch outside [0, 1] or a --seeds / --workers out of range is a ValueError
    naming the flag, raised before anything runs or is written."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    given = {name: getattr(args, name) for name in ("steps", "batch", "switch", "log_every")
             if getattr(args, name, None) is not None}
    for name in ("steps", "batch", "log_every"):
        if name in given and given[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {given[name]}")
    if "switch" in given and not 0.0 <= given["switch"] <= 1.0:
        raise ValueError(f"--switch must be in [0, 1], got {given['switch']}")
    return dataclasses.replace(QUICK if args.quick else SimConfig(), **given)


def run(args: argparse.Namespace) -> int:
    config = sim_config(args)
    if args.measured_alpha is not None and not (args.measured and args.measured_alpha > 0):
        raise ValueError(f"--measured-alpha needs --measured and a value > 0, got {args.measured_alpha}")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        build_world(s, 0)  # validates the name before any work
    specs = [PolicySpec.parse(p) for p in args.policies.split(",") if p.strip()]
    if not specs or not scenarios:
        raise ValueError("need at least one scenario and one policy")
    if args.measured:
        import os

        from simulations.measured import compare, format_compare

        table = compare(args.measured, list(range(args.seeds)), args.workers or os.cpu_count() or 1,
                        args.measured_alpha)
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "measured_vs_predicted.csv", index=False, float_format="%.4g")
        print(f"wrote {args.out / 'measured_vs_predicted.csv'}")
        print(format_compare(table))
        return 0
    if args.study:
        import os
        import time
        start = time.perf_counter()
        text, paths = run_named_study(args.study, list(range(args.seeds)), config, args.out,
                                      args.workers or os.cpu_count() or 1)
        for path in paths:
            print(f"wrote {path}")
        print(text)
        print(f"\n{time.perf_counter() - start:.1f} s")
        return 0
    study = run_study(scenarios, specs, list(range(args.seeds)), config, progress=print)
    meta = {"scenarios": scenarios, "policies": [s.label for s in specs], "seeds": args.seeds,
            "config": dataclasses.asdict(config)}
    for path in write_study(study, args.out, meta):
        print(f"wrote {path}")
    print(format_table(study.final))
    return 0
