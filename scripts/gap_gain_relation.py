"""Does a teacher's difficulty gap predict ARIA's gain over region-uniform? Over fig_gap_map's gate-passing teachers.

Usage: python scripts/gap_gain_relation.py [--data DIR] [--out CSV] [--predict FOLDER ...] [--forecast CELL RATIOS]

Per method, Pearson's r between a teacher's gap (paper_figures.fig_gap_map.difficulty_gap: its region-uniform
students' discrepancy on the easy regions over the hard ones') and its mean ln ratio to region-uniform over seeds,
with the two-sided p of r = 0: over every cell of fig_gap_map.CONFIG together, then within each cell (scope).

The gap and the ratio share region-uniform's students: a region-uniform run that happened to do badly on the
hard regions makes its teacher's gap small and, as the denominator of its seed's ratio, that ratio low -- a
correlation by regression to the mean. So the same r is also computed with the two sharing no student: the gap
from the region-uniform students of the even seeds and the ratio from the odd seeds' pairs (halves
"gap even, ratio odd"), and the other way round. If the full r came from the shared students, the halves'
would fall to about 0.

A second table asks whether the ratio of the two levels or either level itself carries the relation: per
method, over all seeds, the least-squares fit ln ratio = b0 + b_easy ln(easy) + b_hard ln(hard), the two levels
being the easy and the hard regions' mean discrepancy (fig_gap_map.easy_and_hard), and Pearson's r of ln ratio
with each level alone. b_easy = -b_hard means the gap (their ratio) is all that matters.

A third table tests the line out of sample, a cell (knob setting) at a time: per method, the line fitted over
the other cells' teachers predicts each of the cell's teachers' mean ln ratio from its own gap; the table gives
the cell's mean residual (measured - predicted, ln), the others' residual sd about their line and z = mean
residual / (that sd / sqrt(teachers)). |z| > 2: the cell departs from the others' line. Beside it, the mean
residual against the others' mean ln ratio (no gap in the model, flat_residual): where the line's residual is the
smaller, the gap predicted the cell. A new cell's row is the test of the prediction written before it ran
(docs/test_bed.md, "The third point").

A fourth table asks what a teacher carries beyond its gap: its headroom (fig_gap_map.teacher_headroom: the best
split of the draws under the power law D_k = c_k s_k^-alpha fitted to the teacher's own students, which
combines how far its regions' levels spread with how much they respond to draws, alpha). Per method and half,
Pearson's r of ln ratio with ln headroom and with alpha, beside the gap's, and the least-squares fit ln ratio =
b0 + b_gap gap + b_headroom ln headroom with each coefficient's two-sided p: b_gap near 0 with b_headroom kept
means the headroom carries what the gap does and more. Then r of ln headroom with each part of the gain
(allocation_split.csv, per seed: ln ratio = ln offset + the part that follows the draws; mean over the seeds):
the offset every region shares, and the rest, the split. In the halves the headroom and alpha come from the same
parity of seeds as the gap (their region-uniform and policy students) and the ratio from the other. Alpha is
read from the policies' own students (how their regions' discrepancy followed their draws): a property of the
teacher measured through ARIA on other seeds, not a forecast one can make without running a policy. The
third table is given for both lines (predictor gap, log_headroom).

--predict FOLDER ...: folders kept out of the fit (a new world's teachers before they join fig_gap_map, or new
seeds of a teacher already in it, whose students the fit has not seen) against the line fitted over all of
fig_gap_map's gate-passing teachers but the named ones (a named folder among them is left out, so that none
predicts itself): measured ratio, predicted ratio at the folder's own gap (and, on the headroom line, at its
own headroom, both read from its own students), and the residual; then per method and line the folders' mean
residual and z = mean / (the fit's residual sd / sqrt(folders)).

--forecast CELL RATIOS (repeatable; each a folder or folders joined by '+'): an ARIA-free forecast of one
teacher's gain. CELL: a folder of its region-uniform students and one of its rc students of the same seeds; their
headroom is fitted on region-uniform's students against rc's alone (simulations.headroom --fit-on region-uniform),
so that no student of a tracking policy informs it. RATIOS: the teacher's folders of region-uniform and policy
students, whose ratios over all their seeds are the measurement. Printed per teacher and method: the ARIA-free
alpha and headroom, the measured ratio, and the predictions of the headroom line and of the gap line (at the gap
of CELL's region-uniform students; 1 in a world without easy regions), both fitted over all of fig_gap_map's
gate-passing teachers and all seeds. --forecast-cells: the same for every cell of the verdicts figure that ran rc
beside region-uniform (the whole test bed: 12- and 48-region worlds, floors, Zipf), each labelled by the cell.

--data DIR: an experiment folder under DIR is read instead of the committed experiments/results one of the same
name (as the figures' --data); --out writes the first table, OUT_levels.csv the second, OUT_held_out.csv the third,
OUT_headroom.csv the fourth, OUT_predicted.csv the --predict table and OUT_forecast.csv the --forecast one.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from paper_figures.common import experiment_dir
from aria_train.worlds.kinds import load_world_config
from paper_figures.fig_gap_map import CONFIG, REFERENCE, difficulty_gap, easy_and_hard, gap_gain_fit, teacher_headroom
from paper_figures.fig_testbed_verdicts import CONFIG as VERDICTS
from paper_figures.fig_testbed_verdicts import cell_ratios
from simulations.headroom import cell_methods

HALVES = ("all seeds", "gap even, ratio odd", "gap odd, ratio even")
PREDICTORS = ("gap", "log_headroom")  # the x of a line of ln ratio over teachers (log_headroom: ln of the headroom)


def folder_rows(data_dir: str | Path | None, cell: str, name: str) -> list[dict]:
    """One experiment folder's rows of ``teacher_rows`` (per method and half)."""
    folder = experiment_dir(data_dir, name)
    ratios = cell_ratios(data_dir, (name,), REFERENCE)
    parts = folder / "allocation_split.csv"  # the offset every region shares, per method and seed
    offsets = pd.read_csv(parts) if parts.is_file() else pd.DataFrame(columns=["method", "seed", "offset"])
    seeds = sorted(ratios["seed"].unique())
    even, odd = [s for s in seeds if s % 2 == 0], [s for s in seeds if s % 2 == 1]
    rows = []
    for half, gap_seeds, ratio_seeds in zip(HALVES, (None, even, odd), (seeds, odd, even)):
        easy, hard = easy_and_hard(folder, gap_seeds)
        best, alpha = teacher_headroom([folder], gap_seeds)
        for method, own in ratios[ratios["seed"].isin(ratio_seeds)].groupby("method"):
            offset = offsets[(offsets["method"] == method) & offsets["seed"].isin(ratio_seeds)]["offset"]
            rows.append({"cell": cell, "folder": name, "method": method, "half": half, "gap": easy / hard,
                         "easy": easy, "hard": hard, "log_headroom": float(np.log(best)), "alpha": alpha,
                         "log_ratio": float(np.log(own["ratio"]).mean()),
                         "log_offset": float(np.log(offset).mean()) if len(offset) == len(own) else np.nan,
                         "seeds": len(own)})
    return rows


