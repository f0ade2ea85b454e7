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
from simulations.allocation.cli import QUICK, add_arguments, run, sim_config
from simulations.allocation.policies import DEFAULT_POLICIES, PolicySpec
from simulations.allocation.scenarios import (DEFAULT_SCENARIOS, SCENARIOS, build_world, describe, parse_testbed,
                                              testbed_world)
from simulations.allocation.simulate import RunResult, response_slowing, simulate
from simulations.allocation.studies import (STUDIES, STUDY_COLUMNS, STUDY_POLICIES, TARGET_TOLERANCE, format_study,
                                            ratio_table, run_final_study, run_named_study, target_check)
from simulations.allocation.study import Study, format_table, progress_bar, run_study, summary_table, write_study
from simulations.allocation.world import GROUPS, METRICS, RC_SWITCH, TESTBED_METRICS, SimConfig, World

__all__ = ["DEFAULT_POLICIES", "DEFAULT_SCENARIOS", "GROUPS", "METRICS", "QUICK", "RC_SWITCH", "SCENARIOS", "STUDIES",
           "STUDY_COLUMNS", "STUDY_POLICIES", "TARGET_TOLERANCE", "TESTBED_METRICS", "PolicySpec", "RunResult",
           "SimConfig", "Study", "World", "add_arguments", "build_world", "describe", "format_study", "format_table",
           "parse_testbed", "progress_bar", "ratio_table", "response_slowing", "run", "run_final_study", "run_named_study",
           "run_study", "sim_config", "simulate", "summary_table", "target_check", "testbed_world", "write_study"]
