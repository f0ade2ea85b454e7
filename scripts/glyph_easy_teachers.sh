#!/usr/bin/env bash
# Several teachers of one easy-regions world (the difficulty-gap map: docs/test_bed.md), one after another, each
# with its students, in as few GPU calls as the device allows: run the same command in every call until it says
# all are done. Per seed: scripts/glyph_easy_seeds.sh's teacher stage (TEACHER_SEED=seed, TEACHER_STEPS, default
# 2000) and students stage (students in groups: PARALLEL=3 GROUP=6 unless set), archived as
# OUT/seed<N>/glyph_teachers_<WORLD>.tgz and OUT/seed<N>/<EXPERIMENT>.tgz; then the seed's folders in runs/ are
# removed for the next one. A teacher is started only with TEACHER_NEED seconds (default 330) left of
# CALL_SECONDS (default 570, the command's own budget: keep it under the call's timeout). H100s differ: with 2000
# steps the teacher stage took 196-210 s on the twenty-first session's (12 steps/s) and ~310 s on the
# twenty-second's (7.1-7.7 steps/s), the students of one teacher 173-181 s and 210-224 s (18 in three groups of
# six, with their evaluation), so a teacher and its students need ~390-540 s of a call. Grouped
# students finish together: a budget that stops them leaves none finished, and they resume from their last
# checkpoint (every 250 steps) in the next call (runs/ survives while the machine is warm; a fresh machine starts
# the unfinished seed again). A seed is done when its students' results.csv is written:
# runs/glyph_easy_done/<WORLD>_seed<N> records it.
# Usage: WORLD=small_easy_c8 EXPERIMENT=glyph_easy_c8_tau0_seeds_b2 scripts/glyph_easy_teachers.sh OUT SEED [SEED ...]
# Exit: 0 when every seed given is done, 3 when the budget stopped it (run it again).
set -uo pipefail
OUT=${1:?usage: glyph_easy_teachers.sh OUT SEED [SEED ...]}
shift
[ $# -gt 0 ] || { echo "usage: glyph_easy_teachers.sh OUT SEED [SEED ...]"; exit 2; }
world=${WORLD:-small_easy}
experiment=${EXPERIMENT:-glyph_easy_tau0_seeds_b2}
budget=${CALL_SECONDS:-570}
need=${TEACHER_NEED:-330}
teacher_dir=runs/glyph_teachers_easy/$world
mkdir -p runs/glyph_easy_done
left() { echo $(( budget - SECONDS )); }
for seed in "$@"; do
  done_marker=runs/glyph_easy_done/${world}_seed$seed
  [ -f "$done_marker" ] && { echo "seed $seed: done before"; continue; }
  # another seed's unfinished folders (a seed given earlier and then left out): not this teacher's, so removed
  if [ -d "$teacher_dir" ] && [ "$(cat "$teacher_dir.seed" 2>/dev/null)" != "$seed" ]; then
    echo "seed $seed: removing another seed's unfinished teacher ($(cat "$teacher_dir.seed" 2>/dev/null || echo unknown))"
    rm -rf "$teacher_dir" "$teacher_dir".*.log "$teacher_dir.seed" "runs/$experiment"
  fi
  if [ ! -d "$teacher_dir/cache" ]; then
    if [ "$(left)" -lt "$need" ]; then echo "seed $seed: $(left) s left, a teacher needs $need: run this again"; exit 3; fi
    echo "seed $seed: teacher ($(left) s left)"
    mkdir -p "$(dirname "$teacher_dir")" && echo "$seed" > "$teacher_dir.seed"
    TEACHER_SEED=$seed TEACHER_STEPS=${TEACHER_STEPS:-2000} WORLD=$world \
      bash scripts/glyph_easy_seeds.sh teacher "$OUT/seed$seed" || exit
  fi
  students=$(( $(left) - 15 ))
  if [ "$students" -lt 60 ]; then echo "seed $seed: $(left) s left for its students: run this again"; exit 3; fi
  echo "seed $seed: students ($students s)"
  EXPERIMENT=$experiment PARALLEL=${PARALLEL:-3} GROUP=${GROUP:-6} SECONDS_LEFT=$students \
    bash scripts/glyph_easy_seeds.sh students "$OUT/seed$seed"
  if [ ! -f "runs/$experiment/results.csv" ]; then echo "seed $seed: students stopped: run this again"; exit 3; fi
  touch "$done_marker"
  rm -rf "$teacher_dir" "$teacher_dir".*.log "$teacher_dir.seed" "runs/$experiment"
  echo "seed $seed: done at $SECONDS s"
done
echo "all seeds done: $*"