def teacher_rows(data_dir: str | Path | None) -> pd.DataFrame:
    """Per gate-passing teacher folder of fig_gap_map, method and half (HALVES): the cell, the gap, the headroom
    and the mean ln ratio to region-uniform over the half's seeds (columns cell, folder, method, half, gap, easy,
    hard, log_headroom, alpha, log_ratio, log_offset, seeds: easy and hard the two levels whose ratio is the gap;
    log_offset the mean ln offset of allocation_split.csv over the ratio's seeds, nan without it; gap, levels,
    headroom and alpha from the half's first parity of seeds, the ratio and offset from its second)."""
    rows = []
    for cell, _, _, folders in CONFIG.cells:
        for name, passes in folders:
            if passes and (experiment_dir(data_dir, name) / "eval" / "discrepancy.csv").is_file():
                rows += folder_rows(data_dir, cell, name)
    return pd.DataFrame(rows)


def fit_line(teachers: pd.DataFrame, x: str = "gap") -> tuple[float, float, float]:
    """(slope, intercept, residual sd with n - 2 degrees of freedom) of the least-squares line of log_ratio on
    column ``x`` (one of PREDICTORS) over ``teachers`` (rows of ``teacher_rows``)."""
    slope, intercept, *_ = gap_gain_fit(teachers[x].to_numpy(), teachers["log_ratio"].to_numpy())
    spread = float(np.std(teachers["log_ratio"] - (intercept + slope * teachers[x]), ddof=2))
    return slope, intercept, spread


