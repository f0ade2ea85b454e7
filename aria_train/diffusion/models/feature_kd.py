"""Feature knowledge distillation: forward hooks by module name, and the fp32 feature loss.

Hooks are resolved on the UNWRAPPED model: a DistributedDataParallel (or DataParallel,
DeepSpeed, FSDP, torch.compile, any `.module`) wrapper renames modules to `module.*`, which made
BK-SDM's hook names silently miss under multi-GPU training (docs/design.md §3). Names given
here are always those of the bare UNet, e.g. "down_blocks.0".
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / DataParallel / accelerate / torch.compile wrappers."""
    from accelerate.utils import extract_model_from_parallel

    # keep_fp32_wrapper=True: do not strip accelerate's autocast forward from a live model
    model = extract_model_from_parallel(model, keep_fp32_wrapper=True, keep_torch_compile=False)
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


def _hidden_states(output):
    """The hidden-states tensor of a module output: diffusers down blocks return
    (hidden, residuals), attention blocks a tuple or an output object with `.sample`."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor) and hasattr(output, "sample"):
        output = output.sample
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"cannot take a feature tensor from a module output of type {type(output).__name__}")
    return output


class FeatureHooks:
    """Captures the outputs of named modules during forward passes.

    `features[name]` holds the latest output of each module (not detached, so student features
    carry gradients); it is overwritten by every forward and emptied by ``clear()``. Use it as a
    context manager (hooks removed on exit) or keep it attached for a whole run with
    ``attach()`` / ``detach()``: the trainer does the latter, because registering and removing
    hooks at every step changes the modules' hook dictionaries, which torch.compile guards on,
    so each step would recompile (or fall back to eager). Raises KeyError on attaching if a name
    does not exist in the unwrapped model.

        with FeatureHooks(student, layer_map.keys()) as fs, FeatureHooks(teacher, layer_map.values()) as ft:
            ...forward both...
            loss = feature_kd_loss(fs.features, ft.features, layer_map)
    """

    def __init__(self, model: nn.Module, names: Iterable[str]):
        self.model = unwrap_model(model)
        self.names = list(dict.fromkeys(names))
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def attach(self) -> "FeatureHooks":
        """Register the hooks (once; attaching again is a no-op) and return self."""
        if self._handles:
            return self
        modules = dict(self.model.named_modules())
        missing = [n for n in self.names if n not in modules]
        if missing:
            raise KeyError(f"modules not found in {type(self.model).__name__}: {missing}")
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str):
        def capture(module, inputs, output):
            self.features[name] = _hidden_states(output)

        return capture

    def clear(self) -> None:
        """Drop the captured tensors (and with them the memory they hold)."""
        self.features.clear()

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "FeatureHooks":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()


def projection_key(name: str) -> str:
    """ModuleDict key for a module name (ModuleDict keys cannot contain dots)."""
    return name.replace(".", "__")


def make_projections(layer_map_channels: Mapping[str, tuple[int, int]]) -> nn.ModuleDict:
    """1x1 convolutions student channels -> teacher channels for every mapped layer whose
    channel counts differ (channel-reduced students); `layer_map_channels` is
    students.feature_layer_channels(...). Train them with the student."""
    return nn.ModuleDict(
        {projection_key(name): nn.Conv2d(cs, ct, kernel_size=1) for name, (cs, ct) in layer_map_channels.items() if cs != ct}
    )


def _project(conv: nn.Conv2d, feature: torch.Tensor) -> torch.Tensor:
    if feature.dim() == 4:
        return conv(feature)
    if feature.dim() == 3:  # (B, tokens, C), e.g. a linear proj_out: channels last
        return conv(feature.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    raise ValueError(f"cannot project a feature of shape {tuple(feature.shape)}")


class FeatureError(torch.autograd.Function):
    """The float32 mean squared error of two feature maps (N, ...) -- over everything (a scalar)
    or per sample (N,) -- that keeps for its backward the two maps as they come: bf16 under
    autocast, where float32 copies (what ``F.mse_loss`` of ``.float()`` inputs keeps) are twice the
    bytes each, and at SD size (BK-SDM's eight block outputs, 6.2M elements a sample) held from the
    loss to the backward they are 3.2 GB of a batch of 64. The backward upcasts the kept maps again
    (exact) and applies the formula autograd applies to the float32 expression -- ``F.mse_loss``'s
    own backward, or that of ``(s - t).square().flatten(1).mean(1)`` -- so the loss and the gradient
    are bitwise those of the expression on float32 copies. ``teacher`` gets no gradient."""

    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor, per_sample: bool) -> torch.Tensor:
        ctx.save_for_backward(student, teacher)
        ctx.per_sample = per_sample
        student32, teacher32 = student.float(), teacher.float()
        if per_sample:
            return (student32 - teacher32).square().flatten(1).mean(1)
        return F.mse_loss(student32, teacher32)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        student, teacher = ctx.saved_tensors
        student32, teacher32 = student.float(), teacher.float()
        if ctx.per_sample:  # mean's backward (grad / D, broadcast), then square's (times 2 (s - t))
            difference = (student32 - teacher32).flatten(1)
            grad_student = (grad.unsqueeze(1) / difference.shape[1]) * (2 * difference)
        else:
            grad_student = torch.ops.aten.mse_loss_backward(grad, student32, teacher32, 1)  # 1: mean reduction
        return grad_student.view_as(student).to(student.dtype), None, None


def feature_kd_loss(
    student_feats: Mapping[str, torch.Tensor],
    teacher_feats: Mapping[str, torch.Tensor],
    layer_map: Mapping[str, str],
    projections: nn.ModuleDict | None = None,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over mapped layers of mean-squared error, in float32 (BK-SDM / RC's L_feat).

    With ``sample_weights`` (N,), each layer's error is the weighted mean over samples of the
    per-sample mean squared error, sum_i w_i e_i / N.

    `layer_map` is student name -> teacher name; a student feature is first passed through
    `projections[projection_key(name)]` when present. Teacher features are detached.
    Raises KeyError for a feature not captured and ValueError for mismatched shapes.
    """
    total = None
    for s_name, t_name in layer_map.items():
        student, teacher = student_feats[s_name], teacher_feats[t_name].detach()
        key = projection_key(s_name)
        if projections is not None and key in projections:
            student = _project(projections[key], student.float())
        if student.shape != teacher.shape:
            raise ValueError(f"feature {s_name} {tuple(student.shape)} vs {t_name} {tuple(teacher.shape)}; a projection is needed")
        if sample_weights is None:
            term = FeatureError.apply(student, teacher, False)
        else:
            term = (sample_weights * FeatureError.apply(student, teacher, True)).mean()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("layer_map is empty")
    return total
