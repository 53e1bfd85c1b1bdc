#!/usr/bin/env bash
# Runs every benchmark script under bench/ (bench/*.bench.sh), each of which
# writes its figures into its own section of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")"
shopt -s nullglob
scripts=(*.bench.sh)
if [ ${#scripts[@]} -eq 0 ]; then
  echo "bench: no benchmark scripts yet (bench/*.bench.sh)"
  exit 0
fi
for script in "${scripts[@]}"; do
  echo "bench: $script"
  bash "$script"
done