def least_squares(columns: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients, two-sided p of each = 0) of the ordinary least-squares fit y = b0 + sum b_i columns_i, with
    n - 1 - len(columns) degrees of freedom; b0 first."""
    from scipy.stats import t as student_t

    design = np.c_[np.ones(len(y)), *columns]
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    freedom = len(y) - design.shape[1]
    residual = y - design @ coefficients
    errors = np.sqrt(np.diag(residual @ residual / freedom * np.linalg.inv(design.T @ design)))
    return coefficients, 2 * student_t.sf(np.abs(coefficients / errors), freedom)


def located(data_dir: str | Path | None, names: str) -> list[Path]:
    """The folders of '+'-joined ``names``: paths, or names under data_dir or experiments/results."""
    folders = [Path(name) if Path(name).is_dir() else experiment_dir(data_dir, name) for name in names.split("+")]
    missing = [str(folder) for folder in folders if not (folder / "eval" / "discrepancy.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"no evaluated experiment folder (eval/discrepancy.csv): {', '.join(missing)}")
    return folders


def predictions(rows: pd.DataFrame, data_dir: str | Path | None, names: list[str]) -> pd.DataFrame:
    """Folders outside the fit (a new world's teachers, or new seeds of a fitted teacher) against the lines of
    ``rows``' teachers over all seeds, one per predictor (PREDICTORS): per folder, method and predictor its own x
    (gap or ln headroom) and mean ln ratio, the line's prediction at that x, the residual (measured - predicted,
    ln) and the fit's residual sd (n - 2 degrees of freedom). A named folder that is one of ``rows``' teachers is
    left out of the fit, so that no folder predicts itself."""
    folders = [folder for name in names for folder in located(data_dir, name)]
    fitted = rows[(rows["half"] == HALVES[0]) & ~rows["folder"].isin([folder.name for folder in folders])]
    lines = {(method, x): fit_line(group.dropna(subset=[x]), x) for method, group in fitted.groupby("method")
             for x in PREDICTORS if group[x].notna().sum() >= 3}
    table = []
    for folder in folders:
        name = folder.name
        for row in folder_rows(folder.parent, "predicted", name):
            for x in PREDICTORS:
                if row["half"] != HALVES[0] or (row["method"], x) not in lines or np.isnan(row[x]):
                    continue
                slope, intercept, spread = lines[(row["method"], x)]
                predicted = intercept + slope * row[x]
                table.append({"folder": name, "method": row["method"], "predictor": x, "seeds": row["seeds"],
                              "x": row[x], "ratio": float(np.exp(row["log_ratio"])),
                              "predicted": float(np.exp(predicted)), "residual": row["log_ratio"] - predicted,
                              "fit_sd": spread})
    return pd.DataFrame(table)


def testbed_forecasts(data_dir: str | Path | None) -> list[tuple[str, str, str]]:
    """(label, CELL, RATIOS) of every cell of fig_testbed_verdicts whose first folder holds rc and region-uniform
    students with their runs (--forecast-cells): CELL that folder, RATIOS all the cell's folders."""
    cells = []
    for label, folders in VERDICTS.cells:
        first = experiment_dir(data_dir, folders[0])
        if (first / "runs").is_dir() and {"rc", REFERENCE} <= cell_methods([first]):
            cells.append((label, folders[0], "+".join(folders)))
    return cells


