"""One step of a student group (aria_train.distill.group) on its students' micro-batches.

The group's counterpart of ``train_step``: one teacher forward over every student's samples,
one vmapped forward of the stacked students, each student's own loss (``distillation_loss``
of its micro-batch, as the single loop computes it), and one backward of their sum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from aria_train.diffusion.models.feature_kd import FeatureHooks
from aria_train.diffusion.prompts import unet_inputs
from aria_train.diffusion.targets import prediction_target
from aria_train.distill.batches import Batch
from aria_train.distill.losses import LossWeights, distillation_loss


@dataclass
class GroupModels:
    """What a group step needs: the frozen ``teacher``; ``template``, the student UNet whose
    modules run every student (its own weights are not used by the step); ``stacked``, the
    students' parameters (N, ...) by the template's parameter names; feature hooks on both
    models (registered once, for the layer map's modules); ``autocast``, the accelerator's
    mixed-precision context for the students' forward."""

    teacher: nn.Module
    template: nn.Module
    stacked: dict[str, torch.Tensor]
    scheduler: object  # diffusers DDPMScheduler
    layer_map: dict[str, str]  # student module -> teacher module for feature KD
    teacher_features: FeatureHooks
    student_features: FeatureHooks
    autocast: Callable


def group_step(models: GroupModels, batches: list[Batch], weights: LossWeights) -> list[dict[str, torch.Tensor]]:
    """Forward the teacher and the N students on their micro-batches ``batches`` (one each, equal
    sizes) and backpropagate the sum of the students' losses. Returns per student the loss dict of
    ``distillation_loss`` plus ``finite``, as ``train_step`` does."""
    n, b = len(batches), len(batches[0].timesteps)
    x0 = torch.cat([batch.x0 for batch in batches])
    noise = torch.cat([batch.noise for batch in batches])
    timesteps = torch.cat([batch.timesteps for batch in batches])
    noisy = models.scheduler.add_noise(x0, noise, timesteps)
    teacher_dtype = next(models.teacher.parameters()).dtype
    with torch.no_grad():
        hidden = torch.cat([batch.hidden for batch in batches])
        pred_teacher = models.teacher(noisy.to(teacher_dtype), timesteps, **unet_inputs(hidden, teacher_dtype)).sample
        if batches[0].target_noise is not None:  # the test bed's irreducible floor (DistillConfig.noisy_regions)
            pred_teacher = pred_teacher.float() + torch.cat([batch.target_noise for batch in batches])
    teacher_features = dict(models.teacher_features.features)
    models.teacher_features.clear()
    student_hidden = torch.cat([batch.hidden if batch.student_hidden is None else batch.student_hidden
                                for batch in batches])
    feature_names = list(models.layer_map)

    def one_student(params, x, t, h):
        out = functional_call(models.template, params, (x, t), {"encoder_hidden_states": h}).sample
        features = tuple(models.student_features.features[name] for name in feature_names)
        models.student_features.clear()  # batched tensors must not outlive the vmapped call
        return out, features

    with models.autocast():
        pred_student, student_features = vmap(one_student)(
            models.stacked, noisy.unflatten(0, (n, b)), timesteps.unflatten(0, (n, b)),
            student_hidden.unflatten(0, (n, b)))
    losses = []
    for i, batch in enumerate(batches):
        rows = slice(i * b, (i + 1) * b)
        target = None
        if weights.sd:
            target = prediction_target(models.scheduler.config.prediction_type, models.scheduler.alphas_cumprod,
                                       batch.x0, batch.noise, batch.timesteps)
        loss = distillation_loss(pred_student[i], pred_teacher[rows], target, batch.paired,
                                 {name: f[i] for name, f in zip(feature_names, student_features)},
                                 {name: f[rows] for name, f in teacher_features.items()},
                                 models.layer_map, weights, None, batch.weights)
        loss["finite"] = torch.isfinite(loss["loss"].detach())
        losses.append(loss)
    torch.stack([loss["loss"] for loss in losses]).sum().backward()
    return losses
