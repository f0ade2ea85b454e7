"""The distillation objective of RC / BK-SDM (docs/design.md §2), computed in float32.

    L = l_out * MSE(out_S, out_T) + l_feat * sum_blocks MSE(f_S, f_T) + l_sd * MSE(out_S, eps)[paired]

"out" stands for the model output in the teacher's prediction space (the noise for SD v1.x, v
for v-prediction teachers; aria_train.diffusion.targets), and the denoising target is that space's exact
target. The per-sample output discrepancy ``||out_T - out_S||^2 / D`` (D = C*H*W elements, so
its batch mean is exactly L_out) is returned as well: it is what a region tracker observes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aria_train.diffusion.models.feature_kd import feature_kd_loss

LOSS_NAMES = ("loss", "out", "feat", "sd")  # the total and its terms, as logged everywhere


@dataclass(frozen=True)
class LossWeights:
    out: float = 1.0
    feat: float = 1.0
    sd: float = 0.0


def distillation_loss(
    pred_student: torch.Tensor,
    pred_teacher: torch.Tensor,
    target: torch.Tensor | None,
    paired_mask: torch.Tensor,
    student_feats: dict[str, torch.Tensor],
    teacher_feats: dict[str, torch.Tensor],
    layer_map: dict[str, str],
    weights: LossWeights,
    projections: nn.ModuleDict | None = None,
    sample_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms for one batch of N samples, all float32 whatever the inputs' dtype.

    ``eps_*`` (N, C, H, W): student and teacher predictions; ``target``: the exact denoising
    target (needed only when ``weights.sd`` is not 0);
    ``paired_mask`` (N,) bool: samples still showing their own caption (L_sd uses only these;
    0 when there are none); features by module name, matched through ``layer_map`` (student
    name -> teacher name). ``feat`` and ``sd`` are not computed (reported as 0) when their
    weight is 0; ``out`` always is, the discrepancy being its per-sample form.
    ``sample_weights`` (N,) reweight each sample's output and feature terms (ARIA's unbiased
    mode: a weighted mean, sum_i w_i l_i / N, so weights of mean 1 keep the loss's scale);
    None is the plain mean. The discrepancy is never weighted.
    Returns LOSS_NAMES (``loss`` = the weighted total, ``out``, ``feat``, ``sd``) (scalars) and ``discrepancy`` (N,, detached).
    """
    student = pred_student.float()
    teacher = pred_teacher.float().detach()
    per_sample = (student - teacher).square().flatten(1).mean(1)
    zero = student.new_zeros(())
    if sample_weights is None:
        out = per_sample.mean()
    else:
        sample_weights = sample_weights.to(student.device, torch.float32)
        out = (sample_weights * per_sample).mean()
    feat = feature_kd_loss(student_feats, teacher_feats, layer_map, projections, sample_weights) if weights.feat else zero
    sd = zero
    paired_mask = paired_mask.to(student.device, torch.bool)
    if weights.sd and paired_mask.any():
        sd = (student[paired_mask] - target[paired_mask].float()).square().mean()
    loss = weights.out * out + weights.feat * feat + weights.sd * sd
    return {"loss": loss, "out": out, "feat": feat, "sd": sd, "discrepancy": per_sample.detach()}
