"""The simulators' own invariants (allocation budget, oracle, reproducibility, valid pi), the rates
study against theory, and every figure script on tiny settings."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import aria_cli
from paper_figures import __main__ as figures_main
from simulations import allocation as sim
from simulations import rates

TINY = sim.SimConfig(steps=40, batch=16, log_every=10)
POLICIES = ["rc", "uniform", "aria:beta=2:eps=0.1:a=0.2", "aria:iw=1", "exp3", "doremi:eta=0.01", "oracle",
            "progress", "progress:rate=0.05:fast=0.3:slow=0.1:eps=0.05", "oracle_reducible", "count"]


def test_every_policy_gets_the_same_update_budget():
    specs = [sim.PolicySpec.parse(p) for p in POLICIES]
    study = sim.run_study(["imbalanced", "high_floor"], specs, [0, 1], TINY)
    assert len(study.runs) == 2 * 2 * len(specs)
    for run in study.runs.values():
        assert run.samples == TINY.steps * TINY.batch
        assert run.counts.sum() == TINY.steps * TINY.batch
        assert run.pi.shape == (TINY.steps, 16)
    rows = {(r["scenario"], r["seed"]) for r in study.final}
    for key in rows:  # one final row per metric for every policy: nobody skipped or repeated
        policies = [r["policy"] for r in study.final if (r["scenario"], r["seed"]) == key and r["metric"] == "mean"]
        assert sorted(policies) == sorted(s.label for s in specs)


@settings(max_examples=12)
@given(seed=st.integers(0, 2**31 - 1), policy=st.sampled_from(POLICIES),
       scenario=st.sampled_from(sorted(sim.SCENARIOS)), switch=st.sampled_from([0.0, 0.2, 1.0]))
def test_pi_is_always_a_valid_distribution_above_the_floors(seed, policy, scenario, switch):
    world = sim.build_world(scenario, seed)
    spec = sim.PolicySpec.parse(policy)
    config = dataclasses.replace(TINY, switch=switch)
    reference = world.initial if spec.kind == "doremi" else None
    run = sim.simulate(world, config, spec, seed, reference)
    floors = spec.build(world, reference).floors
    assert np.isfinite(run.pi).all() and (run.pi >= 0).all()
    np.testing.assert_allclose(run.pi.sum(axis=1), 1.0, atol=1e-9)
    assert (run.pi >= floors - 1e-12).all()
    assert (run.discrepancy >= world.floor - 1e-12).all()  # D never goes below its floor


def test_oracle_never_worse_than_random_on_one_reducible_region():
    """Case where it must hold: K = 4 equal-share regions, all allocatable (switch = 1), only region
    0 has discrepancy (1, floor 0; the others 0 forever), no transfer, forgetting or process noise.
    The final mean discrepancy is exp(-r n_0 / B) / 4 for every policy, n_0 = draws of region 0, so
    the oracle is worse than uniform (= RC here) only if it drew region 0 less often. The oracle's
    pi_0 is exactly 1 - eps + eps/4 = 0.85 at every step, uniform's 0.25, so n_0 ~ Binomial(400,
    0.85) vs Binomial(400, 0.25); failure needs n_0 <= 200 for the oracle or >= 200 for uniform,
    probability computed below (6e-27 per seed: the false-failure rate over 5 seeds is < 1e-25)."""
    k, steps, batch = 4, 50, 8
    world = sim.World(shares=np.full(k, 0.25), seen=np.ones(k, bool), initial=np.array([1.0, 0, 0, 0]),
                      floor=np.zeros(k), rate=np.full(k, 0.1), transfer=np.eye(k))
    config = sim.SimConfig(steps=steps, batch=batch, switch=1.0, log_every=steps)
    n = steps * batch
    false_failure = stats.binom.cdf(n // 2, n, 0.85) + stats.binom.sf(n // 2 - 1, n, 0.25)
    assert 5 * false_failure < 1e-25
    for seed in range(5):
        oracle = sim.simulate(world, config, sim.PolicySpec.parse("oracle:beta=1:eps=0.2"), seed)
        np.testing.assert_allclose(oracle.pi[:, 0], 0.85, rtol=1e-12)
        for random_policy in ("uniform", "rc"):
            other = sim.simulate(world, config, sim.PolicySpec.parse(random_policy), seed)
            assert world.metrics(oracle.final)["mean"] <= world.metrics(other.final)["mean"]
            assert oracle.counts[0] > other.counts[0]


def _allocation_cli(out, seeds="2"):
    return aria_cli.main(["sim", "allocation", "--scenarios", "imbalanced,balanced", "--policies",
                          "rc,uniform,aria:beta=1:eps=0.2:a=0.05,exp3,doremi:eta=0.01,oracle,progress", "--seeds",
                          seeds, "--steps", "30", "--batch", "8", "--log-every", "10", "--out", str(out)])


def test_same_seed_gives_identical_csv(tmp_path, capsys):
    assert _allocation_cli(tmp_path / "a") == 0
    assert _allocation_cli(tmp_path / "b") == 0
    names = ["allocation_history.csv", "allocation_regions.csv", "allocation_final.csv", "allocation_config.json"]
    for name in names:
        first, second = (tmp_path / d / name for d in "ab")
        assert first.stat().st_size > 0 and first.read_bytes() == second.read_bytes(), name
    assert "paired ratio to RC" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["allocation", "rates"])
def test_help_shows_units_and_defaults(command, capsys):
    with pytest.raises(SystemExit) as done:
        aria_cli.main(["sim", command, "--help"])
    assert done.value.code == 0
    assert "default" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--scenarios", "nowhere"], ["--policies", "aria:gamma=1"],
                                  ["--policies", "bandit"], ["--seeds", "0"],
                                  ["--scenarios", "testbed:tau=2"], ["--scenarios", "testbed:zipf=1"],
                                  ["--policies", "progress:rate=0"], ["--study", "map", "--workers", "-1"],
                                  ["--policies", "aria:lag=-1"], ["--policies", "aria:lag=0.5"]])
def test_allocation_cli_rejects_bad_input(argv, tmp_path, capsys):
    assert aria_cli.main(["sim", "allocation", *argv, "--out", str(tmp_path)]) == 2
    assert "aria: error:" in capsys.readouterr().err


def test_aria_lag_delays_what_the_tracker_sees():
    """aria:lag=L (`aria distill --feedback-lag`): the draw of step t knows the losses up to step
    t - 1 - L. With lag 1 the second step's pi is still the first's (nothing seen yet); with lag 0
    it has moved; a lag past the run's end never shows the tracker anything."""
    world = sim.build_world("testbed:k=12:s=1.2:tau=0", 0)
    config = sim.SimConfig(steps=6, batch=64, log_every=1)
    runs = {lag: sim.simulate(world, config, sim.PolicySpec.parse(f"aria:beta=1:eps=0.2:a=0.5:lag={lag}"), 0)
            for lag in (0, 1, 10)}
    assert not np.allclose(runs[0].pi[1], runs[0].pi[0])
    assert np.array_equal(runs[1].pi[1], runs[1].pi[0]) and not np.allclose(runs[1].pi[2], runs[1].pi[1])
    assert (runs[10].pi == runs[10].pi[0]).all() and np.isnan(runs[10].estimates[-1]).all()
    assert sim.PolicySpec.parse("aria:lag=1").label.endswith("lag=1") and "lag" not in sim.PolicySpec.parse("aria").label


