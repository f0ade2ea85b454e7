"""`aria sim allocation / rates / bounds` flags (issue 15): --quick supplies defaults but never
overrides a flag given explicitly, and counts or fractions out of range are one `aria: error:`
line naming the flag, exit 2, before anything runs or is written.

Everything runs in this process through `aria_cli.main`; runs are a few steps of one scenario,
and the rates / bounds configs are read back without running their studies.
"""
from __future__ import annotations

import argparse
import json

import pytest

import aria_cli
from aria_train.runs import atomic
from simulations import allocation, bounds_check, rates
from cli_errors import refused


def parse(module, argv: list[str]):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- aria sim allocation

TINY = ["--scenarios", "imbalanced", "--policies", "rc", "--seeds", "1"]


def test_allocation_quick_keeps_explicit_flags(tmp_path, capsys):
    out = tmp_path / "out"
    assert aria_cli.main(["sim", "allocation", *TINY, "--quick", "--steps", "7", "--batch", "5",
                          "--log-every", "3", "--switch", "0.5", "--out", str(out)]) == 0
    config = json.loads((out / "allocation_config.json").read_text())["config"]
    assert config == {"steps": 7, "batch": 5, "switch": 0.5, "log_every": 3}


QUICK = allocation.QUICK


@pytest.mark.parametrize("argv, expected", [
    ([], allocation.SimConfig()),
    (["--quick"], QUICK),
    (["--quick", "--steps", "100"], allocation.SimConfig(100, QUICK.batch, QUICK.switch, QUICK.log_every)),
    (["--batch", "4", "--log-every", "1"], allocation.SimConfig(batch=4, log_every=1)),
    (["--quick", "--switch", "0"], allocation.SimConfig(QUICK.steps, QUICK.batch, 0.0, QUICK.log_every)),
])
def test_allocation_config_is_defaults_then_quick_then_given_flags(argv, expected):
    assert allocation.sim_config(parse(allocation, argv)) == expected


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--steps", "-5"], "--steps must be >= 1"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--log-every", "0"], "--log-every must be >= 1, got 0"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--seeds", "-1"], "--seeds must be >= 1"),
    (["--switch", "-0.1"], "--switch must be in [0, 1], got -0.1"),
    (["--switch", "1.5"], "--switch must be in [0, 1]"),
    (["--switch", "nan"], "--switch must be in [0, 1]"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--scenarios", "testbed:k=abc"], "test-bed key k takes an integer, got 'abc'"),  # once: a bare int() error
    (["--scenarios", "testbed:tau=x"], "test-bed key tau takes a number, got 'x'"),
])
@pytest.mark.parametrize("quick", [[], ["--quick"]], ids=["plain", "quick"])
def test_allocation_refuses_meaningless_values_before_writing(argv, needle, quick, tmp_path, capsys):
    out = tmp_path / "out"
    refused(["sim", "allocation", *TINY, *quick, *argv, "--out", out], capsys, needle)
    assert not out.exists()


# ---------------------------------------------------------------- aria sim rates

@pytest.mark.parametrize("argv, paths, window", [
    ([], rates.RatesConfig.paths, rates.RatesConfig.window),
    (["--quick"], rates.QUICK.paths, rates.QUICK.window),
    (["--quick", "--paths", "50"], 50, rates.QUICK.window),
    (["--quick", "--window", "30"], rates.QUICK.paths, 30),
    (["--paths", "3", "--window", "4"], 3, 4),
])
def test_rates_quick_keeps_explicit_flags(argv, paths, window):
    config = rates.rates_config(parse(rates, argv))
    assert (config.paths, config.window) == (paths, window)
    quick = "--quick" in argv
    assert config.num_steps_grid == (rates.QUICK if quick else rates.RatesConfig()).num_steps_grid


