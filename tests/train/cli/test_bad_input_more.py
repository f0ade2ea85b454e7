"""Bad input to `aria experiment / distill / eval / report` (issue 15): wrong JSON types, non-finite
and out-of-range values, devices this torch cannot use, a corrupt checkpoint, late validation of an
experiment. Each is one `aria: error:` line on stderr, exit 2, no traceback, and the output
folder exactly as before (absent when it was absent). Also the help texts and progress messages
the issue found misleading or missing.

Everything runs in this process through `aria_cli.main` on the tiny inputs of fixtures_train.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import get_args

import pandas as pd
import pytest
import torch

import aria_cli
from aria_train.distill.config import DistillConfig
from aria_train.experiment.config import ExperimentConfig
from aria_train.options import flat_fields
from cli_errors import refused
from fixtures_train import DistillPaths, make_distill_inputs
from cli_errors import snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> DistillPaths:
    return make_distill_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def heldout(paths: DistillPaths) -> Path:
    path = paths.teacher.parent / "heldout.csv"
    path.write_text("text,region,group\na red circle,0,seen\na white square,1,seen\na blue cross,2,unseen\n")
    return path


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------- aria experiment


def experiment(paths: DistillPaths, heldout: Path, /, **changes) -> dict:
    return {"teacher": str(paths.teacher), "pool": str(paths.pool), "paired_cache": str(paths.paired),
            "heldout": str(heldout), "seeds": [0], "methods": {"rc": {"method": "rc"}},
            "distill": {"steps": 1, "batch_size": 4}, **changes}


@pytest.mark.parametrize("change, needles", [
    ({"parallel": "2"}, ["parallel must be an integer", '"2"']),
    ({"parallel": 0}, ["parallel must be >= 1, got 0"]),
    ({"methods": ["rc", "aria"]}, ["methods must be an object"]),
    ({"seeds": "0"}, ["seeds must be a list, each item an integer", '"0"']),  # not the characters of "0"
    ({"seeds": [0, 0]}, ["seeds must be distinct"]),
    ({"seeds": [-1]}, ["method 'rc'", "seed must be in [0, 2^63), got -1"]),
    ({"eval": {"bogus": 1}}, ["the experiment's eval options", "unknown fields bogus"]),
    ({"eval": {"samples_per_region": -1}}, ["samples_per_region must be >= 0"]),
    ({"distill": {"steps": 1, "lr": math.inf}}, ["lr must be a number, got inf"]),
    ({"methods": {"aria/beta2": {"method": "aria"}}}, ["method name 'aria/beta2' must be letters"]),
    ({"methods": {"../escape": {"method": "rc"}}}, ["method name '../escape'"]),  # would write beside --out
    ({"methods": {"": {"method": "rc"}}}, ["method name ''"]),
    ({"distill": {"steps": 1, "seed": 3}}, ["distill sets seed, which the experiment sets itself"]),
    ({"methods": {"rc": {"method": "rc", "seed": 3}}}, ["method 'rc' sets seed"]),
    ({"eval": {"student": ["elsewhere"]}}, ["eval sets student"]),
])
def test_experiment_config_errors_are_one_line_before_any_folder(paths, heldout, tmp_path, capsys, change, needles):
    config = write_json(tmp_path / "experiment.json", experiment(paths, heldout, **change))
    refused(["experiment", config, "--out", tmp_path / "out"], capsys, str(config), *needles)
    assert not (tmp_path / "out").exists()


def test_experiment_inputs_found_wrong_only_by_the_runs_are_refused_before_any_folder(paths, heldout, tmp_path, capsys):
    """Evaluation timesteps beyond the teacher's (found after every run had trained) and a pool
    that the paired cache's prompt ids do not fit (found in each run's worker)."""
    config = write_json(tmp_path / "a.json", experiment(paths, heldout, eval={"timesteps": [500, 1000]}))
    refused(["experiment", config, "--out", tmp_path / "out"], capsys, "eval timesteps must lie in [0, 1000)")
    other = tmp_path / "other_pool.csv"
    other.write_text("text,region\nsomething else,0\nand more,1\n")
    config = write_json(tmp_path / "b.json", experiment(paths, heldout, pool=str(other)))
    refused(["experiment", config, "--out", tmp_path / "out"], capsys, "prompt_id outside the pool's rows [0, 2)")
    assert not (tmp_path / "out").exists()
    # ARIA needs the pool's regions: refused here, not by every run's worker after the folder was made
    no_regions = tmp_path / "no_regions.parquet"
    pd.read_parquet(paths.pool).drop(columns=["region"]).to_parquet(no_regions)
    config = write_json(tmp_path / "c.json", experiment(paths, heldout, pool=str(no_regions),
                                                        methods={"rc": {"method": "rc"}, "aria": {"method": "aria"}}))
    refused(["experiment", config, "--out", tmp_path / "out"], capsys, "--method aria needs a region column")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["world", "--check", "0"], ["teacher", "--steps", "1"]])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, command):
    """Found when the command starts, not when it writes after hours of work (a file where a folder
    must be made fails for root too, unlike a read-only folder)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    refused([command[0], "--out", blocker / "sub" / "out", *command[1:]], capsys, f"cannot write under {blocker}")
    assert blocker.read_text() == "not a folder"


