#!/usr/bin/env bash
# Installs what is missing, builds, and runs the three services on this machine until Ctrl-C.
# Data and logs go to $HOSPITAL_DATA (default: ./run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh build
cmake --preset services >/dev/null
cmake --build build -j2 --target patients morgue appointments

data=${HOSPITAL_DATA:-$PWD/run}
mkdir -p "$data"
pids=()

stop() {
  echo
  echo "Stopping (SIGTERM: health NOT_SERVING, in-flight calls drain, databases close)..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "Stopped. Data kept in $data"
}
trap stop INT TERM

# start NAME GRPC_PORT METRICS_PORT [FLAGS...]
start() {
  local name=$1 grpc=$2 metrics=$3
  shift 3
  rm -f "$data/$name.ports"
  "build/src/$name/$name" --listen="127.0.0.1:$grpc" --metrics_listen="127.0.0.1:$metrics" \
    --db="$data/$name.db" --port_file="$data/$name.ports" "$@" 2>>"$data/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do
    [[ -s "$data/$name.ports" ]] && return 0
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "$name failed to start; last lines of $data/$name.log:" >&2
      tail -n 5 "$data/$name.log" >&2
      stop
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not start within 10 s; see $data/$name.log" >&2
  stop
  exit 1
}

start morgue 50052 9092
start appointments 50053 9093
start patients 50051 9091 --morgue_address=127.0.0.1:50052 --appointments_address=127.0.0.1:50053 \
  --resilience_policy=protos/resilience/v1/example_policy.json

printf '\n%-13s %-16s %-32s %s\n' service gRPC metrics "database / log"
printf '%-13s %-16s %-32s %s\n' patients 127.0.0.1:50051 http://127.0.0.1:9091/metrics \
  "$data/patients.db  $data/patients.log"
printf '%-13s %-16s %-32s %s\n' morgue 127.0.0.1:50052 http://127.0.0.1:9092/metrics \
  "$data/morgue.db  $data/morgue.log"
printf '%-13s %-16s %-32s %s\n' appointments 127.0.0.1:50053 http://127.0.0.1:9093/metrics \
  "$data/appointments.db  $data/appointments.log"
echo
echo "Running. Try: grpcurl -plaintext 127.0.0.1:50051 list    (Ctrl-C stops all three)"
wait
