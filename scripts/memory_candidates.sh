#!/usr/bin/env bash
# What cuDNN's benchmark mode costs the SD-size compiled step in peak memory (issue 16: the step at
# 41.69-41.70 GiB on an H200 and an H100 on 2026-12-06, 0.93 GiB above an H100 run of 2026-12-05 made
# before two code changes, one of them the loop's benchmark mode), on one GPU in one 10-minute
# call (~8 min: run it under `timeout 590`):
#   scripts/memory_candidates.sh [OUT_DIR]   CSVs into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   distill_step   the compiled channels-last step at batch 64 as the trainer runs it (cuDNN's benchmark mode
#                  on), then with cuDNN's heuristic algorithm choice (--cudnn-heuristics), one after the
#                  other on the same machine: distill_step_sd14_cudnn_benchmark.csv,
#                  distill_step_sd14_cudnn_heuristics.csv (~4 min each, most of it compilation). Their
#                  peak_gib columns say whether the benchmark mode's algorithms are the larger footprint,
#                  their step_ms what the smaller one would cost.
# Each benchmark has its own time limit, so one that stalls or fails cannot take the other.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
BENCH_ARGS=(--size sd14)
STEP=(--batch 64 --compile --channels-last --steps 10 --warmup 3)
bench 270 distill_step "${STEP[@]}" --name distill_step_sd14_cudnn_benchmark
bench 270 distill_step "${STEP[@]}" --cudnn-heuristics --name distill_step_sd14_cudnn_heuristics
finish
