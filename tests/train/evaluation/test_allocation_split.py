"""How much of a policy's gap to region-uniform follows the draws it moved (aria_train.evaluation.allocation_split)."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aria_train.evaluation.allocation_split import allocation_split, cell_difference, split_fit, teacher_effect
from aria_train.experiment.config import ExperimentConfig
from aria_train.experiment.runner import write_allocation_split
from simulations.headroom import headroom
from simulations.measured import region_draws

REPO = Path(__file__).resolve().parents[3]
CELL = REPO / "experiments" / "results" / "glyph_map_tau05"


def test_split_fit_separates_a_run_level_offset_from_the_response_to_the_split():
    """Students k times region-uniform's in every region that respond to the moved draws as s ** -a:
    exactly (-a, k), for any split; regions either run never drew are left out of the fit."""
    rng = np.random.default_rng(3)
    uniform_draws, base = rng.uniform(100, 300, 12), rng.uniform(1, 2, 12)
    draws = uniform_draws * rng.uniform(0.6, 1.6, 12)
    discrepancy = 1.013 * base * (draws / uniform_draws) ** -0.3
    slope, offset = split_fit(draws, discrepancy, uniform_draws, base)
    assert slope == pytest.approx(-0.3, abs=1e-9) and offset == pytest.approx(1.013, rel=1e-9)
    draws[0], discrepancy[0] = 0, 50.0  # no draws: no ratio of draws, and its discrepancy must not count
    assert split_fit(draws, discrepancy, uniform_draws, base) == pytest.approx((slope, offset), rel=1e-9)


def _runs(config: ExperimentConfig) -> dict:
    return {name: (method, run.seed) for name, (method, run) in config.run_configs().items()}


def test_the_committed_48_region_cell_agrees_with_the_headroom_table():
    config = ExperimentConfig.load(CELL / "experiment.json")
    table = allocation_split(pd.read_csv(CELL / "eval" / "discrepancy.csv"), _runs(config), CELL / "runs",
                             "region-uniform", ["aria", "aria-b2"])
    expected = headroom(region_draws([CELL]), CELL.name)
    for method in ("aria", "aria-b2"):
        rows = table[table["method"] == method].sort_values("seed")
        assert rows["seed"].tolist() == [0, 1, 2]
        np.testing.assert_allclose(rows["ratio"], expected[f"{method}_measured"], rtol=1e-12)
        np.testing.assert_allclose(rows["offset"], expected[f"{method}_offset"], rtol=1e-12)
        np.testing.assert_allclose(rows["slope"], expected[f"{method}_split_slope"], rtol=1e-12)
    assert (table["ratio"] > 1).all() and (table["slope"].abs() < 0.05).all()  # docs/test_bed.md: a loss that is an offset


def test_the_experiment_writes_and_prints_the_split(tmp_path, capsys):
    out = tmp_path / "exp"
    (out / "eval").mkdir(parents=True)
    shutil.copy(CELL / "eval" / "discrepancy.csv", out / "eval")
    for run in (CELL / "runs").iterdir():
        (out / "runs" / run.name).mkdir(parents=True)
        shutil.copy(run / "metrics.jsonl", out / "runs" / run.name)
    write_allocation_split(ExperimentConfig.load(CELL / "experiment.json").run_configs(), out)
    table = pd.read_csv(out / "allocation_split.csv")
    assert sorted(set(table["method"])) == ["aria", "aria-b2"] and len(table) == 6
    printed = capsys.readouterr().out
    assert "over region-uniform on the same seed" in printed
    assert "aria     2  1.021 -0.008   1.022" in printed  # docs/test_bed.md's seed 2 (ratio, slope, offset)
    test = pd.read_csv(out / "allocation_test.csv")
    assert test["method"].tolist() == ["aria", "aria-b2"] and (test["seeds"] == 3).all() and not test["significant"].any()
    assert "paired over seeds" in printed


def test_no_split_without_region_uniform_or_policies(tmp_path):
    configs = ExperimentConfig.load(CELL / "experiment.json").run_configs()
    only_rc = {name: entry for name, entry in configs.items() if entry[0] in ("rc", "aria")}
    write_allocation_split(only_rc, tmp_path)  # no region-uniform method: nothing read, nothing written
    assert not (tmp_path / "allocation_split.csv").exists()


def test_paired_test_is_a_t_test_on_log_ratios():
    """t, its critical value and the verdict against scipy's own paired test on ln ratio: a policy
    about 1% worse with an sd of 1% is significant at 15 seeds, 1% worse with a 2% spread over 3
    seeds is not; seeds_for_2pct is the first n with power 0.8 for a 2% effect."""
    from scipy import stats

    from aria_train.evaluation.allocation_split import paired_test

    rng = np.random.default_rng(7)
    ratios = np.exp(np.log(1.01) + rng.normal(0, 0.01, 15))
    split = pd.DataFrame({"method": ["aria"] * 15 + ["aria-b2"] * 3, "seed": [*range(15), *range(3)],
                          "ratio": [*ratios, 1.03, 0.99, 1.01]})
    test = paired_test(split).set_index("method")
    direct = stats.ttest_1samp(np.log(ratios), 0.0)
    assert test.loc["aria", "t"] == pytest.approx(direct.statistic, rel=1e-12)
    assert test.loc["aria", "critical"] == pytest.approx(2.1447866879, rel=1e-9)  # t_{0.975, 14}
    assert test.loc["aria", "significant"] == (direct.pvalue < 0.05)
    assert test.loc["aria", "ratio"] == pytest.approx(np.exp(np.log(ratios).mean()), rel=1e-12)
    assert test.loc["aria-b2", "seeds"] == 3 and test.loc["aria-b2", "critical"] == pytest.approx(4.3026527, rel=1e-6)
    assert test.loc["aria", "significant"] and not test.loc["aria-b2", "significant"]
    sd, n = test.loc["aria", "sd_log"], test.loc["aria", "seeds_for_2pct"]
    assert [np.sqrt(m) * np.log(1.02) / sd >= stats.t.ppf(0.975, m - 1) + stats.t.ppf(0.8, m - 1)
            for m in (n - 1, n)] == [False, True]
    one_seed = paired_test(split[split["seed"] == 0])  # no spread from one seed: nothing to test
    assert one_seed.empty


def test_pooling_two_experiment_folders_tests_all_their_seeds_and_each_folder_as_its_own(tmp_path, capsys):
    """scripts/pooled_allocation_test.py on the committed 12-region tau = 1 cell (seeds 0-2) and its
    later seeds (3-6): per folder it reproduces each folder's own allocation_test.csv, pooled it is
    paired_test over the seven seeds; a seed in both folders is refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pooled", REPO / "scripts" / "pooled_allocation_test.py")
    pooled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pooled)
    cells = [REPO / "experiments" / "results" / name for name in ("glyph_small_map_tau1", "glyph_small_map_tau1_seeds")]
    assert pooled.main([*map(str, cells), "--out", str(tmp_path / "pooled.csv")]) == 0
    table = pd.read_csv(tmp_path / "pooled.csv")
    for cell in cells:
        own = pd.read_csv(cell / "allocation_test.csv").rename(
            columns={"seeds": "replicates", "seeds_for_2pct": "replicates_for_2pct"})
        mine = table[table["folders"] == cell.name].drop(columns=["folders", "unit"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, own)
    both = table[table["folders"].str.contains(r"\+")].set_index("method")
    split = pd.concat([pd.read_csv(cell / "allocation_split.csv") for cell in cells])
    logs = np.log(split[split["method"] == "aria"]["ratio"].to_numpy())
    assert both.loc["aria", "replicates"] == 7 and (both["unit"] == "seed").all()
    assert both.loc["aria", "ratio"] == pytest.approx(np.exp(logs.mean()))
    assert "differs from glyph_small_map_tau1 in distill.checkpoint_every" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        pooled.main([str(cells[0]), str(cells[0])])
    assert "seeds found in two folders" in capsys.readouterr().err


def test_pooled_allocation_test_over_teachers(tmp_path):
    """--teachers pools one cell's folders run with different teachers (the six-easy-regions cell's four
    teachers that pass the gate, seeds 0-5 each): the same seed numbers are then distinct replicates, and
    the pooled ARIA row is paired_test over all 24 ratios (docs/test_bed.md: 0.949, t = -4.81); the teacher-means
    row is a one-sample t-test of the four teachers' mean ln ratios (docs/test_bed.md: t = -4.57 against 3.18)."""
    import importlib.util

    from scipy import stats

    spec = importlib.util.spec_from_file_location("pooled", REPO / "scripts" / "pooled_allocation_test.py")
    pooled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pooled)
    cells = [REPO / "experiments" / "results" / f"glyph_easy_tau0_seeds_{name}"
             for name in ("teacher2000", "cpu_teacher", "teacher2000_seed1", "teacher2000_seed2")]
    assert pooled.main(["--teachers", *map(str, cells), "--out", str(tmp_path / "pooled.csv")]) == 0
    table = pd.read_csv(tmp_path / "pooled.csv")
    rows = table[table["method"] == "aria"].set_index("unit")
    logs = [np.log(pd.read_csv(cell / "allocation_split.csv").query("method == 'aria'")["ratio"].to_numpy())
            for cell in cells]
    every = np.concatenate(logs)
    assert len(every) == 24 and rows.loc["teacher-seed", "replicates"] == 24
    assert rows.loc["teacher-seed", "ratio"] == pytest.approx(np.exp(every.mean()))
    assert rows.loc["teacher-seed", "t"] == pytest.approx(stats.ttest_1samp(every, 0.0).statistic)
    means = [part.mean() for part in logs]
    assert rows.loc["teacher", "replicates"] == 4
    assert rows.loc["teacher", "t"] == pytest.approx(stats.ttest_1samp(means, 0.0).statistic)
    assert rows.loc["teacher", "critical"] == pytest.approx(stats.t.ppf(0.975, 3))
    assert rows.loc["seed", "replicates"].tolist() == [6, 6, 6, 6]
    effect = pd.read_csv(tmp_path / "pooled_teacher_effect.csv").set_index("method")  # do the teachers differ?
    assert effect.loc["aria", "F"] == pytest.approx(stats.f_oneway(*logs).statistic)
    assert effect.loc["aria", "p"] == pytest.approx(stats.f_oneway(*logs).pvalue)
    with pytest.raises(SystemExit):  # one teacher's folder twice is still the same replicates twice
        pooled.main(["--teachers", str(cells[1]), str(cells[1])])


