"""The end-to-end benchmarks of issue 16 (bench/regions_embed.py, distill_e2e.py,
cache_vs_diffusers.py) and the SDXL path of bench/distill_step.py (issue 13) run at their tiny
CPU size: each writes its CSV with the expected columns and positive rates. Only that they run
and report: the numbers themselves are GPU measurements."""
import csv
import gc
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is the repository's folder of benchmarks, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import (attention_backends, cache_vs_diffusers, distill_e2e, distill_step, fp8_teacher,  # noqa: E402
                   regions_embed, small_world)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One model folder for all three, as scripts/perf_bench.sh shares it."""
    return tmp_path_factory.mktemp("bench_work")


def read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def check(rows: list[dict], path: Path, columns: set[str], rates: tuple[str, ...]) -> list[dict]:
    """The CSV at ``path`` holds ``rows`` with at least ``columns``, every rate positive and finite."""
    written = read_csv(path)
    assert len(written) == len(rows) and columns <= set(written[0]), sorted(columns - set(written[0]))
    for row in written:
        for rate in rates:
            assert math.isfinite(float(row[rate])) and float(row[rate]) > 0, (rate, row)
    return written


def test_regions_embed(work, tmp_path):
    rows = regions_embed.main(argv=["--quick", "--prompts", "600", "--reference-prompts", "300", "--batch", "128",
                                    "--k", "4", "--work", str(work), "--out", str(tmp_path)])
    written = check(rows, tmp_path / "regions_embed_tiny.csv",
                    {"path", "dtype", "batch", "prompts", "prompts_per_s", "speedup", "max_abs_diff", "region_agreement"},
                    ("prompts_per_s", "speedup"))
    assert [(r["path"], r["dtype"]) for r in written] == [
        ("tokenize (transformers)", ""), ("tokenize (rust)", ""), ("reference", "float32"), ("fast", "bfloat16"),
        ("fast", "float32")]
    fast32 = written[4]
    assert float(fast32["max_abs_diff"]) < 1e-5 and float(fast32["region_agreement"]) == 1.0


def test_distill_e2e(work, tmp_path):
    rows = distill_e2e.main(argv=["--quick", "--batch", "2", "--steps", "3", "--warmup", "1", "--step-steps", "1",
                                  "--work", str(work), "--out", str(tmp_path)])
    written = check(rows, tmp_path / "distill_e2e_tiny.csv",
                    {"method", "batch", "step_images_per_s", "loop_images_per_s", "loop_over_step", "loop_time_over_rc",
                     "loop_peak_gib", "step_tflop", "loop_median_step_ms", "median_step_over_step",
                     "host_images_per_s", "host_over_step"},
                    ("step_images_per_s", "loop_images_per_s", "loop_over_step", "loop_time_over_rc", "step_tflop",
                     "loop_median_step_ms", "median_step_over_step", "host_images_per_s", "host_over_step"))
    assert [r["method"] for r in written] == ["rc", "aria"]
    steps = json.loads((tmp_path / "distill_e2e_step_ms_tiny.json").read_text())
    assert {k: (len(v["step_ms"]), len(v["gc_ms"])) for k, v in steps.items()} == {"rc_lag0": (2, 2),
                                                                                     "aria_lag0": (2, 2)}  # steps 2, 3
    assert all(0 <= gc_ms <= ms for v in steps.values() for ms, gc_ms in zip(v["step_ms"], v["gc_ms"]))
    assert all(ms > 0 for v in steps.values() for ms in v["step_ms"])
    offloaded = distill_e2e.main(argv=["--quick", "--batch", "2", "--steps", "3", "--warmup", "1", "--step-steps", "1",
                                       "--methods", "rc", "--ema-offload", "--work", str(work), "--out", str(tmp_path)])
    assert [(r["method"], r["ema_offload"]) for r in offloaded] == [("rc", True)]
    assert not any(r["ema_offload"] for r in rows)


def test_collection_clock_counts_the_collections_while_entered():
    clock = distill_e2e.CollectionClock()
    with clock:
        gc.collect()
    after = clock.seconds
    assert after > 0
    gc.collect()  # no longer counted
    assert clock.seconds == after and clock not in gc.callbacks


def test_distill_e2e_median_step_uses_the_steps_after_warmup_and_before_the_profile():
    ends = [0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0]  # the ends of steps 1..7: steps 2..7 take 1 .. 6 s
    assert distill_e2e.median_step_ms(ends, 2) == 4000.0  # steps 3..7: 2, 3, 4, 5, 6 s
    assert distill_e2e.median_step_ms(ends, 2, last=5) == 3000.0  # steps 3..5: 2, 3, 4 s
    assert distill_e2e.median_step_ms(ends, 0) == 3500.0  # steps 2..7 (step 1 has no start)
    assert distill_e2e.median_step_ms(ends, 6) == 6000.0  # step 7 alone
    assert math.isnan(distill_e2e.median_step_ms(ends, 7))  # no step after warm-up
    assert distill_e2e.step_intervals_ms(ends, 2, last=5).tolist() == [2000.0, 3000.0, 4000.0]


def test_distill_e2e_loop_rate_leaves_out_the_warmup_and_the_final_record(tmp_path):
    """The records' rate: all images over all seconds of the records after warm-up that end by
    the last measured step; the run's final record (at lag 1 two steps over about one and a half
    steps' time) is left out."""
    run = tmp_path / "run"
    run.mkdir()
    records = [(10, 50.0), (20, 100.0), (30, 200.0), (32, 1000.0)]  # (step, images/s over the steps since the last)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "images_per_s": r}) + "\n" for s, r in records))
    end = distill_e2e.measured_steps_end(32, 0)
    assert end == 31
    assert distill_e2e.loop_rate(run, 10, end) == pytest.approx(20 / (10 / 100 + 10 / 200))  # records 20 and 30
    assert distill_e2e.loop_rate(run, 10) == pytest.approx(22 / (10 / 100 + 10 / 200 + 2 / 1000))  # the final one too
    with pytest.raises(ValueError, match="run more --steps"):
        distill_e2e.loop_rate(run, 30, end)


