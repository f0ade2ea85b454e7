"""The simulators' output folder, checked before they compute anything."""
from __future__ import annotations

import tempfile
from pathlib import Path


def writable_folder(folder: Path) -> Path:
    """Check that ``folder`` can be made and written, so that a simulation of minutes cannot fail at
    its last step, when it writes: a probe file is written and removed in ``folder`` or, while it is
    missing, in its nearest existing parent (nothing is left behind; the run makes the folder when it
    writes). Files a run writes replace those of the same name, others stay. OSError in one line."""
    existing = folder
    while not existing.exists():  # ends at the root or at '.'
        existing = existing.parent
    if not existing.is_dir():
        raise OSError(f"cannot write into --out {folder}: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OSError(f"cannot write into --out {folder}: {err.strerror or err}") from None
    return folder
