#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the full suite, then the
# ThreadSanitizer suite (tests labelled "tsan", built with clang and -fsanitize=thread).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

cmake --preset ci
cmake --build build -j2
ctest --test-dir build -j2 --output-on-failure

cmake --preset tsan
cmake --build build-tsan -j2 --target tsan_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan -L tsan -j2 --output-on-failure
