"""Throughput of the allocation simulator: one run = `steps` updates of `batch` samples on the
"imbalanced" world (16 regions), per policy; steps/s and trained samples/s, wall and CPU time.
The tracker's update dominates: samples of one region within a step are applied in order,
one numpy pass per repeat, so the cost grows with the batch size."""
from __future__ import annotations

import argparse

from bench.common import report, timed
from simulations import allocation as sim


def main(scale: float = 1.0) -> list[dict]:
    world = sim.build_world("imbalanced", 0)
    steps = max(1, int(2000 * scale))
    rows = []
    reference = world.initial
    for batch in (32, 64):
        config = sim.SimConfig(steps=steps, batch=batch, log_every=50)
        for policy in ("rc", "aria:beta=1:eps=0.2:a=0.05", "exp3", "doremi:eta=0.01", "oracle"):
            spec = sim.PolicySpec.parse(policy)
            wall, cpu = timed(lambda: sim.simulate(world, config, spec, 0, reference))
            rows.append({"policy": spec.label, "batch": batch, "steps": steps, "wall_s": wall, "cpu_s": cpu,
                         "steps_per_s": steps / wall, "samples_per_s": steps * batch / wall})
    report("allocation_sim_throughput", rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default steps (default %(default)s)")
    main(parser.parse_args().scale)
