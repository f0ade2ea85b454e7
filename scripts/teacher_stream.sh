#!/usr/bin/env bash
# Issue 16: the teacher's forward on a second CUDA stream beside the student's (`aria distill --teacher-stream`),
# on the SD-size compiled step at batch 64 and in the loop, on one warm machine in up to three calls (FA4's
# libraries are carried in two parts: docs/gpu_runs/2026-12-06/log.md, fourth session). Each stage under
# `timeout 590`:
#   scripts/teacher_stream.sh STAGE [OUT_DIR]   CSVs and logs into OUT_DIR/STAGE (default bench/results); PYTHON=...
#   sdpa      the GPU test that the side stream trains bitwise as the current one
#             (tests/train/distill/test_teacher_stream_gpu.py), then the compiled channels-last step with SDPA, each
#             row with and without the side stream, interleaved in one process (~4 min: one compilation)
#   fa4       the same A/B with --attention fa4-self (~4 min)
#   fa4-loop  the loop as scripts/fa4_loop.sh's fa4 stage runs it, with --teacher-stream, beside its step (~5 min)
#   sdpa-loop the same with SDPA (~5 min)
# Every command's whole output goes to OUT/STAGE/NAME.log (a failure's reason comes back with it).
set -uo pipefail
stage=${1:?stage: sdpa, fa4, fa4-loop or sdpa-loop}
source "$(dirname "$0")/bench_calls.sh" "${2:-bench/results}/$stage"  # OUT, and the repository root
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1
STEP=(--batch 64 --compile --channels-last --steps 6 --warmup 3 --teacher-stream both)
LOOP=(--batch 64 --steps 42 --warmup 20 --step-steps 6 --channels-last --compile --methods rc --feedback-lags 1
      --ema-offload --teacher-stream)
BENCH_ARGS=(--size sd14)
case $stage in
  sdpa)
    timeout 120 "${PYTHON:-python3}" -m pytest --noconftest -q -p no:cacheprovider \
      tests/train/distill/test_teacher_stream_gpu.py > "$OUT/gpu_test.log" 2>&1 || status=1
    tail -3 "$OUT/gpu_test.log"
    logged distill_step 400 distill_step "${STEP[@]}" --name distill_step_sd14_teacher_stream ;;
  fa4) logged distill_step 400 distill_step "${STEP[@]}" --attention fa4-self --name distill_step_sd14_fa4_self_teacher_stream ;;
  fa4-loop) logged distill_e2e 560 distill_e2e "${LOOP[@]}" --attention fa4-self ;;
  sdpa-loop) logged distill_e2e 560 distill_e2e "${LOOP[@]}" ;;
  *) echo "unknown stage $stage"; exit 2 ;;
esac
finish
