"""The headroom of allocation over region-uniform in a measured cell (simulations.headroom)."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulations.headroom import CELLS, best_allocation, headroom, main
from simulations.measured import region_draws

RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "results"


def objective(c, s, alpha):
    return float(np.sum(c * s ** -alpha))


@given(st.lists(st.floats(0.05, 20.0), min_size=2, max_size=16), st.floats(0.05, 2.0), st.integers(0, 2**31 - 1))
def test_best_allocation_spends_the_budget_and_no_other_split_does_better(c, alpha, seed):
    c = np.array(c)
    best = best_allocation(c, 1000.0, alpha)
    assert best.sum() == pytest.approx(1000.0) and (best > 0).all()
    marginal = alpha * c * best ** -(1 + alpha)  # equal everywhere: the optimum of a convex objective
    assert marginal.max() == pytest.approx(marginal.min(), rel=1e-9)
    others = np.random.default_rng(seed).dirichlet(np.ones(len(c)), size=50) * 1000.0
    assert all(objective(c, best, alpha) <= objective(c, s, alpha) * (1 + 1e-12) for s in others)


@pytest.mark.parametrize("alpha", [0.1, 0.3, 1.0, 3.0])
def test_aria_beta_1_fixed_point_is_the_best_allocation(alpha):
    """pi proportional to the current discrepancy c * s ** -alpha, iterated from uniform draws
    with a slow step (as the tracker's running estimate moves; in log draws, which contracts for
    every alpha here), settles on the best allocation whatever alpha is (the module docstring's claim)."""
    c = np.exp(np.random.default_rng(0).normal(0, 0.8, 12))
    s = np.full(12, 1000.0 / 12)
    for _ in range(2000):
        d = c * s ** -alpha
        s = np.exp(0.8 * np.log(s) + 0.2 * np.log(1000.0 * d / d.sum()))
    np.testing.assert_allclose(s, best_allocation(c, 1000.0, alpha), rtol=1e-6)


def test_region_draws_are_ratios_to_rc_on_the_same_seed_and_region():
    rows = region_draws([RESULTS / "glyph_zipf_s16"])
    rc = rows[rows["method"] == "rc"]
    assert len(rows) == 5 * 3 * 12 and (rc["ratio"] == 1).all() and (rc["switched_ratio"] == 1).all()
    uniform = rows[(rows["method"] == "region-uniform") & (rows["seed"] == "0")].set_index("region")
    rc0 = rc[rc["seed"] == "0"].set_index("region")
    assert (uniform["switched"] / rc0["switched"]).to_numpy() == pytest.approx(uniform["switched_ratio"].to_numpy())


def test_headroom_of_the_committed_cells():
    """On every committed 12-region cell: the best allocation is no worse than region-uniform's
    own draws (which the model reproduces exactly, so this checks the optimiser on real constants)
    and the model predicts RC's loss to region-uniform in direction at Zipf 1.2 and 1.6."""
    for cell in CELLS:
        table = headroom(region_draws([RESULTS / name for name in cell]), cell[0])
        assert (table["best_over_uniform"] <= 1).all() and (table["alpha"] > 0).all(), cell
        if cell[0] in ("glyph_demo_gpu", "glyph_zipf_s16"):
            assert (table["rc_predicted"] > 1.1).all() and (table["rc_measured"] > 1.1).all()


def test_cli_writes_the_table(tmp_path, capsys):
    assert main([str(RESULTS / "glyph_zipf_s0"), "--out", str(tmp_path / "h.csv")]) == 0
    assert "best_over_uniform" in capsys.readouterr().out and (tmp_path / "h.csv").is_file()
    with pytest.raises(SystemExit) as done:
        main([str(tmp_path)])  # not an experiment folder: a one-line usage error
    assert done.value.code == 2 and "not an evaluated experiment folder" in capsys.readouterr().err


def test_the_48_region_tau_05_loss_is_an_offset_not_a_response_to_the_split():
    """The committed cell: ARIA's ratio to region-uniform is above 1 in every seed, and almost all
    of it is the offset (its regions do not follow the draws ARIA moved: |slope| < 0.05)."""
    table = headroom(region_draws([RESULTS / "glyph_map_tau05"]), "glyph_map_tau05")
    assert (table["aria_measured"] > 1).all() and (table["aria_split_slope"].abs() < 0.05).all()
    assert (abs(table["aria_offset"] - table["aria_measured"]) < 0.01).all()


def test_headroom_without_rc_is_fitted_against_region_uniform(tmp_path, capsys):
    """An experiment of region-uniform and policies only (the 8-easy-cells world's teacher seed 1): the law is
    fitted against region-uniform's students, whose own rows are left out of the fit; the measured ratios and
    offsets are the experiment's own allocation_split.csv; without region-uniform students the CLI says so in
    one line."""
    import shutil

    import pandas as pd

    from simulations.headroom import cell_headroom, fit_alpha

    folder = RESULTS / "glyph_easy_c8_tau0_seeds_teacher2000_seed1"
    table = cell_headroom([folder]).set_index("seed")
    assert (table["reference"] == "region-uniform").all() and (table["alpha"] > 0).all()
    rows = region_draws([folder], reference="region-uniform")
    uniform = rows[rows["method"] == "region-uniform"]
    assert (uniform["ratio"] == 1).all() and (uniform["switched_ratio"] == 1).all()
    moved = rows[rows["method"] != "region-uniform"]
    x, y = np.log2(moved["switched_ratio"].to_numpy(float)), np.log(moved["ratio"].to_numpy(float))
    assert table["alpha"].iloc[0] == pytest.approx(-np.polyfit(x, y, 1)[0] / np.log(2), rel=1e-12)
    assert fit_alpha(rows, "region-uniform")[0] != pytest.approx(fit_alpha(rows, "rc")[0])  # the origin points matter
    split = pd.read_csv(folder / "allocation_split.csv").pivot(index="seed", columns="method")
    for method in ("aria", "aria-b2"):
        assert table[f"{method}_measured"].to_numpy() == pytest.approx(split["ratio"][method].to_numpy(), rel=1e-9)
        assert table[f"{method}_offset"].to_numpy() == pytest.approx(split["offset"][method].to_numpy(), rel=1e-9)
    policies_only = tmp_path / "policies_only"
    shutil.copytree(folder, policies_only, ignore=shutil.ignore_patterns("region-uniform-seed*"))
    with pytest.raises(SystemExit) as done:
        main([str(policies_only)])
    assert done.value.code == 2 and "no region-uniform students" in capsys.readouterr().err


def test_headroom_each_folder_its_own_cell(tmp_path):
    """--each: two teachers' folders (the 8-easy-cells world's seeds 1 and 3, students of the same names) give
    each teacher's own table, as cell_headroom of that folder alone; without it the later folder's students
    replace the earlier's, so only the last teacher's measured ratios would be left."""
    import pandas as pd

    from simulations.headroom import cell_headroom

    folders = [RESULTS / f"glyph_easy_c8_tau0_seeds_teacher2000_seed{seed}" for seed in (1, 3)]
    assert main([*map(str, folders), "--each", "--out", str(tmp_path / "each.csv")]) == 0
    each = pd.read_csv(tmp_path / "each.csv")
    for folder in folders:
        own = cell_headroom([folder])
        mine = each[each["experiment"] == folder.name].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, own, check_dtype=False, rtol=1e-9)
    assert main([*map(str, folders), "--out", str(tmp_path / "one.csv")]) == 0
    one = pd.read_csv(tmp_path / "one.csv")
    assert len(one) == 6 and one["aria_measured"].to_numpy() == pytest.approx(
        each[each["experiment"] == folders[1].name]["aria_measured"].to_numpy(), rel=1e-9)


