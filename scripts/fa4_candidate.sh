#!/usr/bin/env bash
# Issue 16: `aria distill --attention fa4-self` (FlashAttention-4's Hopper kernels in the UNets'
# self-attention, aria_train/diffusion/models/fa4_attention.py) against torch's SDPA, the compiled
# channels-last SD-size step at batch 64 with each, on one GPU in one call (run it under `timeout 590`;
# flash-attn-4 and its CuTe DSL importable, a Hopper GPU):
#   scripts/fa4_candidate.sh [OUT_DIR]   CSV into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   distill_step   --attention fa4-self, then sdpa, in one CSV: distill_step_sd14_fa4_candidate.csv.
# On a fresh machine each step compiles for ~150 s (inductor) plus FA4's kernels (CuTe DSL, compiled
# when first called; FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED keeps them on disk for later processes):
# a 190 s limit per step ran out on an H100 on 2026-12-06, whole runs took 230-255 s.
# The attention kernels alone: `python -m bench.attention_backends --size sd14 --backends default fa4`
# (~60 s); the loop: bench.distill_e2e --attention fa4-self (docs/benchmarks.md).
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1
BENCH_ARGS=(--size sd14 --batch 64 --compile --channels-last --steps 8 --warmup 2 --name distill_step_sd14_fa4_candidate)
bench 290 distill_step --attention fa4-self
bench 290 distill_step --attention sdpa --append
finish
