#!/usr/bin/env bash
# The 48-region tau = 1 cell once more, region-uniform against ARIA (beta 1) over 6 seeds, with a teacher
# trained on its own 2000-step schedule (the cell's first teacher was a 5000-step run stopped at step 2000
# and finished on a CPU; its checkpoint is gone with the sandbox that held it, so more seeds cannot be added
# to its 0-2). ARIA won that cell by 8% over 3 seeds, not significantly; 6 seeds with one teacher tell
# (2026-12-06, one H100: 0.995, a tie; docs/test_bed.md, "The 48-region tau = 1 cell again"). Two stages, each one 10-minute device call on one warm machine (runs/ is kept
# between them):
#   scripts/glyph_tau1_teacher2000.sh teacher OUT   world, teacher (2000 steps in 260 s on an H100), its paired
#                                                   cache and gate -> OUT/glyph_teachers_2000/; TEACHER_SECONDS=S
#                                                   (default 420) stops the teacher at a checkpoint: run the
#                                                   stage again to finish it
#   scripts/glyph_tau1_teacher2000.sh map OUT       12 students (3 processes of 4) and their evaluation ->
#                                                   OUT/glyph_map_tau1_teacher2000.tgz (results, evaluation,
#                                                   each run's config and metrics, logs; unpack it into
#                                                   experiments/results/glyph_map_tau1_teacher2000/);
#                                                   SECONDS_LEFT=S (default 570) stops it
#                                                   in time: run the stage again to resume it.
#                                                   EXPERIMENT=glyph_map_tau1_teacher2000_four runs RC,
#                                                   region-uniform, ARIA and ARIA beta 2 over 3 seeds instead
#                                                   (a teacher trained anew: the 6-seed run's is gone)
set -uo pipefail
stage=${1:?stage: teacher or map}
OUT=${2:?OUT_DIR}
export PYTHONUNBUFFERED=1
case $stage in
  teacher)
    TEACHER_SECONDS=${TEACHER_SECONDS:-420} bash scripts/glyph_teachers.sh runs/glyph_teachers_2000 2000 tau1
    mkdir -p "$OUT/glyph_teachers_2000"
    cp runs/glyph_teachers_2000/tau1.*.log runs/glyph_teachers_2000/tau1/teacher/teacher_report.json \
      "$OUT/glyph_teachers_2000/" ;;
  map)
    name=${EXPERIMENT:-glyph_map_tau1_teacher2000}
    timeout -k 10 "${SECONDS_LEFT:-570}" python3 -m aria_cli experiment "experiments/$name.json" \
      --out "runs/$name" --parallel 3 --group 4 --no-progress
    echo "experiment exit $?"
    pkill -f multiprocessing.spawn  # a stopped experiment's workers; they resume from their checkpoints
    bash scripts/archive_experiment.sh "runs/$name" "$OUT/$name.tgz" ;;
  *) echo "unknown stage $stage"; exit 2 ;;
esac
