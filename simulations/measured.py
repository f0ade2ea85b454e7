"""The trainer's measured map beside the simulator's prediction (the test bed, issue 11 item 4).

An `aria experiment` folder on a glyph world holds, per student (method-seedN), the evaluation's
per-group discrepancies (eval/summary.csv) and the teacher's world (world.json). From the world
this module builds the matching simulator scenario -- its regions, Zipf exponent, transfer knob
tau and group sizes (`scenario_of`) -- runs the same methods at the trainer's steps and batch,
and puts the two sets of ratios to RC side by side: per group, policy / RC on the same seed, mean
and sd over seeds (to region-uniform instead where an experiment has no RC and none of the same world
is given: its students and the simulator's `uniform` policy are then the reference). The simulator is
a model with stated assumptions (simulations.allocation's docstring), not a fit to the trainer:
agreement in direction is what to look for, not in size.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np

from aria_train.evaluation.allocation_split import switched_draws
from simulations.allocation import PolicySpec, SimConfig, ratio_table, run_final_study

# experiment method name -> simulator policy (the trainer's defaults: eps 0.2, tracker step 0.05)
POLICY_OF = {"rc": "rc", "region-uniform": "uniform", "aria": "aria:beta=1:eps=0.2:a=0.05",
             "aria-b2": "aria:beta=2:eps=0.2:a=0.05", "progress": "progress"}
# trainer group -> simulator metric
GROUP_OF = {"head": "head", "mid": "mid", "under": "under", "unseen-tail": "unseen_tail",
            "unseen-head": "unseen_head", "all": "mean", "weighted": "prompt_weighted"}
MEASURED_METRIC = "discrepancy_pt"  # p(t)-weighted: the timesteps a switched sample sees


def scenario_of(world: dict) -> str:
    """The simulator's test-bed scenario of a glyph world config (aria_train.worlds.glyph)."""
    if world.get("kind") != "glyph":
        raise ValueError(f"the simulator models glyph worlds (kind 'glyph'), got kind {world.get('kind')!r}")
    k = int(world["first_parts"]) * int(world["second_parts"])
    scenario = (f"testbed:k={k}:s={world['zipf_exponent']:g}:tau={world['glyph_transfer']:g}:"
                f"tail={world['unseen_tail']}:head={len(world['unseen_head_ranks'])}:under={world['under_regions']}")
    if world.get("easy_regions"):  # easy regions keep easy_cells of the C cells to learn
        cells = int(world["glyph_cells"]) ** 2
        scenario += f":easy={world['easy_regions']}:easyfrac={int(world.get('easy_cells', 4)) / cells:g}"
    return scenario


def seed_ratios(rows, value: str = "mean", keys: tuple[str, ...] = ("group",), reference: str = "rc"):
    """``rows`` (evaluation rows of students named method-seedN, column ``model``) with columns
    method, seed and ratio = ``value`` / the ``reference`` method's student's ``value`` on the same
    seed and ``keys`` (rows of a seed without one are dropped)."""
    rows = rows.copy()
    rows[["method", "seed"]] = rows["model"].str.extract(r"^(.*)-seed(\d+)$")
    ref = rows[rows["method"] == reference].set_index(["seed", *keys])[value]
    if rows.empty or ref.empty:
        raise ValueError(f"no {reference} students to compare with")
    rows = rows.join(ref.rename("reference"), on=["seed", *keys]).dropna(subset=["reference"])
    rows["ratio"] = rows[value] / rows["reference"]
    return rows


def measured_ratios(summary, metric: str = MEASURED_METRIC, reference: str = "rc"):
    """DataFrame (method, group, mean, sd, seeds): each student's group discrepancy divided by the
    ``reference`` method's (RC's) on the same seed, from evaluation summary rows (eval/summary.csv)."""
    rows = seed_ratios(summary[summary["metric"] == metric], reference=reference)
    return rows.groupby(["method", "group"], sort=False)["ratio"].agg(mean="mean", sd="std", seeds="count").reset_index()


def measured_switch(folder: Path, methods: list[str]) -> float | None:
    """The fraction of samples whose prompt was switched, over every logged step of ``methods``'
    runs (runs/<method>-seed<N>/metrics.jsonl): the share of each batch that a policy steers, as
    the trainer realised it; None when no run logged it."""
    values = [json.loads(line)["switched_frac"] for method in methods
              for metrics in sorted((folder / "runs").glob(f"{method}-seed*/metrics.jsonl"))
              for line in metrics.read_text().splitlines() if '"switched_frac"' in line]
    return float(np.mean(values)) if values else None


