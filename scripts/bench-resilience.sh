#!/usr/bin/env bash
# Builds and runs the resilience library's benchmarks: the pipeline on an in-process fake call
# (Google Benchmark, 5 repetitions, medians) on one and two threads calling one target, with
# the two-thread / one-thread ratio of calls per second; then wrapped vs raw stub over loopback
# gRPC; then plaintext vs mutual TLS over loopback gRPC (raw stubs, what TLS costs a call).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build build -j2 --target resilience_bench loopback_bench

json=$(mktemp)
trap 'rm -f "$json"' EXIT
build/bench/resilience_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_display_aggregates_only=true --benchmark_out="$json" --benchmark_out_format=json
python3 - "$json" <<'PYTHON'
import json, sys
# With N threads Google Benchmark's real_time is wall time over all threads' iterations, so
# calls per second is 1e9 / real_time whatever N is.
medians = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name, _, threads = b["run_name"].partition("/real_time/threads:")
    medians[(name, int(threads or 1))] = b
print()
print(f"{'benchmark':28} {'1 thread ns':>12} {'2 threads ns':>13} {'calls/s 1 thread':>17} "
      f"{'calls/s 2 threads':>18} {'ratio':>6} {'allocs/call':>12}")
for name in sorted({n for n, _ in medians}):
    one, two = medians.get((name, 1)), medians.get((name, 2))
    if one is None or two is None:
        continue
    rate_one, rate_two = 1e9 / one["real_time"], 1e9 / two["real_time"]
    print(f"{name:28} {one['real_time']:12.1f} {two['real_time']:13.1f} {rate_one:17,.0f} "
          f"{rate_two:18,.0f} {rate_two / rate_one:6.2f} {one.get('allocs_per_call', 0):12.3f}")
PYTHON
build/bench/loopback_bench --rounds=10 --seconds=3 --concurrency=32
certs=$(mktemp -d)
trap 'rm -f "$json"; rm -rf "$certs"' EXIT
scripts/make-certs.sh "$certs" echo client
build/bench/loopback_bench --rounds=10 --seconds=3 --concurrency=32 --tls_certs="$certs"
