#!/usr/bin/env bash
# The test bed's map on the 12-region glyph worlds (issue 11 stages 1 and 2; issue 12's trainer
# runs), in parts that each fit one 10-minute call on one H200:
#   teachers  train the teachers of small_tau05 and small_tau1 ($TEACHER_STEPS steps, default 1000;
#             tau = 0 is the shipped demo teacher) and sample their paired caches -> runs/glyph_teachers/
#   map       rc, region-uniform, aria (beta 1, 2) x 3 seeds at tau = 0.5 and 1 (24 runs)
#             -> runs/glyph_small_map_tau{05,1}/   (tau = 0: experiments/glyph_demo_gpu.json)
#   floor     stage 2, the irreducible floor: the tau = 0 world with teacher noise (std 0.5) on
#             its two unseen-tail regions                          -> runs/glyph_floor_tau0/
#   policies  the progress policy at tau = 0 and 0.5 and on the floor world, and ARIA with the
#             text signal at tau = 0 -> runs/glyph_progress_{tau0,tau05,floor}/, runs/glyph_text_signal_tau0/
#   blind     stage 2 with a floor the student cannot remove: the tau = 0 world with its two
#             unseen-tail regions blind to the student (it is shown the null text for their prompts,
#             in training and evaluation: DistillConfig.blind_regions); rc, region-uniform, aria
#             beta 1 and the progress policy x 3 seeds (12 runs at once, ~3 min estimated)
#             -> runs/glyph_blind_tau0/
#   zipf      the Zipf exponent beside the map's s = 1.2: the tau = 0 world at s = 0 (equal shares) and
#             s = 1.6 (glyph_small_s{0,16}.json). Their teacher is the shipped tau = 0 demo teacher with
#             the world's world.json (its training draws are uniform over the world's regions and
#             phrasings whatever s is, and the glyphs do not depend on s); the paired caches are new
#             (the paired sets differ). rc, region-uniform, aria beta 1, 2, progress x 3 seeds per s
#             (30 runs at once, ~6 min estimated) -> runs/glyph_zipf_s{0,16}/
#   easy      the difficulty spread (issue 11, docs/test_bed.md, "How much could any allocation gain"): the tau = 0
#             demo world with 6 easy regions (glyph_small_easy.json: a template glyph with 4 cells of
#             their own, spread over the rarity order), its teacher and cache, then rc, region-uniform,
#             aria beta 1 / 2 and progress x 3 seeds (15 runs at once) -> runs/glyph_easy_tau0/;
#             measured 431 s on one H200 (2026-12-03; the teacher's 1000 steps 145 s)
#   words-teachers  teachers of the same three worlds with prompts that name the glyph's parts
#             (glyph_small_words_tau{0,05,1}.json: word_parts, e.g. "tegiz govok"), and their caches
#   words-map rc, region-uniform, aria (beta 1, 2) x 3 seeds on those worlds (36 runs at once)
#             -> runs/glyph_words_map_tau{0,05,1}/: does tau move the trainer once the text names the parts?
#   gate-teachers  the teachers that missed the glyph gate at 1000 steps (small_tau1: one region at
#             0.875; small_words_tau0: three regions; small_words_tau1: one) trained again from scratch
#             for $TEACHER_STEPS (default here 2000) steps in place, old teacher and cache removed;
#             ~9-10 min, so give TEACHER_SECONDS=400 and run the part twice (the second call resumes).
#             Then re-run their cells: `aria experiment experiments/glyph_small_map_tau1.json` and words-map.
# Usage: scripts/glyph_small_map.sh PART...   (teachers..policies measured 2026-12-03 on one H200:
#   about 20 min in 4 calls; words-teachers ~5 min and words-map ~7 min, estimated from those)
set -euo pipefail
ARIA="python3 -m aria_cli"
export PYTHONUNBUFFERED=1
[ -f runs/glyph_demo/pool.parquet ] || \
  $ARIA world --config aria_train/assets/glyph_demo/teacher/world.json --out runs/glyph_demo --check 0 > /dev/null
for part in "$@"; do
  case $part in
    teachers) bash scripts/glyph_teachers.sh runs/glyph_teachers "${TEACHER_STEPS:-1000}" small_tau05 small_tau1 ;;
    map) for tau in 05 1; do
           $ARIA experiment "experiments/glyph_small_map_tau$tau.json" --out "runs/glyph_small_map_tau$tau" &
         done; wait ;;
    floor) $ARIA experiment experiments/glyph_floor_tau0.json --out runs/glyph_floor_tau0 ;;
    blind) $ARIA experiment experiments/glyph_blind_tau0.json --out runs/glyph_blind_tau0 ;;
    easy) bash scripts/glyph_teachers.sh runs/glyph_teachers "${TEACHER_STEPS:-1000}" small_easy
          if [ -d runs/glyph_teachers/small_easy/cache ]; then
            $ARIA experiment experiments/glyph_easy_tau0.json --out runs/glyph_easy_tau0
          else echo "easy: the teacher is not finished; run the part again"; fi ;;
    zipf) for s in 0 16; do
            dir=runs/glyph_teachers/small_s$s
            [ -f $dir/world/world.json ] || \
              $ARIA world --config aria_train/assets/worlds/glyph_small_s$s.json --out $dir/world --check 0 > /dev/null
            if [ ! -d $dir/teacher ]; then
              cp -r aria_train/assets/glyph_demo/teacher $dir/teacher && cp $dir/world/world.json $dir/teacher/world.json
            fi
            [ -d $dir/cache ] || $ARIA cache --teacher $dir/teacher --paired $dir/world/paired.parquet \
              --pool $dir/world/pool.parquet --out $dir/cache --sample-dtype float16 --no-progress > $dir.cache.log 2>&1
          done
          for s in 0 16; do
            $ARIA experiment "experiments/glyph_zipf_s$s.json" --out "runs/glyph_zipf_s$s" &
          done; wait ;;
    policies) for name in progress_tau0 progress_tau05 progress_floor text_signal_tau0; do
                $ARIA experiment "experiments/glyph_$name.json" --out "runs/glyph_$name" &
              done; wait ;;
    words-teachers) bash scripts/glyph_teachers.sh runs/glyph_teachers "${TEACHER_STEPS:-1000}" \
                      small_words_tau0 small_words_tau05 small_words_tau1 ;;
    gate-teachers) again="small_tau1 small_words_tau0 small_words_tau1"
                   for name in $again; do  # a finished 1000-step teacher is replaced, a stopped run resumed
                     [ -d runs/glyph_teachers/$name/teacher/unet ] && \
                       [ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['steps'])" \
                            runs/glyph_teachers/$name/teacher/teacher_config.json)" != "${TEACHER_STEPS:-2000}" ] && \
                       rm -rf runs/glyph_teachers/$name/teacher runs/glyph_teachers/$name/cache
                   done
                   bash scripts/glyph_teachers.sh runs/glyph_teachers "${TEACHER_STEPS:-2000}" $again ;;
    words-map) for tau in 0 05 1; do
                 $ARIA experiment "experiments/glyph_words_map_tau$tau.json" --out "runs/glyph_words_map_tau$tau" &
               done; wait ;;
    *) echo "unknown part $part (teachers, map, floor, blind, easy, zipf, policies, words-teachers, words-map, gate-teachers)" >&2; exit 2 ;;
  esac
done
