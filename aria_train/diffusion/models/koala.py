"""KOALA students derived from an SDXL-style teacher `UNet2DConditionModel` config.

KOALA (Lee et al., NeurIPS 2024, arXiv 2312.04005; models etri-vilab/koala-1b and koala-700m,
no training code) compresses SDXL's UNet. Random Conditioning's SDXL script distils into the same
two students. KOALA removes three things:

* resnet/attention pairs, as BK-SDM does: each encoder stage keeps one of its two pairs and each
  decoder stage keeps two of its three. In diffusers terms `layers_per_block` goes 2 -> 1 (up
  blocks have `layers_per_block + 1`), which is BK-SDM Base's rule in `bk_sdm.py`.
* transformer depth: the innermost stage keeps 6 (KOALA-1B) or 5 (KOALA-700M) of its 10
  transformer blocks (the model cards give "Tx blocks [0, 2, 10] -> [0, 2, 6] / [0, 2, 5]").
  diffusers builds the mid-block with depth `transformer_layers_per_block[-1]`, so KOALA-1B's
  mid-block goes 10 -> 6 too. The parameter counts confirm this: a mid-block left at depth 10
  would add 139,023,360 parameters.
* the mid-block, in KOALA-700M only (BK-SDM Small's rule).

So KOALA-1B is BK-SDM Base plus the depth cut, and KOALA-700M is BK-SDM Small plus the depth cut.
`derive_koala_config` applies the BK-SDM rule through `bk_sdm.derive_bk_sdm_config` and then
cuts the depth, all from the teacher's config. On SDXL base (`configs.SDXL_BASE_UNET_CONFIG`, built on
the meta device) the counts are:

    teacher     2,567,463,684   (KOALA reports 2,567M)
    KOALA-1B    1,161,184,324   (1,161M)
    KOALA-700M    782,822,724   (782M)

For teachers whose innermost depth is not 10, the kept share (6/10 or 5/10) is applied to that
depth, rounded half up, with at least one block kept; `innermost_depth_override` replaces it.
A separate per-stage `reverse_transformer_layers_per_block` has its innermost entry cut the same way.

Initialisation uses the block mapping in `students.teacher_key`, unchanged. Down blocks keep the
teacher's first pair. Up blocks keep pair 0 and the last pair, so student index 1 comes from
teacher index 2, as in RC's `copy_weight_from_teacher` for KOALA. Every other tensor keeps its
name. So a shortened transformer keeps the teacher's *first* `d` blocks: student
`transformer_blocks.k` comes from teacher `transformer_blocks.k`, which is also what RC's
copy-by-name does. At full width the student is an exact sub-network: every tensor is a copy
(`students.weight_sources`). With `channel_scale < 1` the narrowed tensors get students.py's warm start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


from aria_train.diffusion.models import bk_sdm

KOALA_VARIANTS: tuple[str, ...] = ("koala-1b", "koala-700m")

@dataclass(frozen=True)
class KoalaSpec:
    """What a KOALA variant removes, stated relative to the teacher."""

    bk_sdm_rule: str  # the BK-SDM variant whose block removal it shares ("small" also drops the mid-block)
    innermost_depth_kept: Fraction  # share of the innermost stage's transformer blocks kept


# KOALA's SDXL numbers as shares of SDXL's innermost depth 10, so that they also apply to smaller
# teachers (tests). Fractions avoid float rounding at exact halves.
KOALA_SPECS: dict[str, KoalaSpec] = {
    "koala-1b": KoalaSpec(bk_sdm_rule="base", innermost_depth_kept=Fraction(6, 10)),
    "koala-700m": KoalaSpec(bk_sdm_rule="small", innermost_depth_kept=Fraction(5, 10)),
}


def innermost_depth(config: dict) -> int:
    """Transformer blocks per attention in the innermost stage (0 if that stage has no attention)."""
    cfg = bk_sdm.full_config(config)
    n = len(cfg["down_block_types"])
    if "CrossAttn" not in cfg["down_block_types"][-1]:
        return 0
    return int(bk_sdm.per_stage(cfg["transformer_layers_per_block"], n)[-1])


def kept_depth(teacher_depth: int, share: Fraction) -> int:
    """`share` of `teacher_depth`, rounded half up, at least 1 (10 -> 6 for 6/10, 5 for 5/10)."""
    return max(1, math.floor(teacher_depth * share + Fraction(1, 2)))


def derive_koala_config(
    teacher_config: dict, variant: str, channel_scale: float = 1.0, innermost_depth_override: int | None = None
) -> dict:
    """The KOALA student config of `variant` for an SDXL-style teacher UNet2DConditionModel config.

    `teacher_config` may be a plain dict or `unet.config`. The result is a complete keyword set
    for `UNet2DConditionModel(**config)`. `channel_scale` narrows the stages as in BK-SDM.
    `innermost_depth_override` replaces the derived innermost depth (1 <= it < the teacher's).
    Raises ValueError for an unknown variant, for a teacher without transformer blocks to
    remove in its innermost stage (SD v1/v2: the innermost stage has no attention), for per-layer
    depths, and for everything BK-SDM's derivation rejects (layers_per_block < 2, channel_scale).
    """
    if variant not in KOALA_SPECS:
        raise ValueError(f"unknown KOALA variant {variant!r}; expected one of {KOALA_VARIANTS}")
    spec = KOALA_SPECS[variant]
    cfg = bk_sdm.full_config(teacher_config)
    nested = bk_sdm.per_layer_depth_keys(cfg)
    if nested:
        raise ValueError(
            f"{variant} cannot be derived from a teacher with per-layer transformer depths ({', '.join(nested)}); "
            "KOALA's rules are per stage"
        )
    depth = innermost_depth(cfg)
    if depth < 2:  # SD v1/v2: the innermost stage is a plain DownBlock2D
        detail = "has no attention" if depth == 0 else "has transformer depth 1"
        raise ValueError(
            f"{variant} cannot be derived from this teacher: KOALA cuts the transformer depth of the innermost "
            f"stage, and this teacher's innermost stage ({cfg['down_block_types'][-1]}) {detail}, as in SD v1/v2; "
            f"use a BK-SDM variant ({', '.join(bk_sdm.VARIANTS)}) for it"
        )
    if innermost_depth_override is None:
        new_depth = kept_depth(depth, spec.innermost_depth_kept)
    elif not 1 <= innermost_depth_override < depth:
        raise ValueError(
            f"innermost_depth_override must be in [1, {depth - 1}] for this teacher, got {innermost_depth_override}"
        )
    else:
        new_depth = innermost_depth_override

    student = bk_sdm.derive_bk_sdm_config(cfg, spec.bk_sdm_rule, channel_scale)
    n = len(student["down_block_types"])
    depths = [int(d) for d in bk_sdm.per_stage(student["transformer_layers_per_block"], n)]
    depths[-1] = new_depth  # the mid-block follows: diffusers builds it with depths[-1]
    student["transformer_layers_per_block"] = depths
    reverse = student.get("reverse_transformer_layers_per_block")
    if reverse is not None:  # per-stage decoder depths given separately, innermost up block first
        reverse = [int(d) for d in reverse]
        if innermost_depth_override is None:
            reverse[0] = kept_depth(reverse[0], spec.innermost_depth_kept)
        else:
            reverse[0] = min(reverse[0], innermost_depth_override)
        student["reverse_transformer_layers_per_block"] = reverse
    return student