RATES_TINY = rates.RatesConfig(paths=200, window=1000, num_steps_grid=7, p_grid=(0.05, 0.1, 0.25, 0.5, 1.0),
                               running_mean_steps=400)


def test_observation_probability_slope_is_minus_two_thirds():
    """Tolerance 0.1 on the fitted slope of log MSE on log p. At these p the exact steady-state MSE
    has slope about -0.687 (the -2/3 law is asymptotic). The Monte Carlo standard error of the
    slope follows from the per-point relative standard errors (independent points); the test
    requires the remaining margin to exceed 4.5 of them, so a false failure has probability
    < 1e-5 under the normal approximation (the seed is fixed, so the test is deterministic)."""
    rows, summary = rates.observation_sweep(RATES_TINY, np.random.default_rng(0))
    log_p = np.log([r["p"] for r in rows])
    weights = (log_p - log_p.mean()) / np.square(log_p - log_p.mean()).sum()
    slope_se = np.sqrt(np.sum(np.square(weights * [r["se"] / r["mse"] for r in rows])))
    bias = abs(summary["p_slope_theory"] + 2 / 3)
    assert bias < 0.03 and 0.1 - bias > 4.5 * slope_se
    assert abs(summary["p_slope"] + 2 / 3) < 0.1


def test_step_sweep_matches_theory_and_optima():
    """Worst-case drift: measured steady-state MSE = f(a) within 6 standard errors at every a
    (9 Bonferroni-corrected points: false-failure rate < 2e-8 under the normal approximation).
    The reference constants are ordered as the theory says."""
    rows, s = rates.step_sweep(RATES_TINY, np.random.default_rng(1))
    for row in rows:
        assert abs(row["mse"] - row["theory"]) < 6 * row["se"] + 1e-12, row
    assert s["minimax_lower_bound"] < s["f_at_a_star"] <= s["f_closed_form"]
    assert s["kalman_mse"] <= min(r["theory"] for r in rows if r["drift"] == "random_walk") + 1e-12
    a = sorted({r["a"] for r in rows})
    assert a[0] < s["kalman_gain"] and a[-1] > s["a_star_exact"]  # the grid spans both optima


