#!/usr/bin/env bash
# Issue 16: two inductor options for the SD-size compiled step, cheaper than max-autotune (which did
# not finish compiling in a 10-minute call), on one GPU in one call (run it under `timeout 590`):
#   scripts/inductor_candidates.sh [OUT_DIR]   CSV into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   distill_step   the compiled channels-last step at batch 64 with coordinate_descent_tuning (each fused
#                  Triton kernel's block sizes and warps tuned by timing neighbouring configurations: norms,
#                  activations, adds) and conv_1x1_as_mm (1x1 convolutions -- the resnet shortcuts, SD v1.4's
#                  attention projections -- as cuBLAS matrix products) together:
#                  distill_step_sd14_inductor_candidates.csv. Together first: if the pair does not pay, neither
#                  is worth a call of its own.
# Its baseline is the plain compiled step on the same warm machine, in the call before (e.g.
# scripts/step_candidates.sh's distill_step_sd14_compiled.csv, or bench.distill_e2e's step row): on an
# H200 on 2026-12-06 this candidate alone was stopped at 390 s, still compiling, where plain
# compilation takes ~160 s, so it gets the whole call.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
BENCH_ARGS=(--size sd14)
bench 580 distill_step --batch 64 --compile --channels-last --steps 8 --warmup 2 \
  --inductor coordinate_descent_tuning=true conv_1x1_as_mm=true --name distill_step_sd14_inductor_candidates
finish