def test_distill_e2e_host_rate_uses_the_measured_steps():
    """The loop's images/s by the host's clock: the batch over the mean interval of the steps after
    warm-up, the run's last step left out (its interval holds the end of the run), and the profiled ones."""
    ends = [0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0]  # steps 2..7 take 1 .. 6 s
    assert distill_e2e.measured_steps_end(7, 0) == 6 and distill_e2e.measured_steps_end(7, 2) == 4
    assert distill_e2e.host_rate(ends, 8, 2, distill_e2e.measured_steps_end(7, 0)) == 8 / 3.5  # steps 3..6
    assert distill_e2e.host_rate(ends, 8, 2, distill_e2e.measured_steps_end(7, 2)) == 8 / 2.5  # steps 3..4
    assert math.isnan(distill_e2e.host_rate(ends, 8, 6, 6))


def test_cache_vs_diffusers(work, tmp_path, monkeypatch):
    """With --compile, a row per dtype with the UNet compiled as `aria cache --compile` does
    (compile stubbed: inductor takes minutes on a CPU)."""
    from diffusers import UNet2DConditionModel

    compiled = []
    monkeypatch.setattr(UNet2DConditionModel, "compile", lambda self, **options: compiled.append(options))
    rows = cache_vs_diffusers.main(argv=["--quick", "--samples", "4", "--batch", "2", "--steps", "2", "--compile",
                                         "--work", str(work), "--out", str(tmp_path)])
    written = check(rows, tmp_path / "cache_vs_diffusers_tiny.csv",
                    {"path", "dtype", "steps", "guidance", "samples_per_s", "over_diffusers", "rel_rms_vs_diffusers",
                     "warmup_s"}, ("samples_per_s", "over_diffusers", "warmup_s"))
    assert [(r["path"], r["dtype"]) for r in written] == [("diffusers", "float32"), ("aria", "float32"),
                                                          ("aria-compiled", "float32")]
    assert compiled == [{}]
    assert all(float(r["rel_rms_vs_diffusers"]) < 1e-5 for r in written[1:])  # the same samples, from the same noise


