#!/usr/bin/env bash
# Issue 16's headline row on the machine at hand (the issue's card is an H200): the compiled SD-size loop at batch
# 64 (rc, --feedback-lag 1, --ema-offload, channels-last, the loss compiled) beside its step benchmark, with SDPA
# and with FlashAttention-4 in the self-attention, on one warm machine in two calls, because FA4's libraries are
# carried in two parts (docs/gpu_runs/2026-12-06/log.md, fourth session). Each stage under `timeout 590`:
#   scripts/fa4_loop.sh STAGE [OUT_DIR]   CSVs and logs into OUT_DIR/STAGE (default bench/results); PYTHON=... (python3)
#   sdpa  the loop with SDPA (~6 min on a fresh machine: two compilations; the first call, while FA4's second
#         part is not there yet)
#   fa4   the loop with --attention fa4-self (~4-6 min), then the fa4-self step profiled (3 steps, ~1.5 min once
#         compiled: each row's NVML clock under load against the profile's traced_sm_clock_mhz)
# Every benchmark's whole output goes to OUT/STAGE/NAME.log (a failure's reason comes back with it).
set -uo pipefail
stage=${1:?stage: sdpa or fa4}
source "$(dirname "$0")/bench_calls.sh" "${2:-bench/results}/$stage"  # OUT, and the repository root
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1
LOOP=(--batch 64 --steps 42 --warmup 20 --step-steps 6 --channels-last --compile --methods rc --feedback-lags 1
      --ema-offload)
BENCH_ARGS=(--size sd14)
case $stage in
  sdpa) logged distill_e2e 400 distill_e2e "${LOOP[@]}" ;;
  fa4)
    logged distill_e2e 420 distill_e2e "${LOOP[@]}" --attention fa4-self
    logged distill_step 150 distill_step --batch 64 --compile --channels-last --steps 8 --warmup 2 --attention fa4-self \
      --profile 3 --name distill_step_sd14_fa4_self_nvml ;;
  *) echo "unknown stage $stage"; exit 2 ;;
esac
finish
