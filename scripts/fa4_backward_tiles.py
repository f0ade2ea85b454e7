"""What FA4's SM90 backward bug costs the step: the backward at the kernel's own head-width tile
against the trainer's zero-padded widths (issue 16; aria_train/diffusion/models/fa4_attention.py).

FA4 4.0.0b40's SM90 backward kernel tiles the head width in multiples of 16 (40 -> 48, 80 -> 80),
while its interface allocates, zeroes and reads back the query's float32 gradient accumulator in
multiples of 32 (64, 96): the query's gradient comes back wrong at widths 40 and 80, so the trainer
pads them to 64 and 96 (``PAD_TO``), paying for wider matrix products and for the padding copies.
Upstream's open fix (Dao-AILab/flash-attention#2896) rounds the kernel up to 32 instead, the same
cost as the padding. This measures what the other fix, the interface at the kernel's 16, would
give: run it on the installed FA4 as shipped, then on a copy whose interface line
``hdim_multiple_of = 64 if config.dKV_swapAB else 32`` reads ``... else 16`` (the call's command
edits the installed file; docs/gpu_runs/2026-12-06/log.md, tenth session).

Per (tokens, head width) of the student's self-attention at ``--batch`` images and 8 heads, bf16,
on a Hopper GPU with flash-attn-4 importable:
  * ``padded_ms``: the trainer's backward (``fa4_attention``'s autograd: pad, FA4, cut), median ms;
  * ``native_ms``: FA4's backward on the unpadded tensors;
  * ``dq_rms`` / ``dk_rms`` / ``dv_rms``: the native backward's gradients against float32 attention on
    the first two images (relative RMS: bf16's rounding gives ~0.0024, a wrong kernel ~1).

    python -m scripts.fa4_backward_tiles --label shipped|patched [--batch 64] [--repeats 20] [--out DIR]

writes OUT/fa4_backward_tiles_LABEL.csv (default bench/results).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.attention_backends import relative_rms, time_ms
from bench.common import RESULTS, report

# the student's (BK-SDM-Small, SD v1.4 size) self-attention shapes whose widths FA4 4.0.0b40 gets wrong
SHAPES = [(4096, 40), (1024, 80)]
HEADS = 8


def measure(tokens: int, width: int, batch: int, repeats: int) -> dict:
    from flash_attn.cute.interface import _flash_attn_bwd

    from aria_train.diffusion.models.fa4_attention import attention, fa4_forward

    device = torch.device("cuda")
    q, k, v = (torch.randn(batch, tokens, HEADS, width, device=device, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    grad = torch.randn(batch, tokens, HEADS, width, device=device, dtype=torch.bfloat16)
    scale = width ** -0.5
    out = attention(q, k, v)
    padded_ms = time_ms(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), repeats, device)
    with torch.no_grad():
        out_native, lse = fa4_forward(q, k, v, scale)
    native = lambda: _flash_attn_bwd(q.detach(), k.detach(), v.detach(), out_native, grad, lse, softmax_scale=scale)
    native_ms = time_ms(native, repeats, device)
    grads = native()
    exact = [x[:2].detach().float().requires_grad_() for x in (q, k, v)]
    reference = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in exact)).transpose(1, 2)
    reference.backward(grad[:2].float())
    errors = {f"{name}_rms": relative_rms(g[:2], e.grad) for name, g, e in zip(("dq", "dk", "dv"), grads, exact)}
    return {"tokens": tokens, "head_width": width, "batch": batch, "heads": HEADS, "padded_ms": padded_ms,
            "native_ms": native_ms, "native_over_padded": native_ms / padded_ms, **errors}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m scripts.fa4_backward_tiles", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="shipped or patched: which FA4 interface is installed")
    parser.add_argument("--batch", type=int, default=64, help="images per call (default: 64, the step's)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per backward (default: 20)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV folder (default: bench/results)")
    args = parser.parse_args(argv)
    rows = []
    for tokens, width in SHAPES:
        print(f"[fa4 backward tiles] {args.label}: {tokens} tokens x width {width}", flush=True)
        rows.append({"label": args.label, "device": torch.cuda.get_device_name(),
                     **measure(tokens, width, args.batch, args.repeats)})
    report(f"fa4_backward_tiles_{args.label}", rows, args.out)
    return rows


if __name__ == "__main__":
    main()
