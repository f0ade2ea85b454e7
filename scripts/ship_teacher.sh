#!/usr/bin/env bash
# Trains the shipped teacher (aria_train/assets/teacher) on one GPU and times a demo-size
# distillation step there. Usage: scripts/ship_teacher.sh OUT_DIR [TRAIN_SECONDS]
# The step count is fitted to TRAIN_SECONDS from a short probe run (steps/s of this GPU), so the
# job ends inside the device's 10-minute command limit; the seed and all other settings are the
# `aria teacher` defaults.
set -euo pipefail
OUT=${1:?usage: ship_teacher.sh OUT_DIR [TRAIN_SECONDS]}
BUDGET=${2:-360}
ARIA="python3 -m aria_cli"
mkdir -p "$OUT"
$ARIA teacher --out "$OUT/probe" --steps 300 --warmup-steps 50 --eval-per-region 1 --no-progress --log-every 100 > "$OUT/probe.log" 2>&1
SPS=$(python3 -c "import json,sys; r=[json.loads(l) for l in open('$OUT/probe/train_log.jsonl')]; print(r[-1]['steps_per_s'])")
STEPS=$(python3 -c "print(min(12000, int($SPS * $BUDGET) // 100 * 100))")
echo "probe: $SPS steps/s -> training $STEPS steps"
$ARIA teacher --out "$OUT/teacher" --steps "$STEPS" --no-progress --log-every 500 2>&1 | tee "$OUT/teacher.log"
rm -rf "$OUT/teacher/checkpoint"
# Demo-size distillation step time on this GPU (RC, BK-SDM-Small, batch 64, 32x32).
$ARIA world --out "$OUT/world" > /dev/null
$ARIA cache --teacher "$OUT/teacher" --paired "$OUT/world/paired.parquet" --pool "$OUT/world/pool.parquet" --out "$OUT/cache" --no-progress 2>&1 | tail -2
$ARIA distill --teacher "$OUT/teacher" --paired-cache "$OUT/cache/paired" --pool "$OUT/world/pool.parquet" \
  --method rc --steps 300 --log-every 50 --checkpoint-every 1000 --sample-every 1000 --out "$OUT/distill_run" 2>&1 | tail -3
cp "$OUT/distill_run/metrics.csv" "$OUT/distill_metrics_gpu.csv" || true
