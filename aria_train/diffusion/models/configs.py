"""UNet configurations written out, so that students and tests never need a download.

`SD_V1_4_UNET_CONFIG` is the `unet/config.json` of CompVis/stable-diffusion-v1-4 (diffusers
`UNet2DConditionModel`, 859,520,964 parameters), with the keys that BK-SDM's student configs
(src/unet_config/bk_*/config.json, diffusers 0.15) spell out. Note the legacy diffusers naming:
`attention_head_dim: 8` is the number of attention *heads* (head width = channels / 8).

`tiny_unet_config` builds a small teacher of the same shape (cross-attention stages outside, a
plain innermost stage, a cross-attention mid-block) so that all BK-SDM variants apply to it.
"""

from __future__ import annotations

SD_V1_4_UNET_CONFIG: dict = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 768,
    "cross_attention_norm": None,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": None,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 64,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "upcast_attention": False,
    "use_linear_projection": False,
}


# The diffusers `unet/config.json` of stabilityai/stable-diffusion-xl-base-1.0, written out so
# that tests and benchmarks never download it. Legacy naming as in SD: `attention_head_dim` is
# the number of heads per stage (head width 64).
SDXL_BASE_UNET_CONFIG: dict = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,  # 1280 (pooled text) + 6 time ids x 256
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}


def tiny_unet_config(
    sample_size: int = 32,
    in_channels: int = 3,
    block_out_channels: tuple[int, ...] = (64, 96, 96),
    layers_per_block: int = 2,
    cross_attention_dim: int = 64,
    attention_heads: int = 4,
    norm_num_groups: int = 32,
) -> dict:
    """A small SD-shaped teacher config for pixel-space 32x32 RGB worlds and for tests.

    Every stage but the innermost is a cross-attention stage, the innermost is plain, and the
    mid-block has cross-attention, as in SD-v1.4, so BK-SDM Base/Small/Tiny all apply.
    `sample_size` is in pixels (no VAE), `cross_attention_dim` must equal the text encoder's
    hidden size, `attention_heads` is the number of heads per attention layer (diffusers'
    legacy `attention_head_dim` key) and must divide every channel count, as must
    `norm_num_groups` (GroupNorm). With the defaults the UNet has 5,481,603 parameters
    (11 MB in fp16); its BK-SDM students have about 3.7M (Base), 3.1M (Small), 2.2M (Tiny).
    """
    n = len(block_out_channels)
    if n < 2:
        raise ValueError(f"tiny_unet_config needs at least 2 stages, got {n}")
    for c in block_out_channels:
        if c % attention_heads or c % norm_num_groups:
            raise ValueError(
                f"channel count {c} must be divisible by attention_heads={attention_heads} "
                f"and norm_num_groups={norm_num_groups}"
            )
    return {
        **SD_V1_4_UNET_CONFIG,
        "sample_size": sample_size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "block_out_channels": list(block_out_channels),
        "layers_per_block": layers_per_block,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": attention_heads,
        "norm_num_groups": norm_num_groups,
        "down_block_types": ["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
    }


def tiny_sdxl_unet_config(
    sample_size: int = 8,
    block_out_channels: tuple[int, ...] = (8, 16),
    transformer_layers_per_block: tuple[int, ...] = (1, 2),
    cross_attention_dim: int = 96,
    pooled_dim: int = 32,
    addition_time_embed_dim: int = 8,
    attention_heads: int = 2,
    norm_num_groups: int = 4,
) -> dict:
    """A small SDXL-shaped latent UNet config (tests): `SDXL_BASE_UNET_CONFIG` with fewer, narrower
    stages. The outermost stage is plain and every other has cross-attention, the innermost the
    deepest transformers (SDXL: [1, 2, 10]), so KOALA's depth cut and BK-SDM's block removal apply;
    the added embedding ("text_time") takes `pooled_dim` (the second text encoder's projection)
    plus 6 time ids x `addition_time_embed_dim`. `cross_attention_dim` is the two encoders'
    widths together.
    """
    n = len(block_out_channels)
    if n < 2 or len(transformer_layers_per_block) != n:
        raise ValueError(f"tiny_sdxl_unet_config needs >= 2 stages and one transformer depth per stage, got "
                         f"{list(block_out_channels)} and {list(transformer_layers_per_block)}")
    return {
        **SDXL_BASE_UNET_CONFIG,
        "sample_size": sample_size,
        "block_out_channels": list(block_out_channels),
        "transformer_layers_per_block": list(transformer_layers_per_block),
        "attention_head_dim": [attention_heads] * n,
        "norm_num_groups": norm_num_groups,
        "cross_attention_dim": cross_attention_dim,
        "addition_time_embed_dim": addition_time_embed_dim,
        "projection_class_embeddings_input_dim": pooled_dim + 6 * addition_time_embed_dim,
        "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (n - 1),
        "up_block_types": ["CrossAttnUpBlock2D"] * (n - 1) + ["UpBlock2D"],
    }
