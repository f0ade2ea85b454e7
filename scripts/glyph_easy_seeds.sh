#!/usr/bin/env bash
# The 12-region cell with six easy regions (tau = 0, glyph_small_easy.json) over more seeds, region-uniform against
# ARIA (beta 1), with a teacher trained anew (1000 steps, as the cell's first teacher, which is gone with the
# sandbox that held it). It is the one cell where ARIA beat region-uniform in every seed (0.955 over 3 seeds, not
# significant; docs/test_bed.md, "How much could any allocation gain"); more seeds with one teacher tell whether tracking
# wins where regions differ in difficulty. Two stages:
#   scripts/glyph_easy_seeds.sh teacher OUT    on a GPU (136 s on an H100, 2026-12-07; 259 s with
#                       TEACHER_STEPS=2000): world, teacher, paired cache, gate -> runs/glyph_teachers_easy/small_easy/ and
#                       OUT/glyph_teachers_small_easy.tgz (the three folders without the teacher's checkpoint, and the
#                       logs: unpack it into runs/glyph_teachers_easy/ where the students run). On a 2-core
#                       CPU (PYTHON=.venv/bin/python) it trains at 0.092 steps/s (1000 steps in 10,925 s, measured
#                       2026-12-07), ~3 h: TEACHER_SECONDS=S stops it at its first
#                       checkpoint (every 100 steps) after S seconds, and the stage run again resumes it.
#                       TEACHER_STEPS=N (default 1000) trains N steps instead: an H100's 1000-step teacher missed
#                       the gate in one region (0.75), its 2000-step one passed in every region (1.0), 2026-12-07.
#                       TEACHER_SEED=N (default 0) trains a different teacher of the same world (glyph_teachers.sh)
#                       WORLD=NAME (default small_easy) trains the teacher of aria_train/assets/worlds/glyph_NAME.json
#                       instead, into runs/glyph_teachers_easy/NAME/ and OUT/glyph_teachers_NAME.tgz: e.g.
#                       small_easy_c8, the same world with a smaller difficulty gap (easy regions own 8 cells, not 4;
#                       its students: EXPERIMENT=glyph_easy_c8_tau0_seeds_b2; small_easy_c3 and small_easy_c12 the
#                       next points). On a warm H100 the stage took 196-210 s with 2000 steps (world, teacher,
#                       cache, gate; 2026-12-07): a call with less left returns nothing
#   scripts/glyph_easy_seeds.sh students OUT   the students (experiments/glyph_easy_tau0_seeds.json) and their
#                       evaluation -> runs/glyph_easy_tau0_seeds/ and OUT/glyph_easy_tau0_seeds.tgz;
#                       EXPERIMENT=glyph_easy_tau0_seeds_b2 runs that experiment (ARIA beta 2 as well) into
#                       runs/glyph_easy_tau0_seeds_b2/ and OUT/glyph_easy_tau0_seeds_b2.tgz instead. PARALLEL=N
#                       processes (default 2: a 2-core CPU, ~9 min per pair of runs, PYTHON=.venv/bin/python);
#                       SECONDS_LEFT=S (default: no limit) stops it in time, and the stage run again resumes it.
#                       GROUP=G (default 1) trains up to G students together in each process (`aria experiment
#                       --group`: one teacher forward and one vmapped student step for all; results equal separate
#                       runs' up to rounding). On an H100 one student per process, PARALLEL=6, took ~360 s for 18
#                       (2026-12-07); bench/small_world measured ~3x the throughput at --parallel 4 --group 8
#                       (docs/benchmarks.md); PARALLEL=3 GROUP=6 took 173-181 s for 18 with their evaluation
#                       (2026-12-07). On a CPU keep GROUP=1: a group of 9 trained at ~31 images/s per process
#                       against ~65 for one student alone (2-core sandbox, 2026-12-07; compute-bound, a group
#                       does not pay there). A stage stopped by SECONDS_LEFT resumes its groups as groups.
set -uo pipefail
stage=${1:?stage: teacher or students}
OUT=${2:?OUT_DIR}
export PYTHONUNBUFFERED=1
ARIA="${PYTHON:-python3} -m aria_cli"
case $stage in
  teacher)
    world=${WORLD:-small_easy}
    bash scripts/glyph_teachers.sh runs/glyph_teachers_easy "${TEACHER_STEPS:-1000}" "$world" || exit
    # stopped by TEACHER_SECONDS: nothing to archive yet (no paired cache)
    [ -d "runs/glyph_teachers_easy/$world/cache" ] || { echo "teacher not finished: run this stage again"; exit 3; }
    mkdir -p "$OUT"
    tar czf "$OUT/glyph_teachers_$world.tgz" -C runs/glyph_teachers_easy --exclude "$world/teacher/checkpoint" \
      "$world" "$world.world.log" "$world.teacher.log" "$world.cache.log" ;;
  students)
    experiment=${EXPERIMENT:-glyph_easy_tau0_seeds}
    timeout -k 10 "${SECONDS_LEFT:-0}" $ARIA experiment "experiments/$experiment.json" \
      --out "runs/$experiment" --parallel "${PARALLEL:-2}" --group "${GROUP:-1}" --no-progress
    code=$?
    echo "experiment exit $code at $SECONDS s"
    # a stopped experiment's workers (they resume from their checkpoints when the stage runs again)
    [ $code = 124 ] || [ $code = 137 ] && pkill -f multiprocessing.spawn
    bash scripts/archive_experiment.sh "runs/$experiment" "$OUT/$experiment.tgz" ;;
  *) echo "unknown stage $stage"; exit 2 ;;
esac
