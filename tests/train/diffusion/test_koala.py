"""KOALA students of SDXL-style teachers: derivation, parameter counts, weight init, bad input."""

from fractions import Fraction

import pytest
import torch
from diffusers import UNet2DConditionModel

from aria_train.diffusion.models.configs import SD_V1_4_UNET_CONFIG, SDXL_BASE_UNET_CONFIG, tiny_unet_config
from aria_train.diffusion.models.koala import (
    KOALA_VARIANTS,
    derive_koala_config,
    kept_depth,
)
from aria_train.diffusion.models.students import (VARIANTS, derive_student_config, feature_layer_map, make_student,
                                                  weight_sources)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# KOALA model cards / paper (arXiv 2312.04005), "U-Net comparison": parameters in millions.
PAPER_UNET_PARAMS_M = {"sdxl": 2567, "koala-1b": 1161, "koala-700m": 782}
# Counted here on the meta device (diffusers 0.42.1).
MEASURED_UNET_PARAMS = {"sdxl": 2_567_463_684, "koala-1b": 1_161_184_324, "koala-700m": 782_822_724}

# RC's src/SDXL_distillation.py, copy_weight_from_teacher for KOALA1B / KOALA700M: student prefix
# <- teacher prefix; every other tensor is copied under its own name.
RC_KOALA_CONNECT_INFO = {
    "up_blocks.0.resnets.1.": "up_blocks.0.resnets.2.",
    "up_blocks.0.attentions.1.": "up_blocks.0.attentions.2.",
    "up_blocks.1.resnets.1.": "up_blocks.1.resnets.2.",
    "up_blocks.1.attentions.1.": "up_blocks.1.attentions.2.",
    "up_blocks.2.resnets.1.": "up_blocks.2.resnets.2.",
}

# A tiny SDXL-shaped teacher: plain outer stage, two cross-attention stages with transformer
# depths (1, 2, 3) so that the depth cut removes a block, text_time added conditioning.
POOLED, TIME_DIM = 16, 8
TINY_SDXL = {
    **SDXL_BASE_UNET_CONFIG,
    "sample_size": 16,
    "block_out_channels": [32, 64, 96],
    "attention_head_dim": [2, 4, 4],
    "transformer_layers_per_block": [1, 2, 3],
    "cross_attention_dim": 32,
    "norm_num_groups": 16,
    "addition_time_embed_dim": TIME_DIM,
    "projection_class_embeddings_input_dim": POOLED + 6 * TIME_DIM,
}


def meta_unet(config: dict) -> UNet2DConditionModel:
    with torch.device("meta"):
        return UNet2DConditionModel(**config)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def teacher() -> UNet2DConditionModel:
    torch.manual_seed(0)
    model = UNet2DConditionModel(**TINY_SDXL).eval()
    with torch.no_grad():  # every tensor random and distinct, so equal values identify the source
        for p in model.parameters():
            p.normal_()
    return model


# --- SDXL on the meta device ------------------------------------------------------------------


def test_sdxl_base_config_has_its_parameter_count():
    count = n_params(meta_unet(SDXL_BASE_UNET_CONFIG))
    assert count == MEASURED_UNET_PARAMS["sdxl"]
    assert abs(count / 1e6 / PAPER_UNET_PARAMS_M["sdxl"] - 1) < 0.01


@pytest.mark.parametrize("variant", KOALA_VARIANTS)
def test_koala_students_of_sdxl_have_the_paper_sizes(variant):
    config = derive_student_config(SDXL_BASE_UNET_CONFIG, variant)
    assert config["layers_per_block"] == 1  # encoder keeps 1 of 2 pairs, decoder 2 of 3
    assert config["transformer_layers_per_block"] == [1, 2, 6 if variant == "koala-1b" else 5]
    assert config["mid_block_type"] == ("UNetMidBlock2DCrossAttn" if variant == "koala-1b" else None)
    for key in ("block_out_channels", "down_block_types", "up_block_types", "attention_head_dim",
                "addition_embed_type", "projection_class_embeddings_input_dim", "cross_attention_dim"):
        assert config[key] == SDXL_BASE_UNET_CONFIG[key]
    count = n_params(meta_unet(config))
    assert abs(count / 1e6 / PAPER_UNET_PARAMS_M[variant] - 1) < 0.01, count
    assert count == MEASURED_UNET_PARAMS[variant]


