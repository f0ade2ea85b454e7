"""The trainer's measured map beside the simulator's (simulations.measured)."""
import json

import numpy as np
import pandas as pd
import pytest

import aria_cli
from cli_errors import refused
from simulations.allocation import RC_SWITCH
from simulations.measured import compare, experiment_setting, format_compare, measured_ratios, scenario_of

WORLD = {"kind": "glyph", "first_parts": 3, "second_parts": 4, "glyph_transfer": 0.5, "zipf_exponent": 1.2,
         "unseen_tail": 2, "unseen_head_ranks": [2], "under_regions": 3}


def _summary(values: dict[str, list[float]]) -> pd.DataFrame:
    """eval/summary.csv rows: groups head and all, metric discrepancy_pt, students method-seedN."""
    rows = []
    for model, (head, whole) in values.items():
        rows += [{"group": "head", "mean": head, "model": model, "metric": "discrepancy_pt"},
                 {"group": "all", "mean": whole, "model": model, "metric": "discrepancy_pt"},
                 {"group": "all", "mean": 99.0, "model": model, "metric": "discrepancy"}]
    return pd.DataFrame(rows)


def _experiment(folder, methods: list[str], values: dict[str, list[float]]):
    (folder / "eval").mkdir(parents=True)
    _summary(values).to_csv(folder / "eval" / "summary.csv", index=False)
    (folder / "world.json").write_text(json.dumps(WORLD))
    (folder / "experiment.json").write_text(json.dumps(
        {"methods": {m: {"method": "kd"} if m == "kd" else {} for m in methods},
         "distill": {"steps": 60, "batch_size": 16}}))
    return folder


def test_scenario_of_a_glyph_world():
    assert scenario_of(WORLD) == "testbed:k=12:s=1.2:tau=0.5:tail=2:head=1:under=3"
    easy = {**WORLD, "glyph_cells": 4, "easy_regions": 6, "easy_cells": 4}  # 4 of the 16 cells left to learn
    assert scenario_of(easy) == "testbed:k=12:s=1.2:tau=0.5:tail=2:head=1:under=3:easy=6:easyfrac=0.25"
    with pytest.raises(ValueError, match="glyph"):
        scenario_of({"kind": "attributes"})


def test_measured_ratios_pair_seeds():
    table = measured_ratios(_summary({"rc-seed0": [2.0, 1.0], "rc-seed1": [4.0, 1.0],
                                      "aria-seed0": [1.0, 1.5], "aria-seed1": [4.0, 0.5]}))
    aria = table[table["method"] == "aria"].set_index("group")
    assert aria.loc["head", "mean"] == pytest.approx(0.75)  # (1/2 + 4/4) / 2, seed by seed
    assert aria.loc["all", "mean"] == pytest.approx(1.0) and aria.loc["all", "seeds"] == 2


def test_compare_borrows_rc_from_a_folder_on_the_same_world(tmp_path):
    a = _experiment(tmp_path / "map", ["rc", "aria"], {"rc-seed0": [2.0, 1.0], "aria-seed0": [1.0, 2.0]})
    b = _experiment(tmp_path / "later", ["progress"], {"progress-seed0": [3.0, 0.5]})
    reports = []
    table = compare([a, b], seeds=[0, 1], progress=lambda done, total: reports.append((done, total)))
    assert reports == [(1, 4), (2, 4), (3, 4), (4, 4)]  # two simulations (the worlds' methods differ) x two seeds
    later = table[table["experiment"] == "later"].set_index("group")
    assert later.loc["head", "measured"] == pytest.approx(1.5) and later.loc["all", "measured"] == pytest.approx(0.5)
    assert table["predicted"].notna().all() and (table["predicted"] > 0).all()
    alone = _experiment(tmp_path / "alone", ["progress"], {"progress-seed0": [3.0, 0.5]})
    with pytest.raises(ValueError, match="no rc or region-uniform students"):
        compare([alone], seeds=[0])


def test_compare_without_rc_takes_region_uniform_as_the_reference(tmp_path):
    """The easy-regions experiments have no RC: their ratios are to region-uniform's students, the simulator's
    to its uniform policy; a folder with rc on the same world still lends rc instead."""
    rcless = _experiment(tmp_path / "easy", ["region-uniform", "aria"],
                         {"region-uniform-seed0": [2.0, 4.0], "region-uniform-seed1": [1.0, 2.0],
                          "aria-seed0": [1.0, 3.0], "aria-seed1": [1.5, 1.0]})
    table = compare([rcless], seeds=[0, 1])
    assert set(table["reference"]) == {"region-uniform"} and set(table["method"]) == {"aria"}
    aria = table.set_index("group")
    assert aria.loc["head", "measured"] == pytest.approx(1.0)  # (1/2 + 1.5/1) / 2, seed by seed
    assert aria.loc["all", "measured"] == pytest.approx(0.625)  # (3/4 + 1/2) / 2
    assert table["predicted"].notna().all() and (table["predicted"] > 0).all()
    assert "discrepancy / region-uniform's on the same seed" in format_compare(table)
    with_rc = _experiment(tmp_path / "map", ["rc", "aria"], {"rc-seed0": [2.0, 1.0], "aria-seed0": [1.0, 2.0]})
    lent = compare([rcless, with_rc], seeds=[0]).query("experiment == 'easy'")
    assert set(lent["reference"]) == {"rc"} and set(lent["method"]) == {"region-uniform", "aria"}