def test_distill_step_sdxl_tiny(tmp_path, monkeypatch, capsys):
    """bench/distill_step.py's SDXL path (scripts/sdxl_bench.sh runs it at SDXL size) on the tiny
    SDXL-shaped UNet: KOALA students from make_student, SDXL's conditioning into both UNets, a
    batch sweep in which one size runs out of memory (an 'oom' row, larger sizes skipped, the
    sweep goes on with smaller ones), and a second run with --append adding to the same CSV."""
    import torch

    real = distill_step.make_batch

    def make_batch(batch, *args):  # batch 3 "does not fit"
        if batch == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch, *args)

    monkeypatch.setattr(distill_step, "make_batch", make_batch)
    argv = ["--size", "sdxl-tiny", "--steps", "1", "--warmup", "0", "--regions", "8", "--pool", "1000", "--out", str(tmp_path),
            "--name", "step"]
    distill_step.main(argv=argv + ["--batch", "2", "3", "4", "1"])
    assert "batch 3: out of memory in building the models: CUDA out of memory" in capsys.readouterr().out
    rows = distill_step.main(argv=argv + ["--batch", "1", "--student", "koala-1b", "--gradient-checkpointing",
                                          "--append"])
    written = read_csv(tmp_path / "step.csv")
    assert len(rows) == 4 and [(r["student"], r["gradient_checkpointing"], r["method"], r["batch"]) for r in written] == [
        *[("koala-700m", "False", m, "2") for m in ("rc", "aria", "rc", "aria")], ("koala-700m", "False", "oom", "3"),
        *[("koala-700m", "False", m, "1") for m in ("rc", "aria", "rc", "aria")],
        *[("koala-1b", "True", m, "1") for m in ("rc", "aria", "rc", "aria")]]
    for row in written:
        measured = [float(row[k]) for k in ("step_ms", "images_per_s", "step_tflop", "aria_ops_ms")]
        if row["method"] == "oom":
            assert all(math.isnan(v) for v in measured)
        else:
            assert all(math.isfinite(v) and v > 0 for v in measured), row
            assert 0 < float(row["host_ms"]) <= float(row["step_ms"])  # launching is part of the step
    assert {r["cudnn_benchmark"] for r in written} == {"False"}  # a CPU has no cuDNN to benchmark
    assert all(math.isnan(float(r[k])) for r in written for k in distill_step.NVML_COLUMNS)  # nor NVML
    flops = {(r["student"], r["batch"]): float(r["step_tflop"]) for r in written if r["method"] == "rc"}
    for row in (r for r in written if r["method"] == "rc"):  # every counted FLOP is in one class
        classes = [float(row[f"{name}_tflop"]) for name in distill_step.FLOP_CLASSES]
        assert sum(classes) == pytest.approx(float(row["step_tflop"]), rel=1e-9)
        assert float(row["convolution_tflop"]) > 0 and float(row["matmul_tflop"]) > 0
    assert flops[("koala-700m", "2")] == pytest.approx(2 * flops[("koala-700m", "1")])  # per-sample work only
    # a batch above FLOP_BATCH is counted on FLOP_BATCH images and scaled: the same count as counting it whole
    monkeypatch.setattr(distill_step, "FLOP_BATCH", 1)
    scaled = distill_step.main(argv=argv + ["--batch", "2", "--name", "scaled"])
    assert scaled[0]["step_tflop"] == pytest.approx(flops[("koala-700m", "2")], rel=1e-9)


def test_distill_step_rows_carry_nvml_over_their_timed_steps(tmp_path, monkeypatch):
    """Each row has the means its own sampler read over the row's timed steps (a stand-in here:
    no NVML on a CPU), one sampler per row."""
    readings = iter([{"sm_clock_mhz": 1700.0 + i, "power_w": 650.0, "gpu_utilization_pct": 100.0} for i in range(4)])

    class Sampler:
        def __init__(self, interval):
            self.values = next(readings)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def summary(self):
            return self.values

    monkeypatch.setattr(distill_step, "DeviceSampler", Sampler)
    rows = distill_step.main(argv=["--size", "sdxl-tiny", "--steps", "1", "--warmup", "0", "--regions", "8",
                                   "--pool", "1000", "--out", str(tmp_path), "--batch", "1"])
    assert [(r["sm_clock_mhz"], r["power_w"]) for r in rows] == [(1700.0 + i, 650.0) for i in range(4)]


