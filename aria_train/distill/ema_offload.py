"""The student's EMA held in host memory (``--ema-offload``): 4 bytes of GPU memory per student
parameter freed (BK-SDM-Small of SD v1.4: 1.8 GiB, the difference between the SD-size loop's
peak and its step's); the compiled SD-size loop with it ran at 0.998 of its step on an H100
(docs/benchmarks.md).

diffusers' training scripts offload the EMA by moving it to the GPU for each update and back
(two 1.8 GiB copies per step in the default stream, which the training waits for; not measured
here). Here the weights go to the EMA instead, and nothing waits for them:

* after each optimizer step (an optimizer post-hook) an event marks the new weights in the
  default stream; ``step`` copies them from there into pinned host buffers on a side stream,
  which overlaps the next micro-batch's forward and backward;
* the next optimizer step waits for that copy (a pre-hook: an event wait in the default stream,
  long past when it is reached), so the copied weights are those of the step the EMA closes,
  also with ``--feedback-lag 1``, where the step is closed during the next micro-batch;
* a host thread waits for the copy and updates the shadow weights there, with EMAModel's own
  decay and arithmetic (``s - (1 - decay) (s - p)``, elementwise: the same float32 result as the
  on-device update up to the kernels' rounding, bitwise the same on a CPU);
* whatever reads the EMA (a checkpoint, a sample grid) first calls ``settled``.

The shadow weights stay in the EMAModel, so checkpoints (``save_pretrained``), their loading and
the sample grids are those of the on-device EMA. On a CPU the copy is a plain one and only the
update moves to the thread (what the tests run).
"""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import torch


class OffloadedEMA:
    def __init__(self, ema, parameters: Iterable[torch.nn.Parameter], optimizer: torch.optim.Optimizer):
        """``ema``: a diffusers EMAModel over ``parameters`` (its shadow weights are moved to host
        memory); ``optimizer``: the torch optimizer (not a wrapper) that updates them."""
        params = list(parameters)
        self.ema = ema
        self.device = params[0].device
        ema.to("cpu")
        on_gpu = self.device.type == "cuda"
        self.staging = [torch.empty(p.shape, dtype=p.dtype, pin_memory=on_gpu) for p in params]
        self.trained = [p.requires_grad for p in params]
        self.stream = torch.cuda.Stream(self.device) if on_gpu else None
        self.updated: torch.cuda.Event | None = None  # the last optimizer step's weights, in the default stream
        self.copied: torch.cuda.Event | None = None  # their copy to the staging buffers
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ema-offload")
        self.pending: Future | None = None
        if on_gpu:
            optimizer.register_step_pre_hook(self._before_optimizer_step)
            optimizer.register_step_post_hook(self._after_optimizer_step)

    def _before_optimizer_step(self, *_) -> None:
        if self.copied is not None:  # the weights the EMA reads are not overwritten before it has them
            torch.cuda.current_stream(self.device).wait_event(self.copied)

    def _after_optimizer_step(self, *_) -> None:
        self.updated = torch.cuda.Event()
        self.updated.record(torch.cuda.current_stream(self.device))

    def step(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """The EMA update of the last optimizer step's ``parameters`` (those given at construction),
        as ``EMAModel.step``: started here, finished in the host thread."""
        self.settled()  # the staging buffers are free again
        params = [p.detach() for p in parameters]
        if self.stream is None:
            torch._foreach_copy_(self.staging, params)
            copied = None
        else:
            if self.updated is not None:
                self.stream.wait_event(self.updated)
            with torch.cuda.stream(self.stream):
                torch._foreach_copy_(self.staging, params, non_blocking=True)
                copied = self.copied = torch.cuda.Event()
                copied.record(self.stream)
        self.ema.optimization_step += 1  # EMAModel.step's bookkeeping, in this thread
        decay = self.ema.get_decay(self.ema.optimization_step)
        self.ema.cur_decay_value = decay
        self.pending = self.worker.submit(self._update, copied, 1 - decay)

    @torch.no_grad()
    def _update(self, copied: torch.cuda.Event | None, one_minus_decay: float) -> None:
        if copied is not None:
            copied.synchronize()
        shadow = [s for s, trained in zip(self.ema.shadow_params, self.trained) if trained]
        weights = [w for w, trained in zip(self.staging, self.trained) if trained]
        frozen = [(s, w) for s, w, trained in zip(self.ema.shadow_params, self.staging, self.trained) if not trained]
        if frozen:
            torch._foreach_copy_([s for s, _ in frozen], [w for _, w in frozen])
        # EMAModel's s -= (1 - decay) (s - p), with the difference formed in the staging buffers
        # (p - s there, then added): the same float32 result without a fresh 4 bytes per parameter
        torch._foreach_sub_(weights, shadow)
        torch._foreach_add_(shadow, weights, alpha=one_minus_decay)

    def settled(self):
        """The EMAModel, once the update in flight is done (re-raising its error)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()
        return self.ema

    def close(self) -> None:
        """Wait for the update in flight (its error, if any, is left to ``settled``) and stop the thread."""
        self.worker.shutdown(wait=True)
