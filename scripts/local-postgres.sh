# Sourced by scripts/run-local.sh (HOSPITAL_STORAGE=postgres): a PostgreSQL 15 primary and one
# synchronous standby from Debian's packages, under $1/postgres/, so that every commit the
# services are told about is on both. Made once (initdb, a role and a database per service, a
# pg_basebackup of the primary for the standby); later runs start the same two servers.
#   primary  127.0.0.1:55432   standby  127.0.0.1:55433 (hot standby, streaming, "standby1")
# Each service logs in as its own role with the password in $1/postgres/<service>.password, and
# reaches the primary through both hosts with target_session_attrs=read-write: promote the
# standby (pg_promote) after killing the primary and the services follow by themselves.
# Servers run as the user postgres when this script runs as root (PostgreSQL refuses root).
# Start over with: rm -rf $1/postgres
#
# start_local_postgres DATA: starts both, appends their pids to the caller's `pids`, and sets
# postgres_uri SERVICE (a function printing the service's --db) for the caller.

pg_bin=/usr/lib/postgresql/15/bin
pg_primary_port=55432
pg_standby_port=55433

# as_postgres COMMAND...: runs COMMAND as the servers' user.
as_postgres() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# wait_for_postgres DIR PORT: until the server with its socket in DIR accepts connections.
wait_for_postgres() {
  for _ in $(seq 150); do
    as_postgres "$pg_bin/pg_isready" -q -h "$1" -p "$2" && return 0
    sleep 0.2
  done
  echo "PostgreSQL on port $2 did not start; see the logs in $1" >&2
  return 1
}

# psql_primary SQL: runs SQL as the superuser over the primary's socket.
psql_primary() {
  as_postgres "$pg_bin/psql" -q -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_primary_port" \
    -U postgres -d postgres -c "$1"
}

start_local_postgres() {
  pg_dir=$1/postgres
  local fresh=0
  mkdir -p "$pg_dir"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$pg_dir"
  if [[ ! -s "$pg_dir/primary/PG_VERSION" ]]; then
    fresh=1
    as_postgres mkdir -p "$pg_dir/primary"
    as_postgres "$pg_bin/initdb" -D "$pg_dir/primary" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log"
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
      "$pg_primary_port" "$pg_dir" | as_postgres tee -a "$pg_dir/primary/postgresql.conf" >/dev/null
  fi
  as_postgres "$pg_bin/postgres" -D "$pg_dir/primary" 2>>"$pg_dir/primary.log" &
  pids+=($!)
  wait_for_postgres "$pg_dir" "$pg_primary_port"
  if [[ "$fresh" == 1 ]]; then
    local service
    for service in patients morgue appointments; do
      (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$pg_dir/$service.password")
      psql_primary "CREATE ROLE $service LOGIN PASSWORD '$(cat "$pg_dir/$service.password")'"
      psql_primary "CREATE DATABASE $service OWNER $service"
    done
    # The standby: a base backup of the primary that follows it (-R: standby.signal and
    # primary_conninfo over the primary's socket), on its own port, named standby1.
    as_postgres "$pg_bin/pg_basebackup" -h "$pg_dir" -p "$pg_primary_port" -U postgres \
      -D "$pg_dir/standby" -X stream -R -c fast
    printf "port = %s\nunix_socket_directories = '%s'\ncluster_name = 'standby1'\n" \
      "$pg_standby_port" "$pg_dir" | as_postgres tee -a "$pg_dir/standby/postgresql.conf" >/dev/null
  fi
  as_postgres "$pg_bin/postgres" -D "$pg_dir/standby" 2>>"$pg_dir/standby.log" &
  pids+=($!)
  wait_for_postgres "$pg_dir" "$pg_standby_port"
  if [[ "$fresh" == 1 ]]; then
    # Only now that the standby follows: from here a commit waits until it is on both.
    psql_primary "ALTER SYSTEM SET synchronous_standby_names = 'standby1'"
    psql_primary "SELECT pg_reload_conf()" >/dev/null
  fi
}

# postgres_flags SERVICE: the --db and --db_password_file of SERVICE.
postgres_flags() {
  echo "--db=postgresql://$1@127.0.0.1:$pg_primary_port,127.0.0.1:$pg_standby_port/$1?target_session_attrs=read-write"
  echo "--db_password_file=$pg_dir/$1.password"
}