def test_pooled_allocation_test_joins_one_teachers_folders(tmp_path, capsys):
    """--teachers with DIR+DIR: the 12-cell world's two teachers, each over two folders (seeds 0-5 and 6-11 of
    teacher seed 0, 0-5 and 6-9 of seed 1; docs/test_bed.md: F = 10.49 and 14.30). The teacher-means row and
    the analysis of variance have two teachers of 12 and 10 seeds, not four folders; a seed in both of one
    teacher's folders is refused, and a folder in both cells of --compare too."""
    import importlib.util

    from scipy import stats

    spec = importlib.util.spec_from_file_location("pooled", REPO / "scripts" / "pooled_allocation_test.py")
    pooled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pooled)
    base = REPO / "experiments" / "results" / "glyph_easy_c12_tau0_seeds_teacher2000"
    teachers = [[Path(f"{base}_seed0"), Path(f"{base}_seed0_seeds6_11_cpu")],
                [Path(f"{base}_seed1_cpu"), Path(f"{base}_seed1_seeds6_9_cpu")]]
    arguments = ["+".join(map(str, folders)) for folders in teachers]
    assert pooled.main(["--teachers", *arguments, "--out", str(tmp_path / "pooled.csv")]) == 0
    logs = [np.concatenate([np.log(pd.read_csv(f / "allocation_split.csv").query("method == 'aria'")["ratio"])
                            for f in folders]) for folders in teachers]
    assert [len(part) for part in logs] == [12, 10]
    rows = pd.read_csv(tmp_path / "pooled.csv").query("method == 'aria'").set_index("unit")
    assert rows.loc["teacher-seed", "replicates"] == 22 and rows.loc["teacher", "replicates"] == 2
    assert rows.loc["teacher", "t"] == pytest.approx(stats.ttest_1samp([p.mean() for p in logs], 0.0).statistic)
    assert rows.loc["seed", "replicates"].tolist() == [6, 6, 6, 4]  # each folder still on its own
    effect = pd.read_csv(tmp_path / "pooled_teacher_effect.csv").set_index("method")
    assert effect.loc["aria", "teachers"] == 2
    assert effect.loc["aria", "F"] == pytest.approx(stats.f_oneway(*logs).statistic)
    assert effect.loc["aria", "p"] == pytest.approx(stats.f_oneway(*logs).pvalue)
    with pytest.raises(SystemExit):  # seeds 0-5 twice within one teacher
        pooled.main(["--teachers", f"{teachers[0][0]}+{teachers[0][0]}"])
    assert "seeds found in two folders" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a folder of the first cell's teacher named again in the second cell
        pooled.main(["--teachers", arguments[0], arguments[1], "--compare", str(teachers[0][1]), str(teachers[1][1])])
    assert "a folder in both cells" in capsys.readouterr().err


