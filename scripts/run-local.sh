#!/usr/bin/env bash
# Installs what is missing, builds, and runs the three services on this machine until Ctrl-C.
#   scripts/run-local.sh          the synchronous death workflow (patients calls both over gRPC)
#   scripts/run-local.sh async    the asynchronous one: also a local nats-server with JetStream,
#                                 its store under run/nats/; deaths travel as events
# Data and logs go to $HOSPITAL_DATA (default: ./run).
set -euo pipefail
cd "$(dirname "$0")/.."

workflow=${1:-sync}
if [[ "$workflow" != sync && "$workflow" != async ]]; then
  echo "usage: scripts/run-local.sh [sync|async]" >&2
  exit 2
fi

scripts/install-deps.sh run
cmake --preset services >/dev/null
cmake --build build -j2 --target patients morgue appointments

data=${HOSPITAL_DATA:-$PWD/run}
mkdir -p "$data"
pids=()
# The bearer token that changes through the admin listeners need (breakers, faults); made once,
# readable by this user alone.
if [[ ! -s "$data/admin-token" ]]; then
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$data/admin-token")
fi

stop() {
  echo
  echo "Stopping (SIGTERM: health NOT_SERVING, in-flight calls drain, databases close)..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "Stopped. Data kept in $data"
}
trap stop INT TERM

# start NAME GRPC_PORT METRICS_PORT ADMIN_PORT [FLAGS...]
start() {
  local name=$1 grpc=$2 metrics=$3 admin=$4
  shift 4
  rm -f "$data/$name.ports"
  "build/src/$name/$name" --listen="127.0.0.1:$grpc" --metrics_listen="127.0.0.1:$metrics" \
    --admin_listen="127.0.0.1:$admin" --admin_token_file="$data/admin-token" --fault_admin \
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

messaging_flags=(--death_workflow="$workflow")
if [[ "$workflow" == async ]]; then
  # One local server with the file store's default sync interval: a killed nats-server loses
  # nothing it acknowledged; a power cut of this machine could lose the last two minutes
  # (README, "Durability"). Monitoring on 8222 (/jsz shows the stream and consumers).
  nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p "$data/nats"
  "$nats_server" -js -sd "$data/nats" -a 127.0.0.1 -p 4222 -m 8222 2>>"$data/nats-server.log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "Server is ready" "$data/nats-server.log" 2>/dev/null && break
    sleep 0.1
  done
  messaging_flags+=(--nats_url=nats://127.0.0.1:4222)
fi

start morgue 50052 9092 50062 "${messaging_flags[@]}"
start appointments 50053 9093 50063 "${messaging_flags[@]}"
start patients 50051 9091 50061 --morgue_address=127.0.0.1:50052 --appointments_address=127.0.0.1:50053 \
  --resilience_policy=protos/resilience/v1/example_policy.json "${messaging_flags[@]}"

printf '\n%-13s %-16s %-16s %-32s %s\n' service gRPC admin metrics "database / log"
printf '%-13s %-16s %-16s %-32s %s\n' patients 127.0.0.1:50051 127.0.0.1:50061 \
  http://127.0.0.1:9091/metrics "$data/patients.db  $data/patients.log"
printf '%-13s %-16s %-16s %-32s %s\n' morgue 127.0.0.1:50052 127.0.0.1:50062 \
  http://127.0.0.1:9092/metrics "$data/morgue.db  $data/morgue.log"
printf '%-13s %-16s %-16s %-32s %s\n' appointments 127.0.0.1:50053 127.0.0.1:50063 \
  http://127.0.0.1:9093/metrics "$data/appointments.db  $data/appointments.log"
if [[ "$workflow" == async ]]; then
  printf '%-13s %-16s %-16s %-32s %s\n' nats-server 127.0.0.1:4222 - http://127.0.0.1:8222/jsz \
    "$data/nats  $data/nats-server.log"
fi
echo "Admin changes (breakers, faults) need: -H \"authorization: Bearer \$(cat $data/admin-token)\""
echo
echo "Running the $workflow death workflow. Try: grpcurl -plaintext 127.0.0.1:50051 list" \
  "(Ctrl-C stops everything)"
wait
