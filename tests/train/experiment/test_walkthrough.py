"""The README's CLI walkthrough for the embedded world (`make demo`), followed from a directory
other than the repository root (issue 15): `aria world` from the shipped teacher's world.json,
then `aria experiment` on a copy of experiments/demo_cpu.json shrunk to a few steps. The copy
lives in its own folder and names every input by a path relative to that folder (the repository's
assets and the world just written), so it only works if those paths resolve against the JSON's
folder and nothing assumes that the working directory is the repository root.

Both commands run through `aria_cli.main` with the working directory changed to tmp_path/work
(the experiment's distillation still runs in its own spawned process there). One method (aria)
keeps it to one distillation process: 20-30 s on 2 cores, most of it imports and model set-up.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

import aria_cli

REPO = Path(__file__).resolve().parents[3]
TEACHER = REPO / "aria_train" / "assets" / "glyph_demo" / "teacher"
PAIRED = REPO / "aria_train" / "assets" / "glyph_demo" / "paired"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def aria(*argv, capsys) -> str:
    """Run `aria ARGV` in this process; assert exit 0 and no traceback; return its stdout."""
    capsys.readouterr()
    code = aria_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, f"aria {' '.join(map(str, argv))} exited {code}:\n{err[-3000:]}"
    assert "Traceback" not in err
    return out


def tiny_demo_config(folder: Path, world: Path) -> Path:
    """experiments/demo_cpu.json rewritten to a tiny size, its paths relative to ``folder``."""
    config = json.loads((REPO / "experiments" / "demo_cpu.json").read_text())
    relative = lambda path: os.path.relpath(path, folder)  # noqa: E731
    config.update({
        "teacher": relative(TEACHER), "paired_cache": relative(PAIRED),
        "pool": relative(world / "pool.parquet"), "heldout": relative(world / "heldout.parquet"),
        "seeds": [0], "methods": {"aria": {"method": "aria"}}, "parallel": 1,
    })
    config["distill"] = {**config["distill"], "steps": 2, "batch_size": 4, "log_every": 1, "heldout_every": 0,
                         "heldout_per_region": 1, "checkpoint_every": 0, "sample_every": 0}
    config["eval"] = {**config["eval"], "samples_per_region": 1, "steps": 2, "timesteps": [500],
                      "max_per_region": 1, "batch_size": 16}
    folder.mkdir(parents=True)
    path = folder / "demo_tiny.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.mark.slow
def test_readme_walkthrough_from_another_directory(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"  # the working directory; the config sits beside it, not in it
    work.mkdir()
    monkeypatch.chdir(work)
    aria("world", "--config", TEACHER / "world.json", "--out", "w", "--check", "0", capsys=capsys)
    assert (work / "w" / "pool.parquet").is_file()
    assert json.loads((work / "w" / "world.json").read_text()) == json.loads((TEACHER / "world.json").read_text())

    config = tiny_demo_config(tmp_path / "configs" / "experiments", work / "w")
    assert not (work / json.loads(config.read_text())["pool"]).exists()  # read against the cwd, it would miss
    # The config named relative to the working directory, as the README names experiments/demo_cpu.json.
    relative_config = os.path.relpath(config, work)
    assert relative_config.startswith("..")
    assert "experiment written to demo" in aria("experiment", relative_config, "--out", "demo", capsys=capsys)

    out = work / "demo"
    for name in ("experiment.json", "results.csv", "report.html", "eval/summary.csv"):
        assert (out / name).is_file(), name
    assert (out / "world.json").read_text() == (TEACHER / "world.json").read_text()  # the teacher's world, kept
    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"aria"}
    # The run records absolute paths, resolved against the config's folder.
    run_config = json.loads((out / "configs" / "aria-seed0.json").read_text())
    assert Path(run_config["teacher"]) == TEACHER.resolve()
    assert Path(run_config["paired_cache"]) == PAIRED.resolve()
    assert Path(run_config["pool"]) == (work / "w" / "pool.parquet").resolve()
    assert Path(run_config["heldout"]) == (work / "w" / "heldout.parquet").resolve()
    # Nothing was written outside the working directory (the config folder holds only the config).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "work"]
    assert [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "configs").rglob("*") if p.is_file()] == \
        ["configs/experiments/demo_tiny.json"]
    assert sorted(p.name for p in work.iterdir()) == ["demo", "w"]
