"""Timing and reporting shared by the benchmarks."""
from __future__ import annotations

import argparse
import contextlib
import csv
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call. CPU time is what the work costs
    when the machine is shared; wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def report(name: str, rows: list[dict], out_dir: Path | None = None, show: bool = True) -> Path:
    """Write rows to out_dir/name.csv (with the host and the time) and, with `show`, print them as
    a table (a benchmark that saves after every row, so that a run cut short keeps them, shows
    the table once, at the end). Rows from `read_rows` keep their own host and time."""
    out = out_dir or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stamp = {"host": platform.node(), "python": platform.python_version(),
             "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    rows = [{**row, **{k: v for k, v in stamp.items() if k not in row}} for row in rows]  # read_rows' keep theirs
    keys = list(dict.fromkeys(k for row in rows for k in row))  # rows of an older run may lack a newer column
    shown = [k for k in keys if k not in stamp]
    widths = {k: max(len(k), *(len(_fmt(r.get(k, ""))) for r in rows)) for k in shown}
    if show:
        print("  ".join(k.rjust(widths[k]) for k in shown))
        for row in rows:
            print("  ".join(_fmt(row.get(k, "")).rjust(widths[k]) for k in shown))
    path = out / f"{name}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV that `report` wrote (none if there is no such file), numbers as numbers,
    so that a later run can add its rows to them (``report(name, read_rows(path) + rows)``)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def number(text: str) -> object:
    """``text`` as an int or a float where it reads as one, else unchanged."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def end_to_end_parser(name: str, doc: str, sizes: tuple[str, ...], what: str) -> argparse.ArgumentParser:
    """The parser of the end-to-end benchmark ``bench.<name>`` with its --size option (``what`` is
    sized: sd14 on a GPU, tiny on the CPU); `parse_args` adds the options they all share."""
    import torch

    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sizes, default="sd14" if torch.cuda.is_available() else "tiny",
                        help=f"{what} size (default: sd14 on a GPU, tiny on the CPU)")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str], quick: dict) -> argparse.Namespace:
    """``argv`` parsed after adding the options every end-to-end benchmark has: --quick (the
    defaults replaced by ``quick``'s values, a CPU run of seconds; options given still win),
    --out (the CSV folder) and --work (where model folders and inputs are built and kept)."""
    parser.add_argument("--quick", action="store_true", help="a run of seconds on the CPU: "
                        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in quick.items()))
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV folder (default: bench/results)")
    parser.add_argument("--work", type=Path, default=None, help="folder for model folders and inputs, kept and reused "
                        "by later runs (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


@contextlib.contextmanager
def work_folder(work: Path | None) -> Iterator[Path]:
    """``work`` (created if missing), or a temporary folder removed afterwards."""
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        yield work
        return
    with tempfile.TemporaryDirectory() as temporary:
        yield Path(temporary)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
