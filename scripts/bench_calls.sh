# Sourced by the GPU benchmark scripts (perf_bench.sh, step_candidates.sh, memory_candidates.sh,
# fa4_loop.sh, teacher_stream.sh, ...) as
#   source "$(dirname "$0")/bench_calls.sh" "${1:-bench/results}"
# which makes that folder, sets OUT to its absolute path and moves to the repository root; each script
# then sets BENCH_ARGS (options every benchmark of the script takes) and calls:
#   bench LIMIT_S MODULE ARGS...   runs `python -m bench.MODULE BENCH_ARGS... --out OUT ARGS...` under its
#                                  own time limit, after a progress line with the seconds so far; a
#                                  failure sets status=1 and the script goes on with the next one.
#   logged NAME LIMIT_S MODULE ARGS...
#                                  bench's call with its whole output in OUT/NAME.log (a failure's reason comes
#                                  back with it), its last three lines printed.
#   finish                         the closing line, and the script's exit status.
OUT=$(mkdir -p "$1" && cd "$1" && pwd) || exit
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit
export PYTHONUNBUFFERED=1
start=$SECONDS
status=0
bench() {
  local limit=$1 module=$2
  shift 2
  echo "== [$((SECONDS - start)) s] $module $*"
  timeout "$limit" "${PYTHON:-python3}" -m "bench.$module" "${BENCH_ARGS[@]}" --out "$OUT" "$@" || {
    echo "== $module failed or ran out of its ${limit} s (exit $?)"; status=1; }
}
logged() {
  local name=$1
  shift
  bench "$@" > "$OUT/$name.log" 2>&1
  tail -3 "$OUT/$name.log"
}
finish() {
  echo "== [$((SECONDS - start)) s] done; CSVs in $OUT"
  exit $status
}
