"""bench/loop_profile.py: the device's idle gaps between kernel intervals, exactly."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is the repository's folder of benchmarks, not an installed package
    sys.path.insert(0, str(ROOT))

from bench.loop_profile import LoopProfiler, gap_histogram, idle_gaps  # noqa: E402


def test_idle_gaps_between_overlapping_and_disjoint_spans():
    # overlapping spans merge; the window's edges count where no span reaches them
    assert idle_gaps([(30, 40), (0, 10), (5, 20)], 0, 50) == [10, 10]
    assert idle_gaps([(10, 20)], 0, 30) == [10, 10]
    assert idle_gaps([(0, 30), (10, 20)], 0, 30) == []
    assert idle_gaps([], 0, 5) == [5]


def test_gap_histogram_classes_per_step():
    # gaps in microseconds: 5 us, 50 us, 500 us, 5 ms, 50 ms over 2 steps
    rows = gap_histogram([5, 50, 500, 5_000, 50_000], steps=2)
    assert [r["per_step"] for r in rows] == [0.5] * 5
    assert [r["ms_per_step"] for r in rows] == pytest.approx([0.0025, 0.025, 0.25, 2.5, 25.0])
    assert sum(r["ms_per_step"] for r in rows) == pytest.approx(55.555 / 2)


def test_profiler_window_must_fit_the_run():
    with pytest.raises(ValueError, match="active"):
        LoopProfiler(steps=5, active=5)


def test_device_sampler_means_and_stops(monkeypatch):
    """NVML's readings (faked: no GPU here) are averaged; close() ends the sampling, twice is harmless;
    where NVML does not answer there is no summary."""
    import time

    import torch

    from bench.loop_profile import DeviceSampler

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    readings = iter([(20.0, 1000.0, 300.0), (40.0, 2000.0, 500.0)] + [None] * 1000)
    monkeypatch.setattr(DeviceSampler, "read", lambda self: next(readings))
    sampler = DeviceSampler(interval=0.001)
    with sampler:
        deadline = time.monotonic() + 5
        while sampler.thread.is_alive() and time.monotonic() < deadline:  # it stops at the first None
            time.sleep(0.001)
    sampler.close()
    assert sampler.summary() == {"nvml_samples": 2, "gpu_utilization_pct": 30.0, "sm_clock_mhz": 1500.0,
                                 "power_w": 400.0}
    assert DeviceSampler().summary() == {}


def test_a_device_without_a_power_reading_still_gives_utilisation_and_clock(monkeypatch):
    import torch

    from bench.loop_profile import DeviceSampler

    monkeypatch.setattr(torch.cuda, "utilization", lambda: 90)
    monkeypatch.setattr(torch.cuda, "clock_rate", lambda: 1800)
    monkeypatch.setattr(torch.cuda, "power_draw", lambda: 650_000)
    assert DeviceSampler().read() == (90.0, 1800.0, 650.0)

    def no_power():
        raise RuntimeError("power draw not supported")

    monkeypatch.setattr(torch.cuda, "power_draw", no_power)
    used, clock, power = DeviceSampler().read()
    assert (used, clock) == (90.0, 1800.0) and power != power  # nan


def test_annotations_on_the_device_timeline_are_not_kernels():
    """torch.profiler mirrors each ``ProfilerStep#`` range onto the device timeline; counted as a
    kernel it spans the whole step and the device looks busy all the time (as the first H200
    profiles of 2026-12-04 did). Two 10 us kernels with a 30 us gap inside a 100 us step."""
    from types import SimpleNamespace

    def event(name, start, end, annotation=False):
        return SimpleNamespace(name=name, time_range=SimpleNamespace(start=start, end=end), is_user_annotation=annotation)

    profiler = LoopProfiler(steps=3, active=1)
    summary = profiler.kernel_summary([event("ProfilerStep#2", 0, 100, annotation=True),
                                       event("gemm", 10, 20), event("softmax", 50, 60)])
    assert summary["kernels_per_step"] == 2
    assert summary["kernel_ms_per_step"] == pytest.approx(0.020)
    assert summary["gpu_busy_ms_per_step"] == pytest.approx(0.020)
    assert summary["gpu_idle_ms_per_step"] == pytest.approx(0.030)
    assert [k["name"] for k in summary["top_kernels"]] == ["gemm", "softmax"]


def test_nvml_is_read_after_the_skipped_steps_until_tracing(monkeypatch):
    """The sampler starts after the first `skip` steps (compilation: the device waits for the host)
    and stops before the traced ones, where a second one starts and runs to the end; the
    unprofiled step time leaves the skipped steps out."""
    from bench.loop_profile import DeviceSampler

    calls = []
    monkeypatch.setattr(DeviceSampler, "__enter__", lambda self: calls.append(("start", self)) or self)
    monkeypatch.setattr(DeviceSampler, "close", lambda self: calls.append(("stop", self)))
    profiler = LoopProfiler(steps=8, active=2, skip=3)
    untraced, traced = profiler.sampler, profiler.traced_sampler
    monkeypatch.setattr(profiler, "prof", SimpleProf())
    ticks = iter([0.0, 10.0, 11.0, 12.0, 12.5, 13.0, 14.0, 15.0])  # step 1 compiles for 10 s
    monkeypatch.setattr("bench.loop_profile.time.perf_counter", lambda: next(ticks))
    with profiler:
        for step in range(1, 9):
            profiler.on_step(step, 8)
            if step == 3:
                assert calls == [("start", untraced)]
            if step == 5:  # tracing (its warm-up step) starts after step 5
                assert calls == [("start", untraced), ("stop", untraced), ("start", traced)]
    assert calls[3:] == [("stop", untraced), ("stop", traced)]  # at the end: closing both (again: nothing)
    # steps 4 and 5 (1 s, 0.5 s) are the untraced steps after the skipped three; with skip=1
    # steps 2 and 3 (10 s, 1 s) would count too and the median would be 1 s
    assert profiler.summary()["unprofiled_ms_per_step"] == pytest.approx(750.0)


def test_only_the_traced_steps_and_the_one_before_wait_for_the_device(monkeypatch):
    """A wait at every step's end would keep a lag-1 loop's host from running ahead in the steps
    whose rate is measured; wall_ms_per_step needs the ends of the traced steps and of the step
    before them (the profiler's warm-up step) to be the device's."""
    from types import SimpleNamespace

    waits = []
    monkeypatch.setattr("bench.loop_profile.torch.cuda.synchronize", lambda: waits.append(len(profiler.ends) + 1))
    profiler = LoopProfiler(steps=8, active=2, skip=3)
    monkeypatch.setattr(profiler, "prof", SimpleProf())
    for sampler in ("sampler", "traced_sampler"):
        monkeypatch.setattr(profiler, sampler, SimpleNamespace(__enter__=lambda: None, close=lambda: None))
    profiler.cuda = True
    for step in range(1, 9):
        profiler.on_step(step, 8)
    assert waits == [6, 7, 8]  # step 6 is the profiler's warm-up step; 7 and 8 are traced


class SimpleProf:
    """Stands in for torch.profiler.profile: the window logic only calls these."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def step(self):
        return None

    def events(self):
        return []


def test_kernel_sources_name_the_operator_and_the_callers_frame():
    """Copy kernels launched from two call sites are told apart by the innermost Python frame
    outside torch above their operator, named by its outermost aten operator; kernel names match
    by prefix (top_kernels cuts them to 120 characters)."""
    from types import SimpleNamespace

    from bench.loop_profile import kernel_sources

    def event(name, parent=None, *kernels):
        return SimpleNamespace(name=name, cpu_parent=parent,
                               kernels=[SimpleNamespace(name=k, duration=d) for k, d in kernels])

    attention = event("diffusers/models/attention_processor.py(2750): __call__")
    loss = event("aria_train/distill/losses.py(40): feature_loss")
    module = event("torch/nn/modules/module.py(1775): _call_impl", attention)  # torch's own: skipped
    to = event("aten::to", event("<built-in method to of Tensor object at 0x1>", module))
    events = [event("aten::copy_", event("aten::_to_copy", to), ("direct_copy_kernel<float>", 300.0)),
              event("aten::copy_", event("aten::contiguous", loss), ("direct_copy_kernel<float>", 200.0)),
              event("aten::copy_", to, ("direct_copy_kernel<float>", 100.0)),
              event("aten::mm", loss, ("gemm", 1000.0)), event("aten::view", loss)]
    (copies,) = kernel_sources(events, ["direct_copy_kernel"], steps=2)
    assert copies == {"kernel": "direct_copy_kernel", "sources": [
        {"op": "aten::to", "frame": attention.name, "shapes": "-", "ms_per_step": 0.2},
        {"op": "aten::contiguous", "frame": loss.name, "shapes": "-", "ms_per_step": 0.1}]}
    assert kernel_sources([event("aten::mm", None, ("gemm", 10.0))], ["gemm"], 1)[0]["sources"][0]["frame"] == "-"
    # a compiled graph's convolution backward has no frame: its input shapes say which layer it is, and
    # two layers' copies are two sources
    graph = event("## Call CompiledFxGraph abc ##")
    backward = [event("aten::convolution_backward", graph, ("direct_copy_kernel<bf16>", d)) for d in (300.0, 100.0)]
    backward[0].input_shapes, backward[1].input_shapes = [[64, 320, 64, 64], [64, 320, 64, 64], [320, 320, 3, 3]], \
        [[64, 640, 32, 32], [], [640, 640, 3, 3]]
    (copies,) = kernel_sources(backward, ["direct_copy_kernel"], steps=1)
    assert copies["sources"] == [
        {"op": "aten::convolution_backward", "frame": "-", "shapes": "[64,320,64,64] [64,320,64,64]", "ms_per_step": 0.3},
        {"op": "aten::convolution_backward", "frame": "-", "shapes": "[64,640,32,32] [640,640,3,3]", "ms_per_step": 0.1}]


def test_kernel_classes_by_launching_operator_then_by_name():
    """Kernels are classed by the outermost aten operator above them (a cuDNN kernel under
    ``aten::cudnn_convolution`` under ``aten::convolution`` is a convolution), plain copies as
    copies whatever launched them, and kernels a compiled graph launches itself by their name;
    each kernel counts once, per profiled step."""
    from types import SimpleNamespace

    from bench.loop_profile import KERNEL_CLASSES, kernel_class, kernel_classes

    def event(name, parent=None, *kernels):
        return SimpleNamespace(name=name, cpu_parent=parent,
                               kernels=[SimpleNamespace(name=k, duration=d) for k, d in kernels])

    graph = event("## Call CompiledFxGraph abc ##")
    conv = event("aten::convolution", graph)
    events = [conv, event("aten::cudnn_convolution", conv, ("sm90_xmma_fprop_implicit_gemm", 4000.0)),
              event("aten::convolution_backward", graph, ("direct_copy_kernel_cuda", 1000.0), ("sm90_xmma_dgrad", 2000.0)),
              event("aten::_scaled_dot_product_cudnn_attention", graph, ("cudnn_generated_fort_native_sdpa", 3000.0)),
              event("aten::addmm", graph, ("nvjet_sm90_tst", 600.0)),
              event("cuLaunchKernel", graph, ("triton_red_fused_native_group_norm_0", 800.0), ("unknown", 200.0)),
              event("aten::_fused_adamw_", None, ("FusedAdamMathFunctor", 400.0))]
    classes = kernel_classes(events, steps=2)
    assert list(classes) == list(KERNEL_CLASSES)
    assert classes == pytest.approx({"attention": 1.5, "convolution": 3.0, "matmul": 0.3, "triton": 0.4,
                                     "copy": 0.5, "optimizer": 0.2, "other": 0.1})
    assert kernel_class("aten::to", "elementwise_kernel") == "copy"
    assert kernel_class("aten::add_", "vectorized_elementwise_kernel") == "other"
    assert kernel_class("aria::fa4_backward", "kernel_cutlass_kernel_flash_attncuteflash_bwd_sm90") == "attention"
