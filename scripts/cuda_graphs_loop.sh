#!/usr/bin/env bash
# Issue 16: `aria distill --cuda-graphs` (the compiled UNets recorded once as CUDA graphs and replayed), the
# compiled channels-last SD-size loop at batch 64 (rc, --feedback-lag 1, --ema-offload) against its step
# benchmark with the same options, one stage per GPU call (run each under `timeout 590`):
#   scripts/cuda_graphs_loop.sh STAGE [OUT_DIR]   CSVs into OUT_DIR/STAGE (default bench/results); PYTHON=... (python3)
#   sdpa        the GPU test of the option (tests/train/distill/test_cuda_graphs_gpu.py: the same records with and
#               without graphs, tiny inputs), then the loop with SDPA and --cuda-graphs (~6 min on a fresh machine)
#   fa4         the loop with --attention fa4-self --cuda-graphs (flash-attn-4 importable, a Hopper GPU; ~6.5 min fresh)
#   fa4-plain   the loop with --attention fa4-self alone: the baseline on the same machine (~3-4 min after `fa4`)
set -uo pipefail
stage=${1:?stage: sdpa, fa4 or fa4-plain}
source "$(dirname "$0")/bench_calls.sh" "${2:-bench/results}/$stage"  # OUT, and the repository root
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1
BENCH_ARGS=(--size sd14 --batch 64 --steps 42 --warmup 20 --step-steps 6 --channels-last --compile --methods rc
            --feedback-lags 1 --ema-offload)
case $stage in
  sdpa)
    echo "== [$((SECONDS - start)) s] tests/train/distill/test_cuda_graphs_gpu.py"
    PYTHONPATH="tests:${PYTHONPATH:-}" timeout 200 "${PYTHON:-python3}" -m pytest --noconftest -q -p no:cacheprovider \
      tests/train/distill/test_cuda_graphs_gpu.py 2>&1 | tail -25 | tee "$OUT/test_cuda_graphs_gpu.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    bench 380 distill_e2e --cuda-graphs ;;
  fa4) bench 560 distill_e2e --attention fa4-self --cuda-graphs ;;
  fa4-plain) bench 400 distill_e2e --attention fa4-self ;;
  *) echo "unknown stage $stage"; exit 2 ;;
esac
finish
