"""Loading models from local folders: a teacher folder (diffusers layout: an embedded world's,
Stable Diffusion v1/v2's or Stable Diffusion XL's, read with local_files_only), and UNets for
evaluation (a UNet folder or a distillation run's latest EMA student).

A student given as a distillation run directory resolves to
``RUN/checkpoints/step-XXXXXXX/student_ema/`` of its newest complete checkpoint (the layout of
aria_train.runs.checkpoint); a folder with ``config.json`` is a UNet folder (``save_pretrained``).
Loading errors of any kind become one-line ValueErrors naming the folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from diffusers import DDPMScheduler, UNet2DConditionModel

from aria_train.console import first_line
from aria_train.diffusion.prompts import PromptEncoder
from aria_train.diffusion.targets import check_prediction_type
from aria_train.diffusion.text import load_text_stack
from aria_train.runs.checkpoint import EMA_DIR, STUDENT_DIR, list_checkpoints

TEACHER_PARTS = ("unet", "scheduler", "tokenizer", "text_encoder")
# An SDXL folder (StableDiffusionXLPipeline.save_pretrained) adds the second encoder; the samples
# also depend on model_index.json (force_zeros_for_empty_prompt: the null text) and on the VAE's
# config (its downsampling factor sets the time ids), which its fingerprint therefore covers.
SDXL_PARTS = (*TEACHER_PARTS, "tokenizer_2", "text_encoder_2")
SDXL_FINGERPRINT_PARTS = (*SDXL_PARTS, "model_index.json", "vae/config.json")
SDXL_PIPELINE = "StableDiffusionXLPipeline"


def resolve_unet_folder(path: str | Path) -> Path:
    """The UNet folder that ``path`` (a UNet folder or a run directory) stands for."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"student {path} not found")
    if (path / "checkpoints").is_dir():  # first: a run directory has a config.json of its own
        found = list_checkpoints(path / "checkpoints")
        if not found:
            raise ValueError(f"run directory {path} has no complete checkpoint")
        if not (found[-1] / EMA_DIR / "config.json").is_file():  # diffusers would look for it on the Hub
            raise ValueError(f"run directory {path}: its newest checkpoint {found[-1].name} has no {EMA_DIR}/ "
                             f"(give a UNet folder, e.g. {found[-1] / STUDENT_DIR}, to evaluate the raw weights)")
        return found[-1] / EMA_DIR
    if (path / "config.json").is_file():
        return path
    raise ValueError(f"{path} is neither a UNet folder (config.json) nor a run directory (checkpoints/)")


def load_unet(path: str | Path) -> UNet2DConditionModel:
    """A frozen float32 UNet2DConditionModel on the CPU from a UNet folder or a run directory."""
    folder = resolve_unet_folder(path)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # diffusers/safetensors raise many types for bad files
        raise ValueError(f"cannot load UNet {folder}: {first_line(err)}") from None
    return unet.float().eval().requires_grad_(False)


@dataclass
class Teacher:
    """A teacher folder's frozen models on the CPU: UNet, DDPM scheduler, prompt encoder."""

    folder: Path
    unet: UNet2DConditionModel
    scheduler: DDPMScheduler
    prompts: PromptEncoder

    @property
    def vae_dir(self) -> Path | None:
        """FOLDER/vae for a latent teacher, None for a pixel-space one."""
        vae = self.folder / "vae"
        return vae if vae.is_dir() else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {first_line(err)}") from None


def is_sdxl_folder(folder: Path) -> bool:
    """Whether ``folder`` is a Stable Diffusion XL teacher: its model_index.json names the SDXL
    pipeline, its UNet takes SDXL's added conditioning, or it has a second text encoder."""
    index, unet = folder / "model_index.json", folder / "unet" / "config.json"
    return ((index.is_file() and _read_json(index).get("_class_name") == SDXL_PIPELINE)
            or (unet.is_file() and _read_json(unet).get("addition_embed_type") == "text_time")
            or (folder / "text_encoder_2").is_dir())


def teacher_parts(folder: Path) -> tuple[str, ...]:
    """The parts of a teacher folder that its samples depend on (what a cache fingerprints)."""
    return SDXL_FINGERPRINT_PARTS if is_sdxl_folder(folder) else TEACHER_PARTS


