"""How much any allocation of the switched draws could gain over region-uniform in a measured test-bed cell.

The trainer's per-region response to draws, read from an experiment (``measured.region_draws``):
per student and region, the p(t)-weighted discrepancy over RC's on the same seed and region
(region-uniform's in experiments without RC: ``cell_headroom``)
against the region's switched draws over RC's (the draws a sampler moves; a region's paired
samples keep their captions whatever the policy, so their effect is part of the region's
constant). Over the students that move draws, log(discrepancy ratio) is close to linear in
log(draw ratio) -- correlation -0.81 to -0.89 on the 12-region cells at Zipf 1.2 and 1.6, -0.57
at Zipf 0, where the draws hardly move -- which is the power law

    D_k = c_k * s_k ** -alpha        (s_k: switched draws of region k over the run, c_k: its constant)

with one alpha per cell (``fit_alpha``: minus the pooled slope of ln ratio on log2 draw ratio,
over ln 2). With c_k read from each seed's region-uniform student (c_k = D_k * s_k ** alpha), the
allocation of the same number of switched draws that minimises the mean over regions is
s_k proportional to c_k ** (1 / (1 + alpha)) (``best_allocation``), and its mean over region-
uniform's is the *headroom* of any allocation policy in that cell, under the model; the same
model applied to each method's own draws predicts its ratio to region-uniform beside the measured
one (a check of the model, and of how close each policy's draws come to the best ones).

ARIA beta = 1 is the policy to hold against it: pi_k proportional to the current D_k has the best
allocation as its fixed point, whatever alpha is (s ~ c * s ** -alpha <=> s ~ c ** (1 / (1 + alpha))),
so an ARIA with exact estimates and no exploration floor would reach the headroom.

Alpha is fitted on every policy's students by default, ARIA's among them; ``--fit-on region-uniform`` in a
cell that ran rc fits it on region-uniform's students against rc's alone, so that no student of a tracking
policy informs the headroom: a forecast of what allocation could gain from runs of RC and balancing only
(docs/test_bed.md, "What a teacher carries beyond its gap").

Where a policy's measured ratio to region-uniform leaves the model's, ``split_fit``
(aria_train.evaluation.allocation_split) says whether the gap follows the split: per seed, the
regression over regions of ln(D_policy / D_uniform) on ln(s_policy / s_uniform) gives a slope (the
model says -alpha) and an *offset*, exp(intercept): the part of the ratio that is the same in every
region whatever its draws did -- a run-level effect, not an allocation one, as long as the regions
share one response (its module docstring says where they do not).

    python -m simulations.headroom [FOLDERS ...] [--each] [--fit-on METHODS] [--out CSV]
"""
from __future__ import annotations

import argparse
from collections.abc import Collection
from pathlib import Path

import numpy as np

from aria_train.evaluation.allocation_split import split_fit
from simulations.measured import region_draws
from simulations.output import writable_folder

POLICIES = ("region-uniform", "aria", "aria-b2", "progress")  # students that move draws; rc is the reference
# the 12-region cells of the test bed: the experiment, then folders run beside it on the same world
CELLS = (("glyph_zipf_s0",), ("glyph_demo_gpu", "glyph_progress_tau0"), ("glyph_zipf_s16",),
         ("glyph_small_map_tau05", "glyph_progress_tau05"), ("glyph_small_map_tau1",), ("glyph_easy_tau0",))


def fit_alpha(rows, reference: str = "rc", methods: Collection[str] = POLICIES) -> tuple[float, float]:
    """(alpha, correlation) of ``region_draws`` rows (ratios to ``reference``'s students): the power law's
    exponent from the students of ``methods`` (default: every one that moves draws) -- minus the least-squares
    slope of ln(ratio) on log2(switched_ratio), over ln 2 -- and the correlation of the two. The reference's
    own rows (ratio 1 at draw ratio 1 by construction) are left out."""
    rows = rows[rows["method"].isin(list(methods)) & (rows["method"] != reference) & (rows["switched_ratio"] > 0)]
    if rows.empty:
        raise ValueError(f"no students of {', '.join(methods)} beside {reference}'s to fit alpha on")
    x, y = np.log2(rows["switched_ratio"].to_numpy(float)), np.log(rows["ratio"].to_numpy(float))
    return float(-np.polyfit(x, y, 1)[0] / np.log(2)), float(np.corrcoef(x, y)[0, 1])


def best_allocation(c: np.ndarray, total: float, alpha: float) -> np.ndarray:
    """The draws s >= 0 with sum ``total`` that minimise sum(c * s ** -alpha): s_k proportional to
    c_k ** (1 / (1 + alpha)) (equal marginal gain alpha * c_k * s_k ** -(1 + alpha) in every region)."""
    weights = np.asarray(c, float) ** (1 / (1 + alpha))
    return total * weights / weights.sum()


