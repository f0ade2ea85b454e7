#!/usr/bin/env bash
# Issue 16: the distillation loss compiled with the UNets (aria_train.distill.speed.compile_loss: each feature term one
# fused pass over the bf16 feature maps instead of eager float32 copies, differences, squares and means),
# against the eager loss (the trainer's until 2026-12-06), the SD-size compiled channels-last step at batch 64, on one GPU
# in one call (run it under `timeout 590`; each step compiles for ~150 s on a fresh machine):
#   scripts/compiled_loss_candidate.sh [OUT_DIR]   CSV into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   distill_step   the loss compiled (as `aria distill --compile` now does), then --eager-loss, in one CSV,
#                  the compiled loss's run profiled (3 steps):
#                  distill_step_sd14_compiled_loss.csv, distill_step_sd14_compiled_loss_profile_b64.json.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
BENCH_ARGS=(--size sd14 --batch 64 --compile --channels-last --steps 8 --warmup 2 --name distill_step_sd14_compiled_loss)
bench 290 distill_step --profile 3
bench 270 distill_step --eager-loss --append
finish