def experiment_setting(folder: str | Path) -> tuple[str, SimConfig, list[str]]:
    """(scenario, simulator config at the trainer's steps, batch and realised switch fraction,
    methods) of an experiment folder. Blind regions (DistillConfig.blind_regions, a floor of the
    evaluated error) become the simulator's unseen-tail floors (``tailfloors``: 90% of the initial
    discrepancy irreducible), so they must be unseen-tail regions. Noisy regions are not modelled:
    their floor is one of the training loss only, which the simulator's floors are not."""
    folder = Path(folder)
    for name in ("experiment.json", "world.json"):
        if not (folder / name).is_file():
            raise ValueError(f"{folder} is not an experiment folder on a glyph world: no {name}")
    experiment = json.loads((folder / "experiment.json").read_text())
    distill = experiment.get("distill", {})
    config = dataclasses.replace(SimConfig(), steps=int(distill.get("steps", 1000)),
                                 batch=int(distill.get("batch_size", 64)))
    switched = measured_switch(folder, [m for m, options in experiment["methods"].items()
                                        if options.get("method", distill.get("method", "rc")) != "kd"])
    if switched is not None:
        config = dataclasses.replace(config, switch=switched)
    scenario = scenario_of(json.loads((folder / "world.json").read_text()))
    blind = distill.get("blind_regions") or []
    if blind:
        scenario += f":tailfloors={len(blind)}"
        groups = region_groups(folder)
        if any(groups.get(r) != "unseen-tail" for r in blind):
            raise ValueError(f"{folder}: blind_regions {blind} are not all unseen-tail regions "
                             f"({ {r: groups.get(r) for r in blind} }); the simulator puts floors on the unseen tail only")
    return scenario, config, list(experiment["methods"])


def region_groups(folder: Path) -> dict[int, str]:
    """Region id -> group (head, mid, under, unseen-head, unseen-tail) of an experiment's evaluation."""
    import pandas as pd

    table = pd.read_csv(folder / "eval" / "discrepancy.csv", usecols=["region", "group"]).drop_duplicates()
    return dict(zip(table["region"].astype(int), table["group"]))


def region_draws(folders: list[str | Path], reference: str = "rc"):
    """Per student and region of an experiment: the run's switched draws of the region's prompts
    (the samples whose caption a sampler replaced by a prompt of the region: the only draws an
    allocation policy moves; metrics.jsonl ``switched_region_counts``, summed over records), its
    p(t)-weighted discrepancy, and both over the ``reference`` student's (rc, or region-uniform in
    experiments without rc) on the same seed and region (switched_ratio, ratio). ``folders``: the
    experiment, then any later ones run beside it on the same world, whose students replace those of the
    same name and use the first folder's reference. DataFrame with columns model, method, seed, region,
    group, switched, discrepancy, switched_ratio, ratio."""
    import pandas as pd

    tables = []
    for folder in map(Path, folders):
        table = pd.read_csv(folder / "eval" / "discrepancy.csv")
        table = table[table["t"].astype(str) == "pt"].rename(columns={"discrepancy": "value"})
        draws = {}
        for run in (folder / "runs").iterdir():
            for region, count in enumerate(switched_draws(run)):
                draws[(run.name, region)] = int(count)
        table["switched"] = [draws.get((m, int(r)), np.nan) for m, r in zip(table["model"], table["region"])]
        table = table.dropna(subset=["switched"])
        tables = [t[~t["model"].isin(set(table["model"]))] for t in tables] + [table]
    rows = seed_ratios(pd.concat(tables, ignore_index=True), "value", keys=("region",), reference=reference)
    reference_draws = rows[rows["method"] == reference].set_index(["seed", "region"])["switched"]
    rows["switched_ratio"] = rows["switched"] / reference_draws.loc[list(zip(rows["seed"], rows["region"]))].to_numpy()
    rows = rows.rename(columns={"value": "discrepancy"})
    return rows[["model", "method", "seed", "region", "group", "switched", "discrepancy", "switched_ratio", "ratio"]]


