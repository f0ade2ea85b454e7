"""The evaluation's views of per-timestep discrepancies, the share-weighted group row and the
tracker / held-out rank correlation of the report."""
import json

import numpy as np
import pandas as pd
import pytest

from aria_train.conditioning.samplers import switch_probability
from aria_train.evaluation.discrepancy import TEXT_SENSITIVE_FROM, discrepancy_views, switch_weights
from aria_train.evaluation.region_metrics import WEIGHTED, summarise_groups
from aria_train.evaluation.report import load_run, tracking_correlation


def test_views_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    timesteps = [100, 300, 500, 700, 900, 980]
    errors = rng.random((7, len(timesteps)))
    views = discrepancy_views(errors, timesteps)
    p = np.array([np.exp(-5.0 * (1 - t / 1000)) for t in timesteps])  # RC's exp schedule, lambda 5
    for i in range(len(errors)):
        assert views["pt"][i] == pytest.approx(sum(p[j] * errors[i, j] for j in range(len(p))) / p.sum(), rel=1e-13)
        assert views["text"][i] == pytest.approx(np.mean([e for e, t in zip(errors[i], timesteps)
                                                          if t >= TEXT_SENSITIVE_FROM]), rel=1e-13)
        assert views["mean"][i] == pytest.approx(errors[i].mean(), rel=1e-13)
    assert switch_weights(timesteps).sum() == pytest.approx(1.0, rel=1e-15)
    np.testing.assert_allclose(switch_weights(timesteps), switch_probability(np.array(timesteps), 1000) / p.sum())
    # no text-sensitive timestep evaluated: that view is NaN, not a mean over nothing
    assert np.isnan(discrepancy_views(errors[:, :2], timesteps[:2])["text"]).all()


def test_weighted_row_weights_regions_by_pool_share():
    per_region = pd.DataFrame({"region": [0, 1, 2, 3], "region_name": list("abcd"), "group": ["head", "head", "mid", "tail"],
                               "value": [1.0, 2.0, 4.0, 8.0]})
    shares = pd.Series({0: 0.5, 1: 0.25, 2: 0.25})  # region 3 has no share: it counts 0
    rows = summarise_groups(per_region, "value", "max", shares).set_index("group")
    assert rows.loc[WEIGHTED, "mean"] == pytest.approx(0.5 * 1 + 0.25 * 2 + 0.25 * 4)
    assert rows.loc[WEIGHTED, "regions"] == 3
    assert rows.loc["all", "mean"] == pytest.approx(15 / 4)
    assert WEIGHTED not in summarise_groups(per_region, "value", "max").set_index("group").index


def _run(tmp_path, records):
    (tmp_path / "config.json").write_text(json.dumps({"method": "aria"}))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return load_run(tmp_path, "run")


def test_tracking_correlation_is_the_rank_correlation_at_the_last_shared_step(tmp_path):
    records = [{"step": 10, "pi": [0.25] * 4, "estimates": [1.0, 2.0, 3.0, 4.0], "heldout": [4.0, 3.0, 2.0, 1.0]},
               {"step": 20, "pi": [0.25] * 4, "estimates": [1.0, 2.0, None, 4.0], "heldout": [0.1, 0.5, 0.2, 0.9]},
               {"step": 30, "pi": [0.25] * 4, "estimates": [4.0, 3.0, 2.0, 1.0]}]
    step, rho = tracking_correlation(_run(tmp_path, records))
    assert step == 20 and rho == pytest.approx(1.0)  # region 2 skipped (not observed yet); the rest ranked alike
    assert tracking_correlation(_run(tmp_path, records[2:])) is None
