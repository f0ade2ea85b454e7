"""What every command shares on the console: one-line error messages and quiet libraries."""
from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none): libraries raise
    multi-line messages, and a command reports one line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def quiet_libraries() -> None:
    """Silence diffusers/transformers messages and progress bars (our own bars stay). Their
    errors are silenced too: every load is wrapped and reported as one line of ours, and
    diffusers would otherwise print its own "An error occurred while trying to fetch ..."
    line before it."""
    import logging

    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity(logging.CRITICAL)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
