#!/usr/bin/env bash
# Issue 16's end-to-end benchmarks at Stable Diffusion size on one GPU, in about 7 minutes:
#   scripts/perf_bench.sh [OUT_DIR]        CSVs into OUT_DIR (default bench/results); PYTHON=... (default python3)
#   regions_embed       `aria regions`' embedding, reference vs fast, CLIP-L-size text encoder,
#                       60k prompts (the reference on 20k), bf16 and fp32, batches 1024 and 2048
#   distill_e2e         `aria distill`'s loop (rc, aria) beside the step benchmark, SD v1.4 ->
#                       BK-SDM-Small, batch 64, 32 steps, bf16 autocast, $E2E_FLAGS (default --channels-last:
#                       eager, since compiling SD takes minutes; for the compiled loop in one 10-minute call,
#                       one method: E2E_FLAGS="--channels-last --compile --methods rc" E2E_LIMIT=560 (two
#                       compilations of ~163 s, step benchmark and loop: 404 s on 2026-12-04; add --teacher-fp8
#                       for the FP8 teacher; --profile 5 --steps 40 profiles the loop's last 5 steps: 414 s on 2026-12-04)
#   cache_vs_diffusers  the library's sampling (bf16, fp16) vs diffusers' fp16 StableDiffusionPipeline,
#                       25 DDIM steps, CFG 7.5, 128 samples in batches of 64; CACHE_FLAGS=--compile
#                       CACHE_LIMIT=400 adds the compiled UNet's rows (`aria cache --compile`; ~4 min alone)
# One random SD v1.4-size folder (bench/sd_folder.py) is built once in a temporary work folder
# and shared; each benchmark has its own time limit, so one that stalls cannot take the others.
set -uo pipefail
source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"  # OUT, and the repository root
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BENCH_ARGS=(--size sd14 --work "$WORK")
bench 130 regions_embed --prompts 60000 --reference-prompts 20000 --batch 1024 2048 --dtype bfloat16 float32
bench "${E2E_LIMIT:-260}" distill_e2e --batch 64 --steps 32 --warmup 8 --step-steps 8 ${E2E_FLAGS---channels-last}
bench "${CACHE_LIMIT:-130}" cache_vs_diffusers --samples 128 --batch 64 --dtype bfloat16 float16 ${CACHE_FLAGS-}
finish
