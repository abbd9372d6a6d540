#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan and UBSan; the asan preset) and runs each for
# SECONDS seconds (default 60) on a copy of its seed corpus (test/fuzz/corpus/<target>).
# A crash, a refused request that changed a database, or an INTERNAL answer stops that fuzzer
# with the input saved as crash-* in the output folder, and the script fails.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600 requests_fuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then targets=(policy_fuzzer faults_fuzzer requests_fuzzer); fi

scripts/install-deps.sh
cmake --preset asan >/dev/null
cmake --build build-asan -j2 --target "${targets[@]}"

out=${FUZZ_OUT:-build-asan/fuzz}
status=0
for target in "${targets[@]}"; do
  binary="$PWD/build-asan/test/fuzz/$target"
  corpus="$out/$target/corpus"
  mkdir -p "$corpus"
  cp -n test/fuzz/corpus/"${target%_fuzzer}"/* "$corpus"/ 2>/dev/null || true
  echo "== $target: $seconds s"
  if ! (cd "$out/$target" &&
        ASAN_OPTIONS="detect_leaks=0" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
        "$binary" -max_total_time="$seconds" -print_final_stats=1 corpus \
        >log 2>&1); then
    tail -n 30 "$out/$target/log"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$out/$target/log" || true
done
if ((status == 0)); then echo "${#targets[@]} passed, 0 failed"; else echo "fuzzing found a failure"; fi
exit "$status"
