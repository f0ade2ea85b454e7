"""The compiled SD-size step with FA4's backward at width 40 unpadded, for FA4 with its interface patched
to the kernel's 16-column tile (issue 16; scripts/fa4_backward_tiles.py says why and what it measured).

With that patch FA4 4.0.0b40's SM90 backward gets width 40 right unpadded (its kernel tiles it at 48),
and width 80 still wrong unpadded (measured on an H100, bench/results/fa4_backward_tiles_patched_h100.csv),
so this backward pads 80 to 96 as the trainer does and leaves 40 alone; 160 needs no padding. Only on a
machine whose installed FA4 has the patch (docs/gpu_runs/2026-12-06/log.md, tenth session):

    python -m scripts.fa4_patched_step ARGS...    # bench.distill_step's arguments, with --attention fa4-self

Its A/B against `python -m bench.distill_step ARGS...` in the same machine needs TORCHINDUCTOR_AUTOGRAD_CACHE=0
on the second of the two: torch's AOTAutograd cache keys a compiled graph on the traced forward, not on a custom
op's Python backward, so the second run otherwise reuses the first's backward (it did, 2026-12-06: 22 s of
warm-up, the first's peak memory and step time).
"""
from __future__ import annotations

import sys

from aria_train.diffusion.models import fa4_attention
from bench import distill_step

PADDED = {80: 96}  # the widths the patched interface still gets wrong, and what they are padded to


def padded_width(width: int) -> int:
    """fa4_attention.padded_width for the patched interface: 80 padded to 96, every other width as it is."""
    return PADDED.get(width, width)


if __name__ == "__main__":
    fa4_attention.padded_width = padded_width  # read by the backward when it runs, so at every trace
    distill_step.main(argv=sys.argv[1:])
