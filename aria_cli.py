"""The `aria` command: one subcommand per job, each implemented in its own module.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; its docstring's
first line is the one-line help. Modules import their heavy dependencies (torch, diffusers)
inside ``run`` so that ``aria --help`` and the theory commands start fast.

Bad input is reported as one line on stderr with exit status 2 (set ARIA_DEBUG=1 for the
traceback): the modules raise ``ValueError`` / ``OSError`` with a message meant for the user.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

# (group, name) -> module. group None is a top-level subcommand.
COMMANDS: dict[tuple[str | None, str], str] = {
    ("sim", "bounds"): "simulations.bounds_check",
    ("sim", "rates"): "simulations.rates",
    ("sim", "allocation"): "simulations.allocation",
    (None, "world"): "aria_train.cli.world",
    (None, "teacher"): "aria_train.cli.teacher",
    (None, "pool"): "aria_train.cli.pool",
    (None, "regions"): "aria_train.cli.regions",
    (None, "cache"): "aria_train.cli.cache",
    (None, "distill"): "aria_train.cli.distill",
    (None, "eval"): "aria_train.cli.eval",
    (None, "report"): "aria_train.cli.report",
    (None, "experiment"): "aria_train.cli.experiment",
}
GROUP_HELP = {"sim": "numerical checks of the tracker theory and allocation studies (no torch needed)"}


def _help_line(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""


def _add_command(subparsers: argparse._SubParsersAction, name: str, module_name: str) -> None:
    module = importlib.import_module(module_name)
    parser = subparsers.add_parser(
        name,
        help=_help_line(module),
        description=(module.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: a bad flag or value is one line on stderr (no usage
    block in front of it) and exit status 2. Subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def add_argument(self, *names, **kwargs):
        if "--out" in names:  # every command's output path: '' would be Path('.'), the working directory
            kwargs["type"] = _not_empty(kwargs.get("type") or str)
        if kwargs.get("required") and "required" not in kwargs.get("help", "required"):
            kwargs["help"] += " (required)"  # the usage line's brackets are easy to miss
        return super().add_argument(*names, **kwargs)


def _not_empty(convert):
    """``convert`` (an argparse type) that refuses an empty or blank value first."""
    def checked(text: str):
        if not text.strip():
            raise argparse.ArgumentTypeError("an empty path (it would mean the working directory)")
        return convert(text)
    return checked


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="aria",
        description="ARIA: distil conditional diffusion models with adaptive region-based "
        "importance allocation. Run `aria COMMAND --help` for a command's options and units.",
    )
    top = parser.add_subparsers(title="commands", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for (group, name), module_name in COMMANDS.items():
        if group is None:
            _add_command(top, name, module_name)
            continue
        if group not in groups:
            group_parser = top.add_parser(group, help=GROUP_HELP.get(group, ""), description=GROUP_HELP.get(group, ""))
            groups[group] = group_parser.add_subparsers(title=f"{group} commands", metavar="COMMAND")
            group_parser.set_defaults(_run=None, _parser=group_parser)
        _add_command(groups[group], name, module_name)
    parser.set_defaults(_run=None, _parser=parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args._run is None:
        args._parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("aria: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, MemoryError) as err:  # MemoryError: sizes beyond what any check bounds
        if os.environ.get("ARIA_DEBUG"):
            raise
        print(f"aria: error: {'out of memory: ' if isinstance(err, MemoryError) else ''}{err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
