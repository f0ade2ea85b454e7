"""Monte Carlo throughput of the trackers: one region per path, one `update` per time step.

Target (issue 3): 10^4 paths x 10^4 steps of RegionTracker in under 10 s on the 2-core machine.
Values come from a pre-drawn block of 64 steps reused cyclically, so the time is the tracker's
alone. Also: the tracker with step="auto", the Kalman tracker, irregular observation (each path
seen with probability 0.1 per step) and the trainer's pattern (16 regions, a batch of 64
observations per step, regions repeating within a step).
"""
from __future__ import annotations

import argparse

import numpy as np

from aria_theory.tracker import KalmanTracker, RegionTracker
from bench.common import report, timed


def _run(tracker, steps: int, ids_block: list[np.ndarray], values: np.ndarray) -> None:
    for t in range(steps):
        ids = ids_block[t % len(ids_block)]
        tracker.update(ids, values[t % len(values), :ids.size])


def cases(scale: float) -> list[dict]:
    rng = np.random.default_rng(0)
    paths, steps = 10_000, max(1, int(10_000 * scale))
    values = rng.standard_normal((64, paths))
    everyone = [np.arange(paths)]
    sparse = [np.flatnonzero(rng.random(paths) < 0.1) for _ in range(64)]
    batch = [rng.integers(0, 16, 64) for _ in range(64)]
    short = max(1, steps // 10)
    return [
        {"case": "RegionTracker a=0.05", "make": lambda: RegionTracker(paths, step=0.05), "ids": everyone,
         "paths": paths, "steps": steps},
        {"case": "RegionTracker p=0.1", "make": lambda: RegionTracker(paths, step=0.05), "ids": sparse,
         "paths": paths, "steps": steps},
        {"case": "RegionTracker step=auto", "make": lambda: RegionTracker(paths, step="auto"), "ids": everyone,
         "paths": paths, "steps": short},
        {"case": "KalmanTracker", "make": lambda: KalmanTracker(paths, q=1e-4, r=1.0), "ids": everyone,
         "paths": paths, "steps": short},
        {"case": "RegionTracker K=16 batch=64", "make": lambda: RegionTracker(16, step=0.05), "ids": batch,
         "paths": 16, "steps": short},
    ], values


def main(scale: float = 1.0) -> list[dict]:
    specs, values = cases(scale)
    rows = []
    for spec in specs:
        tracker = spec["make"]()
        wall, cpu = timed(lambda: _run(tracker, spec["steps"], spec["ids"], values))
        observations = spec["steps"] * np.mean([ids.size for ids in spec["ids"]])
        rows.append({"case": spec["case"], "paths": spec["paths"], "steps": spec["steps"], "wall_s": wall,
                     "cpu_s": cpu, "path_steps_per_s": spec["paths"] * spec["steps"] / wall,
                     "observations_per_s": observations / wall, "us_per_update": 1e6 * wall / spec["steps"]})
    report("tracker_throughput", rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default steps (default %(default)s)")
    main(parser.parse_args().scale)
