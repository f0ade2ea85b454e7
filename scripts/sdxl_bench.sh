#!/usr/bin/env bash
# Issue 13 item 5: the distillation step at Stable Diffusion XL size on one H200, in about 9 minutes.
#   scripts/sdxl_bench.sh [OUT_DIR] [ITEM ...]   rows into OUT_DIR/distill_step_sdxl.csv (default OUT_DIR
#                                                bench/results); PYTHON=... (default python3)
# Every row is `python3 -m bench.distill_step --size sdxl`: the trainer's train_step + fused AdamW,
# SDXL base's UNet (2.57B parameters, random weights from its config) held in bf16 without
# gradients as the teacher, a KOALA student from make_student (fp32 weights, bf16 autocast),
# output + block feature KD, 128 x 128 latents, random SDXL conditioning (77 x 2048 context,
# pooled text_embeds 1280, the six time ids of 1024 px) as the trainer hands it to both UNets.
# Each batch size gives two rc and two aria rows (interleaved; aria adds one step's real
# AriaSampler draw + observe with K = 256 over 10^6 prompts), with images/s, peak GiB, the step's
# FLOPs (torch.utils.flop_counter, eager; with checkpointing including the recomputed forward),
# MFU against the bf16 matmul rate measured in the same process, aria_ops_ms / _fraction (ARIA's
# host work per step, timed on its own). A batch that does not fit is an `oom` row, and larger
# ones in that item are skipped: the largest batch that fits is the largest non-oom row.
#   700m_eager  KOALA-700M, eager, batches 8 (RC's per-GPU batch) 16 24 32
#   700m_ckpt   KOALA-700M, --gradient-checkpointing (RC's recipe at batch 8), batches 8 128 192
#   1b_eager    KOALA-1B, eager, batches 8 16 24
#   1b_ckpt     KOALA-1B, --gradient-checkpointing, batches 8 128
#   700m_compiled  KOALA-700M, --compile (both UNets, in place, as `aria distill --compile`), batch 16,
#               on what is left of the budget, and only if that is >= 240 s: compiling both
#               SDXL-size UNets is estimated at 4-8 minutes (SD v1.4's two took 163 s; SDXL's has
#               70 transformer blocks to SD's 16). If it is skipped or runs out, run it alone in a
#               second call: `SDXL_BENCH_BUDGET=580 scripts/sdxl_bench.sh OUT 700m_compiled` (adds
#               its rows to OUT's CSV; the compiled FLOPs are those of the eager step).
# Not in the default list -- the largest batch (measured 2026-12-03): eager, KOALA-700M 32 fits
# (128 GiB; 36 would need ~142 GiB of the 139.8 by the 3.5 GiB per image measured), KOALA-1B 24 fits
# (124 GiB) and 28 does not; checkpointed, KOALA-700M 160 fits (125 GiB) and 176 does not, KOALA-1B
# 144 fits (128 GiB) and 160 does not (64-96 measured too: 20.0-20.2 images/s for KOALA-700M). FLOPs are
# counted on 8 images and scaled: counting the whole batch of 64 held 134 GiB and was the
# out-of-memory an earlier run reported at 64.
#   max_eager   KOALA-700M and KOALA-1B, eager, batches 28 32 (~30 s per batch size: models are rebuilt)
#   max_ckpt    the bracket of the largest checkpointed batch: KOALA-700M 160 176, KOALA-1B 144 160 (290 s);
#               an oom line in the log names the phase it happened in (set-up, first step, FLOP count, timed steps)
#   700m_max_compiled  KOALA-700M --compile at 48, the largest batch the memory lines predict to fit
#               (eager: 15.3 GiB + 3.53 GiB per image; compiled held 52.7 GiB at 16, i.e. ~2.33 GiB per
#               image on eager's intercept, 0.66 of eager's: 48 -> ~127 GiB, 56 -> ~146 of the 139.8)
#   1b_max_compiled    KOALA-1B --compile at 36 (eager: 20.2 + 4.32 GiB per image; at 700M's ratio ~2.85
#               compiled: 36 -> ~123 GiB, 40 -> ~134, too close to call)
#   1b_compiled_40     KOALA-1B --compile at 40
#               Measured 2026-12-04, one call each on a warm machine: KOALA-700M 48 fits (127.8 GiB,
#               30.4 images/s, 334 s); KOALA-1B 36 fits (124.6 GiB, 341 s) and 40 fits (136.2 GiB,
#               26.4 images/s, 357 s), 2.9 GiB per image between them, so 44 would need ~148 GiB.
#               Each is one compilation of both UNets at a new shape and needs a call of its own
#               (SDXL_BENCH_BUDGET=580): on 2026-12-04 both in one call at 290 s each ran out of
#               their time while compiling on a fresh machine (the batch-16 compilation took 227 s
#               of warm-up after building the models and counting FLOPs). A step that does not fit
#               is an oom row.
# Estimates behind the batch lists (not measured): a step is ~15 TFLOP per image for KOALA-700M
# (SDXL forward 6.8 TFLOP + 3 x the student's 2.7; KOALA-1B 3.4), i.e. ~0.5 s at batch 8;
# eager activations ~4-5 GiB per image (KOALA-700M), ~0.5-0.7 GiB with checkpointing.
# Each item has its own time limit, all of them within SDXL_BENCH_BUDGET seconds (default 540), so
# one that stalls cannot take the others; the CSV is written after every batch size.
# SDXL_BENCH_SIZE=sdxl-tiny runs the same items on the tests' tiny SDXL-shaped UNet (a CPU dry run).
set -uo pipefail
OUT=$(mkdir -p "${1:-bench/results}" && cd "${1:-bench/results}" && pwd)
shift $(( $# > 0 ? 1 : 0 ))
ITEMS=${*:-700m_eager 700m_ckpt 1b_eager 1b_ckpt 700m_compiled}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
BUDGET=${SDXL_BENCH_BUDGET:-540}
NAME=distill_step_sdxl
[ "$#" -gt 0 ] || rm -f "$OUT/$NAME.csv"  # the full run starts a fresh CSV; single items add to it
status=0
step() {  # step LIMIT_S MIN_S ARGS...: one bench.distill_step run within what is left of the budget, if >= MIN_S
  local limit=$1 least=$2 left=$((BUDGET - SECONDS))
  shift 2
  (( left < limit )) && limit=$left
  if (( limit < least )); then echo "== [$SECONDS s] skipped, $limit s left of the budget: $*"; status=1; return; fi
  echo "== [$SECONDS s] distill_step $* (limit $limit s)"
  timeout "$limit" "${PYTHON:-python3}" -m bench.distill_step --size "${SDXL_BENCH_SIZE:-sdxl}" --out "$OUT" --name $NAME --append "$@" \
    || { echo "== failed or ran out of its $limit s (exit $?)"; status=1; }
}
for item in $ITEMS; do
  case $item in
    700m_eager) step 100 30 --student koala-700m --batch 8 16 24 32 --steps 2 --warmup 0 ;;
    700m_ckpt) step 170 30 --student koala-700m --gradient-checkpointing --batch 8 128 192 --steps 1 --warmup 0 ;;
    1b_eager) step 80 30 --student koala-1b --batch 8 16 24 --steps 2 --warmup 0 ;;
    1b_ckpt) step 110 30 --student koala-1b --gradient-checkpointing --batch 8 128 --steps 1 --warmup 0 ;;
    700m_compiled) step 580 240 --student koala-700m --compile --batch 16 --steps 2 --warmup 2 ;;
    max_eager) step 100 30 --student koala-700m --batch 28 32 --steps 2 --warmup 0
               step 100 30 --student koala-1b --batch 28 32 --steps 2 --warmup 0 ;;
    max_ckpt) step 210 30 --student koala-700m --gradient-checkpointing --batch 160 176 --steps 1 --warmup 0
              step 210 30 --student koala-1b --gradient-checkpointing --batch 144 160 --steps 1 --warmup 0 ;;
    700m_max_compiled) step 580 240 --student koala-700m --compile --batch 48 --steps 2 --warmup 1 ;;
    1b_max_compiled) step 580 240 --student koala-1b --compile --batch 36 --steps 2 --warmup 1 ;;
    1b_compiled_40) step 580 240 --student koala-1b --compile --batch 40 --steps 2 --warmup 1 ;;
    *) echo "unknown item $item" >&2; status=1 ;;
  esac
done
echo "== [$SECONDS s] done: $OUT/$NAME.csv"
[ -f "$OUT/$NAME.csv" ] && "${PYTHON:-python3}" -c "import sys; from pathlib import Path
from bench.common import read_rows, report
out = Path(sys.argv[1]); report(sys.argv[2], read_rows(out / f'{sys.argv[2]}.csv'), out)" "$OUT" $NAME
exit $status
