"""FA4's SM90 attention against float32 attention, native and with the head width zero-padded (issue 16).

Run on a Hopper GPU with flash-attn-4 importable (PYTHONPATH as docs/gpu_runs/2026-12-06/log.md,
fourth session, the repository root on it):  python3 scripts/fa4_gradient_check.py
For each (head width, padded width): 2 images x 4096 tokens x 8 heads in bf16, and the relative RMS
difference of the output and of the query's, key's and value's gradients (an upstream gradient of
random numbers) to torch's math attention in float32 on the same values. bf16 rounding gives ~0.0024;
a wrong kernel gives ~1. aria_train/diffusion/models/fa4_attention.py pads because of what this printed on an H100
(bench/results/fa4_gradient_check_h100.log).
"""
import torch
import torch.nn.functional as F
from flash_attn.cute.interface import flash_attn_func

from bench.attention_backends import relative_rms

torch.manual_seed(0)
for width, padded in [(40, 40), (40, 64), (80, 80), (80, 96), (80, 128), (160, 160)]:
    q, k, v = (torch.randn(2, 4096, 8, width, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, 4096, 8, width, device="cuda", dtype=torch.bfloat16)
    out = flash_attn_func(*(F.pad(x, (0, padded - width)) for x in (q, k, v)), softmax_scale=width ** -0.5)
    out = (out[0] if isinstance(out, tuple) else out)[..., :width]
    out.backward(grad)
    exact = [x.detach().float().requires_grad_() for x in (q, k, v)]
    reference = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in exact)).transpose(1, 2)
    reference.backward(grad.float())
    print(width, padded, "out %.4g dq %.4g dk %.4g dv %.4g" % (
        relative_rms(out.detach(), reference.detach()), relative_rms(q.grad, exact[0].grad),
        relative_rms(k.grad, exact[1].grad), relative_rms(v.grad, exact[2].grad)), flush=True)