def test_cli_measured(tmp_path, capsys):
    a = _experiment(tmp_path / "map", ["rc", "aria"], {"rc-seed0": [2.0, 1.0], "aria-seed0": [1.0, 2.0]})
    assert aria_cli.main(["sim", "allocation", "--measured", str(a), "--seeds", "2", "--workers", "1",
                          "--out", str(tmp_path / "sim")]) == 0
    captured = capsys.readouterr()
    assert "predicted = simulator" in captured.out and "2/2" in captured.err  # the progress bar, on stderr
    assert set(pd.read_csv(tmp_path / "sim" / "measured_vs_predicted.csv")["method"]) == {"aria"}
    assert aria_cli.main(["sim", "allocation", "--measured", str(a), "--seeds", "2", "--workers", "1",
                          "--measured-alpha", "0.5", "--out", str(tmp_path / "sim_alpha")]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "sim_alpha" / "measured_vs_predicted.csv")
    assert set(table["scenario"]) == {"testbed:k=12:s=1.2:tau=0.5:tail=2:head=1:under=3:alpha=0.5"}
    both = table.dropna(subset=["measured", "predicted"])
    error = np.median(np.abs(np.log(both["predicted"] / both["measured"])))
    assert f"median |ln(predicted / measured)| {error:.3f}" in out
    refused(["sim", "allocation", "--measured", str(a), "--measured-alpha", "0", "--out", str(tmp_path / "y")], capsys,
            "--measured-alpha needs --measured and a value > 0")
    assert not (tmp_path / "y").exists()
    refused(["sim", "allocation", "--measured", str(tmp_path), "--out", str(tmp_path / "x")], capsys,
            "not an experiment folder")
    assert not (tmp_path / "x").exists()
    only_rc = _experiment(tmp_path / "rc", ["kd", "rc"], {"rc-seed0": [2.0, 1.0]})  # nothing to set beside rc
    refused(["sim", "allocation", "--measured", str(only_rc), "--out", str(tmp_path / "z")], capsys,
            "has no method to compare with rc")
    assert not (tmp_path / "z").exists()


def test_the_simulator_takes_the_trainers_realised_switch_fraction(tmp_path):
    folder = _experiment(tmp_path / "map", ["kd", "rc"], {"rc-seed0": [2.0, 1.0]})
    assert experiment_setting(folder)[1].switch == pytest.approx(RC_SWITCH)  # no runs: RC's mean p(t)
    for run, fractions in (("rc-seed0", (0.1, 0.3)), ("kd-seed0", (0.0, 0.0))):  # kd switches nothing
        (folder / "runs" / run).mkdir(parents=True)
        (folder / "runs" / run / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": i, "switched_frac": f}) + "\n" for i, f in enumerate(fractions)))
    scenario, config, methods = experiment_setting(folder)
    assert config.switch == pytest.approx(0.2) and (config.steps, config.batch) == (60, 16)


def test_blind_regions_become_the_simulators_tail_floors(tmp_path):
    folder = _experiment(tmp_path / "blind", ["rc", "aria"], {"rc-seed0": [2.0, 1.0], "aria-seed0": [1.0, 2.0]})
    experiment = json.loads((folder / "experiment.json").read_text())
    experiment["distill"]["blind_regions"] = [2, 9]
    (folder / "experiment.json").write_text(json.dumps(experiment))
    groups = pd.DataFrame({"region": [0, 2, 9, 9], "group": ["head", "unseen-tail", "unseen-tail", "unseen-tail"]})
    groups.to_csv(folder / "eval" / "discrepancy.csv", index=False)
    scenario, _, _ = experiment_setting(folder)
    assert scenario == "testbed:k=12:s=1.2:tau=0.5:tail=2:head=1:under=3:tailfloors=2"
    groups.assign(group=["head", "unseen-tail", "mid", "mid"]).to_csv(folder / "eval" / "discrepancy.csv", index=False)
    with pytest.raises(ValueError, match="unseen-tail regions"):
        experiment_setting(folder)
