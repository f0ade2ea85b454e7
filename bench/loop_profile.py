"""Where a training loop's time goes: torch.profiler over a window of its optimizer steps.

``LoopProfiler`` wraps a call of `aria_train.distill.loop.train` (through its ``on_step``
callback) and profiles its last ``active`` steps; ``summary()`` says per step

- ``wall_ms_per_step``: between the ends of the profiled steps (each end waits for the device,
  so a step's work is inside its own interval); ``unprofiled_ms_per_step``: the median interval
  of the steps before profiling starts (the first ``skip`` left out: allocation, compilation);
- ``host_op_ms_per_step`` and ``top_host_ops``: the host's time inside PyTorch operators and
  annotated ranges (the Python frames that ``with_stack`` records are left out: a thread's wait
  would count), the operators with the most of it;
- ``computing_ops_per_step``: operators that launch work (views and allocations left out), split
  into forward-and-data, backward and optimizer;
- on a GPU: ``kernels_per_step``, ``kernel_ms_per_step`` (their durations summed; the device-side
  copies of annotated ranges, such as the profiler's own ``ProfilerStep#`` spanning each step, are
  not kernels and are left out: counted, they made the device look busy for the whole step),
  ``gpu_busy_ms_per_step`` (the union of their intervals), ``gpu_idle_ms_per_step`` (the time
  between the first and the last kernel that no kernel covers), ``idle_gaps`` (the idle intervals between kernels by length: how many per step and
  their ms per step; one long gap per step is a wait on the host, thousands of short ones are
  launches the device outruns), ``top_kernels`` (by device time) and ``kernel_sources``: for
  the six top kernels and every plain copy kernel among the top, the operators that launched them,
  the innermost Python frame outside torch (diffusers', the trainer's) and the operator's first two
  input shapes (a compiled graph's kernels have no frame) by device time -- e.g. which conversions a
  copy kernel is, and for which layer;
  ``kernel_classes``: device ms per step by class of work (``kernel_class``: attention,
  convolution, matrix products, inductor's Triton kernels, copies, the optimizer with every other
  ``_foreach_`` update such as gradient clipping's norms, other), which
  bench/distill_e2e divides into the step's FLOPs of each class.

Under the profiler a step is slower than without it (tracing slowed the glyph demo world's step
from 128 ms to 160-180 ms on an H200), so the profile says where the time goes, not how long a
step takes. The cross-check that needs no tracing: ``LoopProfiler`` reads NVML's utilisation (the
percentage of time a kernel was running), SM clock and power draw (``DeviceSampler``) while the
steps between its ``skip`` first ones (compilation, where the device waits for the host) and the
profiled ones run, and ``summary()`` includes their means; it reads them again while the traced
steps run (``traced_*``), because a device that idles between the profiler's launches may clock
higher there than under a timed step's sustained load, and then the traced kernels are shorter
than the same kernels in an untraced step.
"""
from __future__ import annotations

import collections
import re
import statistics
import threading
import time

import torch
from torch.profiler import ProfilerActivity, profile, schedule

# operators that only make views or allocate: no kernel of their own
NO_KERNEL = {"aten::view", "aten::as_strided", "aten::transpose", "aten::t", "aten::reshape", "aten::detach",
             "aten::expand", "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select",
             "aten::_unsafe_view", "aten::resolve_conj", "aten::alias", "aten::empty", "aten::empty_strided",
             "aten::empty_like", "aten::split", "aten::chunk", "aten::contiguous", "aten::unbind",
             "aten::lift_fresh", "aten::result_type"}
GAP_EDGES_MS = (0.01, 0.1, 1.0, 10.0)  # idle gaps grouped as < 10 us, 10-100 us, 0.1-1 ms, 1-10 ms, >= 10 ms


def phase(event) -> str:
    """forward_and_data, backward or optimizer: from the names of the event's enclosing ranges."""
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    if any("Optimizer.step" in n for n in names):
        return "optimizer"
    if any("autograd::engine" in n or "Backward" in n for n in names):
        return "backward"
    return "forward_and_data"