def test_distill_step_compiled_runs_no_eager_step_at_the_batch(tmp_path, monkeypatch):
    """With --compile the step benchmark runs no eager step at the full batch (it would cap the
    largest compiled batch at eager's memory): FLOPs are counted eagerly on FLOP_BATCH images, then
    the UNets are compiled and every step at the batch runs compiled. Without --compile the first
    step is an eager one at the batch. (Compilation stubbed: inductor takes minutes on a CPU.)"""
    import aria_train.distill.speed as speed
    import aria_train.distill.step as step

    calls = []
    real_step = step.train_step

    def train_step(models, data, *args, **kwargs):
        calls.append(len(data.x0))
        return real_step(models, data, *args, **kwargs)

    monkeypatch.setattr(step, "train_step", train_step)
    # compilation recorded instead of done (inductor takes minutes on a CPU), with its options
    monkeypatch.setattr(speed, "compile_unets", lambda *unets, **options: calls.append(("compiled", options)))
    from aria_train.distill.losses import distillation_loss

    monkeypatch.setattr(speed, "compile_loss", lambda: calls.append("loss compiled") or distillation_loss)
    monkeypatch.setattr(distill_step, "FLOP_BATCH", 1)
    argv = ["--size", "sdxl-tiny", "--batch", "2", "--steps", "1", "--warmup", "1", "--regions", "8", "--pool", "1000",
            "--out", str(tmp_path)]
    rows = distill_step.main(argv=argv + ["--compile", "--channels-last", "--name", "compiled"])
    # FLOP count, compile as the trainer compiles (the loss, the UNets with the layout forced where
    # channels-last), warm-up, four timed rows
    assert calls == [1, "loss compiled", ("compiled", {"channels_last": True, "cuda_graphs": False, "inductor": {}}),
                     2, 2, 2, 2, 2] and all(row["compile_loss"] for row in rows)
    calls.clear()  # the baseline: the UNets compiled, the loss eager
    rows = distill_step.main(argv=argv + ["--compile", "--eager-loss", "--name", "eager_loss"])
    assert "loss compiled" not in calls and not any(row["compile_loss"] for row in rows)
    calls.clear()  # the candidates reach compile_unets
    rows = distill_step.main(argv=argv + ["--compile", "--inductor", "max_autotune=true", "coordinate_descent_search_radius=2",
                                          "triton.descriptive_names=original_aten", "--name", "autotuned"])
    assert calls[2] == ("compiled", {"channels_last": False, "cuda_graphs": False, "inductor": {
        "max_autotune": True, "coordinate_descent_search_radius": 2, "triton.descriptive_names": "original_aten"}})
    assert rows[0]["inductor"] == "max_autotune=true coordinate_descent_search_radius=2 triton.descriptive_names=original_aten"
    calls.clear()
    distill_step.main(argv=argv + ["--name", "eager"])
    assert calls == [2, 1, 2, 2, 2, 2, 2]  # first step, FLOP count, warm-up, four timed rows
    with pytest.raises(SystemExit):  # the loss is compiled with the UNets or not at all
        distill_step.main(argv=argv + ["--eager-loss"])
    with pytest.raises(SystemExit):
        distill_step.main(argv=argv[:-5] + ["--warmup", "0", "--compile", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):  # CUDA graphs are recorded by inductor: no --cuda-graphs without --compile
        distill_step.main(argv=argv + ["--cuda-graphs"])
    with pytest.raises(SystemExit):  # nor inductor's options
        distill_step.main(argv=argv + ["--inductor", "max_autotune=true"])
    with pytest.raises(SystemExit):  # an option is KEY=VALUE
        distill_step.main(argv=argv + ["--compile", "--inductor", "max_autotune"])


def test_out_of_memory_names_its_phase():
    """An out-of-memory error inside a phase of the step benchmark names the phase (so a batch
    that does not fit can be told from a set-up step that does not) and still reads as out of
    memory; other errors, and an error already named by an inner phase, pass through unchanged."""
    import torch

    cpu = torch.device("cpu")
    with pytest.raises(distill_step.PhaseOutOfMemory) as caught:
        with distill_step.oom_phase("the timed steps", cpu), distill_step.oom_phase("the FLOP-counting step", cpu):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.50 GiB\nmore detail")
    assert str(caught.value) == "out of memory in the FLOP-counting step: CUDA out of memory. Tried to allocate 2.50 GiB"
    assert distill_step.out_of_memory(caught.value)
    with pytest.raises(ValueError, match="^not memory$"):
        with distill_step.oom_phase("the first step", cpu):
            raise ValueError("not memory")


def test_small_world(tmp_path):
    """bench/small_world.py: an experiment per --parallel and --group value on the shipped glyph demo
    world (2-step runs and no samples here), a row per evaluation batch size with the runs' and the
    evaluation's seconds; --group 2 trains its two runs in one process (aria_train.distill.group);
    --tf32 reaches the runs; the evaluations at two batch sizes measure the same runs alike."""
    rows = small_world.main(["--parallel", "1", "--group", "1", "2", "--steps", "2", "--samples-per-region", "0",
                             "--eval-batch-size", "64", "192", "--tf32", "--out", str(tmp_path),
                             "--work", str(tmp_path / "work")])
    written = check(rows, tmp_path / "small_world.csv",
                    {"parallel", "group", "runs", "steps", "eval_batch_size", "runs_s", "eval_s", "s_per_run",
                     "step_ms", "first_record_s"},
                    ("runs_s", "eval_s", "s_per_run", "first_record_s"))
    assert [(r["parallel"], r["group"], r["runs"], r["steps"], r["eval_batch_size"]) for r in written] == [
        ("1", "1", "1", "2", "64"), ("1", "1", "1", "2", "192"), ("1", "2", "2", "2", "64"), ("1", "2", "2", "2", "192")]
    assert written[0]["runs_s"] == written[1]["runs_s"]  # one training, two evaluations
    assert written[0]["step_ms"] == "nan"  # one record: nothing after the first
    assert {r["tf32"] for r in written} == {"True"}
    for name in ("1x1_tf32", "1x2_tf32"):
        small, large = (pd.read_csv(tmp_path / "work" / f"out_{name}" / f"eval_b{b}" / "summary.csv") for b in (64, 192))
        pd.testing.assert_frame_equal(small, large, rtol=1e-4)
    run = tmp_path / "work" / "out_1x2_tf32" / "runs" / "aria-seed0"
    assert "as student 2 of a group of 2" in (run / "log.txt").read_text()
    assert json.loads((run / "config.json").read_text())["tf32"] is True


def test_small_world_record_times(tmp_path):
    """Steady ms per step: the median over runs of each run's median record after the first;
    the first record's seconds apart (where a compilation lands)."""
    import json

    def write(name: str, rates: list[float]) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"step": 10 * (i + 1), "images_per_s": r}) + "\n" for i, r in enumerate(rates)))
        return path

    # batch 64: 6.4 img/s over the first 10 steps = 100 s; then 640 / 320 / 640 img/s = 100 / 200 / 100 ms per step
    runs = [write("a", [6.4, 640, 320, 640]), write("b", [3.2, 320, 320]), write("c", [64.0, 640])]
    step_ms, first_s = small_world.record_times(runs, 64)
    assert step_ms == pytest.approx(100.0) and first_s == pytest.approx(100.0)  # medians of (100, 200, 100), (100, 200, 10)


