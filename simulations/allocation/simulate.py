"""One run of one policy on one world: the step loop of the model in simulations.allocation's docstring."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aria_theory.allocation import importance_weights, sample_regions
from aria_theory.tracker import RegionTracker
from simulations.allocation.policies import PolicySpec
from simulations.allocation.world import SimConfig, World

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