@pytest.mark.parametrize("argv, needle", [
    (["--paths", "1"], "--paths must be >= 2, got 1"),
    (["--paths", "0"], "--paths must be >= 2"),
    (["--window", "0"], "--window must be >= 1, got 0"),
    (["--sigma", "0"], "--sigma must be a number in [1e-100, 1e100]"),
    (["--sigma", "nan"], "--sigma must be a number in [1e-100, 1e100]"),
    (["--sigma", "1e-300"], "--sigma must be a number in [1e-100, 1e100]"),  # its square underflowed to 0
    (["--delta", "-1"], "--delta must be a number in [1e-100, 1e100]"),
    (["--delta", "1e308"], "--delta must be a number in [1e-100, 1e100]"),  # its square overflowed: a traceback
    (["--delta-p", "inf"], "--delta-p must be a number in [1e-100, 1e100]"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
@pytest.mark.parametrize("quick", [[], ["--quick"]], ids=["plain", "quick"])
def test_rates_refuses_meaningless_values_before_writing(argv, needle, quick, tmp_path, capsys):
    out = tmp_path / "out"
    refused(["sim", "rates", *quick, *argv, "--out", out], capsys, needle)
    assert not out.exists()


# ---------------------------------------------------------------- aria sim bounds

class _Stop(Exception):
    pass


@pytest.mark.parametrize("argv, paths, steps", [
    (["--quick"], bounds_check.QUICK["paths"], bounds_check.QUICK["steps"]),
    (["--quick", "--paths", "40"], 40, bounds_check.QUICK["steps"]),
    (["--quick", "--steps", "30"], bounds_check.QUICK["paths"], 30),
])
def test_bounds_quick_keeps_explicit_flags(argv, paths, steps, tmp_path, monkeypatch):
    seen = []

    def first_cell(job):  # record the run's config at its first cell, then stop before any output
        seen.append(job[1])
        raise _Stop

    monkeypatch.setattr(bounds_check, "_check_job", first_cell)
    with pytest.raises(_Stop):
        bounds_check.run(parse(bounds_check, [*argv, "--workers", "1", "--out", str(tmp_path / "out")]))
    assert (seen[0].paths, seen[0].steps) == (paths, steps)
    assert seen[0].steps_a == bounds_check.QUICK["steps_a"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--paths", "1"], "--paths must be >= 2, got 1"),
    (["--paths", "0"], "--paths must be >= 2"),
    (["--steps", "0"], "--steps must be >= 21, got 0"),
    (["--steps", "-3"], "--steps must be >= 21"),
    (["--steps", "20"], "--steps must be >= 21, got 20: the slope checks"),  # once: "All-NaN slice encountered"
    (["--alpha", "0"], "--alpha and --eta must be in (0, 1)"),
    (["--eta", "nan"], "--alpha and --eta must be in (0, 1)"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--workers", "-1"], "--workers must be >= 0"),
])
def test_bounds_refuses_meaningless_values_before_writing(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    refused(["sim", "bounds", "--quick", *argv, "--out", out], capsys, needle)
    assert not out.exists()


def test_help_states_the_defaults_and_quick_values(capsys):
    for command, texts in (("allocation", [f"default {allocation.SimConfig.steps}; --quick: {QUICK.steps}",
                                           "explicitly keep their values"]),
                           ("rates", [f"default {rates.RatesConfig.paths}; --quick: {rates.QUICK.paths}"])):
        with pytest.raises(SystemExit):
            aria_cli.main(["sim", command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for expected in texts:
            assert expected in text, (command, expected)


@pytest.mark.parametrize("command", [["bounds", "--quick"], ["rates", "--quick"], ["allocation", *TINY, "--quick"]])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_simulation(command, tmp_path, capsys,
                                                                                  monkeypatch):
    """`aria sim bounds --out /proc/x` computed for 3.5 minutes, then failed with errno text as it wrote."""
    def never(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(rates, "run_rates", never)
    monkeypatch.setattr(bounds_check, "_check_job", never)
    monkeypatch.setattr(allocation.cli, "run_study", never)
    a_file = tmp_path / "a_file"
    a_file.write_text("kept")
    refused(["sim", *command, "--out", a_file], capsys, f"cannot write into --out {a_file}: {a_file} is a file")
    refused(["sim", *command, "--out", a_file / "below"], capsys, f"{a_file} is a file")
    assert a_file.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_a_folder_without_write_permission_is_named_once_with_the_reason(tmp_path, capsys, monkeypatch):
    """The probe's own message named the folder again ("cannot write into --out X: cannot write under
    X: ..."). Denied by a stub of the probe's mkdtemp: a read-only folder does not stop root."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rates, "run_rates", lambda *a, **k: pytest.fail("simulated before checking --out"))
    monkeypatch.setattr(atomic.tempfile, "mkdtemp", denied)
    line = refused(["sim", "rates", "--quick", "--out", tmp_path], capsys)
    assert line == f"aria: error: --out {tmp_path}: cannot write under {tmp_path}: Permission denied"
