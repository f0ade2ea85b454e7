"""`aria sim allocation`: its flags, and the run (a study, a fixed study, or the trainer's measured
experiments beside the simulator's prediction)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from simulations.allocation.policies import DEFAULT_POLICIES, PolicySpec
from simulations.allocation.scenarios import DEFAULT_SCENARIOS, SCENARIOS, build_world
from simulations.allocation.studies import STUDIES, run_named_study
from simulations.allocation.study import format_table, progress_bar, run_study, write_study
from simulations.allocation.world import SimConfig
from simulations.output import writable_folder

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
                        "the simulator's (to region-uniform where no folder given has RC on the world; "
                        "simulations.measured); writes measured_vs_predicted.csv (default: none)")
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
    writable_folder(args.out)
    if args.measured:
        import os

        from simulations.measured import compare, format_compare

        table = compare(args.measured, list(range(args.seeds)), args.workers or os.cpu_count() or 1,
                        args.measured_alpha, progress_bar("simulated worlds x seeds"))
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
                                      args.workers or os.cpu_count() or 1, progress_bar("scenarios x seeds"))
        for path in paths:
            print(f"wrote {path}")
        print(text)
        print(f"\n{time.perf_counter() - start:.1f} s")
        return 0
    study = run_study(scenarios, specs, list(range(args.seeds)), config, progress_bar("scenarios x seeds"))
    meta = {"scenarios": scenarios, "policies": [s.label for s in specs], "seeds": args.seeds,
            "config": dataclasses.asdict(config)}
    for path in write_study(study, args.out, meta):
        print(f"wrote {path}")
    print(format_table(study.final))
    return 0
