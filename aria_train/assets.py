"""Package data shipped with aria_train (pyproject's package-data includes assets/**)."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def default_teacher_path() -> Path:
    """aria_train/assets/teacher/: the shipped embedded-world teacher folder (made by `aria teacher`
    on one GPU; the folder without its checkpoint/). The path is returned whether or not it exists."""
    return ASSETS / "teacher"
