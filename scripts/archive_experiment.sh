#!/usr/bin/env bash
# An experiment's results without weights or checkpoints, as one archive, because the device tool brings
# back only so many files: each run's config and metrics, the evaluation's CSVs and grids, the logs.
# Usage: scripts/archive_experiment.sh RUN_DIR ARCHIVE.tgz   (unpack it into experiments/results/<name>/)
set -euo pipefail
run_dir=${1:?RUN_DIR}
archive=$(mkdir -p "$(dirname "${2:?ARCHIVE}")" && cd "$(dirname "$2")" && pwd)/$(basename "$2")
cd "$run_dir"
find . -type f \( -name '*.csv' -o -name '*.json' -o -name '*.jsonl' -o -name '*.png' -o -name '*.log' \) \
  -not -path '*/checkpoints/*' -not -path './configs/*' -not -name metrics.csv -size -5M | tar czf "$archive" -T -