def idle_gaps(spans: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """The intervals (us) in [start, end] that no span covers, spans given as (start, end) in us."""
    gaps, reach = [], start
    for lo, hi in sorted(spans):
        if lo > reach:
            gaps.append(min(lo, end) - reach)
        reach = max(reach, hi)
        if reach >= end:
            break
    if reach < end:
        gaps.append(end - reach)
    return [g for g in gaps if g > 0]


def gap_histogram(gaps_us: list[float], steps: int) -> list[dict]:
    """Per length class of GAP_EDGES_MS: gaps per step and their ms per step."""
    edges = (0.0, *GAP_EDGES_MS, float("inf"))
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        inside = [g for g in gaps_us if lo <= g / 1e3 < hi]
        rows.append({"from_ms": lo, "to_ms": hi, "per_step": len(inside) / steps, "ms_per_step": sum(inside) / 1e3 / steps})
    return rows


class LoopProfiler:
    """Profiles the last ``active`` of ``steps`` optimizer steps of a loop that calls ``on_step``
    after each (`train(..., on_step=profiler.on_step)`), inside ``with profiler:``. The ends of
    the traced steps, and of the step before them, wait for the device (``torch.cuda.synchronize``):
    ``wall_ms_per_step`` spans them. No earlier step waits: a wait at every step's end kept the host
    from running ahead of the device (the feedback lag's point) in the untraced steps too, whose
    rate bench.distill_e2e reports: the two feedback-lag-1 loops profiled so ran at 0.923 and 0.924
    of their step benchmarks, the three run without a profiler at 0.998-1.030 (2026-12-05/06)."""

    def __init__(self, steps: int, active: int, top: int = 12, skip: int = 1):
        if not 1 <= active < steps:
            raise ValueError(f"active must be >= 1 and below steps ({steps}), got {active}")
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.steps, self.active, self.top, self.skip = steps, active, top, skip
        self.cuda = torch.cuda.is_available()
        self.sampler = DeviceSampler()  # NVML over the untraced steps after the first `skip`
        self.traced_sampler = DeviceSampler()  # and over the profiler's warm-up and traced steps
        self.ends: list[float] = []  # perf_counter at the end of every step
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self.prof = profile(activities=activities, schedule=schedule(wait=steps - active - 1, warmup=1, active=active),
                            with_stack=True, record_shapes=True)  # for kernel_sources; only the traced steps pay for it

    def __enter__(self) -> "LoopProfiler":
        if self.skip == 0:
            self.sampler.__enter__()
        self.prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.prof.__exit__(*exc)
        self.sampler.close()
        self.traced_sampler.close()

    def on_step(self, step: int, steps: int) -> None:
        if self.cuda and len(self.ends) + 1 >= self.steps - self.active:  # this step opens or is traced
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        if len(self.ends) == self.skip and self.skip:
            self.sampler.__enter__()
        if len(self.ends) == self.steps - self.active - 1:  # tracing starts with the next step
            self.sampler.close()
            self.traced_sampler.__enter__()
        self.prof.step()

    def summary(self) -> dict:
        if len(self.ends) < self.active + 1:
            raise ValueError(f"the loop ended after {len(self.ends)} steps: profiling needs {self.active + 1}")
        n = self.active
        events = self.prof.events()
        ops = collections.Counter(phase(e) for e in events
                                  if e.name.startswith("aten::") and not e.cpu_children and e.name not in NO_KERNEL)
        host = collections.defaultdict(lambda: [0.0, 0])
        for e in events:
            if e.device_type == torch.autograd.DeviceType.CPU and not PYTHON_FRAME.search(e.name):
                host[e.name][0] += e.self_cpu_time_total
                host[e.name][1] += 1
        top_host = sorted(host.items(), key=lambda item: -item[1][0])[:self.top]
        untraced = self.ends[max(self.skip - 1, 0):-n - 1]  # the ends of the steps from `skip` on
        before = [b - a for a, b in zip(untraced, untraced[1:])]  # steps skip + 1 .. before profiling
        result = {
            "device": torch.cuda.get_device_name() if self.cuda else "cpu", "profiled_steps": n,
            "wall_ms_per_step": (self.ends[-1] - self.ends[-n - 1]) / n * 1e3,
            "unprofiled_ms_per_step": statistics.median(before) * 1e3 if before else None,
            "host_op_ms_per_step": sum(e.self_cpu_time_total for e in events if not PYTHON_FRAME.search(e.name)) / 1e3 / n,
            "computing_ops_per_step": {k: round(v / n) for k, v in sorted(ops.items())},
            "top_host_ops": [{"name": name, "ms_per_step": us / 1e3 / n, "calls_per_step": calls / n}
                             for name, (us, calls) in top_host],
        }
        if self.cuda:
            result.update(self.kernel_summary([e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]))
            # the six costliest kernels, and plain copies wherever they rank: layout copies are work a change of
            # layout can remove, and their sources say which layers make them
            names = [k["name"] for i, k in enumerate(result["top_kernels"]) if i < 6 or COPY_KERNEL in k["name"]]
            result["kernel_sources"] = kernel_sources(events, names, n, top=8)
            result["kernel_classes"] = kernel_classes(events, n)
        return {**result, **self.sampler.summary(),
                **{f"traced_{name}": value for name, value in self.traced_sampler.summary().items()}}

    def kernel_summary(self, kernels: list) -> dict:
        """Kernel events only: key_averages' self device time would count each kernel twice (as
        itself and under the operator that launched it), and annotations are ranges, not kernels."""
        n = self.active
        kernels = [k for k in kernels if not getattr(k, "is_user_annotation", False)]
        spans = [(k.time_range.start, k.time_range.end) for k in kernels]
        if not spans:
            return {"kernels_per_step": 0}
        start, end = min(s for s, _ in spans), max(e for _, e in spans)
        gaps = idle_gaps(spans, start, end)
        by_name = collections.Counter()
        for k in kernels:
            by_name[k.name] += k.time_range.end - k.time_range.start
        return {
            "kernels_per_step": round(len(kernels) / n),
            "kernel_ms_per_step": sum(e - s for s, e in spans) / 1e3 / n,
            "gpu_busy_ms_per_step": (end - start - sum(gaps)) / 1e3 / n,
            "gpu_idle_ms_per_step": sum(gaps) / 1e3 / n,
            "idle_gaps": gap_histogram(gaps, n),
            "top_kernels": [{"name": name[:120], "ms_per_step": us / 1e3 / n} for name, us in by_name.most_common(self.top)],
        }


COPY_KERNEL = "direct_copy_kernel"  # in the name of ATen's plain copy kernel: a copy, whatever launched it
PYTHON_FRAME = re.compile(r"\(\d+\): |^<built-in")  # with_stack: Python calls are events named "file(line): func"


def outermost_aten(event):
    """The outermost aten operator ``event`` runs under (``aten::to`` rather than its ``aten::copy_``)."""
    while event.cpu_parent is not None and event.cpu_parent.name.startswith("aten::"):
        event = event.cpu_parent
    return event


def launch_site(event) -> tuple[str, str]:
    """(operator, frame) of a kernel-launching operator: the outermost aten operator it runs under
    (``outermost_aten``) and the innermost Python frame above it that is not torch's own (where a
    model or the trainer called it; "-" if none)."""
    op = outermost_aten(event)
    parent = op.cpu_parent
    while parent is not None:
        if PYTHON_FRAME.search(parent.name) and "torch/" not in parent.name and not parent.name.startswith("<built-in"):
            return op.name, parent.name
        parent = parent.cpu_parent
    return op.name, "-"


def input_shapes(event) -> str:
    """The shapes of the first two tensor inputs of ``event``'s outermost aten operator, as the
    profiler recorded them (``record_shapes``), "-" if none: which layer of a compiled graph, whose
    kernels have no Python frame, launched a kernel (a convolution's backward by its gradient's and
    input's shapes)."""
    shapes = [list(shape) for shape in getattr(outermost_aten(event), "input_shapes", None) or () if shape][:2]
    return " ".join(str(shape).replace(" ", "") for shape in shapes) or "-"


def kernel_sources(events, names: list[str], steps: int, top: int = 3) -> list[dict]:
    """For each kernel name in ``names`` (``top_kernels`` are cut to 120 characters, so prefixes
    match): its launch sites (``launch_site``, and the operator's ``input_shapes``) by device ms per
    step, the ``top`` largest. Kernels hang off the operator that launched them (``event.kernels``)."""
    by_source = {name: collections.Counter() for name in names}
    for event in events:
        for kernel in getattr(event, "kernels", ()):
            for name in names:
                if kernel.name.startswith(name):
                    by_source[name][(*launch_site(event), input_shapes(event))] += kernel.duration
    return [{"kernel": name, "sources": [{"op": op, "frame": frame, "shapes": shapes, "ms_per_step": us / 1e3 / steps}
                                         for (op, frame, shapes), us in counts.most_common(top)]}
            for name, counts in by_source.items()]


# kernel classes by the aten operator that launched them (launch_site's), first match wins
OP_CLASSES = (("attention", ("attention", "::fa4_")), ("convolution", ("convolution",)),
              ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul")),
              ("optimizer", ("_fused_adam", "_foreach_")),
              ("copy", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::contiguous", "aten::clone")))
KERNEL_CLASSES = ("attention", "convolution", "matmul", "triton", "copy", "optimizer", "other")


def kernel_class(op: str, kernel: str) -> str:
    """One of KERNEL_CLASSES for a kernel launched by operator ``op`` (``launch_site``'s): a plain
    copy kernel is ``copy`` whatever launched it (a convolution's backward copies gradients to its
    layout: no arithmetic); else by the operator where it is an aten one (a compiled graph still
    calls aten for convolutions, matrix products and attention: inductor's extern kernels); by the
    kernel's name where it is not (``triton``: inductor's own fused kernels -- norms, activations,
    adds, layout changes)."""
    if COPY_KERNEL in kernel:
        return "copy"
    for name, markers in OP_CLASSES:
        if any(marker in op for marker in markers):
            return name
    return "triton" if kernel.startswith("triton_") else "other"


def kernel_classes(events, steps: int) -> dict[str, float]:
    """Device ms per step of every kernel class (``kernel_class``), each kernel counted once, under
    the operator event it hangs off."""
    totals = dict.fromkeys(KERNEL_CLASSES, 0.0)
    for event in events:
        for kernel in getattr(event, "kernels", ()):
            totals[kernel_class(launch_site(event)[0], kernel.name)] += kernel.duration / 1e3 / steps
    return totals


class DeviceSampler:
    """NVML's GPU utilisation (%), SM clock (MHz) and power draw (W), read every ``interval`` seconds
    in a thread while ``with DeviceSampler():`` runs; ``summary()`` gives their means, or {} where
    NVML is not there (a CPU, no pynvml)."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.samples = interval, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def read(self) -> tuple[float, float, float] | None:
        try:
            used, clock = float(torch.cuda.utilization()), float(torch.cuda.clock_rate())
        except Exception:  # no GPU, no pynvml, or NVML not answering: no samples
            return None
        try:
            return used, clock, torch.cuda.power_draw() / 1e3  # mW
        except Exception:  # a GPU whose NVML gives no power reading: the other two still count
            return used, clock, float("nan")

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            sample = self.read()
            if sample is None:
                return
            self.samples.append(sample)

    def __enter__(self) -> "DeviceSampler":
        if torch.cuda.is_available():
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops sampling (again: nothing)."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        used, clock, power = zip(*self.samples)
        return {"nvml_samples": len(used), "gpu_utilization_pct": sum(used) / len(used),
                "sm_clock_mhz": sum(clock) / len(clock), "power_w": sum(power) / len(power)}
