"""Feedback one micro-batch late (``--feedback-lag 1``): the host reads a micro-batch's feedback
only after the next micro-batch has been launched.

With lag 0 the loop waits for each micro-batch's feedback before it draws the next one, so the
device has nothing queued while the host finishes that batch (its switched prompts, their
tokens and text-encoder pass) and launches its forward: on an H200 at SD size, compiled, the
device ran no kernel for >= 35 ms of each 460 ms step (bench/results/distill_e2e_profile_*).
With lag 1 the order per micro-batch m is

    draw m (the sampler has observed micro-batches up to m - 2), launch its step,
    read m - 1 (the one wait, while m trains), observe m - 1, launch the optimizer step of m,

so the sampler's draw for m + 1 knows m - 1, one micro-batch less than with lag 0. Reading a
micro-batch adds it to the tally and, where it ends an optimizer step, closes that step (the EMA
update or the count of a non-finite step; the optimizer itself skipped a non-finite step on the
device). Where the loop needs a step complete (a sample grid, a checkpoint, a held-out
measurement, the end), ``drain()`` reads the last micro-batch without observing it yet: the
sampler observes it at the same point as without the drain, so the run does not depend on how often
it logs, and a checkpoint stores it (``TrainingState.unobserved``) so that a resumed run observes it
there too. A plain metrics record does not drain: the loop writes it after the next micro-batch's
``push`` has read its step, with the sampler's metrics copied at the end of that step, so it is the
record a drain would have written and the device is not left idle for it.
"""
from __future__ import annotations

from typing import Callable

from aria_train.conditioning.feedback import PendingFeedback
from aria_train.conditioning.samplers import ConditionSampler
from aria_train.distill.state import TrainingState


class LaggedFeedback:
    def __init__(self, state: TrainingState, sampler: ConditionSampler | None,
                 close_step: Callable[[int, bool], None]):
        """``sampler``: what observes the feedback (None: a pool without regions, nothing to
        observe); ``close_step(number, finite)``: called once per optimizer step when its last
        micro-batch has been read, ``finite`` = every micro-batch of that step was finite."""
        self.state, self.sampler, self.close_step = state, sampler, close_step
        self.in_flight: tuple[PendingFeedback, int, bool] | None = None  # (feedback, its step, ends it)
        self.step_finite = True  # the micro-batches read so far of the step being read

    def push(self, pending: PendingFeedback, step: int, ends_step: bool) -> None:
        """Micro-batch ``pending`` of optimizer step ``step`` has been launched: read the one before
        it (waiting for the device only as far as that one), observe it, keep this one in flight."""
        self.drain()
        self.in_flight = (pending, step, ends_step)
        unobserved, self.state.unobserved = self.state.unobserved, None
        if unobserved is not None and self.sampler is not None:
            unobserved.observe(self.sampler)

    def drain(self) -> None:
        """Read the micro-batch in flight (tally, step closing), leaving it to be observed by the
        next ``push``."""
        if self.in_flight is None:
            return
        pending, step, ends_step = self.in_flight
        self.in_flight = None
        feedback = pending.wait()
        self.state.tally.add(feedback)
        self.step_finite &= feedback.finite
        self.state.unobserved = feedback
        if ends_step:
            finite, self.step_finite = self.step_finite, True
            self.close_step(step, finite)
