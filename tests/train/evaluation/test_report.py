"""`aria report` on hand-made run directories: sections, self-containment, several runs, bad input."""
import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import aria_cli
from aria_train.evaluation.report import region_labels

GROUPS = ["seen", "seen", "unseen", "under"]
NAMES = ["red circle", "blue square", "red triangle", "green circle"]
ARIA_SECTIONS = ('<h2 id=allocation>', '<h2 id=estimates>')


def make_pool(path: Path) -> Path:
    pd.DataFrame({"text": [f"a {n}" for n in NAMES] * 2, "region": [0, 1, 2, 3] * 2,
                  "region_name": NAMES * 2, "group": GROUPS * 2}).to_parquet(path)
    return path


def make_run(folder: Path, method: str, pool: Path | str) -> Path:
    """A run of 4 logged steps over 4 regions; an ARIA run's first record has not observed region 3
    yet and its held-out measurements (steps 20, 40) miss region 1."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": method, "steps": 40, "pool": str(pool), "lr": 2e-4,
                                                    "aria_warmup": 15, "log_every": 10}))
    rng = np.random.default_rng(0)
    records = []
    for i, step in enumerate(range(10, 50, 10)):
        record = {"step": step, "loss": None if i == 1 else 1.0 / (i + 1), "out": 0.5 / (i + 1), "feat": 0.5 / (i + 1),
                  "sd": None, "lr": 2e-4, "images_per_s": 100.0, "nonfinite": int(i == 1), "skipped": 0,
                  "switched_frac": 0.3, "null_frac": 0.1, "region_counts": rng.integers(1, 9, 4).tolist(),
                  "switched_region_counts": rng.integers(0, 4, 4).tolist()}
        if method == "aria":
            record["pi"] = rng.dirichlet(np.ones(4)).tolist()
            record["estimates"] = [1.0 + 0.1 * k + 0.05 * i for k in range(3)] + [None if i == 0 else 0.8]
            if step % 20 == 0:
                record.update(heldout=[1.2, None, 0.9, 1.1], heldout_level=0.05 / step)
        records.append(record)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture(autouse=True)
def only_report(monkeypatch):
    """Only this command (as tests/train/worlds/test_world.py does): these tests must not depend on other commands'
    modules importing."""
    assert aria_cli.COMMANDS[(None, "report")] == "aria_train.cli.report"
    monkeypatch.setattr(aria_cli, "COMMANDS", {(None, "report"): "aria_train.cli.report"})


def report(capsys, *argv: str) -> tuple[int, str, str]:
    code = aria_cli.main(["report", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def images(page: str) -> list[Image.Image]:
    """The page's images, decoded; fails unless every src is an embedded PNG."""
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    decoded = []
    for source in sources:
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1], validate=True)))
        image.load()
        assert image.format == "PNG" and min(image.size) > 0
        decoded.append(image)
    return decoded


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    pool = make_pool(root / "pool.parquet")
    return {"rc": make_run(root / "rc", "rc", pool), "aria": make_run(root / "aria", "aria", pool), "pool": pool}


def test_aria_run_has_every_section_and_is_self_contained(runs, tmp_path, capsys):
    out = tmp_path / "report.html"
    code, stdout, _ = report(capsys, str(runs["aria"]), "--out", str(out))
    assert code == 0 and stdout.strip() == str(out)
    page = out.read_text()
    for heading in ("<h2 id=runs>", "<h2 id=losses>", "<h2 id=heldout>", *ARIA_SECTIONS, "<h2 id=drawn>"):
        assert heading in page
    assert "<h2 id=evaluation>" not in page  # no eval/ folder
    assert "data:image/png;base64," in page
    assert not re.search(r"<script|<link|href=|url\(", page)
    assert len(images(page)) == 5  # losses, held-out level, pi, estimates, drawn counts
    assert "held-out teacher-student discrepancy" in page and "regions unnamed" not in page


def test_rc_run_omits_the_aria_sections(runs, tmp_path, capsys):
    out = tmp_path / "rc.html"
    assert report(capsys, str(runs["rc"]), "--out", str(out))[0] == 0
    page = out.read_text()
    assert not any(heading in page for heading in (*ARIA_SECTIONS, "<h2 id=heldout>"))  # it logged no held-out
    assert "<h2 id=drawn>" in page and "aria_beta" not in page
    assert len(images(page)) == 2  # losses, drawn counts


