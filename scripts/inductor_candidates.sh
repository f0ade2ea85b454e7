#!/usr/bin/env bash
# Issue 16: two inductor options for the SD-size compiled step, cheaper than max-autotune (which did
# not finish compiling in a 10-minute call), on one GPU in one call (~8.5 min: run it under `timeout 590`):
#   scripts/inductor_candidates.sh [OUT_DIR]   CSVs into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   distill_step   the compiled channels-last step at batch 64 as the trainer compiles it
#                  (distill_step_sd14_compiled.csv), then with coordinate_descent_tuning (each fused
#                  Triton kernel's block sizes and warps tuned by timing its neighbours: norms, activations,
#                  adds) and conv_1x1_as_mm (1x1 convolutions -- the resnet shortcuts, SD v1.4's attention
#                  projections -- as cuBLAS matrix products) together (distill_step_sd14_inductor_candidates.csv),
#                  one after the other on the same machine. Together first: if the pair does not pay, neither
#                  is worth a call of its own.
# Each benchmark has its own time limit, so one that stalls or fails cannot take the other.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
BENCH_ARGS=(--size sd14)
STEP=(--batch 64 --compile --channels-last --steps 8 --warmup 2)
bench 250 distill_step "${STEP[@]}" --name distill_step_sd14_compiled
bench 320 distill_step "${STEP[@]}" --inductor coordinate_descent_tuning=true conv_1x1_as_mm=true \
  --name distill_step_sd14_inductor_candidates
finish