def _check_parts(folder: Path, parts: tuple[str, ...], kind: str = "") -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher folder {folder} not found")
    missing = [part for part in parts if not (folder / part).is_dir()]
    if missing:
        raise ValueError(f"{kind}teacher folder {folder} lacks {', '.join(p + '/' for p in missing)}")


def load_ddpm(folder: Path) -> DDPMScheduler:
    """The DDPM (training) scheduler of FOLDER/scheduler, whichever scheduler the folder ships
    (SD's PNDM, SDXL's Euler discrete, DDPM): its betas, prediction type and timestep spacing.

    Stable Diffusion folders ship PNDM (v1.x) or Euler (SDXL) configs, which have no
    clip_sample: DDPM (and the DDIM built from its config) would default it to True and clip
    every predicted x0 to [-1, 1], which is wrong for VAE latents and never done by diffusers'
    pipelines. A config that does not say comes from a scheduler that never clips, so it means
    False; an explicit value is kept. Keys DDPM does not know (Euler's sigma settings) are ignored.
    """
    saved = DDPMScheduler.load_config(folder / "scheduler", local_files_only=True)
    return DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True,
                                         **({} if "clip_sample" in saved else {"clip_sample": False}))


def check_teacher_folder(folder: Path) -> bool:
    """FileNotFoundError / ValueError (one line) unless ``folder`` has the parts of a teacher folder;
    whether it is an SDXL one."""
    sdxl = folder.is_dir() and is_sdxl_folder(folder)
    _check_parts(folder, SDXL_PARTS if sdxl else TEACHER_PARTS, "SDXL " if sdxl else "")
    return sdxl


def open_teacher(folder: str | Path) -> Teacher:
    """A teacher folder's frozen models on the CPU: an embedded-world or SD v1/v2 folder
    (unet/, scheduler/, tokenizer/, text_encoder/) or an SDXL folder (also tokenizer_2/ and
    text_encoder_2/; `sdxl_prompt_encoder`). Bad folders raise one-line ValueErrors."""
    folder = Path(folder)
    sdxl = check_teacher_folder(folder)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
        scheduler = load_ddpm(folder)
        tokenizer, text_encoder = load_text_stack(folder)
        prompts = sdxl_prompt_encoder(folder, unet, tokenizer, text_encoder) if sdxl else None
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # diffusers/transformers/safetensors raise many types for bad files
        raise ValueError(f"cannot load teacher {folder}: {first_line(err)}") from None
    check_prediction_type(scheduler.config.prediction_type, f"teacher {folder}")
    if prompts is None:
        if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
            raise ValueError(f"teacher {folder}: text encoder width {text_encoder.config.hidden_size} != UNet "
                             f"cross_attention_dim {unet.config.cross_attention_dim}")
        prompts = PromptEncoder([tokenizer], [text_encoder])
    unet.eval().requires_grad_(False)
    return Teacher(folder, unet, scheduler, prompts)


def load_teacher(folder: Path):
    """(unet, DDPM scheduler, tokenizer, text encoder) of a one-encoder teacher folder (embedded
    world, SD v1/v2), frozen, on the CPU; an SDXL folder has two encoders: use `open_teacher`."""
    teacher = open_teacher(folder)
    if teacher.prompts.sdxl:
        raise ValueError(f"teacher {folder} is a Stable Diffusion XL folder (two text encoders): use open_teacher")
    return teacher.unet, teacher.scheduler, teacher.prompts.tokenizers[0], teacher.prompts.encoders[0]


def sdxl_time_ids(folder: Path, unet: UNet2DConditionModel) -> tuple[int, ...]:
    """SDXL's six time ids at the UNet's native size, as StableDiffusionXLPipeline sets them by
    default: original size = target size = sample_size x the VAE's downsampling factor (8 without
    vae/, diffusers' fallback), crop top-left (0, 0)."""
    vae_config = folder / "vae" / "config.json"
    factor = 2 ** (len(_read_json(vae_config)["block_out_channels"]) - 1) if vae_config.is_file() else 8
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    return (height * factor, width * factor, 0, 0, height * factor, width * factor)


