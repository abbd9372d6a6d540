#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the full suite, then the
# ThreadSanitizer suite (tests labelled "tsan", built with clang and -fsanitize=thread).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOSPITAL_BUILD_TESTS=ON \
  -DHOSPITAL_BUILD_BENCH=ON
cmake --build build -j2
ctest --test-dir build -j2 --output-on-failure

CC=clang CXX=clang++ cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHOSPITAL_SANITIZER=thread -DHOSPITAL_BUILD_BENCH=OFF
cmake --build build-tsan -j2 --target tsan_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan -L tsan -j2 --output-on-failure