def test_running_mean_lag_grows_while_tracker_stays_bounded():
    rows, s = rates.running_mean_study(RATES_TINY, np.random.default_rng(2))
    run_mean = [r for r in rows if r["tracker"] == "running_mean"]
    assert s["running_mean_final_mse"] > 30 * s["tracker_final_mse"]  # theory: 74 after 400 steps
    late = [r for r in run_mean if r["t"] >= 100]
    # theory delta^2 (t-1)^2/4 + sigma^2/t: relative error of a mean of 200 paths is small here
    assert all(abs(r["mse"] / r["theory"] - 1) < 0.3 for r in late)


FIGURE_CONFIGS = {
    "fig_tracking_envelope": lambda m: dataclasses.replace(m.CONFIG, paths=200, steps=60),
    "fig_coverage": lambda m: dataclasses.replace(m.CONFIG, paths=2000, steps=60),
    "fig_step_size": lambda m: dataclasses.replace(RATES_TINY, paths=50, window=200, num_steps_grid=5),
    "fig_observation_rate": lambda m: dataclasses.replace(RATES_TINY, paths=50, window=200, p_grid=(0.1, 0.3, 1.0)),
    "fig_running_mean": lambda m: dataclasses.replace(RATES_TINY, paths=50, running_mean_steps=200),
    "fig_allocation_policies": lambda m: m.Config(scenarios=("imbalanced", "balanced"),
                                                  policies=("rc", "uniform", "aria", "doremi:eta=0.01"),
                                                  seeds=2, sim=sim.SimConfig(steps=30, batch=8, log_every=30)),
    "fig_allocation_pi": lambda m: dataclasses.replace(m.CONFIG, sim=sim.SimConfig(steps=60, batch=8, log_every=10)),
    "fig_progress_allocation": lambda m: dataclasses.replace(m.CONFIG, scenario="imbalanced",
                                                             sim=sim.SimConfig(steps=60, batch=8, log_every=10)),
    # the experiment figures read the committed results in experiments/results
    "fig_experiment_groups": lambda m: m.CONFIG,
    "fig_experiment_allocation": lambda m: m.CONFIG,
    "fig_experiment_samples": lambda m: m.CONFIG,
    "fig_testbed_map": lambda m: m.CONFIG,
    "fig_testbed_words": lambda m: m.CONFIG,
    "fig_testbed_zipf": lambda m: m.CONFIG,
    "fig_testbed_response": lambda m: m.CONFIG,
    "fig_testbed_pi": lambda m: m.CONFIG,
    "fig_testbed_regions": lambda m: m.CONFIG,
    "fig_testbed_map48": lambda m: m.CONFIG,
    "fig_testbed_verdicts": lambda m: m.CONFIG,
    "fig_gap_map": lambda m: m.CONFIG,
    "fig_headroom_map": lambda m: m.CONFIG,
}


def test_every_figure_script_is_covered():
    assert sorted(FIGURE_CONFIGS) == figures_main.figure_modules()


@pytest.mark.parametrize("name", sorted(FIGURE_CONFIGS))
def test_figure_computes_and_writes_png_and_pdf(name, tmp_path, monkeypatch):
    module = __import__(f"paper_figures.{name}", fromlist=["main"])
    assert module.__doc__.strip().splitlines()[0].endswith(".")  # the caption's first line
    monkeypatch.setattr(module, "CONFIG", FIGURE_CONFIGS[name](module))
    paths = module.main(tmp_path)
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)


