"""scripts/energy_per_image.py on the committed H100 step benchmarks: one row per configuration of
each CSV, its energy the mean power times the mean step time, and the rate that energy gives."""
import csv

import pytest

from scripts import energy_per_image


def test_energy_per_image_from_the_committed_steps(tmp_path):
    rows = energy_per_image.main(["--out", str(tmp_path)])
    written = list(csv.DictReader((tmp_path / "energy_per_image_sd14_h100.csv").open()))
    assert len(written) == len(rows) >= len(energy_per_image.STEPS)
    power = sum(r["power_w"] for r in rows) / len(rows)
    for row in rows:
        assert row["joules_per_image"] == pytest.approx(row["power_w"] * row["step_ms"] / 1e3 / 64)
        assert row["images_per_s_at_mean_power"] == pytest.approx(power / row["joules_per_image"])
        assert 600 < row["power_w"] <= 700  # the step runs at the H100's 700 W limit
    both = next(r for r in rows if r["pointwise_matmul"] == "both")
    assert both["csv"] == "distill_step_sd14_candidate_pointwise_h100.csv"
    fp8 = [r for r in rows if r["teacher_fp8"] == "True"]
    assert [r["csv"] for r in fp8] == ["distill_step_sd14_candidate_fp8_h100.csv"]
    unpadded = {r["csv"] for r in rows if r["attention"] == "fa4-self-unpadded40"}
    assert unpadded == energy_per_image.UNPADDED_FA4_BACKWARD
    # each change's A/B rows, and every row measured since the trainer made it its own
    dense = {f"distill_step_sd14_candidate_{name}_h100.csv" for name in ("densegrad", "densegrad_again",
                                                                         "fa4_self_densegrad")} | {
        "distill_step_sd14_fa4_self_densegrad_nvml_h100.csv"}
    assert {r["csv"] for r in rows if r["dense_conv_grads"] == "True"} == dense
    broadcast = {f"distill_step_sd14_candidate_{name}_h100.csv"
                 for name in ("upsample", "upsample_again", "fa4_self_upsample", "base_after_densegrad",
                              "base_before_densegrad", "fa4_self_stridedgrad")} | {
        "distill_step_sd14_fa4_self_broadcast_nvml_h100.csv"} | dense
    assert {r["csv"] for r in rows if r["upsample_broadcast"] == "True"} == broadcast