def test_fp8_teacher(tmp_path):
    """bench/fp8_teacher.py on the shipped embedded-world teacher: float32 and FP8 rows per timestep,
    the FP8 prediction within a few percent of float32's."""
    rows = fp8_teacher.main(["--size", "demo", "--batch", "2", "--timesteps", "500", "980", "--out", str(tmp_path)])
    written = check(rows, tmp_path / "fp8_teacher_demo.csv", {"timestep", "way", "rel_rms_vs_float32", "mse_vs_float32",
                                                              "fp8_layers"}, ())
    assert [(r["timestep"], r["way"]) for r in written] == [(t, w) for t in ("500", "980") for w in ("float32", "float32+fp8")]
    fp8 = [float(r["rel_rms_vs_float32"]) for r in written if r["way"] == "float32+fp8"]
    assert all(0 < v < 0.15 for v in fp8) and int(written[0]["fp8_layers"]) > 0


def test_distill_e2e_profile(work, tmp_path):
    """--profile N: each loop's last N steps profiled into a JSON beside the CSV, left out of the
    loop's rate; too few steps before them is a usage error."""
    import json

    rows = distill_e2e.main(argv=["--quick", "--batch", "2", "--steps", "8", "--warmup", "2", "--step-steps", "1",
                                  "--methods", "rc", "--profile", "2", "--work", str(work), "--out", str(tmp_path)])
    assert [r["method"] for r in rows] == ["rc"] and rows[0]["loop_images_per_s"] > 0
    profile = json.loads((tmp_path / "distill_e2e_profile_tiny_rc.json").read_text())
    assert profile["method"] == "rc" and profile["profiled_steps"] == 2
    assert profile["wall_ms_per_step"] > 0 and profile["unprofiled_ms_per_step"] > 0
    assert profile["computing_ops_per_step"]["backward"] > 0 and profile["top_host_ops"]
    with pytest.raises(SystemExit) as error:
        distill_e2e.main(argv=["--quick", "--steps", "6", "--warmup", "2", "--profile", "3"])
    assert error.value.code == 2


