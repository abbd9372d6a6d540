#!/usr/bin/env bash
# Installs what is missing, builds, and runs the three services on this machine until Ctrl-C.
#   scripts/run-local.sh          the synchronous death workflow (patients calls both over gRPC)
#   scripts/run-local.sh async    the asynchronous one: also a local nats-server with JetStream,
#                                 its store under run/nats/; deaths travel as events
#   scripts/run-local.sh shared_db_batch
#                                 the patients service records deaths in its own database only;
#                                 the batch_sync job copies them into the other two every second
#   scripts/run-local.sh direct_db_write
#                                 the patients service writes deaths into the other two databases
#   scripts/run-local.sh file_drop
#                                 deaths travel as files through run/drop/, written and read
#                                 every second
# HOSPITAL_TLS=1 turns on mutual TLS everywhere (certificates made once under run/certs/ by
# scripts/make-certs.sh), the caller policies of k8s/components/tls/, and TLS to nats-server.
# HOSPITAL_STORAGE=postgres (sync and async only) keeps each service's data in PostgreSQL 15
# instead of a SQLite file: a local primary and a synchronous standby (scripts/local-postgres.sh),
# a database and a role per service.
# Data and logs go to $HOSPITAL_DATA (default: ./run).
set -euo pipefail
cd "$(dirname "$0")/.."

workflow=${1:-sync}
case "$workflow" in
  sync | async | shared_db_batch | direct_db_write | file_drop) ;;
  *)
    echo "usage: scripts/run-local.sh [sync|async|shared_db_batch|direct_db_write|file_drop]" >&2
    exit 2
    ;;
esac

storage=${HOSPITAL_STORAGE:-sqlite}
case "$storage" in
  sqlite) ;;
  postgres)
    if [[ "$workflow" != sync && "$workflow" != async ]]; then
      echo "HOSPITAL_STORAGE=postgres runs sync and async only: $workflow is a shared-disk" \
        "pattern, on SQLite files" >&2
      exit 2
    fi
    ;;
  *)
    echo "HOSPITAL_STORAGE: sqlite (the default) or postgres, got \"$storage\"" >&2
    exit 2
    ;;
esac

scripts/install-deps.sh run
cmake --preset services >/dev/null
cmake --build build -j2 --target patients morgue appointments batch_sync

data=${HOSPITAL_DATA:-$PWD/run}
mkdir -p "$data"
pids=()
# The bearer token that changes through the admin listeners need (breakers, faults); made once,
# readable by this user alone.
if [[ ! -s "$data/admin-token" ]]; then
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$data/admin-token")
fi

tls=${HOSPITAL_TLS:-0}
certs="$data/certs"
# tls_flags NAME: the flags that give service NAME its certificate, mutual TLS and its policy.
tls_flags() {
  [[ "$tls" == 1 ]] || return 0
  echo "--tls_cert=$certs/$1.crt --tls_key=$certs/$1.key --tls_ca=$certs/ca.crt"
  echo "--admin_tls_ca=$certs/operators/ca.crt"
  # Health in plaintext, as probes ask it: 8081 patients, 8082 morgue, 8083 appointments.
  case $1 in patients) echo "--health_listen=127.0.0.1:8081" ;; morgue) echo "--health_listen=127.0.0.1:8082" ;;
    appointments) echo "--health_listen=127.0.0.1:8083" ;; esac
  if [[ -f "k8s/components/tls/caller-policy-$1.json" ]]; then
    echo "--authz_policy=k8s/components/tls/caller-policy-$1.json"
  fi
  if [[ "$workflow" == async ]]; then
    echo "--nats_tls_ca=$certs/ca.crt --nats_tls_cert=$certs/$1.crt --nats_tls_key=$certs/$1.key"
  fi
}
if [[ "$tls" == 1 ]]; then
  # The services, the broker, and "client" for grpcurl; operators have a CA of their own.
  [[ -s "$certs/client.crt" ]] || scripts/make-certs.sh "$certs" patients morgue appointments nats client
  [[ -s "$certs/operators/alice.crt" ]] || scripts/make-certs.sh "$certs/operators" alice
fi

stop() {
  echo
  echo "Stopping (SIGTERM: health NOT_SERVING, in-flight calls drain, databases close)..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "Stopped. Data kept in $data"
}
trap stop INT TERM

# db_flags NAME: where service NAME keeps its data (words without spaces).
db_flags() {
  if [[ "$storage" == postgres ]]; then
    postgres_flags "$1"
  else
    echo "--db=$data/$1.db"
  fi
}

if [[ "$storage" == postgres ]]; then
  # shellcheck source=scripts/local-postgres.sh
  source scripts/local-postgres.sh
  start_local_postgres "$data"
fi

