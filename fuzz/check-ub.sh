#!/usr/bin/env bash
# Looks for undefined behaviour two ways and prints how long each took:
#  1. Miri (nightly toolchain, `rustup +nightly component add miri rust-src`) runs the unit
#     tests of the portable code: the count tables (counts.rs), the scalar word-count kernel,
#     the tokenizer, and the plugin host's import of Arrow C Data Interface batches. Miri knows
#     no AVX-512 or BMI2, so the kernels dispatch to their portable forms.
#  2. AddressSanitizer (cargo-fuzz's default) replays every fuzz target's seeds and corpus
#     (`-runs=0`), then fuzzes `plugin_import` for FUZZ_SECONDS (default 60).
# Usage: fuzz/check-ub.sh [miri|asan]...   (default: both)
set -uo pipefail
cd "$(dirname "$0")/.."
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(miri asan)
status=0

for part in "${parts[@]}"; do
  start=$(date +%s)
  mkdir -p fuzz/logs
  case "$part" in
    miri)
      # Isolation off: tests use temporary files. Few proptest cases: Miri runs ~1000x slower.
      MIRIFLAGS="-Zmiri-disable-isolation" PROPTEST_CASES=4 RUNNER_TEST_WITHOUT_AVX512=1 \
        cargo +nightly miri test -p runner --lib -- \
        counts:: plugin::import exec::fused::tests::compaction \
        exec::fused::tests::kernel_handles_every_token_length_at_the_end_of_the_text \
        transforms::tokenize::tests \
        || status=1
      ;;
    asan)
      targets=(pipeline_loader where_expr tokenizer socket_lines mastodon_sse csv_sink plugin_import)
      for target in "${targets[@]}"; do
        mkdir -p "fuzz/corpus/$target"
        log="fuzz/logs/$target-replay.log"
        RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS=2 cargo fuzz run "$target" \
          "fuzz/corpus/$target" "fuzz/seeds/$target" -- -runs=0 -rss_limit_mb=2048 >"$log" 2>&1
        rc=$?
        inputs=$(grep -o 'INITED.*' "$log" | head -1)
        echo "asan replay $target: exit $rc, ${inputs:-no INITED line}"
        [ $rc -eq 0 ] || { status=1; tail -20 "$log"; }
      done
      RUSTC_BOOTSTRAP=1 cargo fuzz run plugin_import fuzz/corpus/plugin_import fuzz/seeds/plugin_import -- \
        -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >fuzz/logs/plugin_import.log 2>&1 || { status=1; tail -20 fuzz/logs/plugin_import.log; }
      grep -E 'stat::number_of_executed_units|Done' fuzz/logs/plugin_import.log | tail -2
      ;;
    *) echo "unknown part $part (miri or asan)"; exit 2 ;;
  esac
  echo "$part: $(( $(date +%s) - start )) s, status so far $status"
done
exit $status
