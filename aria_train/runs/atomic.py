"""Write an output folder all at once: build it under a temporary name, rename it into place.

A command that fails midway (bad input found late, an exception, Ctrl-C) leaves no output folder
behind, and a reader never sees a half-written one. The files of a finished folder get the mode
open() gives a new file (`share_files`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def check_free(out: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()) -> Path:
    """``out`` as a Path; ValueError if it is empty, if it exists, is not empty and ``overwrite`` is
    off, if it is or holds one of the command's ``inputs`` (replacing it would delete what the
    command reads; a folder inside an input, e.g. a run's eval/, is fine), or if it could not be
    written (checked now, so a command that computes for hours before it writes fails at once)."""
    if not str(out):  # Path("") is ".": the working directory, which no one means by an empty --out
        raise ValueError("the output path is empty")
    out = Path(out)
    target = out.resolve()
    for item in inputs:
        if item:
            source = Path(item).resolve()
            if target == source or target in source.parents:
                raise ValueError(f"output {out} is or holds the input {item}: writing it would delete that")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output {out} already exists (pass --overwrite to replace it)")
    check_writable(out.absolute().parent)
    return out


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor (the root at worst)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path) -> None:
    """ValueError unless a folder can be made in ``folder`` (or in its nearest existing ancestor,
    where the command would make it). Tried, not asked of os.access, which says yes to root on a
    read-only file system and does not know about quotas or ACLs."""
    existing = nearest_existing(folder)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".aria-write-test-", dir=existing))
    except OSError as err:
        raise ValueError(f"cannot write under {existing}: {err.strerror or err}") from None


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out``, on error it is deleted."""
    out = check_free(out, overwrite).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, out)  # an existing one only with overwrite (checked above)


def default_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0o077)  # reading the umask means setting it: meanwhile, other threads' new files are private
    os.umask(umask)
    return 0o666 & ~umask


def share_files(root: Path) -> None:
    """Give ``root``, a file, or every file under the folder ``root`` the mode open() gives a new file.

    safetensors' save_file (and so save_pretrained and accelerate's save_state) writes through a
    private temporary file and leaves mode 0600 whatever the umask: weights and caches that other
    users of a shared machine could not read."""
    mode = default_file_mode()
    if root.is_file():
        root.chmod(mode)
        return
    for folder, _, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(folder, name), mode)


def replace_folder(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final`` (its files given the usual mode first,
    `share_files`); an existing ``final`` is moved aside first and deleted after, so ``final`` is
    at every moment either the old folder or the new one."""
    share_files(tmp)
    if not final.exists():
        os.replace(tmp, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    os.replace(final, old / final.name)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
