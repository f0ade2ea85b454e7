"""BK-SDM's block-removal rules on UNet configs: a student config derived from any teacher
`UNet2DConditionModel` config (docs/design.md §3), and the config helpers that both student
families use (`students.py` for BK-SDM and the weight mapping, `koala.py` for SDXL's KOALA).

* base:  one resnet(+attention) fewer per stage: `layers_per_block` 2 -> 1. diffusers up blocks
         have `layers_per_block + 1` resnets, so they go 3 -> 2 through the same key.
* small: base with `mid_block_type = None`.
* tiny:  small without the innermost stage: the last down block and the first up block are
         dropped (with their entries in per-stage lists). diffusers then builds the new last down
         block without a downsampler and the new first up block with an upsampler.
"""
from __future__ import annotations

import copy
import inspect
import math

from diffusers import UNet2DConditionModel

VARIANTS: tuple[str, ...] = ("base", "small", "tiny")

# Config keys that diffusers accepts either as one value or as one value per stage (down order).
PER_STAGE_KEYS = (
    "attention_head_dim",
    "num_attention_heads",
    "cross_attention_dim",
    "only_cross_attention",
    "transformer_layers_per_block",
)

def full_config(config: dict) -> dict:
    """`config` on top of UNet2DConditionModel's defaults, without diffusers' `_` metadata keys."""
    params = inspect.signature(UNet2DConditionModel.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if k != "self"}
    return {**defaults, **{k: v for k, v in dict(config).items() if not k.startswith("_")}}


def per_stage(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def layers(config: dict) -> list[int]:
    """Resnets per down block (down order); an up block has one more."""
    return per_stage(config["layers_per_block"], len(config["down_block_types"]))


def channel_multiple(config: dict) -> int:
    """Channel counts must be divisible by the GroupNorm group count and by every head count."""
    heads = config["num_attention_heads"] or config["attention_head_dim"]
    return math.lcm(config["norm_num_groups"], *per_stage(heads, len(config["down_block_types"])))


def derive_bk_sdm_config(teacher_config: dict, variant: str, channel_scale: float = 1.0) -> dict:
    """The BK-SDM student config of `variant` for any teacher UNet2DConditionModel config.

    `teacher_config` may be a plain dict or `unet.config`; missing keys take diffusers' defaults
    and the result is a complete keyword set for `UNet2DConditionModel(**config)`.
    `channel_scale` in (0, 1] multiplies `block_out_channels`, each rounded to the nearest
    multiple of lcm(norm_num_groups, attention heads) and at least one such multiple.
    Raises ValueError for an unknown variant, a scale outside (0, 1], a teacher stage with fewer
    than 2 layers, per-layer transformer depths, or a Tiny student of a one-stage teacher.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown BK-SDM variant {variant!r}; expected one of {VARIANTS}")
    if not 0.0 < channel_scale <= 1.0:
        raise ValueError(f"channel_scale must be in (0, 1], got {channel_scale}")
    cfg = copy.deepcopy(full_config(teacher_config))
    if nested := per_layer_depth_keys(cfg):  # diffusers' asymmetric UNets
        raise ValueError(f"BK-SDM {variant} cannot be derived from a teacher with per-layer transformer depths ({', '.join(nested)})")
    n = len(cfg["down_block_types"])
    per_block = layers(cfg)
    if min(per_block) < 2:
        raise ValueError(f"BK-SDM removes one layer per stage; teacher layers_per_block={cfg['layers_per_block']}")
    cfg["layers_per_block"] = ([l - 1 for l in per_block] if isinstance(cfg["layers_per_block"], (list, tuple))
                               else per_block[0] - 1)

    if variant in ("small", "tiny"):
        cfg["mid_block_type"] = None
    if variant == "tiny":
        if n < 2:
            raise ValueError("a Tiny student drops the innermost stage; the teacher has only one")
        cfg["down_block_types"] = list(cfg["down_block_types"][:-1])
        cfg["up_block_types"] = list(cfg["up_block_types"][1:])
        cfg["block_out_channels"] = list(cfg["block_out_channels"][:-1])
        for key in (*PER_STAGE_KEYS, "layers_per_block"):
            if isinstance(cfg[key], (list, tuple)):
                cfg[key] = list(cfg[key][:-1])
        # this one is given per up block, innermost first
        if isinstance(cfg.get("reverse_transformer_layers_per_block"), (list, tuple)):
            cfg["reverse_transformer_layers_per_block"] = list(cfg["reverse_transformer_layers_per_block"][1:])

    if channel_scale != 1.0:
        m = channel_multiple(cfg)
        cfg["block_out_channels"] = [max(m, math.floor(c * channel_scale / m + 0.5) * m) for c in cfg["block_out_channels"]]
    else:
        cfg["block_out_channels"] = list(cfg["block_out_channels"])
    return cfg


def per_layer_depth_keys(config: dict) -> list[str]:
    """The config keys that give transformer depths per layer rather than per stage (nested lists;
    diffusers' asymmetric UNets, which also need `reverse_transformer_layers_per_block`).

    Both KOALA and BK-SDM drop whole layers, but these config rules work per stage. On
    such a teacher they would keep the per-layer lists at full length, and the kept decoder pair
    would get the depth of the pair it replaces, not of the pair it is copied from. So students
    cannot be derived from these teachers, and callers raise ValueError.
    """
    cfg = full_config(config)
    keys = []
    for key in ("transformer_layers_per_block", "reverse_transformer_layers_per_block"):
        value = cfg.get(key)
        if isinstance(value, (list, tuple)) and any(isinstance(d, (list, tuple)) for d in value):
            keys.append(key)
    return keys
