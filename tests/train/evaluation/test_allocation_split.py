"""How much of a policy's gap to region-uniform follows the draws it moved (aria_train.evaluation.allocation_split)."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aria_train.evaluation.allocation_split import allocation_split, split_fit
from aria_train.experiment.config import ExperimentConfig
from aria_train.experiment.runner import write_allocation_split
from simulations.headroom import headroom
from simulations.measured import region_draws

CELL = Path(__file__).resolve().parents[3] / "experiments" / "results" / "glyph_map_tau05"


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
    assert (table["ratio"] > 1).all() and (table["slope"].abs() < 0.05).all()  # README: a loss that is an offset


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
    assert "aria     2  1.021 -0.008   1.022" in printed  # the README's seed 2 (ratio, slope, offset)


def test_no_split_without_region_uniform_or_policies(tmp_path):
    configs = ExperimentConfig.load(CELL / "experiment.json").run_configs()
    only_rc = {name: entry for name, entry in configs.items() if entry[0] in ("rc", "aria")}
    write_allocation_split(only_rc, tmp_path)  # no region-uniform method: nothing read, nothing written
    assert not (tmp_path / "allocation_split.csv").exists()