def test_experiment_parallel_zero_on_the_command_line_is_refused(paths, heldout, tmp_path, capsys):
    config = write_json(tmp_path / "experiment.json", experiment(paths, heldout))
    refused(["experiment", config, "--out", tmp_path / "out", "--parallel", "0"], capsys, "--parallel must be >= 1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, changes, needle", [
    (["--group", "0"], {}, "--group must be >= 1, got 0"),
    (["--group", "2"], {"distill": {"feedback_lag": 1}}, "a student group does not support feedback_lag 1"),
    (["--group", "2"], {"distill": {"channel_scale": 0.5}}, "does not support feature projections"),
    (["--group", "2"], {"mixed_precision": "fp16"}, "does not support fp16"),
])
def test_experiment_groups_it_cannot_form_are_refused_before_any_folder(paths, heldout, tmp_path, capsys, extra,
                                                                       changes, needle):
    distill = {"steps": 1, "batch_size": 4, **changes.get("distill", {})}
    data = experiment(paths, heldout, seeds=[0, 1], **{**changes, "distill": distill})
    config = write_json(tmp_path / "experiment.json", data)
    refused(["experiment", config, "--out", tmp_path / "out", *extra], capsys, needle)
    assert not (tmp_path / "out").exists()


def test_experiment_paths_are_relative_to_its_file_and_checked_before_any_run(paths, heldout, tmp_path, capsys,
                                                                              monkeypatch):
    """A config written with paths relative to the working directory it was meant for (here
    tmp/inputs/...) is run from another directory: its paths resolve against the file's folder,
    where nothing exists, and that is one line before the experiment folder is made."""
    inputs = paths.teacher.parent
    relative = {"teacher": "teacher", "pool": "pool.parquet", "paired_cache": "paired", "heldout": "heldout.csv"}
    config = write_json(tmp_path / "configs" / "experiment.json", experiment(paths, heldout, **relative))
    monkeypatch.chdir(inputs)  # where these paths would have been right
    refused(["experiment", config, "--out", tmp_path / "out"], capsys, "teacher",
            str(tmp_path / "configs" / "teacher"), "does not exist", "relative to the config file's folder")
    assert not (tmp_path / "out").exists()

    # path options inside distill / methods / eval resolve against the file's folder too
    monkeypatch.chdir(tmp_path)
    moved = write_json(inputs / "experiment.json", experiment(paths, heldout, **relative, distill={
        "steps": 1, "text_cache": "text"}, methods={"rc": {"method": "rc", "heldout": "heldout.csv"}},
        eval={"fid_reference": "references"}))
    loaded = ExperimentConfig.load(moved)
    assert loaded.distill["text_cache"] == str(paths.text) and loaded.teacher == str(paths.teacher)
    assert loaded.methods["rc"]["heldout"] == str(heldout)
    assert loaded.eval["fid_reference"] == str(inputs / "references")
    refused(["experiment", moved, "--out", tmp_path / "out"], capsys, f"fid_reference {inputs / 'references'} "
            "does not exist")
    assert not (tmp_path / "out").exists()
    (inputs / "references").mkdir()
    loaded.check_inputs()  # every path now exists, whatever the working directory


# ---------------------------------------------------------------- aria distill