def test_attention_backends(tmp_path):
    """bench/attention_backends.py on the CPU: the step's attention shapes counted from a meta
    forward (the tiny teacher's 3 attention resolutions; its Small student keeps fewer layers and
    no mid-block), a row per backend and shape, and a step row summing layers x times, each shape's
    output and gradients as float32 attention's (the CPU computes in float32); a backend without a
    CPU kernel gives nan and its reason."""
    teacher, student = attention_backends.attention_shapes("tiny")
    assert sum(student.values()) < sum(teacher.values()) and set(student) <= set(teacher)
    rows = attention_backends.main(
        ["--quick", "--backends", "default", "math", "cudnn", "--out", str(tmp_path)])
    written = list(csv.DictReader((tmp_path / "attention_backends_tiny.csv").open()))
    assert len(written) == len(rows) == 3 * (len(teacher) + 1)
    for backend in ("default", "math"):
        shapes = [r for r in rows if r["backend"] == backend and r["tokens"] != "step"]
        step = next(r for r in rows if r["backend"] == backend and r["tokens"] == "step")
        assert all(r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 and not r["unsupported"] for r in shapes)
        assert all(r[f"{what}_rel_rms"] < 1e-5 for r in shapes for what in ("output", "grad_q", "grad_k", "grad_v"))
        assert step["step_ms"] == pytest.approx(sum(r["teacher_layers"] * r["forward_ms"]
                                                    + r["student_layers"] * r["forward_backward_ms"] for r in shapes))
    cudnn = [r for r in rows if r["backend"] == "cudnn" and r["tokens"] != "step"]
    assert all(math.isnan(r["forward_ms"]) and r["unsupported"] for r in cudnn)  # no cuDNN on a CPU


def test_flop_classes_and_their_rates():
    """Operators go to the class named in them (attention before convolution), everything else is a
    matrix product; a profile's class rate is its FLOPs over its device time, over the matmul peak."""
    counts = {"aten._scaled_dot_product_cudnn_attention": 3.0, "aten._scaled_dot_product_cudnn_attention_backward": 6.0,
              "aten.convolution": 10.0, "aten.convolution_backward": 20.0, "aten.mm": 4.0, "aten.addmm": 1.0,
              "aten._scaled_mm": 2.0}
    assert distill_step.flop_classes(counts) == {"attention": 9.0, "convolution": 30.0, "matmul": 7.0}
    rates = distill_e2e.class_rates({"attention": 2.0, "convolution": 0.0, "triton": 1.5},
                                    {"attention_tflop": 1.0, "convolution_tflop": 3.0}, peak_tflops=800.0)
    assert rates == [{"class": "attention", "ms_per_step": 2.0, "step_tflop": 1.0, "tflops": 500.0, "of_matmul_peak": 0.625},
                     {"class": "convolution", "ms_per_step": 0.0, "step_tflop": 3.0, "tflops": 0.0, "of_matmul_peak": 0.0},
                     {"class": "triton", "ms_per_step": 1.5, "step_tflop": 0.0, "tflops": 0.0, "of_matmul_peak": 0.0}]