@pytest.mark.parametrize("variant", KOALA_VARIANTS)
def test_sdxl_weight_sources_are_rc_connect_info(variant):
    config = derive_student_config(SDXL_BASE_UNET_CONFIG, variant)
    renamed = {}
    for key, source in weight_sources(SDXL_BASE_UNET_CONFIG, config).items():
        if source != key:
            prefix = ".".join(key.split(".")[:4]) + "."
            renamed[prefix] = ".".join(source.split(".")[:4]) + "."
            assert source == renamed[prefix] + key[len(prefix):]
    assert renamed == RC_KOALA_CONNECT_INFO


def test_kept_depth_is_koalas_share_rounded_half_up():
    assert [kept_depth(10, s) for s in (Fraction(6, 10), Fraction(5, 10))] == [6, 5]
    assert [kept_depth(d, Fraction(1, 2)) for d in (2, 3, 5)] == [1, 2, 3]
    override = derive_koala_config(SDXL_BASE_UNET_CONFIG, "koala-1b", innermost_depth_override=3)
    assert override["transformer_layers_per_block"] == [1, 2, 3]


def test_bk_sdm_variants_still_derive_for_sdxl():
    teacher_count = MEASURED_UNET_PARAMS["sdxl"]
    for variant in VARIANTS:
        assert n_params(meta_unet(derive_student_config(SDXL_BASE_UNET_CONFIG, variant))) < teacher_count


# --- weights and forward on the tiny teacher --------------------------------------------------


def expected_source(key: str) -> str | None:
    """RC's rule written out for the tiny teacher: decoder pair 1 <- teacher pair 2, all else by name."""
    parts = key.split(".")
    if parts[0] == "up_blocks" and parts[2] in ("resnets", "attentions") and parts[3] == "1":
        parts[3] = "2"
    return ".".join(parts)


def dropped(key: str, variant: str) -> bool:
    """Teacher tensors no KOALA student uses: encoder pair 1, decoder pair 1, the innermost
    transformer's third block (depth 3 -> 2, in the encoder, decoder and mid-block), KOALA-700M's mid-block."""
    parts = key.split(".")
    if parts[0] == "down_blocks" and parts[2] in ("resnets", "attentions") and parts[3] == "1":
        return True
    if parts[0] == "up_blocks" and parts[2] in ("resnets", "attentions") and parts[3] == "1":
        return True
    if parts[0] == "mid_block" and variant == "koala-700m":
        return True
    innermost = key.startswith(("down_blocks.2.attentions.", "up_blocks.0.attentions.", "mid_block.attentions."))
    return innermost and ".transformer_blocks.2." in key


@pytest.mark.parametrize("variant", KOALA_VARIANTS)
def test_student_tensors_are_the_right_teacher_tensors(teacher, variant):
    student = make_student(teacher, variant)
    assert student.config.transformer_layers_per_block == [1, 2, 2]  # 3 * 6/10 and 3 * 5/10 round to 2
    s_state, t_state = student.state_dict(), teacher.state_dict()
    sources = weight_sources(dict(teacher.config), dict(student.config))
    assert set(sources) == set(s_state)
    for key, value in s_state.items():
        assert sources[key] == expected_source(key), key
        assert torch.equal(value, t_state[sources[key]]), key
    # the mapping is one-to-one, and every teacher tensor is either used or one KOALA removes
    assert len(set(sources.values())) == len(sources)
    unused = set(t_state) - set(sources.values())
    assert unused and all(dropped(k, variant) for k in unused), sorted(k for k in unused if not dropped(k, variant))[:5]
    assert not any(dropped(k, variant) for k in sources.values())


