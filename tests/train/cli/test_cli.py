"""Every `aria` subcommand's --help renders (a stray '%' in an option's help breaks argparse's
formatting only when help is asked for) and states defaults."""
import pytest

import aria_cli


@pytest.mark.parametrize("command", sorted(aria_cli.COMMANDS, key=lambda c: (c[0] or "", c[1])),
                         ids=lambda c: " ".join(p for p in c if p))
def test_every_command_help_renders_with_defaults(command, capsys):
    argv = [part for part in command if part] + ["--help"]
    with pytest.raises(SystemExit) as done:
        aria_cli.main(argv)
    assert done.value.code == 0
    assert "default" in capsys.readouterr().out


def test_building_the_parser_imports_no_heavy_library():
    """`aria --help` and the theory commands start in well under a second: no module's
    ``add_arguments`` may import torch, diffusers or transformers (one did: ~6 s before the help)."""
    import subprocess
    import sys

    code = ("import sys, aria_cli; aria_cli.build_parser(); "
            "print(' '.join(m for m in ('torch', 'diffusers', 'transformers', 'accelerate') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_no_option_states_two_defaults(capsys):
    """An option whose help explains its default ("(default: the teacher's ...)") gets no second,
    generated "(default: none)" (the audit found four such in eval, two in distill)."""
    import re

    for command in aria_cli.COMMANDS:
        with pytest.raises(SystemExit):
            aria_cli.main([part for part in command if part] + ["--help"])
        text = " ".join(capsys.readouterr().out.split())
        for option in re.split(r" (?=--[a-z])", text):
            assert option.count("(default") <= 1, (command, option)


@pytest.mark.parametrize("command", sorted(aria_cli.COMMANDS, key=lambda c: (c[0] or "", c[1])),
                         ids=lambda c: " ".join(p for p in c if p))
@pytest.mark.parametrize("out", ["", "  "])
def test_every_command_refuses_an_empty_output_path(command, out, tmp_path, capsys, monkeypatch):
    """`--out ''` was Path('.'): the working directory, which `aria world` filled and `--overwrite`
    could replace. Every command refuses it while parsing, before reading anything."""
    monkeypatch.chdir(tmp_path)
    argv = [part for part in command if part] + (["experiment.json"] if command == (None, "experiment") else [])
    with pytest.raises(SystemExit) as done:
        aria_cli.main(argv + ["--out", out])
    assert done.value.code == 2
    assert "argument --out: an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_every_required_option_says_so_in_its_help():
    """`aria cache --help` marked none of its three required options; only the usage line's missing
    brackets told."""
    import argparse

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):
                    yield from parsers(sub)

    required = [(parser.prog, action.option_strings[0], action.help) for parser in parsers(aria_cli.build_parser())
                for action in parser._actions if action.required and action.option_strings]
    assert len(required) >= 10 and all("(required" in text for _, _, text in required), required