# start NAME GRPC_PORT METRICS_PORT ADMIN_PORT [FLAGS...]
start() {
  local name=$1 grpc=$2 metrics=$3 admin=$4
  shift 4
  rm -f "$data/$name.ports"
  # shellcheck disable=SC2046
  "build/bin/$name" --listen="127.0.0.1:$grpc" --metrics_listen="127.0.0.1:$metrics" \
    --admin_listen="127.0.0.1:$admin" --admin_token_file="$data/admin-token" --fault_admin \
    --port_file="$data/$name.ports" $(db_flags "$name") "$@" 2>>"$data/$name.log" &
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
if [[ "$workflow" == file_drop ]]; then
  messaging_flags+=(--file_drop_dir="$data/drop" --file_drop_interval=1s)
fi
patients_extra=()
if [[ "$workflow" == direct_db_write ]]; then
  patients_extra=(--morgue_db="$data/morgue.db" --appointments_db="$data/appointments.db")
fi
if [[ "$workflow" == async ]]; then
  # One local server with the file store's default sync interval: a killed nats-server loses
  # nothing it acknowledged; a power cut of this machine could lose the last two minutes
  # (docs/architecture.md, "Durability"). Monitoring on 8222 (/jsz shows the stream and consumers).
  nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p "$data/nats"
  nats_tls=()
  if [[ "$tls" == 1 ]]; then
    # Clients must present a certificate of the services' CA.
    printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n  ca_file: "%s"\n  verify: true\n}\n' \
      "$certs/nats.crt" "$certs/nats.key" "$certs/ca.crt" >"$data/nats-tls.conf"
    nats_tls=(-c "$data/nats-tls.conf")
  fi
  "$nats_server" "${nats_tls[@]}" -js -sd "$data/nats" -a 127.0.0.1 -p 4222 -m 8222 \
    2>>"$data/nats-server.log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "Server is ready" "$data/nats-server.log" 2>/dev/null && break
    sleep 0.1
  done
  messaging_flags+=(--nats_url=nats://127.0.0.1:4222)
fi

# The TLS flags are words without spaces.
# shellcheck disable=SC2046
start morgue 50052 9092 50062 "${messaging_flags[@]}" $(tls_flags morgue)
# shellcheck disable=SC2046
start appointments 50053 9093 50063 "${messaging_flags[@]}" $(tls_flags appointments)
# shellcheck disable=SC2046
start patients 50051 9091 50061 $(tls_flags patients) --morgue_address=127.0.0.1:50052 --appointments_address=127.0.0.1:50053 \
  --resilience_policy=protos/resilience/v1/example_policy.json "${messaging_flags[@]}" \
  "${patients_extra[@]}"
if [[ "$workflow" == shared_db_batch ]]; then
  # After the services: it writes into their databases, which they create.
  start batch_sync 50054 9094 50064 --patients_db="$data/patients.db" \
    --morgue_db="$data/morgue.db" --appointments_db="$data/appointments.db" --sync_interval=1s
fi

printf '\n%-13s %-16s %-16s %-32s %s\n' service gRPC admin metrics "database / log"
# where NAME: the service's database, as the table shows it.
where() {
  if [[ "$storage" == postgres ]]; then echo "postgres:$1"; else echo "$data/$1.db"; fi
}
printf '%-13s %-16s %-16s %-32s %s\n' patients 127.0.0.1:50051 127.0.0.1:50061 \
  http://127.0.0.1:9091/metrics "$(where patients)  $data/patients.log"
printf '%-13s %-16s %-16s %-32s %s\n' morgue 127.0.0.1:50052 127.0.0.1:50062 \
  http://127.0.0.1:9092/metrics "$(where morgue)  $data/morgue.log"
printf '%-13s %-16s %-16s %-32s %s\n' appointments 127.0.0.1:50053 127.0.0.1:50063 \
  http://127.0.0.1:9093/metrics "$(where appointments)  $data/appointments.log"
if [[ "$storage" == postgres ]]; then
  printf '%-13s %-16s %-16s %-32s %s\n' postgresql 127.0.0.1:55432 - "primary, synchronous" \
    "$data/postgres/primary  $data/postgres/primary.log"
  printf '%-13s %-16s %-16s %-32s %s\n' postgresql 127.0.0.1:55433 - "standby1 (hot standby)" \
    "$data/postgres/standby  $data/postgres/standby.log"
fi
if [[ "$workflow" == shared_db_batch ]]; then
  printf '%-13s %-16s %-16s %-32s %s\n' batch_sync 127.0.0.1:50054 127.0.0.1:50064 \
    http://127.0.0.1:9094/metrics "$data/batch_sync.db  $data/batch_sync.log"
fi
if [[ "$workflow" == async ]]; then
  printf '%-13s %-16s %-16s %-32s %s\n' nats-server 127.0.0.1:4222 - http://127.0.0.1:8222/jsz \
    "$data/nats  $data/nats-server.log"
fi
echo "Admin changes (breakers, faults) need: -H \"authorization: Bearer \$(cat $data/admin-token)\""
if [[ "$tls" == 1 ]]; then
  echo "Mutual TLS is on: grpcurl -cacert $certs/ca.crt -cert $certs/client.crt" \
    "-key $certs/client.key 127.0.0.1:50051 list"
  echo "(on the admin listeners, -cert $certs/operators/alice.crt" \
    "-key $certs/operators/alice.key authorizes changes without the token)"
fi
echo
if [[ "$tls" == 1 ]]; then
  echo "Running the $workflow death workflow over mutual TLS (Ctrl-C stops everything)"
else
  echo "Running the $workflow death workflow. Try: grpcurl -plaintext 127.0.0.1:50051 list" \
    "(Ctrl-C stops everything)"
fi
wait
