"""Timing and reporting shared by the benchmarks."""
from __future__ import annotations

import csv
import platform
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call. CPU time is what the work costs
    when the machine is shared; wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def report(name: str, rows: list[dict], out_dir: Path | None = None) -> Path:
    """Print rows as a table and write them to out_dir/name.csv (with the host and the time)."""
    out = out_dir or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stamp = {"host": platform.node(), "python": platform.python_version(),
             "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    rows = [{**row, **stamp} for row in rows]
    keys = list(rows[0])
    shown = [k for k in keys if k not in stamp]
    widths = {k: max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in shown}
    print("  ".join(k.rjust(widths[k]) for k in shown))
    for row in rows:
        print("  ".join(_fmt(row[k]).rjust(widths[k]) for k in shown))
    path = out / f"{name}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
