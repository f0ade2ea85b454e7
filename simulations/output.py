"""The simulators' output folder, checked before they compute anything."""
from __future__ import annotations

from pathlib import Path

from aria_train.runs.atomic import check_writable, nearest_existing


def writable_folder(folder: Path) -> Path:
    """``folder``, once it is known that it can be made and written (aria_train.runs.atomic's probe,
    nothing left behind), so that a simulation of minutes cannot fail at its last step, when it
    writes. Files a run writes replace those of the same name, others stay. ValueError in one line."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise ValueError(f"cannot write into --out {folder}: {existing} is a file")
    try:
        check_writable(existing)
    except ValueError as err:
        raise ValueError(f"--out {folder}: {err}") from None  # err names the folder and the reason
    return folder
