#!/usr/bin/env bash
# The 12-region cell with six easy regions (tau = 0, glyph_small_easy.json) over 8 seeds, region-uniform against
# ARIA (beta 1), with a teacher trained anew (1000 steps, as the cell's first teacher, which is gone with the
# sandbox that held it). It is the one cell where ARIA beat region-uniform in every seed (0.958 over 3 seeds, not
# significant; README, "How much could any allocation gain"); 8 seeds with one teacher tell whether tracking wins
# where regions differ in difficulty. One 10-minute device call (about 7 min estimated from the first run's 431 s
# on an H200 for the teacher and 15 students):
#   scripts/glyph_easy_seeds.sh OUT   world, teacher, paired cache, gate -> OUT/glyph_teachers_easy/; then 16 students
#                                     (4 processes of 4) and their evaluation -> OUT/glyph_easy_tau0_seeds.tgz (unpack
#                                     into experiments/results/glyph_easy_tau0_seeds/). SECONDS_LEFT=S (default 560,
#                                     counted from the start) stops the students in time: run the script again on the
#                                     warm machine to resume them
set -uo pipefail
OUT=${1:?OUT_DIR}
export PYTHONUNBUFFERED=1
bash scripts/glyph_teachers.sh runs/glyph_teachers_easy 1000 small_easy || exit
mkdir -p "$OUT/glyph_teachers_easy"
cp runs/glyph_teachers_easy/small_easy.*.log runs/glyph_teachers_easy/small_easy/teacher/teacher_report.json \
  "$OUT/glyph_teachers_easy/"
timeout -k 10 $(( ${SECONDS_LEFT:-560} - SECONDS )) python3 -m aria_cli experiment \
  experiments/glyph_easy_tau0_seeds.json --out runs/glyph_easy_tau0_seeds --parallel 4 --group 4 --no-progress
echo "experiment exit $? at $SECONDS s"
pkill -f multiprocessing.spawn  # a stopped experiment's workers; they resume from their checkpoints
bash scripts/archive_experiment.sh runs/glyph_easy_tau0_seeds "$OUT/glyph_easy_tau0_seeds.tgz"