def test_verdict_ratios_are_the_experiments_own():
    """fig_testbed_verdicts' per-seed ratios (from eval/summary.csv, folders merged as the map's) equal the
    ones `aria experiment` wrote to each folder's allocation_split.csv (from eval/discrepancy.csv), and its
    intervals leave out 1 exactly where the paired test is significant."""
    import pandas as pd

    from aria_train.evaluation.allocation_split import paired_test
    from paper_figures import fig_testbed_verdicts as verdicts
    from paper_figures.common import experiment_dir

    compared = 0
    for _, folders in verdicts.CONFIG.cells:
        for folder in folders:
            path = experiment_dir(None, folder) / "allocation_split.csv"
            if path.is_file():
                split = pd.read_csv(path).merge(verdicts.cell_ratios(None, (folder,), verdicts.CONFIG.reference),
                                                on=["method", "seed"], suffixes=("_split", "_figure"))
                assert split["ratio_figure"].to_numpy() == pytest.approx(split["ratio_split"].to_numpy(), rel=1e-12)
                compared += len(split)
        for _, test in paired_test(verdicts.cell_ratios(None, folders, verdicts.CONFIG.reference)).iterrows():
            low, high = verdicts.interval(test)
            assert low < test["ratio"] < high and (not low <= 1 <= high) == test["significant"]
    assert compared >= 100  # every committed folder with region-uniform and a policy (331 student pairs)


def test_gap_map_reads_each_teachers_gap_and_verdict():
    """fig_gap_map's x is the region-uniform students' discrepancy on the easy regions over the hard ones'
    (docs/test_bed.md: 0.50 for the six-easy cell's teacher seed 3, 12.4 against 24.9 x 1e-3; the easy
    regions of these worlds are 1, 2, 3, 5, 10 and 11, every second in rarity order), and a cell's large
    marker is the teacher-means test of scripts/pooled_allocation_test.py (0.935 over five teachers)."""
    import pandas as pd

    from paper_figures import fig_gap_map as gap_map
    from paper_figures.common import experiment_dir

    folder = experiment_dir(None, "glyph_easy_tau0_seeds_teacher2000_seed3")
    rows = pd.read_csv(folder / "eval" / "discrepancy.csv")
    rows = rows[(rows["t"] == "pt") & rows["model"].str.startswith("region-uniform-")]
    easy = rows["region"].isin([1, 2, 3, 5, 10, 11])
    by_hand = rows.loc[easy, "discrepancy"].mean() / rows.loc[~easy, "discrepancy"].mean()
    assert gap_map.difficulty_gap(folder) == pytest.approx(by_hand, rel=1e-12)
    assert gap_map.difficulty_gap(folder) == pytest.approx(12.4 / 24.9, abs=0.005)
    folders = next(folders for label, _, _, folders in gap_map.CONFIG.cells if label.startswith("easy regions own 4 "))
    points = gap_map.teacher_points(None, folders)
    beta1 = points[points["method"] == "aria"]
    assert beta1["passes"].sum() == 5 and (~beta1["passes"]).sum() == 3
    _, ratio, low, high = gap_map.cell_point(beta1)
    assert ratio == pytest.approx(0.9348, abs=5e-5) and low < ratio < high < 1



