"""`aria experiment`: every method and seed distilled at equal steps, one evaluation of all
students, aggregation over seeds, and resumption of a finished or interrupted experiment."""
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import aria_cli
from aria_train.experiment.config import ExperimentConfig
from aria_train.experiment.runner import aggregate
from fixtures_train import make_distill_inputs


def test_aggregate_takes_mean_and_sample_std_over_seeds():
    summary = pd.DataFrame({"model": ["rc-seed0", "rc-seed1", "aria-seed0", "aria-seed1"], "metric": "discrepancy",
                            "group": "unseen", "mean": [1.0, 3.0, 2.0, 2.0], "worst": [2.0, 4.0, 3.0, 5.0]})
    out = aggregate(summary, {"rc-seed0": "rc", "rc-seed1": "rc", "aria-seed0": "aria", "aria-seed1": "aria"})
    rc = out[out["method"] == "rc"].iloc[0]
    assert (rc["mean"], rc["worst"], rc["seeds"]) == (2.0, 3.0, 2)
    assert rc["mean_std"] == pytest.approx(2 ** 0.5)
    assert out[out["method"] == "aria"].iloc[0]["mean_std"] == 0.0


@pytest.mark.slow
def test_experiment_runs_evaluates_aggregates_and_resumes(tmp_path, capsys):
    paths = make_distill_inputs(tmp_path / "inputs")
    heldout = tmp_path / "heldout.csv"
    heldout.write_text("text,region,group\na red circle,0,seen\na white square,1,seen\na blue cross,2,unseen\n")
    config = {"teacher": str(paths.teacher), "pool": str(paths.pool), "paired_cache": str(paths.paired),
              "heldout": str(heldout), "seeds": [0, 1], "parallel": 2,
              "methods": {"rc": {"method": "rc"}, "aria": {"method": "aria", "aria_warmup": 1}},
              "distill": {"steps": 2, "batch_size": 4, "checkpoint_every": 0, "sample_every": 0, "log_every": 1,
                          "heldout_every": 1},
              "eval": {"samples_per_region": 1, "steps": 2, "guidance": 1.0, "timesteps": [100, 900]}}
    file = tmp_path / "experiment.json"
    file.write_text(json.dumps(config))
    out = tmp_path / "exp"
    capsys.readouterr()
    assert aria_cli.main(["experiment", str(file), "--out", str(out), "--no-progress"]) == 0
    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"rc", "aria"} and (results["seeds"] == 2).all()
    views = {"discrepancy", "discrepancy_text", "discrepancy_pt"}
    assert set(results["metric"]) in (views | {"accuracy"}, views)
    assert set(results["group"]) >= {"seen", "unseen", "all"}
    for name in ("rc-seed0", "rc-seed1", "aria-seed0", "aria-seed1"):
        run_config = json.loads((out / "runs" / name / "config.json").read_text())
        assert run_config["steps"] == 2 and run_config["seed"] == int(name[-1])
    report = (out / "report.html").read_text()
    assert "id=evaluation" in report and "aria-seed1" in report  # the experiment's evaluation table is in it
    printed = capsys.readouterr()
    assert "unseen" in printed.out and "aria" in printed.out
    # without bars a log still says how far the runs are: a line per finished run
    found = re.findall(r"finished ([a-z-]+seed\d) \((\d) of 4 runs\)", printed.out)
    assert sorted(name for name, _ in found) == ["aria-seed0", "aria-seed1", "rc-seed0", "rc-seed1"]
    assert [int(count) for _, count in found] == [1, 2, 3, 4]
    assert "runs:" not in printed.err and "%|" not in printed.err
    # resuming a finished experiment runs nothing again
    before = (out / "runs" / "rc-seed0" / "metrics.jsonl").stat().st_mtime_ns
    assert aria_cli.main(["experiment", str(file), "--out", str(out)]) == 0
    assert "4 of 4 runs already finished" in capsys.readouterr().out
    assert (out / "runs" / "rc-seed0" / "metrics.jsonl").stat().st_mtime_ns == before
    # a different experiment in the same folder is refused
    config["seeds"] = [0]
    file.write_text(json.dumps(config))
    capsys.readouterr()
    assert aria_cli.main(["experiment", str(file), "--out", str(out)]) == 2
    assert "experiment.json" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[3] / "experiments").glob("*.json")),
                         ids=lambda p: p.name)
def test_every_committed_experiment_config_is_valid(path):
    """Every experiments/*.json reads and gives valid run configs (its input paths may not exist
    until the scripts that make them have run), so an option change cannot strand one."""
    config = ExperimentConfig.load(path)
    assert len(config.run_configs()) == len(config.methods) * len(config.seeds)
