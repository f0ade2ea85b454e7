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
    readings = iter([(20.0, 1000.0), (40.0, 2000.0)] + [None] * 1000)
    monkeypatch.setattr(DeviceSampler, "read", lambda self: next(readings))
    sampler = DeviceSampler(interval=0.001)
    with sampler:
        deadline = time.monotonic() + 5
        while sampler.thread.is_alive() and time.monotonic() < deadline:  # it stops at the first None
            time.sleep(0.001)
    sampler.close()
    assert sampler.summary() == {"nvml_samples": 2, "gpu_utilization_pct": 30.0, "sm_clock_mhz": 1500.0}
    assert DeviceSampler().summary() == {}