def _load_second_encoder(folder: Path):
    """(tokenizer_2, text_encoder_2) of an SDXL folder, the encoder frozen; ValueError unless it
    is a CLIPTextModelWithProjection with all its weights (a plain CLIPTextModel would load
    with a random projection)."""
    from transformers import AutoTokenizer, CLIPTextModelWithProjection

    second = folder / "text_encoder_2"
    architectures = _read_json(second / "config.json").get("architectures") or []
    if "CLIPTextModelWithProjection" not in architectures:
        raise ValueError(f"SDXL teacher {folder}: text_encoder_2/ is {'/'.join(architectures) or 'not a CLIP model'}, "
                         "SDXL needs a CLIPTextModelWithProjection (its pooled projection conditions the UNet)")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True)
    encoder, info = CLIPTextModelWithProjection.from_pretrained(second, local_files_only=True, output_loading_info=True)
    if info["missing_keys"]:
        raise ValueError(f"SDXL teacher {folder}: text_encoder_2/ lacks weights "
                         f"({', '.join(sorted(info['missing_keys'])[:3])})")
    return tokenizer, encoder.eval().requires_grad_(False)


def sdxl_prompt_encoder(folder: Path, unet: UNet2DConditionModel, tokenizer, text_encoder) -> PromptEncoder:
    """The PromptEncoder of an SDXL folder, its first (tokenizer, encoder) already loaded;
    ValueError for a folder whose parts do not fit together as SDXL's do."""
    where = f"SDXL teacher {folder}"
    if unet.config.addition_embed_type != "text_time":
        raise ValueError(f"{where}: the UNet's addition_embed_type is {unet.config.addition_embed_type!r}, not "
                         "'text_time' (SDXL's pooled-text and time-id embedding)")
    tokenizer_2, encoder_2 = _load_second_encoder(folder)
    widths = (text_encoder.config.hidden_size, encoder_2.config.hidden_size)
    if sum(widths) != unet.config.cross_attention_dim:
        raise ValueError(f"{where}: text encoder widths {widths[0]} + {widths[1]} = {sum(widths)} != UNet "
                         f"cross_attention_dim {unet.config.cross_attention_dim}")
    if tokenizer.model_max_length != tokenizer_2.model_max_length:
        raise ValueError(f"{where}: tokenizer/ pads to {tokenizer.model_max_length} tokens, tokenizer_2/ to "
                         f"{tokenizer_2.model_max_length}; their hidden states are concatenated token by token")
    if tokenizer_2.model_max_length > encoder_2.config.max_position_embeddings:
        raise ValueError(f"{where}: tokenizer_2/ pads to {tokenizer_2.model_max_length} tokens but text_encoder_2/ "
                         f"has only {encoder_2.config.max_position_embeddings} positions")
    time_ids = sdxl_time_ids(folder, unet)
    added = unet.config.addition_time_embed_dim * len(time_ids) + encoder_2.config.projection_dim
    expected = unet.add_embedding.linear_1.in_features
    if added != expected:
        raise ValueError(f"{where}: the UNet's added embedding takes {expected} inputs, but text_encoder_2's pooled "
                         f"projection ({encoder_2.config.projection_dim}) + 6 time ids x "
                         f"{unet.config.addition_time_embed_dim} make {added}")
    index = folder / "model_index.json"
    # diffusers' default (and SDXL base's model_index.json): the null text is zeros
    zero_null = bool(_read_json(index).get("force_zeros_for_empty_prompt", True)) if index.is_file() else True
    return PromptEncoder([tokenizer, tokenizer_2], [text_encoder, encoder_2], time_ids, zero_null)


def load_region_encoder(folder: str | Path):
    """(tokenizer, text encoder, fingerprinted parts) whose pooled vectors `aria regions`
    clusters: tokenizer/ + text_encoder/, or an SDXL folder's tokenizer_2/ + text_encoder_2/,
    whose projected pooled vector is the one the SDXL UNet is conditioned on (docs/design.md §3).
    Reads no UNet weights."""
    folder = Path(folder)
    if folder.is_dir() and is_sdxl_folder(folder):
        _check_parts(folder, ("tokenizer_2", "text_encoder_2"), "SDXL ")
        return (*_load_second_encoder(folder), ("tokenizer_2", "text_encoder_2"))
    tokenizer, encoder = load_text_stack(folder)
    return tokenizer, encoder, ("tokenizer", "text_encoder")


def resolve_device(name: str | None):
    """A torch device from an option: None = cuda if available, else cpu (ValueError for a name
    torch does not know or a device this machine lacks)."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {name!r} is not a torch device: {first_line(err)}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: this torch has no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only cpu and cuda devices are supported")
    return device
