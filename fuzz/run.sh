#!/usr/bin/env bash
# Runs the fuzz targets one after another (one fuzzer process at a time), SECONDS each, and
# prints the figures docs/reliability.md records: executions, coverage (cov/ft), crashes.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (default: 60 s, every target)
# Needs cargo-fuzz; on a stable toolchain RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pipeline_loader where_expr tokenizer socket_lines mastodon_sse csv_sink)
fi
mkdir -p fuzz/logs
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log="fuzz/logs/$target.log"
  start=$(date +%s)
  RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS=1 cargo fuzz run "$target" \
    "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    >"$log" 2>&1
  status=$?
  elapsed=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -1)
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  echo "$target: exit $status, ${elapsed} s, ${execs:-?} executions, ${last:-no coverage line}, corpus $corpus files"
  if [ $status -ne 0 ]; then
    grep -m3 -E 'panicked|ERROR|Test unit written|timeout' "$log"
  fi
done