def test_two_runs_in_one_report(runs, tmp_path, capsys):
    out = tmp_path / "both.html"
    assert report(capsys, str(runs["rc"]), str(runs["aria"]), "--out", str(out))[0] == 0
    page = out.read_text()
    assert "<th>rc</th><th>aria</th>" in page  # one config column per run
    assert "<tr><th>aria_warmup</th><td>-</td><td>15</td></tr>" in page  # RC never used its aria_* defaults
    assert page.count("<h2 id=losses>") == 1 and all(heading in page for heading in ARIA_SECTIONS)
    assert page.count("<h3>aria</h3>") == 3 and page.count("<h3>rc</h3>") == 1  # pi, estimates, drawn / drawn only
    assert len(images(page)) == 1 + 1 + 2 + 2  # losses, held-out level (the aria run's line), aria's two, drawn x 2


def test_same_folder_names_are_told_apart(runs, tmp_path, capsys):
    first, second = (make_run(tmp_path / part / "run", "rc", runs["pool"]) for part in ("a", "b"))
    out = tmp_path / "same.html"
    assert report(capsys, str(first), str(second), "--out", str(out))[0] == 0
    assert "<th>run</th><th>run-2</th>" in out.read_text()


def test_eval_table_and_grids_are_embedded(runs, tmp_path, capsys):
    run = make_run(tmp_path / "evaluated", "rc", runs["pool"])
    (run / "eval").mkdir()
    pd.DataFrame({"group": ["seen", "unseen"], "regions": [2, 1], "mean": [0.0123456, 0.5], "worst": [0.02, 0.5],
                  "worst_region": ["blue square", "red triangle"], "model": ["run", "run"],
                  "metric": ["discrepancy", "discrepancy"]}).to_csv(run / "eval" / "summary.csv", index=False)
    grid = io.BytesIO()
    Image.new("RGB", (12, 6), "red").save(grid, format="PNG")
    (run / "eval" / "grid_seen.png").write_bytes(grid.getvalue())
    out = tmp_path / "eval.html"
    assert report(capsys, str(run), "--out", str(out))[0] == 0
    page = out.read_text()
    assert "<h2 id=evaluation>" in page and "red triangle" in page and "0.01235" in page
    assert base64.b64encode(grid.getvalue()).decode() in page
    assert len(images(page)) == 3  # losses, drawn counts, the grid


def test_missing_pool_falls_back_to_numbered_regions(tmp_path, capsys):
    run = make_run(tmp_path / "run", "aria", tmp_path / "gone.parquet")
    out = tmp_path / "report.html"
    assert report(capsys, str(run), "--out", str(out))[0] == 0
    assert "regions unnamed" in out.read_text()
    assert region_labels(str(tmp_path / "gone.parquet"), 3).names == ["region 0", "region 1", "region 2"]


def test_region_labels_from_the_pool(runs):
    regions = region_labels(str(runs["pool"]), 5)  # one more region than the pool describes
    assert regions.names == [*NAMES, "region 4"]
    assert regions.groups == [*GROUPS, "all"]
    assert regions.order == [0, 1, 2, 3, 4]  # seen, unseen, under, then the rest
    assert regions.note == ""


def test_existing_report_is_replaced(runs, tmp_path, capsys):
    out = tmp_path / "report.html"
    out.write_text("<!DOCTYPE html><p>an earlier report")
    assert report(capsys, str(runs["rc"]), "--out", str(out))[0] == 0
    assert out.read_text().startswith("<!DOCTYPE html>") and "an earlier report" not in out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("case", ["missing", "no metrics", "empty metrics", "bad line", "no out folder", "bad eval"])
def test_bad_input_exits_2_and_writes_nothing(runs, tmp_path, capsys, case):
    run = tmp_path / "run"
    out = tmp_path / ("nowhere" if case == "no out folder" else ".") / "report.html"
    if case != "missing":
        make_run(run, "aria", runs["pool"])
    if case == "no metrics":
        (run / "metrics.jsonl").unlink()
    elif case == "empty metrics":
        (run / "metrics.jsonl").write_text("\n")
    elif case == "bad line":
        (run / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n{"step": 20, "lo\n')
    extra = ["--eval", str(tmp_path)] if case == "bad eval" else []  # a folder without summary.csv
    code, stdout, stderr = report(capsys, str(runs["rc"]), str(run), "--out", str(out), *extra)
    assert code == 2 and stdout == ""
    assert stderr.startswith("aria: error: ") and stderr.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob("*.html*"))
