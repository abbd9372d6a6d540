#!/usr/bin/env bash
# CI smoke of the fault benchmark: two short scenarios, every variant. Fails if the benchmark
# fails, finds a consistency violation, or leaves no report.
set -euo pipefail
bench=$1
out=$2
rm -rf "$out"
"$bench" --scenarios=morgue_down,morgue_killed --time_scale=0.5 --out="$out" 2>"$out.log" || {
  status=$?
  tail -n 20 "$out.log"
  exit "$status"
}
test -s "$out/report.md" && test -s "$out/results.json"
grep -c '"violations":0' "$out/results.json"
echo "1 passed, 0 failed"