def test_pooled_allocation_test_against_another_policy(tmp_path, capsys):
    """--against aria tests beta 2 against beta 1 on the same seeds of the six-easy-regions cell's three
    teachers that ran both (README: 0.963 over 18 pairs, t = -4.48; teacher means t = -5.09 against 4.30):
    the ratios are beta 2's over beta 1's per (teacher, seed); a folder without beta 2 adds nothing, one with
    beta 2 but not beta 1 is left out with a note, and a method no folder ran is a clear error."""
    import importlib.util

    from scipy import stats

    spec = importlib.util.spec_from_file_location("pooled", REPO / "scripts" / "pooled_allocation_test.py")
    pooled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pooled)
    both = [REPO / "experiments" / "results" / f"glyph_easy_tau0_seeds_{name}"
            for name in ("cpu_teacher", "teacher2000_seed1", "teacher2000_seed3")]
    aria_only, b2_only = (REPO / "experiments" / "results" / f"glyph_easy_tau0_seeds_teacher2000_seed2{tail}"
                          for tail in ("", "_cpu_b2"))
    out = tmp_path / "against.csv"
    assert pooled.main(["--teachers", "--against", "aria", *map(str, both), str(aria_only), str(b2_only),
                        "--out", str(out)]) == 0
    assert "note: 6 runs without a run of aria on their seed left out" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert set(table["method"]) == {"aria-b2 / aria"}
    logs = []
    for cell in both:
        split = pd.read_csv(cell / "allocation_split.csv").pivot(index="seed", columns="method", values="ratio")
        logs.append(np.log((split["aria-b2"] / split["aria"]).to_numpy()))
    rows = table.set_index("unit")
    every = np.concatenate(logs)
    assert rows.loc["teacher-seed", "replicates"] == 18
    assert rows.loc["teacher-seed", "ratio"] == pytest.approx(np.exp(every.mean()))
    assert rows.loc["teacher-seed", "t"] == pytest.approx(stats.ttest_1samp(every, 0.0).statistic)
    assert rows.loc["teacher", "t"] == pytest.approx(stats.ttest_1samp([x.mean() for x in logs], 0.0).statistic)
    assert rows.loc["seed", "replicates"].tolist() == [6, 6, 6]
    with pytest.raises(SystemExit):
        pooled.main(["--against", "progress", str(both[0])])
    assert "no progress runs in these folders" in capsys.readouterr().err


