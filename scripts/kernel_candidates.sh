#!/usr/bin/env bash
# Issue 16: two kernel candidates for the SD-size step on the H100's power budget (README Status): the 1x1
# convolutions as cuBLAS matrix products (--pointwise-matmul) and FlexAttention in the cross-attention (--flex-cross).
#   scripts/kernel_candidates.sh OUT_DIR STAGE...   each stage's CSVs and whole log into OUT_DIR; PYTHON=... (python3)
#   micro        the step's 1x1 convolution shapes as convolutions and as matrix products (pointwise_conv_sd14.csv)
#                and its attention shapes under torch's default and FlexAttention (attention_backends_sd14.csv) (~2 min)
#   base         the compiled channels-last step at batch 64, SDPA, as the trainer runs it (~3.5 min on a fresh machine:
#                most of it compilation)
#   pointwise    the same with --pointwise-matmul;   flex  with --flex-cross;   both  with both
#   fa4-base, fa4-pointwise, fa4-flex, fa4-both      the same four with --attention fa4-self (FA4 installed)
# The stages of one call run one after the other on one machine: a candidate's A/B is against the base
# stage of the same machine. Run under `timeout 590`; each benchmark has its own limit.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:?OUT_DIR}"  # OUT, and the repository root
shift
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1
BENCH_ARGS=(--size sd14)
STEP=(--batch 64 --compile --channels-last --steps 6 --warmup 2)
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader
for stage in "$@"; do
  case $stage in
    micro) logged pointwise_conv 60 pointwise_conv --batch 64
           logged attention_backends 150 attention_backends --batch 64 --backends default flex ;;
    base|pointwise|flex|both|fa4-base|fa4-pointwise|fa4-flex|fa4-both)
      args=()
      [[ $stage == fa4-* ]] && args+=(--attention fa4-self)
      [[ $stage == *pointwise || $stage == *both ]] && args+=(--pointwise-matmul)
      [[ $stage == *flex || $stage == *both ]] && args+=(--flex-cross)
      logged "$stage" 240 distill_step "${STEP[@]}" "${args[@]}" --name "distill_step_sd14_candidate_$stage" ;;
    *) echo "unknown stage $stage"; status=2 ;;
  esac
done
finish