def sdxl_inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 16, 16, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    text = torch.randn(batch, 7, TINY_SDXL["cross_attention_dim"], generator=g)
    cond = {"text_embeds": torch.randn(batch, POOLED, generator=g), "time_ids": torch.randn(batch, 6, generator=g)}
    return x, t, text, cond


@pytest.mark.parametrize("variant,scale", [("koala-1b", 1.0), ("koala-700m", 1.0), ("koala-700m", 0.5)])
def test_tiny_student_runs_with_sdxl_added_conditioning(teacher, variant, scale):
    student = make_student(teacher, variant, scale).eval()
    x, t, text, cond = sdxl_inputs()
    with torch.no_grad():
        out = student(x, t, text, added_cond_kwargs=cond).sample
        ref = teacher(x, t, text, added_cond_kwargs=cond).sample
    assert out.shape == ref.shape == x.shape and torch.isfinite(out).all()
    # the added conditioning reaches the student: other pooled text changes the prediction
    other = {**cond, "text_embeds": cond["text_embeds"] + 1.0}
    with torch.no_grad():
        assert not torch.allclose(student(x, t, text, added_cond_kwargs=other).sample, out)
    # block-output feature KD pairs resolve on both models
    s_names, t_names = dict(student.named_modules()), dict(teacher.named_modules())
    for s_name, t_name in feature_layer_map(dict(teacher.config), dict(student.config)).items():
        assert s_name in s_names and t_name in t_names


def test_separate_decoder_depths_are_cut_too():
    # per-stage decoder depths given apart from the encoder's (flat reverse_transformer_layers_per_block)
    config = {**TINY_SDXL, "transformer_layers_per_block": [1, 2, 3], "reverse_transformer_layers_per_block": [4, 2, 1]}
    for variant in KOALA_VARIANTS:
        student = derive_student_config(config, variant)
        assert student["transformer_layers_per_block"] == [1, 2, 2]
        assert student["reverse_transformer_layers_per_block"] == [2, 2, 1]  # 4 * 6/10 and 4 * 5/10 round to 2
        weight_sources(config, student)  # every student tensor has a teacher source
    assert derive_student_config(config, "base")["reverse_transformer_layers_per_block"] == [4, 2, 1]


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", KOALA_VARIANTS)
def test_koala_of_an_sd_teacher_is_a_clear_error(variant):
    for sd_config in (SD_V1_4_UNET_CONFIG, tiny_unet_config()):
        with pytest.raises(ValueError, match="use a BK-SDM variant") as err:
            derive_student_config(sd_config, variant)
        assert "\n" not in str(err.value)


def test_students_of_a_teacher_with_per_layer_depths_are_a_clear_error():
    asymmetric = {**TINY_SDXL, "transformer_layers_per_block": [1, [1, 2], [2, 3]],
                  "reverse_transformer_layers_per_block": [[3, 1, 2], [2, 1, 1], [1, 1, 1]]}
    meta_unet(asymmetric)  # diffusers builds it
    for variant in (*VARIANTS, *KOALA_VARIANTS):
        with pytest.raises(ValueError, match="per-layer transformer depths") as err:
            derive_student_config(asymmetric, variant)
        assert "\n" not in str(err.value)


def test_koala_rejects_bad_requests():
    with pytest.raises(ValueError, match="variant"):
        derive_koala_config(SDXL_BASE_UNET_CONFIG, "koala-2b")
    with pytest.raises(ValueError, match="variant"):
        derive_student_config(SDXL_BASE_UNET_CONFIG, "koala-2b")
    for depth in (0, 10):
        with pytest.raises(ValueError, match="innermost_depth_override"):
            derive_koala_config(SDXL_BASE_UNET_CONFIG, "koala-1b", innermost_depth_override=depth)
    with pytest.raises(ValueError, match="channel_scale"):
        derive_student_config(SDXL_BASE_UNET_CONFIG, "koala-1b", 1.5)
    before = repr(SDXL_BASE_UNET_CONFIG)
    derive_student_config(SDXL_BASE_UNET_CONFIG, "koala-700m", 0.5)
    assert repr(SDXL_BASE_UNET_CONFIG) == before