def test_teacher_effect_separates_teachers_from_seeds_exactly():
    """Three teachers with ln ratio = teacher effect +- a over their seeds: MSW = a^2 n / (n - 1) and MSB =
    n var(effects), so sd_within, sd_teacher, F and p are known in closed form; unbalanced teachers give
    scipy's one-way F; one teacher, or a teacher with one seed, is left out."""
    from statistics import NormalDist

    from scipy import stats

    effects, a = np.array([-0.08, -0.02, 0.04]), 0.03
    noise = np.array([a, -a, a, -a])  # n = 4 seeds, mean 0, sum of squares 4 a^2
    split = pd.DataFrame([{"method": "aria", "teacher": f"t{i}", "seed": s, "ratio": np.exp(e + noise[s])}
                          for i, e in enumerate(effects) for s in range(4)])
    row = teacher_effect(split).iloc[0]
    msw, msb = 4 * a ** 2 / 3, 4 * effects.var(ddof=1)
    assert row["teachers"] == 3 and row["replicates"] == 12
    assert row["sd_within"] == pytest.approx(np.sqrt(msw), rel=1e-12)
    assert row["sd_teacher"] == pytest.approx(np.sqrt((msb - msw) / 4), rel=1e-12)
    assert row["F"] == pytest.approx(msb / msw, rel=1e-12)
    assert row["p"] == pytest.approx(stats.f.sf(msb / msw, 2, 9), rel=1e-12)
    assert row["sd_teacher_mean"] == pytest.approx(np.sqrt((msb - msw) / 4 + msw / 4), rel=1e-12)
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    assert row["teachers_for_5pct"] == int(np.ceil(2 * row["sd_teacher_mean"] ** 2 * z ** 2 / np.log(1.05) ** 2))
    uneven = split.drop(index=[0, 5])  # 3, 3 and 4 seeds
    logs = [np.log(g["ratio"].to_numpy()) for _, g in uneven.groupby("teacher")]
    assert teacher_effect(uneven).iloc[0]["F"] == pytest.approx(stats.f_oneway(*logs).statistic, rel=1e-12)
    equal = split.assign(ratio=np.exp(noise[split["seed"]]))  # no teacher effect: sd_teacher clipped at 0
    assert teacher_effect(equal).iloc[0]["sd_teacher"] == 0.0
    assert teacher_effect(split[split["teacher"] == "t0"]).empty
    assert teacher_effect(split.drop(index=[0, 1, 2])).empty


