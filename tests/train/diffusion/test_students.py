"""BK-SDM students (derivation, weight copy, layer maps) and feature-KD plumbing."""

import socket

import pytest
import torch
import torch.distributed as dist
from diffusers import UNet2DConditionModel

from aria_train.diffusion.models.configs import SD_V1_4_UNET_CONFIG, tiny_unet_config
from aria_train.diffusion.models.feature_kd import FeatureHooks, feature_kd_loss, make_projections, unwrap_model
from aria_train.diffusion.models.students import (
    VARIANTS,
    derive_student_config,
    feature_layer_channels,
    feature_layer_map,
    make_student,
    teacher_key,
)

# BK-SDM paper (Kim et al., arXiv 2305.15798), U-Net parameter counts in millions; the model
# card rounds them to 0.86B / 0.58B / 0.49B / 0.33B.
PAPER_UNET_PARAMS_M = {"base": 579.4, "small": 482.3, "tiny": 323.4}
PAPER_TOLERANCE_M = 0.05  # the paper prints one decimal, so an exact match is within 0.05M

# BK-SDM src/kd_train_text_to_image.py, copy_weight_from_teacher: student prefix <- teacher prefix
# for every tensor not copied under its own name.
BK_SDM_CONNECT_INFO = {
    "base": {
        "up_blocks.0.resnets.1.": "up_blocks.0.resnets.2.",
        "up_blocks.1.resnets.1.": "up_blocks.1.resnets.2.",
        "up_blocks.1.attentions.1.": "up_blocks.1.attentions.2.",
        "up_blocks.2.resnets.1.": "up_blocks.2.resnets.2.",
        "up_blocks.2.attentions.1.": "up_blocks.2.attentions.2.",
        "up_blocks.3.resnets.1.": "up_blocks.3.resnets.2.",
        "up_blocks.3.attentions.1.": "up_blocks.3.attentions.2.",
    },
    "tiny": {
        "up_blocks.0.resnets.0.": "up_blocks.1.resnets.0.",
        "up_blocks.0.attentions.0.": "up_blocks.1.attentions.0.",
        "up_blocks.0.resnets.1.": "up_blocks.1.resnets.2.",
        "up_blocks.0.attentions.1.": "up_blocks.1.attentions.2.",
        "up_blocks.0.upsamplers.": "up_blocks.1.upsamplers.",
        "up_blocks.1.resnets.0.": "up_blocks.2.resnets.0.",
        "up_blocks.1.attentions.0.": "up_blocks.2.attentions.0.",
        "up_blocks.1.resnets.1.": "up_blocks.2.resnets.2.",
        "up_blocks.1.attentions.1.": "up_blocks.2.attentions.2.",
        "up_blocks.1.upsamplers.": "up_blocks.2.upsamplers.",
        "up_blocks.2.resnets.0.": "up_blocks.3.resnets.0.",
        "up_blocks.2.attentions.0.": "up_blocks.3.attentions.0.",
        "up_blocks.2.resnets.1.": "up_blocks.3.resnets.2.",
        "up_blocks.2.attentions.1.": "up_blocks.3.attentions.2.",
    },
}
BK_SDM_CONNECT_INFO["small"] = BK_SDM_CONNECT_INFO["base"]

# BK-SDM's feature-KD hook lists (same file), student -> teacher.
BK_SDM_TINY_LAYERS = {
    "down_blocks.0": "down_blocks.0",
    "down_blocks.1": "down_blocks.1",
    "down_blocks.2.attentions.0.proj_out": "down_blocks.2.attentions.1.proj_out",
    "up_blocks.0": "up_blocks.1",
    "up_blocks.1": "up_blocks.2",
    "up_blocks.2": "up_blocks.3",
}

# A small teacher for forward tests: 16x16 pixels, widths (32, 64, 64), 8 GroupNorm groups so a
# half-width student (16, 32, 32) is valid.
SMALL_TEACHER = dict(sample_size=16, block_out_channels=(32, 64, 64), cross_attention_dim=16, attention_heads=4, norm_num_groups=8)


def meta_unet(config: dict) -> UNet2DConditionModel:
    with torch.device("meta"):
        return UNet2DConditionModel(**config)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is faster, and far faster on a busy machine
    (OpenMP workers spin against other processes). Restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(**tiny_unet_config(**SMALL_TEACHER)).eval()


