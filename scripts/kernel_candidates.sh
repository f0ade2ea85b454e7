#!/usr/bin/env bash
# Issue 16: kernel candidates for the SD-size step on the H100's power budget (docs/benchmarks.md, *Kernel
# candidates*): the 1x1 convolutions as cuBLAS matrix products, FlexAttention against cuDNN's attention, the FP8
# teacher, and the baselines of the upsampling and of the convolution gradients.
#   scripts/kernel_candidates.sh OUT_DIR STAGE...   each stage's CSVs and whole log into OUT_DIR; PYTHON=... (python3)
#   micro              the step's 1x1 convolution shapes as convolutions and as matrix products (pointwise_conv_sd14.csv)
#                      and its attention shapes under torch's default and FlexAttention (attention_backends_sd14.csv) (~2 min)
#   base               the compiled channels-last step at batch 64 with SDPA, as the trainer runs it (~4.5 min on a fresh
#                      machine, most of it compilation; ~1 min once its graphs are in inductor's cache)
#   pointwise          the same with both UNets' 1x1 convolutions as matrix products (--pointwise-matmul both)
#   pointwise-teacher  the same with the teacher's only (--pointwise-matmul teacher)
#   fp8                the same with the teacher's linear layers in FP8 (--teacher-fp8; ~5 min on a fresh machine):
#                      its joules per image against base's (python -m scripts.energy_per_image)
#   interpolate        the same with both UNets' nearest upsampling by diffusers' forward (--upsample-interpolate), the
#                      baseline of the trainer's broadcast (aria_train/diffusion/models/upsample_broadcast.py). Measured
#                      as `upsample base` and `base upsample` while the broadcast was a candidate and base was diffusers'
#                      (2026-12-06, eleventh session; bench/results/distill_step_sd14_candidate_*upsample*_h100.csv)
#   stridedgrad        the same with the student's convolution gradients as the compiled graph has them
#                      (--strided-conv-grads), the baseline of the trainer's channels-last-dense ones
#                      (aria_train/diffusion/models/conv_grad_layout.py). Measured as `densegrad base` and `base densegrad`
#                      while they were a candidate and base had strided ones (2026-12-06, thirteenth session, one
#                      warm H100; bench/results/distill_step_sd14_candidate_*densegrad*_h100.csv)
# The stages of one call run one after the other on one machine: a candidate's A/B is against the base stage of
# the same machine (2026-12-06: micro base in one call, where base ran out of its limit; then base pointwise, then
# pointwise-teacher base, on the same warm H100; fp8 base in one call, base's student graphs then in inductor's cache;
# upsample base in one call, base upsample in the next, on one warm H100; densegrad base in one call on a fresh H100,
# about 4.8 min, then base densegrad in 2 min).
# Run under `timeout 590`; each benchmark has its own limit.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:?OUT_DIR}"  # OUT, and the repository root
shift
BENCH_ARGS=(--size sd14)
STEP=(--batch 64 --compile --channels-last --steps 6 --warmup 2)
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader
for stage in "$@"; do
  case $stage in
    micro) logged pointwise_conv 60 pointwise_conv --batch 64
           logged attention_backends 200 attention_backends --batch 64 --backends default flex ;;
    base) logged base 340 distill_step "${STEP[@]}" --name distill_step_sd14_candidate_base ;;
    pointwise) logged pointwise 300 distill_step "${STEP[@]}" --pointwise-matmul both --name distill_step_sd14_candidate_pointwise ;;
    pointwise-teacher) logged pointwise_teacher 300 distill_step "${STEP[@]}" --pointwise-matmul teacher \
                         --name distill_step_sd14_candidate_pointwise_teacher ;;
    fp8) logged fp8 340 distill_step "${STEP[@]}" --teacher-fp8 --name distill_step_sd14_candidate_fp8 ;;
    interpolate) logged interpolate 340 distill_step "${STEP[@]}" --upsample-interpolate \
                   --name distill_step_sd14_candidate_interpolate ;;
    stridedgrad) logged stridedgrad 340 distill_step "${STEP[@]}" --strided-conv-grads \
                   --name distill_step_sd14_candidate_stridedgrad ;;
    *) echo "unknown stage $stage"; status=2 ;;
  esac
done
finish
