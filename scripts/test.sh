#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test three times over: the full suite (gcc,
# warnings as errors); the full suite again built with clang's AddressSanitizer and
# UndefinedBehaviorSanitizer, then each fuzzer for 10 s; and the ThreadSanitizer suite (tests
# labelled "tsan").
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

cmake --preset ci
cmake --build build -j2
ctest --test-dir build -j2 --output-on-failure

# Every test, the services they start included, under ASan and UBSan; leaks fail them too.
cmake --preset asan
cmake --build build-asan -j2
ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  ctest --test-dir build-asan -j2 --output-on-failure -E '^resilience_install$'
# Each fuzzer for 10 s from its seed corpus (scripts/fuzz.sh runs them longer).
scripts/fuzz.sh 10

cmake --preset tsan
cmake --build build-tsan -j2 --target tsan_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan -L tsan -j2 --output-on-failure
