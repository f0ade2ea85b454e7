"""The dtypes a --dtype option may run the frozen models in, and what ``auto`` means. Kept apart from
loading.py (which imports diffusers) so that building the command-line parser stays light."""
from __future__ import annotations


DTYPES = ("float32", "bfloat16", "float16")  # what a --dtype option may run the frozen models in


def resolve_dtype(name: str, device) -> str:
    """The dtype the models run in for --dtype ``name`` (auto or one of DTYPES) on ``device``:
    auto is bfloat16 on CUDA (half float32's memory traffic, with its exponent range, so nothing
    overflows) and float32 on CPUs, where half precision is emulated and slower."""
    if name == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return name
