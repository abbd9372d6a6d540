#!/usr/bin/env bash
# Builds and runs the resilience library's benchmarks: the pipeline on an in-process fake call
# (Google Benchmark, 5 repetitions, medians), then wrapped vs raw stub over loopback gRPC.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build build -j2 --target resilience_bench loopback_bench

build/bench/resilience_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_display_aggregates_only=true
build/bench/loopback_bench --rounds=10 --seconds=3 --concurrency=32
