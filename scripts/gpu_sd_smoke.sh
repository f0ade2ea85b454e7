#!/usr/bin/env bash
# The Stable Diffusion path on a GPU, end to end, on the tests' tiny random SD v1.x folder
# (tests/sd_pipeline.py): aria cache -> aria regions -> aria distill (rc and aria, bf16,
# --compile --channels-last) -> aria eval. Proves the GPU code path (CUDA, mixed precision,
# torch.compile with the feature hooks); says nothing about quality (random weights).
#   scripts/gpu_sd_smoke.sh WORK_DIR
# SMOKE_FLAGS replaces the distill speed flags (default "--compile --channels-last"; the run in
# docs/gpu_runs/2026-12-01/sd_smoke.log used SMOKE_FLAGS=--channels-last); SMOKE_DEVICE replaces
# eval's "--device cuda" (SMOKE_FLAGS= SMOKE_DEVICE= runs it on a CPU).
set -euo pipefail
W=${1:?usage: gpu_sd_smoke.sh WORK_DIR}
mkdir -p "$W"
PYTHONPATH=tests${PYTHONPATH:+:$PYTHONPATH} python3 - "$W" <<'PY'
import sys
from pathlib import Path
from sd_pipeline import make_tiny_sd_folder, write_prompt_files
root = Path(sys.argv[1])
make_tiny_sd_folder(root)
write_prompt_files(root)
PY
aria() { python3 -m aria_cli "$@"; }
aria cache --teacher "$W/sd" --paired "$W/paired.parquet" --pool "$W/pool.parquet" --out "$W/cache" --steps 10 --no-progress
aria regions --teacher "$W/sd" --prompts "$W/pool.parquet" --k 3 --out "$W/regions"
for method in rc aria; do
  ACCELERATE_MIXED_PRECISION=bf16 aria distill --out "$W/$method" --teacher "$W/sd" --pool "$W/regions/regions.parquet" \
    --paired-cache "$W/cache/paired" --method $method --steps 60 --batch-size 32 --log-every 20 --lr 1e-3 \
    --checkpoint-every 0 --sample-every 60 ${SMOKE_FLAGS---compile --channels-last}
  tail -n 2 "$W/$method/log.txt"
done
aria eval --teacher "$W/sd" --student "$W/rc" --student "$W/aria" --heldout "$W/heldout.parquet" --out "$W/eval" \
  --steps 10 --samples-per-region 2 ${SMOKE_DEVICE---device cuda}
