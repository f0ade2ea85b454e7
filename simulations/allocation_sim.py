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
probability proportional to q. A policy therefore only steers the switched part (DESIGN.md §4),
and every policy trains on exactly `steps * B` samples: the same update budget.

Discrepancy. Region k's true teacher-student discrepancy is D_k = floor_k + x_k: floor_k cannot be
removed by training (capacity), x_k can. After a batch with c_j samples of region j (each
weighted by base_j / pi_j in the unbiased importance-weighted mode, else 1):
    x_k <- x_k exp(-r_k sum_j T_jk c_j / B)             training, with transfer T (T_kk = 1)
    x_k <- x_k + f (x0_k - x_k)                           forgetting (interference) at rate f
    x_k <- x_k exp(s z_k - s^2/2), z_k ~ N(0, 1)          process noise (mean preserving)
Training helps a region in proportion to its share of the batch; transfer T_jk between regions
of one cluster (and a weaker one across clusters) lets a region improve without being drawn.

Observation. A policy never sees D. Each trained sample yields a loss D_k G, G ~ Gamma(shape,
1/shape) (mean 1, coefficient of variation 1/sqrt(shape)), measured before the step, like a
timestep-normalised squared error. All B losses feed one `aria_theory.tracker.RegionTracker`
(one `update` per step); the switched ones also feed `policy.observe`. The *oracle* is ARIA's
rule fed the true D instead of the tracker's estimates: it shows what tracking error costs.

Policies (`PolicySpec`): ``rc`` (PromptSharePolicy(q): RC), ``uniform`` (region-uniform),
``aria`` (AriaPolicy(beta, eps) on the tracker with step a; ``iw=1`` adds importance weights
q/pi, which keep RC's expected update), ``exp3`` (Exp3Policy), ``doremi`` (DoReMiPolicy whose
reference is the final discrepancy of an RC run with the same seed: a reference model trained on
RC's mixture, which costs a second run that the budget here does not charge), ``oracle``.

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
                                    PromptSharePolicy, UniformPolicy, importance_weights,
                                    sample_regions)
from aria_theory.tracker import RegionTracker

RC_SWITCH = (1 - np.exp(-5.0)) / 5  # mean of RC's p(t) = exp(-5 (1 - t/T)) over t ~ U[0, T)
METRICS = ("mean", "worst", "unseen", "underrep", "prompt_weighted", "excess")


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

    @property
    def num_regions(self) -> int:
        return int(self.shares.shape[0])

    @property
    def underrep(self) -> np.ndarray:
        return self.seen & (self.shares < self.underrep_share / self.num_regions)

    @property
    def paired_shares(self) -> np.ndarray:
        """Region distribution of paired samples: q restricted to seen regions."""
        p = np.where(self.seen, self.shares, 0.0)
        return p / p.sum()

    def groups(self) -> list[str]:
        """Per-region label: "unseen", "underrep" or "seen"."""
        return ["unseen" if not s else "underrep" if u else "seen" for s, u in zip(self.seen, self.underrep)]

    def metrics(self, discrepancy: np.ndarray) -> dict[str, float]:
        """Summaries of a true discrepancy vector: region mean, worst region, mean over unseen and
        over underrepresented regions (NaN if none), q-weighted mean (what RC's mixture weighs)
        and mean reducible part D - floor (the only part any allocation can change)."""
        d = np.asarray(discrepancy)
        group = lambda mask: float(d[mask].mean()) if mask.any() else float("nan")
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
}


def build_world(scenario: str, seed: int) -> World:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    return SCENARIOS[scenario][0](seed)


# --- policies ----------------------------------------------------------------------------------

_KINDS = {"rc": (), "uniform": (), "aria": ("beta", "eps", "a", "iw"), "exp3": ("gamma", "eta"),
          "doremi": ("eta", "eps"), "oracle": ("beta", "eps")}
_DEFAULTS = {"beta": 1.0, "eps": 0.2, "a": 0.05, "iw": 0.0, "gamma": 0.1, "eta": None}


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
        return cls(kind, params)

    def get(self, key: str) -> float | None:
        return self.params.get(key, _DEFAULTS.get(key))

    @property
    def label(self) -> str:
        if self.kind == "aria":
            iw = "-IW" if self.get("iw") else ""
            return f"ARIA{iw} b={self.get('beta'):g} e={self.get('eps'):g} a={self.get('a'):g}"
        if self.kind == "oracle":
            return f"oracle b={self.get('beta'):g} e={self.get('eps'):g}"
        return {"rc": "RC", "uniform": "uniform", "exp3": "EXP3", "doremi": "DoReMi"}[self.kind]

    def build(self, world: World, reference: np.ndarray | None = None) -> AllocationPolicy:
        k = world.num_regions
        if self.kind == "rc":
            return PromptSharePolicy(k, world.shares)
        if self.kind == "uniform":
            return UniformPolicy(k)
        if self.kind in ("aria", "oracle"):
            return AriaPolicy(k, beta=self.get("beta"), eps=self.get("eps"))
        extra = {"eta": self.params["eta"]} if "eta" in self.params else {}
        if self.kind == "exp3":
            return Exp3Policy(k, gamma=self.get("gamma"), **extra)
        if reference is None:
            raise ValueError("doremi needs a reference discrepancy")
        return DoReMiPolicy(k, reference, eps=self.get("eps"), **extra)


DEFAULT_POLICIES = ("rc", "uniform", "aria:beta=1:eps=0.2:a=0.05", "aria:beta=2:eps=0.2:a=0.05",
                    "aria:beta=1:eps=0.5:a=0.05", "aria:beta=1:eps=0.2:a=0.5",
                    "aria:beta=1:eps=0.2:a=0.05:iw=1", "exp3", "doremi:eta=0.01",
                    "oracle:beta=1:eps=0.2")
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