def test_pooled_allocation_test_tests_a_part_of_the_ratio(tmp_path):
    """--part offset tests allocation_split.csv's shared offsets and --part split the ratios over them, per
    (teacher, seed): their products are the whole ratios, so the split part's and the offset's pooled logs
    add up to the ratio's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pooled", REPO / "scripts" / "pooled_allocation_test.py")
    pooled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pooled)
    cells = [str(REPO / "experiments" / "results" / f"glyph_easy_tau0_seeds_{name}")
             for name in ("teacher2000_seed1", "teacher2000_seed3")]
    pooled_logs = {}
    for part in ("ratio", "offset", "split"):
        assert pooled.main(["--teachers", "--part", part, *cells, "--out", str(tmp_path / f"{part}.csv")]) == 0
        row = pd.read_csv(tmp_path / f"{part}.csv").query("method == 'aria' and unit == 'teacher-seed'").iloc[0]
        pooled_logs[part] = np.log(row["ratio"])
    split = pd.concat([pd.read_csv(Path(cell) / "allocation_split.csv") for cell in cells]).query("method == 'aria'")
    assert pooled_logs["offset"] == pytest.approx(np.log(split["offset"]).mean())
    assert pooled_logs["split"] + pooled_logs["offset"] == pytest.approx(pooled_logs["ratio"])


def test_cell_difference_is_welchs_test_on_the_teachers_means():
    """Two cells (3 and 2 teachers, unequal seeds): each teacher's mean ln ratio is one replicate, and the
    comparison is scipy's Welch t-test on them (statistic, df, p); a method in one cell only, or with one
    teacher in a cell, is left out; cells whose teachers agree exactly differ with certainty."""
    from scipy import stats

    def cell(effects: dict[str, float], teachers: int, seeds: int) -> pd.DataFrame:
        noise = np.linspace(-0.02, 0.02, seeds)  # teacher i's effect: e + 0.01 i
        return pd.DataFrame([{"method": method, "teacher": f"t{i}", "seed": s, "ratio": np.exp(e + 0.01 * i + noise[s])}
                             for method, e in effects.items() for i in range(teachers) for s in range(seeds)])

    first = cell({"aria": -0.06, "aria-b2": -0.09, "progress": 0.01}, teachers=3, seeds=4).drop(index=[1])
    second = cell({"aria": -0.03, "aria-b2": -0.01}, teachers=2, seeds=5)  # no progress runs
    second.loc[second["teacher"] == "t1", "ratio"] *= 1.03  # the two cells' spreads differ
    table = cell_difference(first, second).set_index("method")
    assert list(table.index) == ["aria", "aria-b2"]
    for method in table.index:
        a = [np.log(g["ratio"]).mean() for _, g in first[first["method"] == method].groupby("teacher")]
        b = [np.log(g["ratio"]).mean() for _, g in second[second["method"] == method].groupby("teacher")]
        welch = stats.ttest_ind(b, a, equal_var=False)
        row = table.loc[method]
        assert (row["teachers_first"], row["teachers_second"]) == (3, 2)
        assert row["t"] == pytest.approx(welch.statistic, rel=1e-12)
        assert row["df"] == pytest.approx(welch.df, rel=1e-12)
        assert row["p"] == pytest.approx(welch.pvalue, rel=1e-10)
        assert row["second_over_first"] == pytest.approx(np.exp(np.mean(b) - np.mean(a)), rel=1e-12)
        assert row["significant"] == (welch.pvalue < 0.05)
    one_aria_teacher = second[(second["method"] != "aria") | (second["teacher"] == "t0")]
    assert cell_difference(first, one_aria_teacher)["method"].tolist() == ["aria-b2"]
    same = pd.DataFrame({"method": "aria", "teacher": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
                         "ratio": np.exp([-0.05, 0.05, -0.05, 0.05])})
    certain = cell_difference(same, same.assign(ratio=same["ratio"] * 1.02)).iloc[0]
    assert certain["t"] == np.inf and certain["significant"] and certain["p"] == 0.0


def test_pooled_allocation_test_compares_two_cells(tmp_path, capsys):
    """--compare: the six-easy-regions cell's five gate-passing teachers against the two teachers of its twin
    with 8 easy cells (docs/test_bed.md: 0.935 and 0.969, Welch t = 2.10, p = 0.10): the table is cell_difference
    of the two cells' allocation_split.csv with folders as teachers; without --teachers it is refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pooled", REPO / "scripts" / "pooled_allocation_test.py")
    pooled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pooled)
    results = REPO / "experiments" / "results"
    first = [results / f"glyph_easy_tau0_seeds_{name}" for name in
             ("teacher2000", "cpu_teacher", "teacher2000_seed1", "teacher2000_seed2", "teacher2000_seed3")]
    second = [results / f"glyph_easy_c8_tau0_seeds_teacher2000_seed{seed}" for seed in (0, 1)]
    out = tmp_path / "cells.csv"
    assert pooled.main(["--teachers", *map(str, first), "--compare", *map(str, second), "--out", str(out)]) == 0
    table = pd.read_csv(tmp_path / "cells_compare.csv").set_index("method")

    def cell(folders: list[Path]) -> pd.DataFrame:
        return pd.concat([pd.read_csv(f / "allocation_split.csv").assign(folder=f.name) for f in folders])

    expected = cell_difference(cell(first), cell(second), by="folder").set_index("method")
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert table.loc["aria", "teachers_first"] == 5 and table.loc["aria", "teachers_second"] == 2
    assert table.loc["aria", "ratio_second"] == pytest.approx(0.9693, abs=5e-5)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        pooled.main([str(first[0]), "--compare", str(second[0])])
    assert "--compare needs --teachers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pooled.main(["--teachers", *map(str, first), "--compare", str(second[0]), str(first[1])])
    assert "a folder in both cells" in capsys.readouterr().err
    unwritten = tmp_path / "unwritten.csv"
    with pytest.raises(SystemExit):  # a second cell that is not one: refused before the first cell's CSV is written
        pooled.main(["--teachers", *map(str, first), "--compare", str(tmp_path), "--out", str(unwritten)])
    assert "no such file" in capsys.readouterr().err and not unwritten.exists()
    with pytest.raises(SystemExit):  # --out in a folder that does not exist: refused before any work
        pooled.main(["--teachers", *map(str, first), "--out", str(tmp_path / "missing" / "x.csv")])
    assert "--out" in capsys.readouterr().err
