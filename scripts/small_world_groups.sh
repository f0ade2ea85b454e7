#!/usr/bin/env bash
# Issue 16, item 5, in one GPU call: student groups (`aria experiment --group`) on the small world.
#   scripts/small_world_groups.sh [OUT_DIR]     (default bench/results); PYTHON=... (default python3)
# At most 9.5 min (two time limits, 470 s and 100 s).
# 1. bench.small_world: experiments of P processes x G students on the glyph demo world (1000 steps
#    of 64 with their evaluation, as the map's), P in $PARALLEL (default "1 2"), G in $GROUP_SIZES
#    (default 8) -> OUT/small_world_groups.csv, one row per (P, G), written after each.
#    The runs alone, 16 processes of one student: bench/results/small_world.csv (2026-12-03).
# 2. scripts/prof_small_world --group 8: kernels and device time of a group step
#    -> OUT/prof_small_world_group8.json.
# Each has its own time limit, so one that runs long cannot take the other's results.
set -uo pipefail
OUT=$(mkdir -p "${1:-bench/results}" && cd "${1:-bench/results}" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0
timeout "${BENCH_LIMIT:-470}" $PY -m bench.small_world --parallel ${PARALLEL:-1 2} --group ${GROUP_SIZES:-8} \
  --out "$OUT" --name small_world_groups || { echo "== bench.small_world failed or ran out of time"; status=1; }
timeout "${PROF_LIMIT:-100}" $PY -m scripts.prof_small_world --batch 64 --steps 40 --active 5 --group 8 \
  --out "$OUT/prof_small_world_group8.json" > /dev/null || { echo "== prof_small_world failed or ran out of time"; status=1; }
exit $status