def unet_inputs(config: dict, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config["in_channels"], config["sample_size"], config["sample_size"], generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    text = torch.randn(batch, 5, config["cross_attention_dim"], generator=g)
    return x, t, text


# --- SD-v1.4 on the meta device -------------------------------------------------------------


def test_sd_v1_4_config_has_its_parameter_count():
    assert n_params(meta_unet(SD_V1_4_UNET_CONFIG)) == 859_520_964


@pytest.mark.parametrize("variant", VARIANTS)
def test_sd_students_are_bk_sdm_configs_with_paper_sizes(variant):
    config = derive_student_config(SD_V1_4_UNET_CONFIG, variant)
    # the fields in which BK-SDM's src/unet_config/bk_*/config.json differ from SD-v1.4's
    assert config["layers_per_block"] == 1
    assert config["mid_block_type"] == (None if variant != "base" else "UNetMidBlock2DCrossAttn")
    if variant == "tiny":
        assert config["block_out_channels"] == [320, 640, 1280]
        assert config["down_block_types"] == ["CrossAttnDownBlock2D"] * 3
        assert config["up_block_types"] == ["CrossAttnUpBlock2D"] * 3
    else:
        assert config["block_out_channels"] == SD_V1_4_UNET_CONFIG["block_out_channels"]
        assert config["down_block_types"] == SD_V1_4_UNET_CONFIG["down_block_types"]
        assert config["up_block_types"] == SD_V1_4_UNET_CONFIG["up_block_types"]
    count = n_params(meta_unet(config))
    assert abs(count / 1e6 - PAPER_UNET_PARAMS_M[variant]) < PAPER_TOLERANCE_M, count


@pytest.mark.parametrize("variant", VARIANTS)
def test_sd_weight_sources_are_bk_sdm_connect_info(variant):
    config = derive_student_config(SD_V1_4_UNET_CONFIG, variant)
    teacher_keys = set(meta_unet(SD_V1_4_UNET_CONFIG).state_dict())
    renamed = {}
    for key in meta_unet(config).state_dict():
        source = teacher_key(key, SD_V1_4_UNET_CONFIG, config)
        assert source in teacher_keys
        if source != key:
            # cut both to the block prefix BK-SDM uses ("up_blocks.0.upsamplers." has no index)
            depth = 3 if ".upsamplers." in key else 4
            prefix = ".".join(key.split(".")[:depth]) + "."
            renamed[prefix] = ".".join(source.split(".")[:depth]) + "."
            assert source == renamed[prefix] + key[len(prefix):]
    assert renamed == BK_SDM_CONNECT_INFO[variant]


def test_sd_tiny_layer_map_is_bk_sdm_hook_list():
    for variant in ("base", "small"):
        names = [f"{kind}.{i}" for kind in ("down_blocks", "up_blocks") for i in range(4)]
        assert feature_layer_map(SD_V1_4_UNET_CONFIG, derive_student_config(SD_V1_4_UNET_CONFIG, variant)) == {n: n for n in names}
    assert feature_layer_map(SD_V1_4_UNET_CONFIG, derive_student_config(SD_V1_4_UNET_CONFIG, "tiny")) == BK_SDM_TINY_LAYERS


@pytest.mark.parametrize("scale", [0.5, 0.3, 0.01])
def test_channel_scale_rounds_to_groupnorm_and_heads(scale):
    config = derive_student_config(SD_V1_4_UNET_CONFIG, "small", scale)
    for c, c_teacher in zip(config["block_out_channels"], SD_V1_4_UNET_CONFIG["block_out_channels"]):
        assert c % 32 == 0 and 32 <= c <= c_teacher
        assert abs(c - scale * c_teacher) <= 16 or c == 32
    assert n_params(meta_unet(config)) < n_params(meta_unet(derive_student_config(SD_V1_4_UNET_CONFIG, "small")))


def test_derive_rejects_bad_requests():
    with pytest.raises(ValueError, match="variant"):
        derive_student_config(SD_V1_4_UNET_CONFIG, "huge")
    for scale in (0.0, 1.5):
        with pytest.raises(ValueError, match="channel_scale"):
            derive_student_config(SD_V1_4_UNET_CONFIG, "base", scale)
    with pytest.raises(ValueError, match="layers_per_block"):
        derive_student_config(derive_student_config(SD_V1_4_UNET_CONFIG, "base"), "base")


def test_derive_does_not_touch_the_teacher_config():
    before = repr(SD_V1_4_UNET_CONFIG)
    for variant in VARIANTS:
        derive_student_config(SD_V1_4_UNET_CONFIG, variant, 0.5)
    assert repr(SD_V1_4_UNET_CONFIG) == before


def test_tiny_unet_config_defaults_are_a_small_sd_shaped_teacher():
    config = tiny_unet_config()
    model = meta_unet(config)
    assert 1e6 < n_params(model) < 10e6  # a few M parameters, a few MB in fp16
    assert config["sample_size"] == 32 and config["in_channels"] == config["out_channels"] == 3
    for variant in VARIANTS:  # every BK-SDM variant applies and is smaller
        assert n_params(meta_unet(derive_student_config(config, variant))) < n_params(model)
    with pytest.raises(ValueError, match="divisible"):
        tiny_unet_config(block_out_channels=(30, 60))


# --- weight copy and forward on a small teacher ---------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_student_weights_are_the_teachers_source_weights(teacher, variant):
    student = make_student(teacher, variant)
    t_state = teacher.state_dict()
    s_config, t_config = dict(student.config), dict(teacher.config)
    sources = set()
    for key, value in student.state_dict().items():
        source = teacher_key(key, t_config, s_config)
        assert torch.equal(value, t_state[source]), key
        sources.add(source)
    assert len(sources) == len(student.state_dict())  # no teacher tensor is used twice
    assert n_params(student) < n_params(teacher)
    x, t, text = unet_inputs(t_config)
    with torch.no_grad():
        assert student(x, t, text).sample.shape == x.shape


def test_make_student_accepts_a_wrapped_teacher(teacher):
    wrapped = torch.nn.DataParallel(teacher)
    student = make_student(wrapped, "small")
    assert student.config["mid_block_type"] is None
    assert torch.equal(student.conv_in.weight, teacher.conv_in.weight)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_mapped_features_have_equal_spatial_size_and_stated_channels(teacher, variant, scale):
    student = make_student(teacher, variant, scale)
    layer_map = feature_layer_map(teacher.config, student.config)
    channels = feature_layer_channels(teacher.config, student.config)
    assert set(channels) == set(layer_map)
    x, t, text = unet_inputs(dict(teacher.config))
    with torch.no_grad(), FeatureHooks(student, layer_map) as fs, FeatureHooks(teacher, layer_map.values()) as ft:
        student(x, t, text)
        teacher(x, t, text)
    for s_name, t_name in layer_map.items():
        fs_, ft_ = fs.features[s_name], ft.features[t_name]
        assert fs_.shape[0] == ft_.shape[0] and fs_.shape[2:] == ft_.shape[2:], (s_name, fs_.shape, ft_.shape)
        assert (fs_.shape[1], ft_.shape[1]) == channels[s_name]
        assert (fs_.shape[1] == ft_.shape[1]) == (scale == 1.0)
    if scale == 1.0:  # without projections the loss is defined on every pair
        assert torch.isfinite(feature_kd_loss(fs.features, ft.features, layer_map))


def test_teacher_with_unequal_innermost_widths_gets_a_working_tiny_student():
    # Tiny's first up block comes from a teacher block whose input was 128 wide, now 64: the
    # [hidden, skip] input is cut per segment; tensors of unchanged shape are still exact copies.
    torch.manual_seed(0)
    config = tiny_unet_config(**{**SMALL_TEACHER, "block_out_channels": (32, 64, 128)})
    teacher = UNet2DConditionModel(**config).eval()
    student = make_student(teacher, "tiny")
    t_state = teacher.state_dict()
    conv = "up_blocks.0.resnets.0.conv1.weight"  # input [64 hidden, 64 skip]; teacher's [128, 64]
    source = t_state[teacher_key(conv, teacher.config, student.config)]
    assert torch.equal(student.state_dict()[conv], torch.cat([source[:, :64], source[:, 128:]], dim=1))
    assert torch.equal(student.up_blocks[1].resnets[0].conv1.weight, teacher.up_blocks[2].resnets[0].conv1.weight)
    x, t, text = unet_inputs(config)
    with torch.no_grad():
        assert torch.isfinite(student(x, t, text).sample).all()


# --- feature hooks and the loss -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_feature_hooks_resolve_bare_names_under_ddp(teacher):
    student = make_student(teacher, "tiny")
    layer_map = feature_layer_map(teacher.config, student.config)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(student)
        assert unwrap_model(ddp) is student
        assert not any(name.startswith("module.") for name in layer_map)
        x, t, text = unet_inputs(dict(teacher.config))
        with FeatureHooks(ddp, layer_map) as hooks:
            out = ddp(x, t, text).sample
        assert set(hooks.features) == set(layer_map)
        assert all(isinstance(f, torch.Tensor) and f.requires_grad for f in hooks.features.values())
        out.mean().backward()  # DDP's reducer needs a backward after a forward
    finally:
        dist.destroy_process_group()


def test_feature_hooks_capture_hidden_states_and_remove_themselves(teacher):
    x, t, text = unet_inputs(dict(teacher.config))
    names = ["down_blocks.0", "down_blocks.0.attentions.0", "mid_block"]
    with torch.no_grad(), FeatureHooks(teacher, names) as hooks:
        teacher(x, t, text)
    first = dict(hooks.features)
    # down blocks return (hidden, residuals); the hidden states are kept, after the downsampler
    assert first["down_blocks.0"].shape == (2, 32, 8, 8)
    assert first["down_blocks.0.attentions.0"].shape == (2, 32, 16, 16)
    with torch.no_grad():
        teacher(x * 2, t, text)  # hooks are gone: nothing is overwritten
    assert all(hooks.features[n] is first[n] for n in names)
    assert all(not m._forward_hooks for m in teacher.modules())
    with pytest.raises(KeyError, match="module.down_blocks.0"), FeatureHooks(teacher, ["module.down_blocks.0"]):
        pass


def test_channel_reduced_student_trains_through_projections(teacher):
    student = make_student(teacher, "base", 0.5)
    layer_map = feature_layer_map(teacher.config, student.config)
    projections = make_projections(feature_layer_channels(teacher.config, student.config))
    assert len(projections) == len(layer_map)  # every width differs at half scale
    x, t, text = unet_inputs(dict(teacher.config))
    with FeatureHooks(student, layer_map) as fs, FeatureHooks(teacher, layer_map.values()) as ft:
        with torch.no_grad():
            teacher(x, t, text)
        student(x, t, text)
    with pytest.raises(ValueError, match="projection"):
        feature_kd_loss(fs.features, ft.features, layer_map)
    loss = feature_kd_loss(fs.features, ft.features, layer_map, projections)
    assert loss.dtype == torch.float32 and loss.item() > 0
    loss.backward()
    for module in (student.down_blocks[0], *projections.values()):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("seed", range(3))
def test_feature_kd_loss_is_zero_only_for_identical_features(seed):
    g = torch.Generator().manual_seed(seed)
    layer_map = {"a": "x", "b": "y"}
    teacher = {"x": torch.randn(2, 4, 8, 8, generator=g).half(), "y": torch.randn(2, 6, 4, 4, generator=g)}
    same = {"a": teacher["x"].clone(), "b": teacher["y"].clone()}
    assert feature_kd_loss(same, teacher, layer_map).item() == 0.0
    other = {"a": same["a"], "b": same["b"] + 0.1 * torch.randn(2, 6, 4, 4, generator=g)}
    loss = feature_kd_loss(other, teacher, layer_map)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(((other["b"] - teacher["y"]) ** 2).mean().item(), rel=1e-6)
    assert loss.item() > 0


def test_projection_handles_channels_last_token_features():
    # a linear proj_out (use_linear_projection=True, e.g. SD-v2) yields (B, tokens, C) features
    projections = make_projections({"s": (4, 6)})
    conv = projections["s"]
    student = {"s": torch.randn(2, 9, 4)}
    teacher = {"t": torch.einsum("bnc,oc->bno", student["s"], conv.weight[:, :, 0, 0]) + conv.bias}
    assert feature_kd_loss(student, teacher, {"s": "t"}, projections).item() == pytest.approx(0.0, abs=1e-10)
    teacher["t"] = teacher["t"] + 1.0
    assert feature_kd_loss(student, teacher, {"s": "t"}, projections).item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_feature_kd_loss_keeps_the_maps_as_they_come_and_is_bitwise_the_float32_mse(weighted, dtype):
    """The loss keeps the maps for its backward as they come (bf16: no float32 copy of a map) and
    gives bitwise the loss and gradient of the float32 expression on upcast copies that it
    replaced (F.mse_loss; with sample weights, the weighted mean of per-sample errors), so runs
    and their results are those of the code before it."""
    g = torch.Generator().manual_seed(0)
    student = torch.randn(3, 5, 8, 8, generator=g).to(dtype).requires_grad_()
    teacher = torch.randn(3, 5, 8, 8, generator=g).to(dtype)
    weights = torch.tensor([0.5, 1.0, 1.5]) if weighted else None
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = feature_kd_loss({"s": student}, {"t": teacher}, {"s": "t"}, sample_weights=weights)
    if dtype == torch.bfloat16:
        assert saved and all(t.dtype != torch.float32 or t.numel() <= 3 for t in saved)  # no float32 copy of a map
    (grad,) = torch.autograd.grad(loss, student)
    copy = student.detach().requires_grad_()
    student32, teacher32 = copy.float(), teacher.float()
    if weighted:
        reference = (weights * (student32 - teacher32).square().flatten(1).mean(1)).mean()
    else:
        reference = torch.nn.functional.mse_loss(student32, teacher32)
    (reference_grad,) = torch.autograd.grad(reference, copy)
    assert loss.dtype == torch.float32 and torch.equal(loss, reference)
    assert grad.dtype == dtype and torch.equal(grad, reference_grad)