def _script(name: str):
    """scripts/NAME.py as a module (scripts/ is not a package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_folders_divides_each_policy_ratio_by_the_same_seed_in_the_baseline(tmp_path):
    """scripts/paired_folders.py: per policy and shared seed, B's ratio over A's; region-uniform's all-regions
    p(t)-weighted level in B over A's on the same seed; seeds or policies in one folder only are left out; a folder
    without results is a one-line error."""
    import pandas as pd

    paired = _script("paired_folders")

    def folder(name, ratios, levels):
        path = tmp_path / name
        (path / "eval").mkdir(parents=True)
        pd.DataFrame([{"method": m, "seed": s, "ratio": r} for (m, s), r in ratios.items()]).to_csv(
            path / "allocation_split.csv", index=False)
        rows = [{"group": group, "mean": level * scale, "model": f"region-uniform-seed{seed}", "metric": metric}
                for seed, level in levels.items() for group, scale in (("all", 1.0), ("head", 3.0))
                for metric in ("discrepancy_pt", "discrepancy")]
        pd.DataFrame(rows).to_csv(path / "eval" / "summary.csv", index=False)
        return path

    a = folder("a", {("aria-b2", 0): 0.90, ("aria-b2", 1): 0.95, ("aria", 0): 0.97}, {0: 0.020, 1: 0.030})
    b = folder("b", {("aria-b2", 0): 0.99, ("aria-b2", 1): 0.95, ("aria-b2", 2): 0.80}, {0: 0.022, 1: 0.030, 2: 0.1})
    ratios = paired.paired_ratios(a, b).set_index(["method", "seed"])["ratio"]
    assert ratios[("aria-b2", 0)] == pytest.approx(0.99 / 0.90) and ratios[("aria-b2", 1)] == pytest.approx(1.0)
    assert ratios[("region-uniform level", 0)] == pytest.approx(1.1)
    assert sorted(ratios.index) == [("aria-b2", 0), ("aria-b2", 1), ("region-uniform level", 0),
                                    ("region-uniform level", 1)]
    assert paired.main([str(a), str(b)]) == 0
    with pytest.raises(SystemExit):
        paired.main([str(a), str(tmp_path / "missing")])


def test_gap_gain_held_out_cell_is_predicted_by_the_other_cells_line_only():
    """held_out_cells: a cell's residuals are taken about the line fitted over the other cells' teachers alone
    (moving the cell's own points does not move its line), z divides by the others' residual sd over sqrt(n), and
    the flat residual is against the others' mean; cells whose others are under three teachers are left out."""
    import pandas as pd

    gap_gain = _script("gap_gain_relation")
    gap = np.array([0.3, 0.5, 0.7, 0.4, 0.6, 0.9, 1.1, 0.8])
    log_ratio = np.array([-0.10, -0.06, -0.01, -0.09, -0.03, 0.00, 0.02, 0.05])
    cells = ["a", "a", "a", "b", "b", "b", "b", "c"]
    rows = pd.DataFrame({"cell": cells, "method": "aria", "half": gap_gain.HALVES[0], "gap": gap,
                         "log_ratio": log_ratio})
    table = gap_gain.held_out_cells(rows).set_index("cell")
    others = rows["cell"] != "a"
    slope, intercept = np.polyfit(gap[others], log_ratio[others], 1)
    spread = np.std(log_ratio[others] - (intercept + slope * gap[others]), ddof=2)
    mean = np.mean(log_ratio[~others] - (intercept + slope * gap[~others]))
    assert table.loc["a", "mean_residual"] == pytest.approx(mean)
    assert table.loc["a", "z"] == pytest.approx(mean / (spread / np.sqrt(3)))
    assert table.loc["a", "flat_residual"] == pytest.approx(log_ratio[~others].mean() - log_ratio[others].mean())
    moved = rows.assign(log_ratio=np.where(others, log_ratio, log_ratio + 0.5))
    moved_table = gap_gain.held_out_cells(moved).set_index("cell")
    assert moved_table.loc["a", "mean_residual"] == pytest.approx(mean + 0.5)
    assert moved_table.loc["a", "others_sd"] == pytest.approx(spread)
    assert sorted(table.index) == ["a", "b", "c"]
    assert list(gap_gain.held_out_cells(rows[rows["cell"] != "c"].iloc[1:]).query("cell == 'b'")["teachers"]) == []


def test_gap_gain_relation_reads_the_figures_teachers_and_halves_that_share_no_student(tmp_path):
    """scripts/gap_gain_relation.py: over all seeds its r is Pearson's r of fig_gap_map's own teacher points
    (gap, ln ratio), and its levels table's r that of the hard regions' level (the gap's denominator); in the
    halves the gap comes from the region-uniform students of one parity of seeds and the ratio from the pairs of
    the other parity only; --predict's residual is a folder's ln ratio about the line of all the other teachers."""
    import pandas as pd

    from paper_figures import fig_gap_map as gap_map
    from paper_figures.common import experiment_dir

    gap_gain = _script("gap_gain_relation")
    folder = experiment_dir(None, "glyph_easy_c8_tau0_seeds_teacher2000_seed3")
    assert gap_map.difficulty_gap(folder, range(6)) == gap_map.difficulty_gap(folder)
    rows = pd.read_csv(folder / "eval" / "discrepancy.csv")
    rows = rows[(rows["t"] == "pt") & rows["model"].isin([f"region-uniform-seed{s}" for s in (0, 2, 4)])]
    easy = rows["region"].isin([1, 2, 3, 5, 10, 11])
    by_hand = rows.loc[easy, "discrepancy"].mean() / rows.loc[~easy, "discrepancy"].mean()
    assert gap_map.difficulty_gap(folder, (0, 2, 4)) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand != pytest.approx(gap_map.difficulty_gap(folder))  # the odd seeds' students are left out

    assert gap_gain.main(["--out", str(tmp_path / "relation.csv")]) == 0
    table = pd.read_csv(tmp_path / "relation.csv").set_index(["method", "half", "scope"])
    points = pd.concat([gap_map.teacher_points(None, folders) for *_, folders in gap_map.CONFIG.cells]).query("passes")
    for method, own in points.groupby("method"):
        r, p = stats.pearsonr(own["gap"], np.log(own["ratio"]))
        row = table.loc[(method, "all seeds", "all cells")]
        assert (row["teachers"], row["r"], row["p"]) == (len(own), pytest.approx(r), pytest.approx(p))
    levels = pd.read_csv(tmp_path / "relation_levels.csv").set_index("method")
    for method, own in points.groupby("method"):
        hard = [gap_map.easy_and_hard(experiment_dir(None, name))[1] for name in own["folder"]]
        r, p = stats.pearsonr(np.log(hard), np.log(own["ratio"]))
        assert (levels.loc[method, "r_hard"], levels.loc[method, "p_hard"]) == (pytest.approx(r), pytest.approx(p))
    halves = gap_gain.teacher_rows(None)
    held_out = pd.read_csv(tmp_path / "relation_held_out.csv")
    assert len(held_out) == 2 * 2 * halves["cell"].nunique()  # every cell, beta 1 and beta 2, gap and headroom
    predicted = gap_gain.predictions(halves, None, [folder.name]).query("predictor == 'gap'").set_index("method")
    fitted = halves[(halves["half"] == gap_gain.HALVES[0]) & (halves["method"] == "aria-b2")]
    own = fitted[fitted["folder"] == folder.name].iloc[0]
    others = fitted[fitted["folder"] != folder.name]  # a fitted teacher is left out of its own prediction's line
    slope, intercept = np.polyfit(others["gap"], others["log_ratio"], 1)
    assert predicted.loc["aria-b2", "x"] == pytest.approx(gap_map.difficulty_gap(folder), rel=1e-12)
    assert predicted.loc["aria-b2", "residual"] == pytest.approx(own["log_ratio"] - intercept - slope * own["gap"])
    by_path = gap_gain.predictions(halves, None, [str(folder)]).query("predictor == 'gap'").set_index("method")
    assert by_path.loc["aria-b2", "residual"] == pytest.approx(predicted.loc["aria-b2", "residual"], rel=1e-12)
    with pytest.raises(SystemExit):  # a folder that is not there: a one-line error
        gap_gain.main(["--predict", "no_such_experiment"])
    half = halves[(halves["folder"] == folder.name) & (halves["method"] == "aria")].set_index("half")
    assert half.loc["gap even, ratio odd", "gap"] == pytest.approx(by_hand, rel=1e-12)
    assert half.loc["gap even, ratio odd", "seeds"] == half.loc["gap odd, ratio even", "seeds"] == 3
    split = pd.read_csv(folder / "allocation_split.csv").query("method == 'aria'")
    odd_seeds = np.log(split[split["seed"] % 2 == 1]["ratio"]).mean()
    assert half.loc["gap even, ratio odd", "log_ratio"] == pytest.approx(odd_seeds)


def test_headroom_relation_reads_each_teachers_headroom_from_its_half_of_the_seeds(tmp_path):
    """scripts/gap_gain_relation.py's fourth table: over all seeds its r with ln headroom is Pearson's r of
    fig_headroom_map's points; in a half the headroom (and alpha) come from the policy and region-uniform students
    of the gap's parity of seeds only (cell_headroom of those seeds, alpha refitted on them); the joint fit's
    coefficients and p are ordinary least squares'; --predict gives the headroom line's prediction beside the
    gap line's."""
    import pandas as pd

    from paper_figures import fig_gap_map as gap_map
    from paper_figures.common import experiment_dir
    from simulations.headroom import cell_headroom, headroom
    from simulations.measured import region_draws

    gap_gain = _script("gap_gain_relation")
    folder = experiment_dir(None, "glyph_easy_c12_tau0_seeds_teacher2000_seed1_cpu")
    rows = region_draws([folder], "region-uniform")
    even = headroom(rows[rows["seed"].isin(["0", "2", "4"])], folder.name, "region-uniform")
    every = cell_headroom([folder])
    assert cell_headroom([folder], (0, 2, 4)).equals(even)
    assert set(even["seed"]) == {0, 2, 4} and even["alpha"].iloc[0] != pytest.approx(every["alpha"].iloc[0])
    best, alpha = gap_map.teacher_headroom([folder], (0, 2, 4))
    assert (best, alpha) == (pytest.approx(np.exp(np.log(even["best_over_uniform"]).mean())),
                             pytest.approx(even["alpha"].iloc[0]))

    halves = gap_gain.teacher_rows(None)
    own = halves[(halves["folder"] == folder.name) & (halves["method"] == "aria")].set_index("half")
    assert own.loc["gap even, ratio odd", "log_headroom"] == pytest.approx(np.log(best))
    assert own.loc["all seeds", "log_headroom"] == pytest.approx(np.log(gap_map.teacher_headroom([folder])[0]))
    split = pd.read_csv(folder / "allocation_split.csv").query("method == 'aria' and seed % 2 == 1")
    assert own.loc["gap even, ratio odd", "log_offset"] == pytest.approx(np.log(split["offset"]).mean())

    table = gap_gain.headroom_relation(halves).set_index(["method", "half"])
    points = pd.concat([gap_map.teacher_points(None, folders) for *_, folders in gap_map.CONFIG.cells]).query("passes")
    for method, points_of in points.groupby("method"):
        r, p = stats.pearsonr(np.log(points_of["headroom"]), np.log(points_of["ratio"]))
        row = table.loc[(method, "all seeds")]
        assert (row["teachers"], row["r_log_headroom"], row["p_log_headroom"]) == (
            len(points_of), pytest.approx(r), pytest.approx(p))
    x = np.array([0.1, 0.4, 0.2, 0.9, 0.7, 0.5])
    y = np.array([1.0, 1.9, 1.3, 3.2, 2.2, 2.1])
    (intercept, slope), (_, p_slope) = gap_gain.least_squares([x], y)
    fit = stats.linregress(x, y)
    assert (intercept, slope, p_slope) == (pytest.approx(fit.intercept), pytest.approx(fit.slope),
                                           pytest.approx(fit.pvalue))

    predicted = gap_gain.predictions(halves, None, [folder.name]).set_index(["method", "predictor"])
    fitted = halves[(halves["half"] == gap_gain.HALVES[0]) & (halves["method"] == "aria-b2")]
    others = fitted[fitted["folder"] != folder.name]
    slope, intercept = np.polyfit(others["log_headroom"], others["log_ratio"], 1)
    mine = fitted[fitted["folder"] == folder.name].iloc[0]
    assert predicted.loc[("aria-b2", "log_headroom"), "residual"] == pytest.approx(
        mine["log_ratio"] - intercept - slope * mine["log_headroom"])
    assert gap_gain.main(["--out", str(tmp_path / "relation.csv")]) == 0
    written = pd.read_csv(tmp_path / "relation_headroom.csv").set_index(["method", "half"])
    assert written["r_alpha"].to_numpy() == pytest.approx(table.loc[written.index, "r_alpha"].to_numpy())


def test_forecast_fits_alpha_on_region_uniform_against_rc_and_predicts_with_the_fitted_lines(tmp_path, capsys):
    """--forecast CELL RATIOS: alpha and headroom from CELL's region-uniform students against its rc students alone
    (cell_headroom fit_on region-uniform), the ratio over RATIOS' seeds, each prediction the line over fig_gap_map's
    teachers at the forecast's own x; policies without a line (progress) are left out; a CELL without rc is a
    one-line error."""
    import pandas as pd

    from paper_figures.common import experiment_dir
    from paper_figures.fig_testbed_verdicts import cell_ratios
    from simulations.headroom import cell_headroom

    gap_gain = _script("gap_gain_relation")
    rows = gap_gain.teacher_rows(None)
    folder = experiment_dir(None, "glyph_easy_tau0")  # the first six-easy cell: rc among its students
    table = gap_gain.forecasts(rows, None, [("first", "glyph_easy_tau0", "glyph_easy_tau0")]).set_index("method")
    assert sorted(table.index) == ["aria", "aria-b2"]
    free = cell_headroom([folder], fit_on=("region-uniform",))
    best = np.exp(np.log(free["best_over_uniform"]).mean())
    assert (table["alpha"].iloc[0], table["headroom"].iloc[0]) == (pytest.approx(free["alpha"].iloc[0]),
                                                                   pytest.approx(best))
    fitted = rows[(rows["half"] == gap_gain.HALVES[0]) & (rows["method"] == "aria-b2")]
    slope, intercept = np.polyfit(fitted["log_headroom"], fitted["log_ratio"], 1)
    measured = np.log(cell_ratios(None, ("glyph_easy_tau0",), "region-uniform").query("method == 'aria-b2'")["ratio"])
    assert table.loc["aria-b2", "predicted_headroom"] == pytest.approx(np.exp(intercept + slope * np.log(best)))
    assert table.loc["aria-b2", "residual_headroom"] == pytest.approx(measured.mean() - intercept - slope * np.log(best))
    assert table.loc["aria-b2", "seeds"] == len(measured) == 3
    assert gap_gain.main(["--forecast", str(folder), "glyph_easy_tau0", "--out", str(tmp_path / "r.csv")]) == 0
    assert pd.read_csv(tmp_path / "r_forecast.csv")["headroom"].to_numpy() == pytest.approx([best, best])
    with pytest.raises(SystemExit) as done:
        gap_gain.main(["--forecast", "glyph_easy_c8_tau0_seeds_teacher2000_seed1", "glyph_easy_tau0"])
    assert done.value.code == 2 and "no rc and region-uniform students" in capsys.readouterr().err

    # --forecast-cells: every verdict cell whose first folder ran rc, its folders merged as the figure merges them;
    # a world without easy regions stands at gap 1, where the gap line gives its intercept plus its slope
    from paper_figures.fig_testbed_verdicts import CONFIG as verdicts

    cells = gap_gain.testbed_forecasts(None)
    labels = [label for label, *_ in cells]
    assert "tau = 0, six easy regions" in labels and "tau = 0, blind unseen tail" in labels
    assert not any(label.startswith("six easy regions of") for label in labels)  # those ran no rc
    tau0 = gap_gain.forecasts(rows, None, cells).set_index(["teacher", "method"]).loc[("tau = 0", "aria")]
    folders = dict(verdicts.cells)["tau = 0"]
    merged = cell_ratios(None, folders, "region-uniform").query("method == 'aria'")
    assert tau0["gap"] == 1.0 and tau0["seeds"] == len(merged) == 11
    gap_line = rows[(rows["half"] == gap_gain.HALVES[0]) & (rows["method"] == "aria")]
    slope, intercept = np.polyfit(gap_line["gap"], gap_line["log_ratio"], 1)
    assert tau0["predicted_gap"] == pytest.approx(np.exp(intercept + slope))

def test_figures_read_simulation_csvs(tmp_path, monkeypatch):
    """With --data, the figures plot the CSVs of `aria sim rates` / `aria sim allocation`."""
    data = tmp_path / "data"
    assert _allocation_cli(data / "allocation", seeds="2") == 0
    rows = rates.run_rates(dataclasses.replace(RATES_TINY, paths=30, window=200, num_steps_grid=3,
                                               p_grid=(0.1, 0.3, 1.0), running_mean_steps=200))
    rates.write_rates(rows, data / "rates")
    for name in ("fig_step_size", "fig_observation_rate", "fig_running_mean", "fig_allocation_policies",
                 "fig_allocation_pi", "fig_progress_allocation"):
        module = __import__(f"paper_figures.{name}", fromlist=["main"])
        monkeypatch.setattr(module, "CONFIG", FIGURE_CONFIGS[name](module))
        for study in ("run_study", "run_final_study", "simulate"):  # would raise if the figure recomputed
            monkeypatch.setattr(sim, study, None)
        for study in ("step_sweep", "observation_sweep", "running_mean_study"):
            monkeypatch.setattr(rates, study, None)
        paths = module.main(tmp_path / "out", data)
        assert all(p.stat().st_size > 1000 for p in paths)
