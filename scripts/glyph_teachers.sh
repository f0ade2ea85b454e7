#!/usr/bin/env bash
# Trains one teacher per glyph world on one GPU, all at once, and samples each teacher's paired
# cache (float16). Worlds: aria_train/assets/worlds/glyph_<NAME>.json, NAME in tau0, tau05, tau1
# (the 48-region worlds), demo (the 12-region world of `make demo`, tau = 0) and small_tau05,
# small_tau1 (the demo world at tau = 0.5 and 1: the map's 12-region worlds), small_words_tau{0,05,1}
# (those three with prompts that name the glyph's parts). All 16 px.
# Usage: scripts/glyph_teachers.sh OUT_DIR [STEPS] [NAMES...]   (PYTHON=... the interpreter, default python3)
#   OUT_DIR/<NAME>/{teacher,cache,world}/ and logs. STEPS (default 1000) per teacher: measured on
#   one H200 with all four 16 px teachers training at once, ~2.5 steps/s each (the GPU is the
#   bound: 32 px teachers ran at 1.1 steps/s each), so the default ends inside the device's
#   10-minute command limit.
#   A 48-region teacher alone: 6.3 steps/s (2026-12-04; 5000 steps in 794 s, two calls).
# Teachers: v-prediction, batch 1024 (a small UNet's step is bound by the host's kernel launches,
# so a large batch costs little more per step); 2.2M parameters (channels 32 64 64) for the map's
# worlds (16 px, 48 regions), 0.57M (channels 16 32 32) for the 12-region worlds (demo, small_*),
# whose students train on a laptop CPU.
# Gate (issue 11): glyph accuracy >= 0.95 in every region at the evaluation's sampling settings
# (25 DDIM steps, guidance 1), printed from each teacher_report.json at the end.
# Longer than one job: TEACHER_SECONDS=S stops every teacher at its first checkpoint (every 100
# steps, TEACHER_CHECKPOINT_EVERY) after S seconds of training; running the same command again resumes the stopped runs
# exactly (`aria teacher --resume`) and skips what is done (worlds, finished teachers, caches), so
# e.g. the 48-region teachers' ~5000 steps fit 10-minute calls:
#   TEACHER_SECONDS=480 scripts/glyph_teachers.sh runs/glyph_teachers 5000 tau0 tau05 tau1   (repeat)
# Caches are sampled, and gates printed, for the teachers that have finished.
# TEACHER_SEED=N (default 0) seeds the teachers' weights, data and noise: a second teacher of the same world that
# is not the first one again (on a GPU the same seed gives nearly the same teacher).
set -euo pipefail
OUT=${1:?usage: glyph_teachers.sh OUT_DIR [TRAIN_SECONDS] [TAUS...]}
STEPS=${2:-1000}
shift $(( $# > 1 ? 2 : 1 ))
NAMES=${*:-tau0 tau05 tau1 demo}
ARIA="${PYTHON:-python3} -m aria_cli"
export PYTHONUNBUFFERED=1
COMMON=(--batch-size 1024 --lr 1e-3 --workers 3 --seed "${TEACHER_SEED:-0}")
size() { if [ "$1" = demo ] || [[ "$1" = small_* ]]; then echo "--channels 16 32 32 --norm-groups 8"; else echo "--channels 32 64 64 --norm-groups 16"; fi; }
mkdir -p "$OUT"

SPLIT=()
[ "${TEACHER_SECONDS:-0}" != 0 ] && SPLIT=(--checkpoint-every "${TEACHER_CHECKPOINT_EVERY:-100}" --stop-after-seconds "$TEACHER_SECONDS")
finished() { [ -d "$OUT/$1/teacher/unet" ]; }

for name in $NAMES; do
  [ -f "$OUT/$name/world/world.json" ] || \
    $ARIA world --config "aria_train/assets/worlds/glyph_$name.json" --out "$OUT/$name/world" --check 0 > "$OUT/$name.world.log"
done
for name in $NAMES; do
  finished $name && continue
  if [ -f "$OUT/$name/teacher/checkpoint/training_state.pt" ]; then  # a stopped run: continue it
    $ARIA teacher --out "$OUT/$name/teacher" --resume --stop-after-seconds "${TEACHER_SECONDS:-0}" --no-progress \
      >> "$OUT/$name.teacher.log" 2>&1 &
  else
    $ARIA teacher --out "$OUT/$name/teacher" --world "$OUT/$name/world/world.json" "${COMMON[@]}" $(size $name) \
      --warmup-steps 200 --steps "$STEPS" "${SPLIT[@]}" --no-progress --log-every 500 > "$OUT/$name.teacher.log" 2>&1 &
  fi
done
wait
for name in $NAMES; do
  if ! finished $name; then echo "$name: teacher stopped at $(tail -1 "$OUT/$name.teacher.log"); run this again"; continue; fi
  [ -d "$OUT/$name/cache" ] && continue
  rm -rf "$OUT/$name/teacher/checkpoint"
  $ARIA cache --teacher "$OUT/$name/teacher" --paired "$OUT/$name/world/paired.parquet" \
    --pool "$OUT/$name/world/pool.parquet" --out "$OUT/$name/cache" --sample-dtype float16 --no-progress \
    > "$OUT/$name.cache.log" 2>&1 &
done
wait
for name in $NAMES; do
  finished $name || continue
  python3 - "$OUT/$name/teacher/teacher_report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
glyph = {g["group"]: (round(g["mean"], 3), round(g["worst"], 3), g["worst_region"]) for g in r["accuracy"]["glyph_groups"]}
every = {g["group"]: round(g["mean"], 3) for g in r["accuracy"]["groups"]}
print(sys.argv[1], f"{r['train_seconds']:.0f} s, loss {r['final_train_loss']:.4f}")
print("  glyph accuracy (mean, worst, worst region):", glyph)
print("  every attribute right:", every)
EOF
done
