#!/usr/bin/env bash
# Trains the shipped teacher (aria_train/assets/teacher) and its paired cache on one GPU.
# Usage: scripts/ship_teacher.sh OUT_DIR [TRAIN_SECONDS]
# The step count is fitted to TRAIN_SECONDS from a short probe run (steps/s of this GPU), so the
# job ends inside the device's 10-minute command limit. World: aria_train/assets/world.json (the
# default world at 24 px); teacher: 2.2M-parameter UNet (channels 32 64 64), v-prediction.
set -euo pipefail
OUT=${1:?usage: ship_teacher.sh OUT_DIR [TRAIN_SECONDS]}
BUDGET=${2:-300}
ARIA="python3 -m aria_cli"
WORLD=aria_train/assets/world.json
# Batch 1024: at batch 256 a step of this small UNet is bound by the host's kernel launches
# (H100: 170 ms of CPU vs 44 ms of GPU per step, scripts/prof_teacher.py), so 4x the images cost
# about the same time per step.
TEACHER_ARGS=(--world "$WORLD" --channels 32 64 64 --norm-groups 16 --batch-size 1024 --lr 1e-3 --warmup-steps 200)
mkdir -p "$OUT"
$ARIA teacher --out "$OUT/probe" "${TEACHER_ARGS[@]}" --steps 100 --eval-per-region 1 --no-progress --log-every 100 > "$OUT/probe.log" 2>&1
SPS=$(python3 -c "import json; r=[json.loads(l) for l in open('$OUT/probe/train_log.jsonl')]; print(r[-1]['steps_per_s'])")
STEPS=$(python3 -c "print(min(20000, int($SPS * $BUDGET) // 100 * 100))")
echo "probe: $SPS steps/s -> training $STEPS steps"
$ARIA teacher --out "$OUT/teacher" "${TEACHER_ARGS[@]}" --steps "$STEPS" --no-progress --log-every 500 2>&1 | tee "$OUT/teacher.log"
rm -rf "$OUT/teacher/checkpoint"
python3 scripts/guidance_sweep.py "$OUT/teacher" "$OUT/guidance_sweep.json" 8 1 2 3 4 7.5
# The paired cache uses the guidance scale whose samples are most often right on every attribute.
GUIDANCE=$(python3 -c "import json; r=json.load(open('$OUT/guidance_sweep.json')); print(max(r, key=lambda g: r[g]['groups']['all']))")
echo "paired cache guidance: $GUIDANCE"
$ARIA world --config "$OUT/teacher/world.json" --out "$OUT/world" --check 0 > /dev/null
$ARIA cache --teacher "$OUT/teacher" --paired "$OUT/world/paired.parquet" --pool "$OUT/world/pool.parquet" \
  --out "$OUT/cache" --guidance "$GUIDANCE" --no-progress 2>&1 | tail -2
