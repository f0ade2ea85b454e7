"""Loading models from local folders: a teacher folder (diffusers layout), and UNets for evaluation
(a UNet folder or a distillation run's latest EMA student).

A student given as a distillation run directory resolves to
``RUN/checkpoints/step-XXXXXXX/student_ema/`` of its newest complete checkpoint (the layout of
aria_train.runs.checkpoint); a folder with ``config.json`` is a UNet folder (``save_pretrained``).
Loading errors of any kind become one-line ValueErrors naming the folder.
"""
from __future__ import annotations

from pathlib import Path

from diffusers import UNet2DConditionModel

from aria_train.console import first_line
from aria_train.diffusion.targets import check_prediction_type
from aria_train.runs.checkpoint import EMA_DIR, list_checkpoints

TEACHER_PARTS = ("unet", "scheduler", "tokenizer", "text_encoder")


def resolve_unet_folder(path: str | Path) -> Path:
    """The UNet folder that ``path`` (a UNet folder or a run directory) stands for."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"student {path} not found")
    if (path / "checkpoints").is_dir():  # first: a run directory has a config.json of its own
        found = list_checkpoints(path / "checkpoints")
        if not found:
            raise ValueError(f"run directory {path} has no complete checkpoint")
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


def load_teacher(folder: Path):
    """(unet, DDPM scheduler, tokenizer, text encoder) of a teacher folder, frozen, on the CPU."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from aria_train.diffusion.text import load_text_stack

    if not folder.is_dir():
        raise FileNotFoundError(f"teacher folder {folder} not found")
    missing = [part for part in TEACHER_PARTS if not (folder / part).is_dir()]
    if missing:
        raise ValueError(f"teacher folder {folder} lacks {', '.join(p + '/' for p in missing)}")
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
        # Stable Diffusion v1.x folders ship a PNDMScheduler config, which has no clip_sample:
        # DDPM (and the DDIM built from its config) would default it to True and clip every
        # predicted x0 to [-1, 1], which is wrong for VAE latents and never done by diffusers'
        # StableDiffusionPipeline (it forces clip_sample False). A config that does not say
        # comes from a scheduler that never clips, so it means False; an explicit value is kept.
        saved = DDPMScheduler.load_config(folder / "scheduler", local_files_only=True)
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True,
                                                  **({} if "clip_sample" in saved else {"clip_sample": False}))
        tokenizer, text_encoder = load_text_stack(folder)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # diffusers/transformers/safetensors raise many types for bad files
        raise ValueError(f"cannot load teacher {folder}: {first_line(err)}") from None
    check_prediction_type(scheduler.config.prediction_type, f"teacher {folder}")
    if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
        raise ValueError(f"teacher {folder}: text encoder width {text_encoder.config.hidden_size} != UNet "
                         f"cross_attention_dim {unet.config.cross_attention_dim}")
    unet.eval().requires_grad_(False)
    return unet, scheduler, tokenizer, text_encoder


DTYPES = ("float32", "bfloat16", "float16")  # what a --dtype option may run the frozen models in


def resolve_dtype(name: str, device) -> str:
    """The dtype the models run in for --dtype ``name`` (auto or one of DTYPES) on ``device``:
    auto is bfloat16 on CUDA (half float32's memory traffic, with its exponent range, so nothing
    overflows) and float32 on CPUs, where half precision is emulated and slower."""
    if name == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return name


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
