"""The check every bad-input test makes: `aria ARGV` fails with one clear line and exit status 2."""
from __future__ import annotations

from pathlib import Path

import aria_cli


def snapshot(folder: Path) -> dict | None:
    """Every file and folder under ``folder`` with its bytes (None for folders); None if it does
    not exist: what a refused command must leave exactly as it was."""
    if not folder.exists():
        return None
    if folder.is_file():
        return {".": folder.read_bytes()}
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def refused(argv: list, capsys, *needles: str) -> str:
    """Run `aria ARGV` in-process; assert exit 2 and exactly one stderr line, an `aria: error:` (or
    argparse's `aria COMMAND: error:`) line holding every needle, no traceback; return that line."""
    capsys.readouterr()
    try:
        code = aria_cli.main([str(a) for a in argv])
    except SystemExit as done:  # argparse's own errors
        code = done.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and (lines[0].startswith("aria: error: ") or
                                lines[0].startswith(f"aria {argv[0]}: error: ")), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
