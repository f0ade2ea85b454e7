"""Regenerate every paper figure: ``python -m paper_figures --out DIR [--data DIR] [--only NAME]``.

Each ``paper_figures/fig_<name>.py`` has ``main(out_dir, data_dir=None)``; with --data it reads
the CSV outputs of ``aria sim rates`` / ``aria sim allocation`` found there (or one folder below),
otherwise it computes its data on quick settings.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

import paper_figures


def figure_modules() -> list[str]:
    """Names of the figure scripts (fig_*), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(paper_figures.__path__) if m.name.startswith("fig_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper_figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder (default %(default)s)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with simulation CSVs to plot instead of computing (default: compute)")
    parser.add_argument("--only", action="append", default=None, choices=figure_modules(), metavar="NAME",
                        help="make only this figure (repeatable; choices: %(choices)s)")
    args = parser.parse_args(argv)
    if args.data is not None and not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder")
    total = time.perf_counter()
    for name in args.only or figure_modules():
        start = time.perf_counter()
        module = importlib.import_module(f"paper_figures.{name}")
        paths = module.main(args.out, args.data)
        print(f"{name}: {time.perf_counter() - start:5.1f} s -> {', '.join(str(p) for p in paths)}")
    print(f"all figures: {time.perf_counter() - total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