def test_fit_on_region_uniform_leaves_every_tracking_student_out(tmp_path, capsys):
    """--fit-on region-uniform in a cell with rc (the first six-easy cell): alpha is the slope over region-uniform's
    rows against rc's alone (ARIA's and the progress policy's students do not move it), smaller there than the
    default's over every policy; an unknown method, or one the cell lacks, is a one-line usage error."""
    from simulations.headroom import cell_headroom, fit_alpha

    folder = RESULTS / "glyph_easy_tau0"
    rows = region_draws([folder])
    uniform = rows[(rows["method"] == "region-uniform")]
    x, y = np.log2(uniform["switched_ratio"].to_numpy(float)), np.log(uniform["ratio"].to_numpy(float))
    free = cell_headroom([folder], fit_on=("region-uniform",))
    assert free["alpha"].iloc[0] == pytest.approx(-np.polyfit(x, y, 1)[0] / np.log(2), rel=1e-12)
    moved = rows.assign(ratio=np.where(rows["method"] == "aria", rows["ratio"] * 3.0, rows["ratio"]))
    assert fit_alpha(moved, "rc", ("region-uniform",)) == fit_alpha(rows, "rc", ("region-uniform",))
    assert free["alpha"].iloc[0] < cell_headroom([folder])["alpha"].iloc[0]
    assert main([str(folder), "--fit-on", "region-uniform", "--out", str(tmp_path / "free.csv")]) == 0
    for bad, message in (("aria,rc", "--fit-on: rc is not among"),
                         ("progress", "no students of --fit-on progress")):
        cell = RESULTS / "glyph_easy_c8_tau0_seeds_teacher2000_seed1"  # no progress students, no rc
        with pytest.raises(SystemExit) as done:
            main([str(cell), "--fit-on", bad])
        assert done.value.code == 2 and message in capsys.readouterr().err
