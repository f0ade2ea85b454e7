#!/usr/bin/env bash
# The GPU benchmarks of bench/ in one device call; CSVs land in bench/results/ and are copied to $1.
# Each item has its own time limit so one slow item cannot take the others down.
#   scripts/gpu_bench.sh OUT [ITEM ...]   items: demo sd14 sd14_compiled sd14_ckpt kmeans (default: all)
set -uo pipefail
OUT=${1:?usage: gpu_bench.sh OUT_DIR [ITEM ...]}
shift
ITEMS=${*:-demo sd14 sd14_compiled sd14_ckpt kmeans}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
marker=$(mktemp)  # only CSVs written by this call are copied
step="python3 -m bench.distill_step"
for item in $ITEMS; do
  case $item in
    demo) timeout 150 $step --size demo --batch 64 256 --steps 30 --channels-last --name distill_step_demo_gpu ;;
    sd14) timeout 200 $step --size sd14 --batch 64 128 --steps 10 --channels-last --name distill_step_sd14_eager ;;
    sd14_compiled) timeout 330 $step --size sd14 --batch 64 --steps 10 --channels-last --compile --name distill_step_sd14_compiled ;;
    sd14_ckpt) timeout 150 $step --size sd14 --batch 128 --steps 3 --channels-last --gradient-checkpointing --name distill_step_sd14_ckpt ;;
    kmeans) timeout 120 python3 -m bench.kmeans_regions --device cuda && cp bench/results/kmeans_regions.csv "$OUT"/kmeans_regions_gpu.csv ;;
    *) echo "unknown item $item" >&2 ;;
  esac
done
find bench/results -name 'distill_step_*.csv' -newer "$marker" -exec cp {} "$OUT"/ \;
exit 0