@pytest.mark.parametrize("config, needles", [
    ('{"steps": "6"}', ["distillation config", 'steps must be an integer, got "6"']),
    ('{"lr": null}', ["distillation config", "lr must be a number, got null"]),
    ('{"batch_size": true}', ["distillation config", "batch_size must be an integer, got true"]),
    ('{"steps": 2.5}', ["distillation config", "steps must be an integer, got 2.5"]),  # not rounded up to 3 steps
    ('{"lr": Infinity}', ["distillation config", "lr must be a number, got inf"]),  # Python's json reads Infinity
    ('{"seed": -1}', ["seed must be in [0, 2^63), got -1"]),  # a domain: checked with the flags on top
])
def test_distill_config_json_of_wrong_types_leaves_no_run_folder(paths, tmp_path, capsys, config, needles):
    file = tmp_path / "distill.json"
    file.write_text(config)
    out = tmp_path / "run"
    refused(paths.options(out, "--config", file), capsys, *needles)
    assert not out.exists()


def test_a_distill_config_file_may_leave_the_inputs_to_the_flags(paths, tmp_path):
    file = write_json(tmp_path / "distill.json", {"steps": 1, "method": "aria", "aria_warmup": 0})
    out = tmp_path / "run"
    assert aria_cli.main([str(a) for a in paths.options(out, "--config", file, "--no-progress")]) == 0
    recorded = DistillConfig.load(out / "config.json")
    assert (recorded.steps, recorded.method, recorded.aria.warmup) == (1, "aria", 0)
    assert recorded.teacher == str(paths.teacher.resolve())


FLOAT_OPTIONS = [name for name, _, hint, _ in flat_fields(DistillConfig) if float in (get_args(hint) or (hint,))]


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_distill_refuses_every_non_finite_float_option(paths, tmp_path, capsys, name, value):
    out = tmp_path / "run"
    flag = "--" + name.replace("_", "-")
    refused(paths.options(out, "--steps", "1", f"{flag}={value}"), capsys, f"{flag} must be a number")
    assert not out.exists()


@pytest.mark.parametrize("method, extra, needle", [
    ("rc", ["--aria-beta", "2"], "--aria-beta applies to --method aria only (this run: --method rc)"),
    ("kd", ["--aria-warmup", "0", "--aria-unbiased"], "--aria-warmup, --aria-unbiased apply to --method aria only"),
    ("rc", ["--aria-beta", "1"], None),  # the default: nothing changed
])
def test_distill_refuses_aria_options_on_a_run_that_would_ignore_them(paths, tmp_path, capsys, method, extra, needle):
    """`--method rc --aria-beta 2` trained plain RC and recorded aria_beta 2 in its config."""
    out = tmp_path / "run"
    if needle is None:
        assert aria_cli.main(paths.options(out, "--steps", "1", "--method", method, *extra, "--no-progress")) == 0
        return
    refused(paths.options(out, "--steps", "1", "--method", method, *extra), capsys, needle)
    assert not out.exists()


def test_distill_refuses_a_missing_heldout_file_even_without_the_monitor(paths, tmp_path, capsys):
    out = tmp_path / "run"
    refused(paths.options(out, "--steps", "1", "--heldout", tmp_path / "missing.csv", "--heldout-every", "0"), capsys,
            f"held-out prompts {tmp_path / 'missing.csv'}: no such file")
    assert not out.exists()


def test_distill_out_that_is_a_file_is_not_offered_a_resume(paths, tmp_path, capsys):
    (tmp_path / "file").write_text("x")  # once: "... continue it with --resume latest"
    refused(paths.options(tmp_path / "file", "--steps", "1"), capsys, "is a file, not a run folder")
    assert (tmp_path / "file").read_text() == "x"


