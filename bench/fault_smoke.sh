#!/usr/bin/env bash
# CI smoke of the fault benchmark: two short scenarios (a third of their length, half their
# rates), every variant; then the PostgreSQL failover scenario (half length) on resilient and
# async. Fails if the benchmark fails, finds a consistency violation, leaves no report, or no
# user action (release, own cancellation, booking) was acknowledged, which would leave the
# checker's rules for them idle.
set -euo pipefail
bench=$1
out=$2
rm -rf "$out"
"$bench" --scenarios=morgue_down,morgue_killed --time_scale=0.3 --rate_scale=0.5 --out="$out" 2>"$out.log" || {
  status=$?
  tail -n 20 "$out.log"
  exit "$status"
}
test -s "$out/report.md" && test -s "$out/results.json"
# The services on PostgreSQL through the loss of their primary (half length), into the same
# check.
"$bench" --storage=postgres --scenarios=db_primary_killed --variants=resilient,async \
  --time_scale=0.5 --out="$out/postgres" 2>"$out.postgres.log" || {
  status=$?
  tail -n 20 "$out.postgres.log"
  exit "$status"
}
# Every run must have found the services consistent.
python3 - "$out/results.json" "$out/postgres/results.json" <<'PYTHON'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"] + json.load(open(sys.argv[2]))["runs"]
bad = [f"{r['scenario']}/{r['variant']}" for r in runs
       if r["violations"] != 0 or r["consistency_incomplete"]]
print(f"{len(runs)} runs, {len(bad)} with consistency violations {bad}")
# The checker's rules for people's actions bind only if the services acknowledged some.
acted = {kind: sum(r.get(kind, {}).get("acknowledged", 0) for r in runs)
         for kind in ("releases", "own_cancellations", "bookings")}
print(f"acknowledged user actions: {acted}")
sys.exit(1 if bad or not runs or 0 in acted.values() else 0)
PYTHON
echo "1 passed, 0 failed"