def headroom(rows, experiment: str, reference: str = "rc", fit_on: Collection[str] = POLICIES):
    """Per seed of one cell (``region_draws`` rows of the experiment named ``experiment``, as ratios to
    ``reference``'s students): alpha (``fit_alpha`` on the students of ``fit_on``), the fit's correlation, the best allocation's mean over region-uniform's,
    and per method the model's prediction from its own draws and the measured mean, both over
    region-uniform's (rc included where it ran: the effect of balancing), and for each policy its
    ``split_fit``; the column ``reference`` names the students alpha was fitted against. DataFrame."""
    import pandas as pd

    alpha, corr = fit_alpha(rows, reference, fit_on)
    table = []
    for seed, seed_rows in rows.groupby("seed"):
        uniform = seed_rows[seed_rows["method"] == "region-uniform"].sort_values("region")
        draws = uniform["switched"].to_numpy(float)
        c = uniform["discrepancy"].to_numpy() * draws ** alpha
        mean = uniform["discrepancy"].mean()
        best = best_allocation(c, draws.sum(), alpha)
        row = {"experiment": experiment, "seed": int(seed), "reference": reference, "alpha": alpha, "fit_correlation": corr,
               "best_over_uniform": float(np.mean(c * best ** -alpha) / mean)}
        for method in ("rc", *POLICIES[1:]):
            own = seed_rows[seed_rows["method"] == method].sort_values("region")
            if len(own) == len(uniform):
                row[f"{method}_predicted"] = float(np.mean(c * own["switched"].to_numpy(float) ** -alpha) / mean)
                row[f"{method}_measured"] = float(own["discrepancy"].mean() / mean)
                if method != "rc":
                    row[f"{method}_split_slope"], row[f"{method}_offset"] = split_fit(
                        own["switched"].to_numpy(), own["discrepancy"].to_numpy(), draws, uniform["discrepancy"].to_numpy())
        table.append(row)
    return pd.DataFrame(table)


def cell_methods(folders: list[Path]) -> set[str]:
    """The methods whose students (runs/METHOD-seedN) one cell's folders hold."""
    return {run.name.rsplit("-seed", 1)[0] for folder in folders for run in (Path(folder) / "runs").iterdir()}


def cell_headroom(folders: list[Path], seeds: Collection[int] | None = None, fit_on: Collection[str] = POLICIES):
    """``headroom`` of one cell's folders, its alpha fitted against rc's students where the cell ran rc
    (the committed 12-region cells), else against region-uniform's (experiments of region-uniform and
    policies only, e.g. the six-easy-regions cell's teachers). ``seeds``: only these seeds' students, for alpha
    and the constants alike (default: every seed; scripts/gap_gain_relation.py reads the headroom from one half
    of a teacher's seeds and its gain from the other); ``fit_on``: the methods whose students fit alpha."""
    reference = "rc" if "rc" in cell_methods(folders) else "region-uniform"
    rows = region_draws(folders, reference)
    if seeds is not None:
        rows = rows[rows["seed"].astype(int).isin(list(seeds))]
    return headroom(rows, Path(folders[0]).name, reference, fit_on)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(prog="python -m simulations.headroom", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path,
                        help="one cell: an experiment folder, then folders run beside it, whose students replace "
                             "those of the same name (default: the committed 12-region cells under "
                             "experiments/results, each a cell)")
    parser.add_argument("--each", action="store_true",
                        help="each folder is a cell of its own (e.g. one teacher per folder: their students share "
                             "names, so as one cell the last folder's would replace the others')")
    parser.add_argument("--fit-on", default=",".join(POLICIES), metavar="METHODS",
                        help="comma-separated methods whose students fit alpha, against rc's where the cell ran rc "
                             "(default %(default)s: those the cell has); region-uniform alone in a cell with rc: a "
                             "headroom no tracking policy's student informs")
    parser.add_argument("--out", type=Path, default=None, help="CSV written (default: print only)")
    args = parser.parse_args(argv)
    fit_on = tuple(method.strip() for method in args.fit_on.split(",") if method.strip())
    unknown = sorted(set(fit_on) - set(POLICIES))
    if unknown or not fit_on:
        parser.error(f"--fit-on: {', '.join(unknown) or 'nothing'} is not among {', '.join(POLICIES)}")
    root = Path(__file__).resolve().parents[1] / "experiments" / "results"
    cells = ([[folder] for folder in args.folders] if args.each else [args.folders]) if args.folders \
        else [[root / name for name in cell] for cell in CELLS]
    for cell in cells:
        missing = [str(f) for f in cell if not (f / "eval" / "discrepancy.csv").is_file() or not (f / "runs").is_dir()]
        if missing:
            parser.error(f"not an evaluated experiment folder: {', '.join(missing)}")
        if "region-uniform" not in cell_methods(cell):
            parser.error(f"{cell[0]}: no region-uniform students (the headroom is over region-uniform's draws)")
        reference = "rc" if "rc" in cell_methods(cell) else "region-uniform"
        if not (set(fit_on) & cell_methods(cell)) - {reference}:
            parser.error(f"{cell[0]}: no students of --fit-on {args.fit_on} beside {reference}'s to fit alpha on")
    if args.out is not None:
        try:
            writable_folder(args.out.parent)
        except ValueError as err:
            parser.error(str(err))
    table = pd.concat([cell_headroom(cell, fit_on=fit_on) for cell in cells], ignore_index=True)
    print(table.round(3).to_string(index=False))
    if args.out is not None:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