def world_gap(folder: Path) -> float:
    """difficulty_gap of a world with easy regions; 1 (no gap, as fig_gap_map draws it) of one without."""
    config = load_world_config(folder / "world.json")
    return difficulty_gap(folder) if getattr(config, "easy_regions", 0) else 1.0


def forecasts(rows: pd.DataFrame, data_dir: str | Path | None, pairs: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Per (label, CELL, RATIOS) of ``pairs`` (--forecast, --forecast-cells) and method: the ARIA-free alpha and
    headroom of CELL, the measured ratio over RATIOS' seeds, and per predictor the line's prediction (lines over
    ``rows``' teachers, all seeds; the gap of a world without easy regions is 1) and residual (ln, measured -
    predicted). Columns teacher (the label), method, alpha, headroom, gap, seeds, ratio, predicted_headroom,
    residual_headroom, predicted_gap, residual_gap, fit_sd_headroom, fit_sd_gap."""
    fitted = rows[rows["half"] == HALVES[0]]
    lines = {(method, x): fit_line(group.dropna(subset=[x]), x) for method, group in fitted.groupby("method")
             for x in PREDICTORS if group[x].notna().sum() >= 3}
    table = []
    for label, cell_names, ratio_names in pairs:
        cell, folders = located(data_dir, cell_names), located(data_dir, ratio_names)
        if not {"rc", REFERENCE} <= cell_methods(cell):
            raise FileNotFoundError(f"{cell_names}: no rc and {REFERENCE} students to fit alpha on")
        best, alpha = teacher_headroom(cell, fit_on=(REFERENCE,))
        x = {"log_headroom": np.log(best), "gap": world_gap(cell[0])}
        if len({folder.parent for folder in folders}) > 1:
            raise FileNotFoundError(f"{ratio_names}: the folders of RATIOS must lie in one folder")
        # merged as the verdicts figure merges a cell's folders: later folders' students beside the first's
        ratios = cell_ratios(folders[0].parent, tuple(folder.name for folder in folders), REFERENCE)
        for method, own in ratios.groupby("method"):
            if not all((method, predictor) in lines for predictor in PREDICTORS):
                continue  # a policy without lines (e.g. progress): no teacher of fig_gap_map ran it
            measured = float(np.log(own["ratio"]).mean())
            row = {"teacher": label, "method": method, "alpha": alpha,
                   "headroom": best, "gap": x["gap"], "seeds": len(own), "ratio": float(np.exp(measured))}
            for predictor, name in (("log_headroom", "headroom"), ("gap", "gap")):
                slope, intercept, spread = lines[(method, predictor)]
                predicted = intercept + slope * x[predictor]
                row |= {f"predicted_{name}": float(np.exp(predicted)), f"residual_{name}": measured - predicted,
                        f"fit_sd_{name}": spread}
            table.append(row)
    return pd.DataFrame(table)


def relation(rows: pd.DataFrame) -> pd.DataFrame:
    """Pearson's r of gap and log_ratio per (method, half, scope): scope "all cells", and each cell on its own
    over all seeds; scopes of fewer than three teachers are left out. Columns method, half, scope, teachers, r, p."""
    table = []
    for (method, half), group in rows.groupby(["method", "half"], sort=False):
        scopes = [("all cells", group)] + (list(group.groupby("cell", sort=False)) if half == HALVES[0] else [])
        for scope, part in scopes:
            if len(part) < 3:
                continue
            *_, r, p = gap_gain_fit(part["gap"].to_numpy(), part["log_ratio"].to_numpy())
            table.append({"method": method, "half": half, "scope": scope, "teachers": len(part), "r": float(r),
                          "p": float(p)})
    return pd.DataFrame(table)


def levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method over all seeds (teachers of every cell, three or more): the least-squares coefficients of ln
    ratio on ln(easy) and ln(hard) (b0, b_easy, b_hard) and Pearson's r of ln ratio with each level alone
    (r_easy, p_easy, r_hard, p_hard)."""
    table = []
    for method, group in rows[rows["half"] == HALVES[0]].groupby("method", sort=False):
        if len(group) < 3:
            continue
        easy, hard = np.log(group["easy"].to_numpy()), np.log(group["hard"].to_numpy())
        y = group["log_ratio"].to_numpy()
        b0, b_easy, b_hard = np.linalg.lstsq(np.c_[np.ones(len(y)), easy, hard], y, rcond=None)[0]
        *_, r_easy, p_easy = gap_gain_fit(easy, y)
        *_, r_hard, p_hard = gap_gain_fit(hard, y)
        table.append({"method": method, "teachers": len(group), "b0": b0, "b_easy": b_easy, "b_hard": b_hard,
                      "r_easy": r_easy, "p_easy": p_easy, "r_hard": r_hard, "p_hard": p_hard})
    return pd.DataFrame(table)


def held_out_cells(rows: pd.DataFrame, x: str = "gap") -> pd.DataFrame:
    """Per method and cell, over all seeds: the least-squares line of ln ratio on ``x`` (one of PREDICTORS) over
    the other cells' teachers (three or more) predicts this cell's; columns predictor, method, cell, teachers,
    mean_residual (ln, measured - predicted), abs_residual (mean |residual| over the cell's teachers), others_sd
    (residual sd about the others' line, n - 2 degrees of freedom), z, and flat_residual (the mean residual against
    the others' mean ln ratio instead of their line). Teachers without ``x`` (no runs: no headroom) are left out."""
    table = []
    for method, group in rows[(rows["half"] == HALVES[0]) & rows[x].notna()].groupby("method", sort=False):
        for cell, own in group.groupby("cell", sort=False):
            others = group[group["cell"] != cell]
            if len(others) < 3:
                continue
            slope, intercept, spread = fit_line(others, x)
            residual = own["log_ratio"] - (intercept + slope * own[x])
            table.append({"predictor": x, "method": method, "cell": cell, "teachers": len(own),
                          "mean_residual": float(residual.mean()), "abs_residual": float(residual.abs().mean()),
                          "others_sd": spread, "z": float(residual.mean()) / (spread / np.sqrt(len(own))),
                          "flat_residual": float(own["log_ratio"].mean() - others["log_ratio"].mean())})
    return pd.DataFrame(table)


def headroom_relation(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method and half, over the teachers of every cell with a headroom (three or more beyond the fit's
    parameters): Pearson's r (and p) of ln ratio with the gap, with ln headroom and with alpha, the
    least-squares fit ln ratio = b0 + b_gap gap + b_headroom ln headroom with each coefficient's p, and r (and p)
    of ln headroom with the two parts of ln ratio, log_offset (r_offset) and the rest (r_split; teachers with an
    offset only)."""
    table = []
    for (method, half), group in rows.dropna(subset=["log_headroom"]).groupby(["method", "half"], sort=False):
        if len(group) < 5:
            continue
        y = group["log_ratio"].to_numpy()
        row = {"method": method, "half": half, "teachers": len(group)}
        for x in ("gap", "log_headroom", "alpha"):
            *_, row[f"r_{x}"], row[f"p_{x}"] = gap_gain_fit(group[x].to_numpy(), y)
        (_, row["b_gap"], row["b_headroom"]), (_, row["p_b_gap"], row["p_b_headroom"]) = least_squares(
            [group["gap"].to_numpy(), group["log_headroom"].to_numpy()], y)
        parts = group.dropna(subset=["log_offset"])
        if len(parts) >= 3:
            for name, part in (("offset", parts["log_offset"]), ("split", parts["log_ratio"] - parts["log_offset"])):
                *_, row[f"r_{name}"], row[f"p_{name}"] = gap_gain_fit(parts["log_headroom"].to_numpy(), part.to_numpy())
        table.append(row)
    return pd.DataFrame(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gap_gain_relation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="folder whose experiment folders replace the committed experiments/results ones of "
                             "the same name (default: none)")
    parser.add_argument("--out", type=Path, default=None, help="CSV written (default: print only)")
    parser.add_argument("--predict", nargs="+", default=[], metavar="FOLDER",
                        help="experiment folders (paths, or names under --data or experiments/results), each "
                             "against the line of the other teachers: its measured ratio against the line's "
                             "prediction at its own gap (default: none)")
    parser.add_argument("--forecast", nargs=2, action="append", default=[], metavar=("CELL", "RATIOS"),
                        help="an ARIA-free forecast of one teacher (repeatable): CELL its region-uniform and rc "
                             "students' folders, RATIOS its folders of region-uniform and policy students, each a "
                             "folder or folders joined by '+' (default: none)")
    parser.add_argument("--forecast-cells", action="store_true",
                        help="the same forecast for every cell of fig_testbed_verdicts whose first folder ran rc and "
                             "region-uniform (CELL that folder, RATIOS the cell's folders), after --forecast's")
    args = parser.parse_args(argv)
    rows = teacher_rows(args.data)
    if rows.empty:
        parser.error("no evaluated easy-regions experiment folder of fig_gap_map's cells found")
    try:
        predicted = predictions(rows, args.data, args.predict)
        pairs = [(ratios, cell, ratios) for cell, ratios in args.forecast]
        forecast = forecasts(rows, args.data, pairs + (testbed_forecasts(args.data) if args.forecast_cells else []))
    except FileNotFoundError as error:
        parser.error(str(error))
    table = relation(rows)
    if table.empty:
        parser.error("fewer than three gate-passing teachers: no correlation to compute")
    print(table.round({"r": 3, "p": 4}).to_string(index=False))
    by_level = levels(rows)
    print("\nln ratio on the two levels (least squares) and on each alone (Pearson):")
    print(by_level.round(3).to_string(index=False))
    held_out = pd.concat([held_out_cells(rows, x) for x in PREDICTORS], ignore_index=True)
    print("\neach cell against the line of the other cells' teachers (ln ratio, measured - predicted):")
    print(held_out.round(3).to_string(index=False))
    by_headroom = headroom_relation(rows)
    print("\nln ratio on the headroom, alpha and the gap (Pearson), and on the gap and ln headroom together "
          "(least squares):")
    print(by_headroom.round(3).to_string(index=False))
    if args.out is not None:
        table.to_csv(args.out, index=False)
        by_level.to_csv(args.out.with_name(f"{args.out.stem}_levels.csv"), index=False)
        held_out.to_csv(args.out.with_name(f"{args.out.stem}_held_out.csv"), index=False)
        by_headroom.to_csv(args.out.with_name(f"{args.out.stem}_headroom.csv"), index=False)
    if not predicted.empty:
        print("\nfolders against the lines of the other teachers (x: gap or ln headroom; ratio: measured, "
              "predicted; ln residual):")
        print(predicted.round(3).to_string(index=False))
        for (method, x), own in predicted.groupby(["method", "predictor"], sort=False):
            z = own["residual"].mean() / (own["fit_sd"].iloc[0] / np.sqrt(len(own)))
            print(f"{method}, line on {x}: mean residual {own['residual'].mean():+.3f} over {len(own)} folders, "
                  f"z = {z:.2f}")
        if args.out is not None:
            predicted.to_csv(args.out.with_name(f"{args.out.stem}_predicted.csv"), index=False)
    if not forecast.empty:
        print("\nARIA-free forecasts (alpha and headroom from region-uniform's students against rc's; ratio: "
              "measured, predicted by each line; ln residual):")
        print(forecast.round(3).to_string(index=False))
        for method, own in forecast.groupby("method", sort=False):
            for name in ("headroom", "gap"):
                z = own[f"residual_{name}"].mean() / (own[f"fit_sd_{name}"].iloc[0] / np.sqrt(len(own)))
                print(f"{method}, line on the {name}: mean residual {own[f'residual_{name}'].mean():+.3f} over "
                      f"{len(own)} teachers, z = {z:.2f}")
        if args.out is not None:
            forecast.to_csv(args.out.with_name(f"{args.out.stem}_forecast.csv"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