def simulate(world: World, config: SimConfig, spec: PolicySpec, seed: int,
             reference: np.ndarray | None = None) -> RunResult:
    """Run one policy on one world. Random streams are split by purpose and seeded by `seed`
    alone, so every policy meets the same process noise and observation-noise stream."""
    k, batch = world.num_regions, config.batch
    switch_rng, paired_rng, draw_rng, obs_rng, proc_rng = (np.random.default_rng([seed, i]) for i in range(5))
    policy = spec.build(world, reference)
    tracker = RegionTracker(k, step=spec.get("a"))
    use_iw = spec.kind == "aria" and bool(spec.get("iw"))
    paired_p = world.paired_shares
    excess0 = world.initial - world.floor
    excess = excess0.copy()
    log_steps, disc_log, est_log = [0], [world.initial.copy()], [tracker.estimates]
    pi_log = np.empty((config.steps, k))
    counts = np.zeros(k)
    samples = 0
    for step in range(1, config.steps + 1):
        disc = world.floor + excess
        pi = policy.probabilities(disc if spec.kind == "oracle" else tracker.estimates)
        pi_log[step - 1] = pi
        n_switch = int(switch_rng.binomial(batch, config.switch))
        switched = sample_regions(pi, n_switch, draw_rng)
        paired = sample_regions(paired_p, batch - n_switch, paired_rng)
        ids = np.concatenate([switched, paired])
        losses = disc[ids] * obs_rng.gamma(world.obs_shape, 1.0 / world.obs_shape, batch)
        tracker.update(ids, losses)
        policy.observe(switched, losses[:n_switch], pi)
        weight = np.ones(batch)
        if use_iw:
            weight[:n_switch] = importance_weights(switched, pi, world.shares)
        trained = np.bincount(ids, weight, minlength=k)
        counts += np.bincount(ids, minlength=k)
        samples += ids.size
        excess *= np.exp(-world.rate * (trained @ world.transfer) / batch)
        excess += world.forget * (excess0 - excess)
        if world.process_noise:
            s = world.process_noise
            excess *= np.exp(s * proc_rng.standard_normal(k) - s * s / 2)
        if step % config.log_every == 0 or step == config.steps:
            log_steps.append(step)
            disc_log.append(world.floor + excess)
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
        lines.append(f"\n{scenario}: {SCENARIOS[scenario][1] if scenario in SCENARIOS else ''} "
                     f"(final true discrepancy, mean +- sd over {n} seeds)")
        lines.append(f"{'policy':<28}" + "".join(f"{m:>18}" for m in METRICS))
        for policy, rows in block.groupby("policy", sort=False, observed=True):
            cells = rows.set_index("metric")
            lines.append(f"{policy:<28}" + "".join(
                f"{cells.loc[m, 'mean']:>10.4f} +-{cells.loc[m, 'std']:.4f}" if np.isfinite(cells.loc[m, "mean"])
                else f"{'-':>18}" for m in METRICS))
        wide = df[df["scenario"] == scenario].pivot_table(index=["policy", "seed"], columns="metric",
                                                          values="value", sort=False,
                                                          dropna=False).reindex(columns=list(METRICS))
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
                    else f"{'-':>16}" for m in METRICS))
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


# --- CLI ---------------------------------------------------------------------------------------

QUICK = SimConfig(steps=600, batch=32, log_every=20)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated scenarios (%(default)s); " +
                        "; ".join(f"{k}: {v[1]}" for k, v in SCENARIOS.items()).replace("%", "%%"))
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                        help="comma-separated policies, each kind[:key=value...] with kinds "
                        "rc, uniform, aria (beta, eps, a = tracker step, iw = 1 for importance "
                        "weights), exp3 (gamma, eta), doremi (eta, eps), oracle (beta, eps) "
                        "(default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--steps", type=int, default=SimConfig.steps,
                        help=f"updates per run (default %(default)s; --quick: {QUICK.steps})")
    parser.add_argument("--batch", type=int, default=SimConfig.batch,
                        help=f"samples per update (default %(default)s; --quick: {QUICK.batch})")
    parser.add_argument("--switch", type=float, default=SimConfig.switch,
                        help="fraction of samples whose region the policy draws, the rest paired "
                        "(default %(default).4f = RC's mean switch probability)")
    parser.add_argument("--log-every", type=int, default=SimConfig.log_every,
                        help=f"steps between logged rows (default %(default)s; --quick: {QUICK.log_every})")
    parser.add_argument("--quick", action="store_true",
                        help="small runs for a smoke test (steps, batch, log-every as stated above)")
    parser.add_argument("--out", type=Path, default=Path("results/allocation"),
                        help="folder for the CSV and JSON outputs (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        build_world(s, 0)  # validates the name before any work
    specs = [PolicySpec.parse(p) for p in args.policies.split(",") if p.strip()]
    if not specs or not scenarios:
        raise ValueError("need at least one scenario and one policy")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    config = QUICK if args.quick else SimConfig(args.steps, args.batch, args.switch, args.log_every)
    if args.quick:
        config = dataclasses.replace(config, switch=args.switch)
    study = run_study(scenarios, specs, list(range(args.seeds)), config, progress=print)
    meta = {"scenarios": scenarios, "policies": [s.label for s in specs], "seeds": args.seeds,
            "config": dataclasses.asdict(config)}
    for path in write_study(study, args.out, meta):
        print(f"wrote {path}")
    print(format_table(study.final))
    return 0
