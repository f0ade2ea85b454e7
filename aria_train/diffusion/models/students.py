"""BK-SDM students derived from any teacher `UNet2DConditionModel` config (docs/design.md §3).

BK-SDM (Kim et al. 2023; code: Nota-NetsPresso/BK-SDM, src/unet_config/bk_*/config.json and
`copy_weight_from_teacher` / the hook lists in src/kd_train_text_to_image.py) removes blocks:

* base:  one resnet(+attention) fewer per stage: `layers_per_block` 2 -> 1. diffusers up blocks
         have `layers_per_block + 1` resnets, so they go 3 -> 2 through the same key.
* small: base with `mid_block_type = None`.
* tiny:  small without the innermost stage: the last down block and the first up block are
         dropped (with their entries in per-stage lists). diffusers then builds the new last down
         block without a downsampler and the new first up block with an upsampler.

Initialisation (BK-SDM, generalised from its SD-v1.4 table to any depth): a down block keeps the
teacher's first `L_s` resnets/attentions (BK-SDM keeps index 0); an up block keeps the teacher's
first `R_s - 1` and its last one (BK-SDM: 0 and 2, dropping 1; the last one is the one whose
skip input comes from the shallower stage, so its shape matches). Tiny's up block j takes the
teacher's up block j + 1, upsampler included. Every other tensor (conv_in, time embedding,
mid-block, downsamplers, conv_out) is copied under its own name. All of these are exact copies.

Tensors whose shape differs from the teacher's (channel-reduced students, or Tiny of a teacher
whose two innermost widths differ) get a heuristic warm start, not a sub-network: the leading
entries along every dimension, except that concatenated inputs are sliced per segment so each
channel keeps its meaning -- the [hidden, skip] input of up-block resnets (norm1, conv1,
conv_shortcut) and the [value, gate] halves of GEGLU projections. GroupNorm groups and attention
heads are not re-aligned, so such a student does not compute any part of the teacher exactly.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
from diffusers import UNet2DConditionModel

from aria_train.diffusion.models import koala
from aria_train.diffusion.models.bk_sdm import VARIANTS, derive_bk_sdm_config, full_config, layers
from aria_train.diffusion.models.feature_kd import unwrap_model

Variant = Literal["base", "small", "tiny", "koala-1b", "koala-700m"]

_BLOCK_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)$")
_UP_RESNET_CONCAT = re.compile(r"^up_blocks\.(\d+)\.resnets\.(\d+)\.(norm1\.weight|norm1\.bias|conv1\.weight|conv_shortcut\.weight)$")


def derive_student_config(teacher_config: dict, variant: Variant, channel_scale: float = 1.0) -> dict:
    """The student config of `variant` for a teacher UNet2DConditionModel config: BK-SDM's base /
    small / tiny (`bk_sdm.derive_bk_sdm_config`) or KOALA's koala-1b / koala-700m
    (`koala.derive_koala_config`); ValueError for any other name and whatever those reject."""
    if variant in koala.KOALA_VARIANTS:
        return koala.derive_koala_config(teacher_config, variant, channel_scale)
    if variant not in VARIANTS:
        raise ValueError(f"unknown student variant {variant!r}; expected one of {VARIANTS + koala.KOALA_VARIANTS}")
    return derive_bk_sdm_config(teacher_config, variant, channel_scale)


def teacher_key(student_key: str, teacher_config: dict, student_config: dict) -> str:
    """The teacher state-dict key a student state-dict key is initialised from (BK-SDM's rule)."""
    match = _BLOCK_KEY.match(student_key)
    if match is None:
        return student_key
    kind, block, part, index, rest = match.groups()
    block, index = int(block), int(index)
    if kind == "down_blocks":
        return student_key  # down blocks keep the teacher's first layers, same indices
    t_cfg, s_cfg = full_config(teacher_config), full_config(student_config)
    offset = len(t_cfg["down_block_types"]) - len(s_cfg["down_block_types"])
    t_block = block + offset
    if part in ("resnets", "attentions"):
        s_last = layers(s_cfg)[::-1][block]  # up block j has layers[::-1][j] + 1 resnets
        t_last = layers(t_cfg)[::-1][t_block]
        if index == s_last:
            index = t_last
    return f"up_blocks.{t_block}.{part}.{index}.{rest}"


def _up_resnet_inputs(config: dict) -> dict[tuple[int, int], tuple[int, int]]:
    """(up block, resnet) -> (hidden channels, skip channels) of its concatenated input.

    Mirrors UNet2DConditionModel.__init__ / UpBlock2D: resnet k of up block j sees
    cat([hidden, skip]); hidden is the previous block's width for k = 0, else this block's;
    skip is the next-shallower stage's width for the last resnet, else this block's.
    """
    cfg = full_config(config)
    widths = list(reversed(cfg["block_out_channels"]))
    up_layers = layers(cfg)[::-1]
    n, prev, splits = len(widths), widths[0], {}
    for j, out in enumerate(widths):
        shallower = widths[min(j + 1, n - 1)]
        for k in range(up_layers[j] + 1):
            splits[(j, k)] = (prev if k == 0 else out, shallower if k == up_layers[j] else out)
        prev = out
    return splits


def _segment_index(s_parts: tuple[int, ...], t_parts: tuple[int, ...]) -> torch.Tensor:
    """Indices into a teacher dimension made of segments t_parts for a student made of s_parts."""
    if any(s > t for s, t in zip(s_parts, t_parts)):
        raise ValueError(f"student segments {s_parts} are wider than the teacher's {t_parts}")
    starts = [sum(t_parts[:i]) for i in range(len(t_parts))]
    return torch.cat([torch.arange(start, start + s) for start, s in zip(starts, s_parts)])


def _warm_start(s_key: str, t_key: str, shape: torch.Size, t_tensor: torch.Tensor, s_cfg: dict, t_cfg: dict) -> torch.Tensor:
    """A teacher tensor cut to a student shape: leading entries, concatenations per segment."""
    if any(s > t for s, t in zip(shape, t_tensor.shape)) or len(shape) != t_tensor.dim():
        raise ValueError(f"cannot initialise {s_key} {tuple(shape)} from {t_key} {tuple(t_tensor.shape)}")
    concat_dim, s_parts, t_parts = None, None, None
    s_match, t_match = _UP_RESNET_CONCAT.match(s_key), _UP_RESNET_CONCAT.match(t_key)
    if s_match and t_match:
        concat_dim = 1 if s_key.endswith("conv1.weight") or s_key.endswith("conv_shortcut.weight") else 0
        s_parts = _up_resnet_inputs(s_cfg)[(int(s_match.group(1)), int(s_match.group(2)))]
        t_parts = _up_resnet_inputs(t_cfg)[(int(t_match.group(1)), int(t_match.group(2)))]
    elif ".ff.net.0.proj." in s_key:  # GEGLU: output is [value, gate], chunked in two
        concat_dim, s_parts, t_parts = 0, (shape[0] // 2,) * 2, (t_tensor.shape[0] // 2,) * 2
    out = t_tensor
    for dim, size in enumerate(shape):
        index = _segment_index(s_parts, t_parts) if dim == concat_dim else torch.arange(size)
        out = out.index_select(dim, index.to(out.device))
    return out


@torch.no_grad()
def copy_teacher_weights(student: UNet2DConditionModel, teacher: UNet2DConditionModel) -> dict[str, str]:
    """Initialise every student tensor from the teacher; returns student key -> teacher key.

    Same-shaped tensors are copied exactly; the others get the warm start described in the
    module docstring. Raises KeyError if a mapped teacher key does not exist.
    """
    student, teacher = unwrap_model(student), unwrap_model(teacher)
    s_cfg, t_cfg = dict(student.config), dict(teacher.config)
    t_state = teacher.state_dict()
    mapping = {}
    for s_key, s_tensor in student.state_dict().items():
        t_key = teacher_key(s_key, t_cfg, s_cfg)
        if t_key not in t_state:
            raise KeyError(f"student tensor {s_key} maps to {t_key}, which the teacher does not have")
        t_tensor = t_state[t_key]
        if t_tensor.shape != s_tensor.shape:
            t_tensor = _warm_start(s_key, t_key, s_tensor.shape, t_tensor, s_cfg, t_cfg)
        s_tensor.copy_(t_tensor)
        mapping[s_key] = t_key
    return mapping


def make_student(teacher: UNet2DConditionModel, variant: Variant, channel_scale: float = 1.0) -> UNet2DConditionModel:
    """A BK-SDM student of `teacher` (wrappers allowed), initialised from its weights.

    The student is built on the teacher's device in float32 (the training copy), whatever the
    teacher's dtype. See the module docstring for which teacher tensors initialise what.
    """
    teacher = unwrap_model(teacher)
    config = derive_student_config(dict(teacher.config), variant, channel_scale)
    with torch.device(teacher.device):
        student = UNet2DConditionModel(**config)
    copy_teacher_weights(student, teacher)
    return student


def _feature_pairs(teacher_config: dict, student_config: dict) -> list[tuple[str, str, int, int]]:
    """(student module, teacher module, student channels, teacher channels) for feature KD.

    Stage i of the student is stage i of the teacher (students only drop the innermost stages),
    so student down block i pairs with teacher down block i and student up block j with teacher
    up block j + (number of dropped stages). Block outputs are compared, as in BK-SDM -- except
    where the student's block has lost its downsampler (Tiny's new innermost stage): there BK-SDM
    compares the last attention's `proj_out` (or here, in a stage without attention, the last
    resnet), before the teacher's downsampler, so that spatial sizes agree.
    """
    t_cfg, s_cfg = full_config(teacher_config), full_config(student_config)
    n_t, n_s = len(t_cfg["down_block_types"]), len(s_cfg["down_block_types"])
    if n_s > n_t:
        raise ValueError(f"student has {n_s} stages, more than the teacher's {n_t}")
    t_ch, s_ch = t_cfg["block_out_channels"], s_cfg["block_out_channels"]
    t_layers, s_layers = layers(t_cfg), layers(s_cfg)
    pairs = []
    for i in range(n_s):
        s_name = t_name = f"down_blocks.{i}"
        if i == n_s - 1 and i < n_t - 1:  # student block i has no downsampler, the teacher's has
            if "CrossAttn" in s_cfg["down_block_types"][i]:
                s_name += f".attentions.{s_layers[i] - 1}.proj_out"
                t_name += f".attentions.{t_layers[i] - 1}.proj_out"
            else:
                s_name += f".resnets.{s_layers[i] - 1}"
                t_name += f".resnets.{t_layers[i] - 1}"
        pairs.append((s_name, t_name, s_ch[i], t_ch[i]))
    for j in range(n_s):
        jt = j + n_t - n_s
        pairs.append((f"up_blocks.{j}", f"up_blocks.{jt}", s_ch[::-1][j], t_ch[::-1][jt]))
    return pairs


FEATURE_KINDS: tuple[str, ...] = ("blocks", "self-attention")  # what feature KD compares (DistillConfig.feature_kd)
FeatureKind = Literal["blocks", "self-attention"]


def _self_attention_pairs(teacher_config: dict, student_config: dict) -> list[tuple[str, str, int, int]]:
    """(student attn1, teacher attn1, student channels, teacher channels): the self-attention of
    every transformer block the student keeps, with the teacher block its weights come from
    (`teacher_key`: a kept decoder attention maps to the teacher attention it was copied from,
    a shortened transformer keeps the teacher's first blocks). Channel counts are read from
    the models built on the meta device."""
    with torch.device("meta"):
        teacher = UNet2DConditionModel(**full_config(teacher_config))
        student = UNet2DConditionModel(**full_config(student_config))
    t_modules = dict(teacher.named_modules())
    pairs = []
    for name, module in student.named_modules():
        if name.endswith(".attn1"):
            t_name = teacher_key(f"{name}.to_q.weight", teacher_config, student_config).removesuffix(".to_q.weight")
            pairs.append((name, t_name, module.to_out[0].out_features, t_modules[t_name].to_out[0].out_features))
    return pairs


def _pairs(teacher_config: dict, student_config: dict, kind: FeatureKind) -> list[tuple[str, str, int, int]]:
    if kind == "blocks":
        return _feature_pairs(teacher_config, student_config)
    if kind == "self-attention":
        return _self_attention_pairs(teacher_config, student_config)
    raise ValueError(f"unknown feature KD kind {kind!r}; expected one of {FEATURE_KINDS}")


def feature_layer_map(teacher_config: dict, student_config: dict, kind: FeatureKind = "blocks") -> dict[str, str]:
    """Student module name -> teacher module name whose outputs feature KD compares: block
    outputs (BK-SDM, RC; `_feature_pairs`) or the self-attention outputs of every kept
    transformer block (KOALA's feature type; `_self_attention_pairs`)."""
    return {s: t for s, t, _, _ in _pairs(teacher_config, student_config, kind)}


def feature_layer_channels(teacher_config: dict, student_config: dict,
                           kind: FeatureKind = "blocks") -> dict[str, tuple[int, int]]:
    """Student module name -> (student channels, teacher channels) of the compared features;
    they differ only for channel-reduced students (see feature_kd.make_projections)."""
    return {s: (cs, ct) for s, _, cs, ct in _pairs(teacher_config, student_config, kind)}


def weight_sources(teacher_config: dict, student_config: dict) -> dict[str, str]:
    """Student state-dict key -> the teacher key it is initialised from (both models on meta).

    The mapping is `teacher_key`'s block correspondence.
    Raises ValueError if a student tensor would come from a teacher tensor that does not exist.
    `make_student` / `copy_teacher_weights` apply the same mapping to real weights.
    """
    with torch.device("meta"):
        teacher = UNet2DConditionModel(**full_config(teacher_config))
        student = UNet2DConditionModel(**full_config(student_config))
    t_keys = set(teacher.state_dict())
    sources = {}
    for key in student.state_dict():
        source = teacher_key(key, teacher_config, student_config)
        if source not in t_keys:
            raise ValueError(f"student tensor {key} maps to {source}, which the teacher does not have")
        sources[key] = source
    return sources
