"""The lag-1 loop rates of bench.distill_e2e's committed SD-size runs, recomputed without the run's
final metrics record (issue 16; docs/benchmarks.md). Until 2026-12-06 the benchmark's
``loop_images_per_s`` included that record, which at ``--feedback-lag 1`` counts two steps (one
read by the last step's push, one by the closing drain) over one host interval holding 1.2-1.6
steps of device work, so the rate came out 2.6-3.6% high over a 20-30 step window. The benchmark
now leaves it out; for the runs before, the step-interval JSON it wrote gives the same window:

* a lag-1 record of step r is written during step r + 1 (after that step's push has read step r),
  so the records from the end of warm-up to the last record before the final step span the host
  intervals of steps warmup + 2 .. last record + 1, one interval per counted step;
* the host's clock over the steps after warm-up but the last (``host_images_per_s``) beside it.

    python -m scripts.e2e_rates_without_final_record [--out DIR]    # a second, from committed files

writes OUT/distill_e2e_lag1_rates_without_final_record.csv (default bench/results).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from bench.distill_e2e import record_interval

RESULTS = Path("bench/results")
# (step-interval JSON, CSV whose last rc lag-1 row is that run): the unprofiled lag-1 SD-size runs
RUNS = [("distill_e2e_step_ms_sd14_lag1_h100.json", "distill_e2e_sd14_lag1_h100.csv"),
        ("distill_e2e_step_ms_sd14_lag1_h200.json", "distill_e2e_sd14_lag1_h200.csv"),
        ("distill_e2e_step_ms_sd14_lag1_ema_offload_h100.json", "distill_e2e_sd14_lag1_ema_offload_h100.csv"),
        ("distill_e2e_step_ms_sd14_sdpa_compiled_loss_h100.json", "distill_e2e_sd14_sdpa_compiled_loss_h100.csv"),
        ("distill_e2e_step_ms_sd14_fa4_self_compiled_loss_h100.json", "distill_e2e_sd14_fa4_self_compiled_loss_h100.csv"),
        ("distill_e2e_step_ms_sd14_fa4_self_compiled_loss_repeat_h100.json",
         "distill_e2e_sd14_fa4_self_compiled_loss_repeat_h100.csv")]


def rates(intervals_ms: np.ndarray, batch: int, warmup: int, steps: int) -> tuple[float, float]:
    """(the records' rate without the final record, the host's rate without the last step) of a
    lag-1 run whose ``intervals_ms`` are those of steps warmup + 1 .. steps."""
    every = record_interval(warmup)
    last_record = (steps - 1) // every * every
    # the intervals of steps warmup + 2 .. last_record + 1; the last step's (the drain's) not among them
    assert last_record + 1 < steps, "the last record's step is the one before the last: its interval is the drain's"
    window = intervals_ms[1:last_record - warmup + 1]
    return batch * len(window) * 1e3 / float(window.sum()), batch * 1e3 / float(intervals_ms[:-1].mean())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m scripts.e2e_rates_without_final_record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV folder (default: %(default)s)")
    args = parser.parse_args(argv)
    rows = []
    for intervals_file, csv_file in RUNS:
        with (RESULTS / csv_file).open(newline="") as handle:
            run = [r for r in csv.DictReader(handle) if r["method"] == "rc" and r["feedback_lag"] == "1"][-1]
        intervals = np.array(json.loads((RESULTS / intervals_file).read_text())["rc_lag1"]["step_ms"])
        steps, warmup, batch = int(run["loop_steps"]), int(run["warmup_steps"]), int(run["batch"])
        assert len(intervals) == steps - warmup, (intervals_file, len(intervals))
        records, host = rates(intervals, batch, warmup, steps)
        before, step_rate = float(run["loop_images_per_s"]), float(run["step_images_per_s"])
        rows.append({"csv": csv_file, "device": run["device"], "attention": run.get("attention", "sdpa"),
                     "ema_offload": run.get("ema_offload", "False"), "step_images_per_s": round(step_rate, 2),
                     "loop_images_per_s_before": round(before, 2), "loop_images_per_s": round(records, 2),
                     "loop_over_step": round(records / step_rate, 4), "host_images_per_s": round(host, 2),
                     "host_over_step": round(host / step_rate, 4),
                     "loop_mfu": round(float(run["loop_mfu"]) * records / before, 4),
                     "final_interval_in_steps": round(float(intervals[-1] / np.median(intervals[:-1])), 2)})
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "distill_e2e_lag1_rates_without_final_record.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(f"{row['csv']}: {row['loop_images_per_s_before']} -> {row['loop_images_per_s']} img/s "
              f"({row['loop_over_step']} of the step; host's clock {row['host_images_per_s']})")
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
