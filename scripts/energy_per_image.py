"""Energy per image of the SD-size compiled step on an H100, from the committed step benchmarks that
recorded NVML's power draw over their timed steps (issue 16; docs/benchmarks.md, *Kernel candidates*).

An H100 runs the step at its 700 W limit (670-694 W drawn, the SM clock held at ~1,770-1,810 of
1,980 MHz), so images/s is the power drawn over the energy one image takes: a change pays only if
it takes less energy per image, not merely less time at full clock. Per benchmark configuration
(attention, ``-unpadded40`` where FA4's backward ran unpadded at width 40 on a patched FA4; teacher stream;
1x1 convolutions as matrix products; FP8 teacher; upsampling as a broadcast; the student's convolution
gradients channels-last-dense; the last two false in the CSVs from before their columns) in each CSV: the mean step time,
power and SM clock over its rows, joules per step (power x step time) and per image, and the
images/s that energy would give at the mean power drawn by all rows (the clock the limit allows
is what changes, not the power). The issue's 165 images/s at that power needs the last column's
energy per image.

    python -m scripts.energy_per_image [--out DIR]    # a second, from committed files

writes OUT/energy_per_image_sd14_h100.csv (default bench/results).
"""
from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from bench.common import RESULTS, report

TARGET_IMAGES_PER_S = 165.0
# the compiled SD-size step benchmarks at batch 64 on H100s with NVML columns (2026-12-06; FP8's A/B in one call
# on another H100, the FA4 backward's on a third, the broadcast's fa4-self profile on a fourth, the dense convolution
# gradients' A/B in two orders on a fifth, and with fa4-self on a sixth, after the loop's step profiled there)
STEPS = ["distill_step_sd14_teacher_stream_h100.csv", "distill_step_sd14_fa4_self_teacher_stream_h100.csv",
         "distill_step_sd14_fa4_self_nvml_h100.csv", "distill_step_sd14_candidate_base_h100.csv",
         "distill_step_sd14_candidate_pointwise_h100.csv", "distill_step_sd14_candidate_pointwise_teacher_h100.csv",
         "distill_step_sd14_candidate_base_again_h100.csv", "distill_step_sd14_candidate_fp8_h100.csv",
         "distill_step_sd14_candidate_base_beside_fp8_h100.csv", "distill_step_sd14_fa4_self_patched_bwd_h100.csv",
         "distill_step_sd14_fa4_self_patched_bwd_aot_cache_h100.csv",
         "distill_step_sd14_fa4_self_padded_beside_patched_h100.csv", "distill_step_sd14_candidate_upsample_h100.csv",
         "distill_step_sd14_candidate_base_after_upsample_h100.csv",
         "distill_step_sd14_candidate_base_before_upsample_h100.csv",
         "distill_step_sd14_candidate_upsample_again_h100.csv", "distill_step_sd14_candidate_fa4_self_upsample_h100.csv",
         "distill_step_sd14_candidate_fa4_self_base_h100.csv", "distill_step_sd14_fa4_self_broadcast_nvml_h100.csv",
         "distill_step_sd14_candidate_densegrad_h100.csv", "distill_step_sd14_candidate_base_after_densegrad_h100.csv",
         "distill_step_sd14_candidate_base_before_densegrad_h100.csv",
         "distill_step_sd14_candidate_densegrad_again_h100.csv", "distill_step_sd14_fa4_self_densegrad_nvml_h100.csv",
         "distill_step_sd14_candidate_fa4_self_stridedgrad_h100.csv",
         "distill_step_sd14_candidate_fa4_self_densegrad_h100.csv"]
# the teacher-only row ran before --pointwise-matmul took a value: its column reads False (docs/gpu_runs/)
CONFIGURATION = {"distill_step_sd14_candidate_pointwise_teacher_h100.csv": "teacher",
                 "distill_step_sd14_candidate_pointwise_h100.csv": "both"}
# FA4's backward at width 40 unpadded, on FA4 with its interface patched (scripts/fa4_patched_step.py; the second
# run's graphs came from torch's AOTAutograd cache of the first: the same backward); every other fa4 row pads
UNPADDED_FA4_BACKWARD = {"distill_step_sd14_fa4_self_patched_bwd_h100.csv",
                         "distill_step_sd14_fa4_self_patched_bwd_aot_cache_h100.csv"}


def configurations(path: Path) -> dict[tuple[str, str, str, str, str, str], list[dict]]:
    """The timed rc and aria rows of one CSV by (attention, with FA4's backward unpadded at width 40 marked
    ``-unpadded40``, teacher stream, 1x1 convolutions as matrix products, FP8 teacher, upsampling as a broadcast,
    the student's convolution gradients channels-last-dense)."""
    groups: dict[tuple[str, str, str, str, str, str], list[dict]] = {}
    for row in csv.DictReader(path.open()):
        if row["method"] in ("rc", "aria"):
            pointwise = CONFIGURATION.get(path.name, "none")
            attention = row["attention"] + ("-unpadded40" if path.name in UNPADDED_FA4_BACKWARD else "")
            key = (attention, row["teacher_stream"], pointwise, row["teacher_fp8"], row.get("upsample_broadcast", "False"),
                   row.get("dense_conv_grads", "False"))
            groups.setdefault(key, []).append(row)
    return groups


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m scripts.energy_per_image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV folder (default: bench/results)")
    args = parser.parse_args(argv)
    rows = []
    for name in STEPS:
        for (attention, stream, pointwise, fp8, upsample, dense), group in configurations(RESULTS / name).items():
            mean = {key: statistics.mean(float(r[key]) for r in group) for key in ("step_ms", "power_w", "sm_clock_mhz")}
            batch = int(group[0]["batch"])
            joules = mean["power_w"] * mean["step_ms"] / 1e3
            rows.append({"csv": name, "attention": attention, "teacher_stream": stream, "pointwise_matmul": pointwise,
                         "teacher_fp8": fp8, "upsample_broadcast": upsample, "dense_conv_grads": dense,
                         "rows": len(group), "step_ms": mean["step_ms"], "power_w": mean["power_w"],
                         "sm_clock_mhz": mean["sm_clock_mhz"], "joules_per_step": joules,
                         "joules_per_image": joules / batch})
    power = statistics.mean(r["power_w"] for r in rows)
    for row in rows:
        row["images_per_s_at_mean_power"] = power / row["joules_per_image"]
        row["target_joules_per_image"] = power / TARGET_IMAGES_PER_S
    path = report("energy_per_image_sd14_h100", rows, args.out)
    print(f"165 img/s at the mean {power:.0f} W needs {power / TARGET_IMAGES_PER_S:.3f} J/image; written {path}")
    return rows


if __name__ == "__main__":
    main()
