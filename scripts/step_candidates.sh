#!/usr/bin/env bash
# Issue 16's candidates for the SD-size step past MFU 0.45, on one GPU in one 10-minute call (~9.5 min: run it under `timeout 590`):
#   scripts/step_candidates.sh [OUT_DIR]     CSVs into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   attention_backends   the step's attention shapes (SD v1.4 teacher and its BK-SDM-Small student, batch 64)
#                        under each SDPA backend: attention_backends_sd14.csv (~1 min)
#   distill_step         the compiled channels-last step at batch 64 as the trainer compiles it, then the same
#                        with inductor's CUDA graphs (--cuda-graphs), one after the other on the same machine:
#                        distill_step_sd14_compiled.csv, distill_step_sd14_cuda_graphs.csv (~4 min each,
#                        most of it compilation)
# Each benchmark has its own time limit, so one that stalls or fails cannot take the others.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
BENCH_ARGS=(--size sd14)
STEP=(--batch 64 --compile --channels-last --steps 10 --warmup 3)
bench 60 attention_backends --batch 64
bench 255 distill_step "${STEP[@]}" --name distill_step_sd14_compiled
bench 255 distill_step "${STEP[@]}" --cuda-graphs --name distill_step_sd14_cuda_graphs
finish
