#!/usr/bin/env bash
# The test bed's whole map in one command (issue 11, stage 1): the three 48-region glyph worlds
# (tau = 0, 0.5, 1; Zipf 1.2), a teacher per world, then rc / region-uniform / aria beta 1, 2 x 3 seeds
# per world at equal steps and paired images (kd too at tau = 0 and 1, the stage-0 gate; the progress
# policy at tau = 0 only: it tied with region-uniform there), and the simulator's map beside it.
# Usage: scripts/glyph_map.sh [TEACHER_STEPS]   (default 5000. Measured on one H200, 2026-12-04, at
# tau = 0: the teacher alone 794 s (6.3 steps/s; three at once share the GPU), the experiment with 18
# students at once ~8 min with its evaluation -- more than one 10-minute device call, so run it on
# a machine you hold, or the teachers first in parts: `TEACHER_SECONDS=480 scripts/glyph_teachers.sh
# runs/glyph_teachers 5000 tau0 tau05 tau1`, repeated until all three have finished). At tau = 0.5
# (2026-12-05): the teacher 774 s, its 12 students as PARALLEL=3 GROUP=4 (45 steps/s in all) ~7 min
# with the evaluation. At tau = 1 (2026-12-05, its teacher finished at step 2000 with `aria teacher
# --finish`): 15 students as PARALLEL=3 GROUP=5, 439 s with the evaluation. Outputs: runs/glyph_teachers/, runs/glyph_map_tau*/ (results.csv,
# report.html each), runs/glyph_map_sim/. PARALLEL=P GROUP=G: P processes of G students each
# (`aria experiment --group`; default 18 processes of one).
# Check each teacher's gate (glyph accuracy >= 0.95 in every region, printed by glyph_teachers.sh)
# before reading the map: a teacher that does not know a region cannot teach it.
set -euo pipefail
STEPS=${1:-5000}
bash scripts/glyph_teachers.sh runs/glyph_teachers "$STEPS" tau0 tau05 tau1
for tau in 0 05 1; do
  python3 -m aria_cli experiment "experiments/glyph_map_tau$tau.json" --out "runs/glyph_map_tau$tau" \
    --parallel "${PARALLEL:-18}" --group "${GROUP:-1}"
done
python3 -m aria_cli sim allocation --study map --out runs/glyph_map_sim
