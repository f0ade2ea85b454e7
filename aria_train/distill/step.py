"""One distillation step on one micro-batch: teacher forward, student forward, loss, backward.

``train_step`` is the unit a benchmark times: it does no optimizer step (the loop does that at
the accumulation boundary), so it can be called with or without an Accelerator.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from aria_train.distill.batches import Batch
from aria_train.distill.losses import LossWeights, distillation_loss
from aria_train.diffusion.models.feature_kd import FeatureHooks, unwrap_model
from aria_train.diffusion.prompts import Conditioning, unet_inputs
from aria_train.diffusion.targets import prediction_target


class Student(nn.Module):
    """The student UNet and its feature projections (channel-reduced students; else empty) as
    one module, so one data-parallel wrapper synchronises both. ``forward`` is the UNet's; the
    projections are applied in the loss."""

    def __init__(self, unet: nn.Module, projections: nn.ModuleDict | None = None):
        super().__init__()
        self.unet = unet
        self.projections = projections if projections is not None else nn.ModuleDict()

    def forward(self, *args, **kwargs):
        return self.unet(*args, **kwargs)


@dataclass
class StepModels:
    """What a step needs. ``teacher`` is frozen (eval, no grad, possibly half precision);
    ``student`` is a Student, possibly wrapped (DDP / accelerate): hooks and projections are
    taken from the unwrapped one, so module names are the bare UNet's. The feature hooks of
    ``layer_map`` are registered here, once, and stay for the models' lifetime (an empty map:
    no feature KD, no hooks)."""

    teacher: nn.Module
    student: nn.Module
    scheduler: object  # diffusers DDPMScheduler (add_noise)
    layer_map: dict[str, str]  # student module -> teacher module for feature KD
    # ARIA's text signal (AriaOptions.signal == "text"): the null text's conditioning (one row) and
    # which samples get the prompt-effect discrepancy ("switched" or "all", AriaOptions.observe)
    null_hidden: Conditioning | None = None
    text_signal_rows: str = "switched"
    # the loss: distillation_loss, or a compiled form of it (aria_train.distill.speed.compile_loss)
    loss_fn: Callable[..., dict[str, torch.Tensor]] = distillation_loss
    # a CUDA stream of the models' device on which the teacher's forward runs beside the student's
    # (DistillConfig.teacher_stream); None: one after the other on the current stream
    teacher_stream: torch.cuda.Stream | None = None
    teacher_features: FeatureHooks = field(init=False)
    student_features: FeatureHooks = field(init=False)

    def __post_init__(self) -> None:
        self.teacher_features = FeatureHooks(self.teacher, self.layer_map.values()).attach()
        self.student_features = FeatureHooks(unwrap_model(self.student).unet, self.layer_map.keys()).attach()


def train_step(models: StepModels, batch: Batch, weights: LossWeights, accelerator=None) -> dict[str, torch.Tensor]:
    """Forward both models on ``batch`` and backpropagate the distillation loss.

    The backward pass always runs, so the host never waits here for the device: ``finite`` in the
    result (a device tensor, true where the loss is finite on every process) tells the caller
    whether the gradients may be used, and the loop skips the optimizer step of a non-finite
    micro-batch (its gradients are discarded; every process of a data-parallel group runs the same
    backward and takes the same decision). With an Accelerator, its ``backward`` is used (loss
    scaling, accumulation); without one, plain ``loss.backward()``. Returns the loss dict of
    ``distillation_loss`` plus ``finite``.
    """
    noisy = models.scheduler.add_noise(batch.x0, batch.noise, batch.timesteps)
    use_feat = weights.feat != 0
    if use_feat and not models.layer_map:
        raise ValueError("feature KD (weights.feat != 0) needs StepModels with a layer_map")
    student = unwrap_model(models.student)
    teacher_dtype = next(models.teacher.parameters()).dtype
    side = models.teacher_stream
    if side is not None:  # the teacher's kernels start once the noisy batch is there
        side.wait_stream(torch.cuda.current_stream(noisy.device))
    with torch.no_grad(), torch.cuda.stream(side):  # stream None: the current one
        pred_teacher = models.teacher(noisy.to(teacher_dtype), batch.timesteps,
                                      **unet_inputs(batch.hidden, teacher_dtype)).sample
        if batch.target_noise is not None:  # the test bed's irreducible floor (DistillConfig.noisy_regions)
            pred_teacher = pred_teacher.float() + batch.target_noise
    student_hidden = batch.hidden if batch.student_hidden is None else batch.student_hidden  # blind_regions
    pred_student = models.student(noisy, batch.timesteps, **unet_inputs(student_hidden)).sample
    if side is not None:
        # The loss reads the teacher's prediction and features. Memory is safe without
        # record_stream: what the side stream reads (noisy, the batch) lives past this wait, and
        # the blocks it allocated return to its pool, where only the next step's teacher forward
        # takes them again -- queued after that step's wait for everything queued here.
        torch.cuda.current_stream(noisy.device).wait_stream(side)
    target = None  # only L_sd needs the exact denoising target
    if weights.sd:
        target = prediction_target(models.scheduler.config.prediction_type, models.scheduler.alphas_cumprod,
                                   batch.x0, batch.noise, batch.timesteps)
    losses = models.loss_fn(
        pred_student, pred_teacher, target, batch.paired,
        models.student_features.features, models.teacher_features.features,
        models.layer_map, weights, student.projections, batch.weights)
    models.student_features.clear()  # the graph keeps what backward needs; free the rest now
    models.teacher_features.clear()
    if models.null_hidden is not None:
        losses["discrepancy"] = text_effect_discrepancy(models, batch, noisy, pred_student, pred_teacher,
                                                        losses["discrepancy"])
    finite = torch.isfinite(losses["loss"].detach()).reshape(1)
    if accelerator is not None:
        finite = accelerator.gather(finite).all()
    losses["finite"] = finite.all()
    if accelerator is not None:
        accelerator.backward(losses["loss"])
    else:
        losses["loss"].backward()
    # with gradient checkpointing, backward recomputes hooked modules inside checkpointed
    # blocks (self-attention feature KD), and the hooks keep those outputs and their graphs
    models.student_features.clear()
    return losses


@torch.no_grad()
def text_effect_discrepancy(models: StepModels, batch: Batch, noisy: torch.Tensor, pred_student: torch.Tensor,
                            pred_teacher: torch.Tensor, discrepancy: torch.Tensor) -> torch.Tensor:
    """``discrepancy`` (N,) with the observed rows (non-null; switched ones only unless
    ``text_signal_rows`` is "all") replaced by ||(S(c) - S(null)) - (T(c) - T(null))||^2 / D: the
    error in how the prompt moves the prediction. A switched sample shows a prompt on another
    region's image, and most of its output discrepancy is about that image; the null-text forward
    of both models on the same noisy input cancels that part (exactly where the models' errors on
    the image do not depend on the text). The loss is unchanged: only what the tracker sees."""
    rows = ~batch.nulled & (batch.switched if models.text_signal_rows == "switched" else True)
    if not rows.any():
        return discrepancy
    index = torch.from_numpy(np.flatnonzero(rows)).to(noisy.device)
    teacher_dtype = next(models.teacher.parameters()).dtype
    x, t = noisy[index], batch.timesteps[index]
    null = models.null_hidden.to(noisy.device).expand(len(index), -1, -1)
    null_teacher = models.teacher(x.to(teacher_dtype), t, **unet_inputs(null, teacher_dtype)).sample.float()
    null_student = models.student(x, t, **unet_inputs(null)).sample.float()
    models.student_features.clear()  # the hooks recorded these forwards too: nothing to keep
    models.teacher_features.clear()
    effect_error = (pred_student[index].float() - null_student) - (pred_teacher[index].float() - null_teacher)
    out = discrepancy.clone()
    out[index] = effect_error.square().flatten(1).mean(1)
    return out
