"""Loading UNets for evaluation: a UNet folder or a distillation run's latest EMA student.

A student given as a distillation run directory resolves to
``RUN/checkpoints/step-XXXXXXX/student_ema/`` of its newest complete checkpoint (the layout of
aria_train.checkpoint); a folder with ``config.json`` is a UNet folder (``save_pretrained``).
Loading errors of any kind become one-line ValueErrors naming the folder.
"""
from __future__ import annotations

from pathlib import Path

from diffusers import UNet2DConditionModel

from aria_train.checkpoint import EMA_DIR, list_checkpoints


def quiet_libraries() -> None:
    """Silence diffusers/transformers info messages and progress bars (our own bars stay)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


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
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load UNet {folder}: {message}") from None
    return unet.float().eval().requires_grad_(False)