def test_a_config_built_in_code_is_type_checked_by_validate():
    """`train` validates the config it is given: one built in code, not read from JSON or flags,
    gets the same type checks (an infinite learning rate would make every weight non-finite)."""
    config = DistillConfig(teacher="t", paired_cache="p", pool="q")
    for change, needle in (({"lr": math.inf}, "lr must be a number, got inf"),
                           ({"noise_std": math.nan}, "noise_std must be a number, got nan"),
                           ({"steps": 2.5}, "steps must be an integer, got 2.5"),
                           ({"seed": 2**63}, "seed must be in [0, 2^63)")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            dataclasses.replace(config, **change).validate()
    assert config.validate() is config


def test_resume_with_a_corrupt_generator_state_leaves_the_run_as_it_was(paths, tmp_path, capsys):
    out = tmp_path / "run"
    assert aria_cli.main([str(a) for a in paths.options(out, "--steps", "2", "--no-progress")]) == 0
    rng = out / "checkpoints" / "step-0000002" / "rng-rank0.json"
    state = json.loads(rng.read_text())
    for corrupt, needle in (("{not json", "cannot read"),
                            (json.dumps({**state, "torch": "!!not base64"}), "corrupt generator state"),
                            (json.dumps({**state, "numpy": {"bit_generator": "PCG64", "state": 1}}),
                             "corrupt generator state")):
        rng.write_text(corrupt)
        before = snapshot(out)
        refused(paths.options(out, "--steps", "4", "--resume", "latest"), capsys, str(rng), needle)
        assert snapshot(out) == before


def test_distill_help_marks_only_the_needed_inputs_required(capsys):
    with pytest.raises(SystemExit):
        aria_cli.main(["distill", "--help"])
    printed = capsys.readouterr().out
    options = " ".join(printed[printed.index("\noptions:"):].split())  # past the usage block

    def described(flag: str) -> str:
        """The help of ``flag``: up to the next option's flag."""
        start = options.index(flag + " ")
        return options[start:options.index(" --", start + len(flag))]

    assert "(required)" not in described("--heldout") and "(default: none)" in described("--heldout")
    for required in ("--teacher", "--paired-cache", "--pool"):
        assert described(required).endswith("(required)")
    assert "no progress bar" in described("--no-progress")


def test_regions_help_names_every_pool_format(capsys):
    """A pool is read from .txt / .jsonl / .csv / .parquet / .arrow (aria_train.data.pool)."""
    with pytest.raises(SystemExit):
        aria_cli.main(["regions", "--help"])
    printed = " ".join(capsys.readouterr().out.split())
    described = printed[printed.index("--prompts FILE prompt pool"):]
    for suffix in (".txt", ".jsonl", ".csv", ".parquet", ".arrow"):
        assert suffix in described[:120], suffix


def test_distill_says_what_it_writes_after_the_last_step(paths, tmp_path, capsys):
    """After the last step the bar would sit at 100% while the checkpoint is written: its label
    says so. --no-progress leaves only the log lines (stdout)."""
    capsys.readouterr()
    assert aria_cli.main([str(a) for a in paths.options(tmp_path / "bar", "--steps", "2")]) == 0
    assert "step 2: writing the checkpoint" in capsys.readouterr().err
    assert aria_cli.main([str(a) for a in paths.options(tmp_path / "quiet", "--steps", "2", "--no-progress")]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "finished at step 2" in out


# ---------------------------------------------------------------- aria eval


@pytest.mark.parametrize("extra, needle", [
    (["--device", "bogus"], "--device 'bogus' is not a torch device"),
    pytest.param(["--device", "cuda"], "this torch has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is there")),
    (["--guidance", "nan"], "--guidance must be a number or null, got nan"),
    (["--guidance", "inf"], "--guidance must be a number or null, got inf"),
    (["--samples-per-region", "-1"], "--samples-per-region must be >= 0, got -1"),
    (["--max-per-region", "-1"], "--max-per-region must be >= 0, got -1"),
    (["--seed", "-1"], "seed must be in [0, 2^63), got -1"),
])
def test_eval_refuses_bad_values_before_writing(paths, heldout, tmp_path, capsys, extra, needle):
    out = tmp_path / "eval"
    refused(["eval", "--teacher", paths.teacher, "--student", paths.teacher / "unet", "--heldout", heldout,
             "--out", out, *extra], capsys, needle)
    assert not out.exists()


def test_eval_of_a_run_whose_newest_checkpoint_lacks_the_ema_says_so(paths, heldout, tmp_path, capsys):
    """Once: "couldn't connect to huggingface.co" (diffusers, not finding the folder, asked the Hub)."""
    import shutil

    run = tmp_path / "run"
    assert aria_cli.main([str(a) for a in paths.options(run, "--steps", "2", "--no-progress")]) == 0
    newest = sorted((run / "checkpoints").iterdir())[-1]
    shutil.rmtree(newest / "student_ema")
    refused(["eval", "--teacher", paths.teacher, "--student", run, "--heldout", heldout, "--out", tmp_path / "eval"],
            capsys, f"its newest checkpoint {newest.name} has no student_ema/")
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("bars", [True, False], ids=["bars", "no-progress"])
def test_eval_prints_its_stages(paths, heldout, tmp_path, capsys, bars):
    capsys.readouterr()
    argv = ["eval", "--teacher", paths.teacher, "--student", paths.teacher / "unet", "--heldout", heldout,
            "--out", tmp_path / "eval", "--steps", "1", "--timesteps", "500", "--samples-per-region", "1"]
    assert aria_cli.main([str(a) for a in argv + ([] if bars else ["--no-progress"])]) == 0
    printed = capsys.readouterr()
    stages = ["clean images: teacher samples of 3 held-out prompts", "discrepancy: 1 student(s) x 3 prompts",
              "sampling teacher: 3 prompts", "sampling unet: 3 prompts", "evaluation written to"]
    positions = [printed.out.index(stage) for stage in stages]
    assert positions == sorted(positions)
    assert ("DDIM: 100%" in printed.err) == bars, printed.err


def test_eval_of_prompts_without_regions_says_they_are_one_region(paths, tmp_path, capsys):
    plain = tmp_path / "prompts.txt"
    plain.write_text("a red circle\na white square\n")
    argv = ["eval", "--teacher", paths.teacher, "--student", paths.teacher / "unet", "--heldout", plain,
            "--out", tmp_path / "eval", "--steps", "1", "--timesteps", "500", "--samples-per-region", "1", "--no-progress"]
    assert aria_cli.main([str(a) for a in argv]) == 0
    assert f'note: {plain} has no region column: its 2 prompts are evaluated as one region "all"' in capsys.readouterr().out
    regions = pd.read_csv(tmp_path / "eval" / "discrepancy.csv")["region_name"].unique().tolist()
    assert regions == ["all"]


# ---------------------------------------------------------------- aria world


@pytest.mark.parametrize("extra, config, needle", [
    (["--image-size", "100000"], None, "image_size must be in [8, 512] pixels, got 100000"),  # once: a traceback
    ([], {"kind": "glyph", "paired_total": 0}, "paired_total must be >= 1"),  # once: accepted, failing later steps
    ([], {"kind": "glyph", "image_size": 4096}, "image_size must be at most 512 pixels"),
    (["--seed", "-1"], None, "seed must be in [0, 2^63), got -1"),  # once: "expected non-negative integer"
    (["--seed", str(2**70)], None, "seed must be in [0, 2^63)"),
    ([], {"kind": "glyph", "seed": -2}, "seed must be in [0, 2^63), got -2"),
])
def test_world_refuses_sizes_it_cannot_make(tmp_path, capsys, extra, config, needle):
    if config is not None:
        extra = ["--config", write_json(tmp_path / "world.json", config)]
    refused(["world", "--out", tmp_path / "w", "--check", "0", *extra], capsys, needle)
    assert not (tmp_path / "w").exists()


def test_a_world_folder_stands_for_its_world_json(tmp_path, capsys):
    """`aria world --out DIR` writes DIR/world.json; DIR itself was refused as "does not exist"."""
    folder = tmp_path / "w"
    assert aria_cli.main(["world", "--out", str(folder), "--check", "0"]) == 0
    assert aria_cli.main(["world", "--config", str(folder), "--out", str(tmp_path / "again"), "--check", "0"]) == 0
    assert (tmp_path / "again" / "world.json").read_text() == (folder / "world.json").read_text()
    refused(["world", "--config", tmp_path, "--out", tmp_path / "x"], capsys, "is a folder without a world.json")
    refused(["pool", folder, "--out", tmp_path / "p.arrow"], capsys, f"prompt file {folder} is a folder")
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    refused(["world", "--config", tmp_path / "binary.json", "--out", tmp_path / "x"], capsys,
            f"world config {tmp_path / 'binary.json'} is not valid JSON")


@pytest.mark.parametrize("flag, value, needle", [
    ("--null-prob", "1.5", "--null-prob must be in [0, 1], got 1.5"),  # once: one line for two options, no value
    ("--ema-decay", "1", "--ema-decay must be in [0, 1), got 1.0"),
    ("--workers", "-2", "workers must be >= -1"),  # once: training started
    ("--eval-steps", "1001", "--eval-steps must be <= the 1000 training timesteps"),  # once: failed after training
])
def test_teacher_names_the_bad_option_and_its_value(tmp_path, capsys, flag, value, needle):
    refused(["teacher", "--out", tmp_path / "t", flag, value], capsys, needle)
    assert not (tmp_path / "t").exists()


def test_teacher_stops_at_a_non_finite_loss(tmp_path, capsys):
    """A diverging run stops at its first logged non-finite loss, not after every step and the
    evaluation (it used to end in a pandas error about NA values), and leaves nothing."""
    refused(["teacher", "--out", tmp_path / "t", "--steps", "3", "--log-every", "1", "--lr", "1e30",
             "--max-grad-norm", "0", "--channels", "8", "8", "--norm-groups", "4", "--batch-size", "4",
             "--eval-per-region", "0", "--no-progress"], capsys, "the training loss is not finite at step")
    assert not (tmp_path / "t").exists()


def test_running_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import aria_train.cli.world as world_cli

    def exhausted(args):
        raise MemoryError("Unable to allocate 1.16 TiB for an array")
    monkeypatch.setattr(world_cli, "run", exhausted)
    refused(["world", "--out", tmp_path / "w"], capsys, "out of memory: Unable to allocate 1.16 TiB")


# ---------------------------------------------------------------- aria pool


def test_pool_refuses_a_region_column_it_does_not_have(tmp_path, capsys):
    source = tmp_path / "prompts.csv"
    source.write_text("text,region\na red circle,0\na blue square,1\n")
    out = tmp_path / "pool.arrow"
    refused(["pool", source, "--out", out, "--region-column", "regoin"], capsys, "has no column 'regoin'")
    assert not out.exists()  # once: a pool without regions, written silently
    assert aria_cli.main(["pool", str(source), "--out", str(out)]) == 0  # the default column, found
    assert "2 regions" in capsys.readouterr().out
    (tmp_path / "plain.csv").write_text("text\na red circle\n")
    written = out.read_bytes()
    refused(["pool", tmp_path / "plain.csv", "--out", out], capsys, f"output {out} already exists (pass --overwrite")
    assert out.read_bytes() == written
    assert aria_cli.main(["pool", str(tmp_path / "plain.csv"), "--out", str(out), "--overwrite"]) == 0  # the default is optional
    assert "1 prompts" in capsys.readouterr().out and out.read_bytes() != written


# ---------------------------------------------------------------- aria report


def test_a_refused_report_leaves_no_partial_file(paths, tmp_path, capsys):
    run = tmp_path / "run"
    assert aria_cli.main([str(a) for a in paths.options(run, "--steps", "2", "--no-progress")]) == 0
    folder = tmp_path / "report"
    (folder / "inside").mkdir(parents=True)
    before = snapshot(tmp_path)
    refused(["report", run, "--out", folder], capsys, f"--out {folder} is a folder")
    refused(["report", paths.teacher, "--out", tmp_path / "r.html"], capsys, "not a distillation run directory")
    refused(["report", run, "--eval", paths.teacher, "--out", tmp_path / "r.html"], capsys,
            "is not an `aria eval` folder")
    # the run's own metrics (an input) given as --out: once replaced by the page, breaking the run
    refused(["report", run, "--out", run / "metrics.jsonl"], capsys, "exists and is not a report of this command")
    assert snapshot(tmp_path) == before and not list(tmp_path.glob("*.partial"))
    assert aria_cli.main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert aria_cli.main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0  # its own report: replaced


# ---------------------------------------------------------------- help texts


def all_help_texts(capsys) -> dict[str, str]:
    texts = {}
    for group, name in aria_cli.COMMANDS:
        argv = [group, name] if group else [name]
        with pytest.raises(SystemExit):
            aria_cli.main([*argv, "--help"])
        texts[" ".join(argv)] = capsys.readouterr().out
    return texts


def test_help_and_docstrings_cite_sections_of_docs_design_md_that_exist(capsys):
    """The help texts once cited "DESIGN §N", a file the repository does not have: every
    reference is to docs/design.md, and to one of its numbered sections."""
    sections = set(re.findall(r"^##+ (\d+(?:\.\d+)?)[. ]", (REPO / "docs" / "design.md").read_text(), re.M))
    sources = {str(p.relative_to(REPO)): p.read_text() for p in (REPO / "aria_train").rglob("*.py")}
    for where, text in {**sources, **all_help_texts(capsys)}.items():
        assert "DESIGN" not in text, where
        for cited in re.findall(r"design\.md §(\d+(?:\.\d+)?)", " ".join(text.split())):
            assert cited in sections, f"{where} cites docs/design.md §{cited}, which has no such section"
