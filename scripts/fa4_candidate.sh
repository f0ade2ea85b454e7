#!/usr/bin/env bash
# Issue 16: FlashAttention-4's Hopper kernels in place of torch's SDPA (cuDNN's flash attention, which
# runs SD v1.4's 40-wide heads at ~0.32 of the matrix peak), on one GPU in one call (run it under
# `timeout 590`, flash-attn-4 and its CuTe DSL importable; FA4 compiles each kernel when first called):
#   scripts/fa4_candidate.sh [OUT_DIR]   CSVs into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   attention_backends   the step's attention shapes, torch's default against fa4 (its backward on head
#                        widths padded to a multiple of 32: bench/fa4_attention.py says why), with each one's output's and
#                        gradients' differences to float32 attention: attention_backends_sd14.csv
#   distill_step         the compiled channels-last step at batch 64 with FA4 in the self-attention alone
#                        (--attention fa4-self: where its kernels were the faster), then in all attention:
#                        distill_step_sd14_fa4.csv, one row set each. Their baseline is the plain compiled
#                        step on the same warm machine (bench.distill_step's own row in the call before).
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1  # the step reuses the kernels the first benchmark compiled
BENCH_ARGS=(--size sd14)
bench 200 attention_backends --batch 64 --repeats 10 --backends default fa4
bench 190 distill_step --batch 64 --compile --channels-last --steps 8 --warmup 2 --attention fa4-self \
  --name distill_step_sd14_fa4
bench 190 distill_step --batch 64 --compile --channels-last --steps 8 --warmup 2 --attention fa4 \
  --name distill_step_sd14_fa4 --append
finish