def compare(folders: list[str | Path], seeds: list[int], workers: int = 1, response_alpha: float | None = None,
            progress: Callable[[int, int], None] | None = None):
    """DataFrame (experiment, scenario, reference, method, group, measured, measured_sd, predicted,
    predicted_sd): every experiment's measured ratios to RC beside the simulator's for the same world and
    methods (with ``response_alpha``, simulated with that power-law response to draws, scenario key alpha).
    A folder without rc students (e.g. a later policy run) is compared with the rc students of
    another given folder on the same world: the runs share seeds and every option but the method.
    Where no given folder holds rc on its world, its region-uniform students are the reference, and
    the simulator's ``uniform`` policy is (column reference). ``progress(done, total)`` after each
    simulated (world, seed)."""
    import pandas as pd

    settings = [(Path(folder), *experiment_setting(folder)) for folder in folders]
    if response_alpha is not None:
        settings = [(folder, f"{scenario}:alpha={response_alpha:g}", config, methods)
                    for folder, scenario, config, methods in settings]
    summaries = {folder: pd.read_csv(folder / "eval" / "summary.csv") for folder, *_ in settings}
    plans = []  # (folder, scenario, summary with the reference's rows, reference, chosen methods, simulation key)
    for folder, scenario, config, methods in settings:
        summary, reference = summaries[folder], "rc"
        if "rc" not in methods:
            donors = [f for f, s, _, m in settings if s == scenario and "rc" in m]
            if donors:
                rc = summaries[donors[0]]
                summary = pd.concat([summary, rc[rc["model"].str.startswith("rc-seed")]], ignore_index=True)
            elif "region-uniform" in methods:
                reference = "region-uniform"
            else:
                raise ValueError(f"{folder} has no rc or region-uniform students, and no other folder given "
                                 f"holds rc on its world")
        chosen = [m for m in methods if m in POLICY_OF and m not in ("rc", reference)]
        if not chosen:  # checked before anything is simulated or written
            raise ValueError(f"{folder} has no method to compare with {reference} (the simulator knows "
                             f"{', '.join(m for m in POLICY_OF if m != 'rc')}; it has {', '.join(methods)})")
        policies = (POLICY_OF[reference], *(POLICY_OF[m] for m in chosen))
        plans.append((folder, scenario, summary, reference, chosen, (scenario, config, policies)))
    keys = list(dict.fromkeys(key for *_, key in plans))  # folders of one world and methods share one simulation
    simulated = {}
    for i, (scenario, config, policies) in enumerate(keys):
        report = (lambda done, _, i=i: progress(i * len(seeds) + done, len(keys) * len(seeds))) if progress else None
        simulated[scenario, config, policies] = ratio_table(
            run_final_study([scenario], list(policies), seeds, config, workers, report),
            reference=PolicySpec.parse(policies[0]).label)
    out = []
    for folder, scenario, summary, reference, chosen, key in plans:
        measured = measured_ratios(summary, reference=reference)
        predicted = simulated[key].copy()
        predicted["method"] = predicted["policy"].map({PolicySpec.parse(POLICY_OF[m]).label: m for m in chosen})
        for group, metric in GROUP_OF.items():
            for method in chosen:
                m = measured[(measured["method"] == method) & (measured["group"] == group)]
                p = predicted[(predicted["method"] == method) & (predicted["metric"] == metric)]
                out.append({"experiment": folder.name, "scenario": scenario, "reference": reference,
                            "method": method, "group": group,
                            "measured": float(m["mean"].iloc[0]) if len(m) else np.nan,
                            "measured_sd": float(m["sd"].iloc[0]) if len(m) else np.nan,
                            "predicted": float(p["mean"].iloc[0]) if len(p) else np.nan,
                            "predicted_sd": float(p["sd"].iloc[0]) if len(p) else np.nan})
    return pd.DataFrame(out)


def format_compare(table) -> str:
    """One block per experiment: rows method x group, measured and predicted ratio to the reference (RC,
    or region-uniform where the experiment had no RC)."""
    lines = []
    for (name, scenario, reference), block in table.groupby(["experiment", "scenario", "reference"], sort=False):
        lines.append(f"\n{name} ({scenario}): discrepancy / {reference}'s on the same seed, mean +- sd over "
                     f"seeds; measured = trainer ({MEASURED_METRIC}), predicted = simulator")
        groups = [g for g in GROUP_OF if g in set(block["group"])]
        lines.append(f"  {'method':<16}" + "".join(f"{g:>24}" for g in groups))
        for method, rows in block.groupby("method", sort=False):
            cells = rows.set_index("group")
            lines.append(f"  {method:<16}" + "".join(
                f"{cells.loc[g, 'measured']:>7.2f}+-{cells.loc[g, 'measured_sd']:.2f} | "
                f"{cells.loc[g, 'predicted']:.2f}+-{cells.loc[g, 'predicted_sd']:.2f}" for g in groups))
        lines.append(f"  {agreement(block)}")
    return "\n".join(lines)


def agreement(block) -> str:
    """One line on how far one experiment's predictions lie from its measurements: the median
    over methods and groups of |ln(predicted / measured)| (0.10 ~ 10% off), and the all-regions
    ratio of each method to region-uniform, measured | predicted (what tracking adds to
    balancing)."""
    both = block.dropna(subset=["measured", "predicted"])
    error = float(np.median(np.abs(np.log(both["predicted"] / both["measured"])))) if len(both) else np.nan
    every = block[block["group"] == "all"].set_index("method")
    line = f"median |ln(predicted / measured)| {error:.3f}"
    if "region-uniform" in every.index:
        uniform = every.loc["region-uniform"]
        line += "; all regions over region-uniform, measured | predicted: " + ", ".join(
            f"{m} {every.loc[m, 'measured'] / uniform['measured']:.3f} | {every.loc[m, 'predicted'] / uniform['predicted']:.3f}"
            for m in every.index if m != "region-uniform")
    return line
