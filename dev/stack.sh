#!/usr/bin/env bash
# The local stack without Docker: a throwaway Postgres cluster shaped like a Supabase project.
#   dev/stack.sh start    init (first time) + start Postgres, bootstrap Supabase roles/auth, the
#                         pg_net and Vault stand-ins and their delivery worker, apply migrations
#   dev/stack.sh seed     load supabase/seed.sql
#   dev/stack.sh stop     stop the worker and the cluster this script started (by PID)
#   dev/stack.sh reset    stop, delete the cluster, start afresh
#   dev/stack.sh status   say whether it runs
# Environment: STACK_PORT (54322), SUPABASE_GRANTS (current|legacy), STACK_DIR, STACK_MIGRATE (1).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

port=${STACK_PORT:-54322}
grants_mode=${SUPABASE_GRANTS:-current}
stack_dir=${STACK_DIR:-/tmp/billing-stack-$port}
data="$stack_dir/data"
log="$stack_dir/postgres.log"
worker_pid_file="$stack_dir/net-worker.pid"
worker_log="$stack_dir/net-worker.log"
pg_major=$(cat .pg_major 2>/dev/null || echo 15)
bin=/usr/lib/postgresql/$pg_major/bin
supabase=$repo/node_modules/.bin/supabase

say() { printf '\033[1m[stack]\033[0m %s\n' "$*" >&2; }

# As root, the server runs as the `postgres` OS user (initdb refuses root).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

superuser_psql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U supabase_admin "$@"; }

running() {
  [ -f "$data/postmaster.pid" ] || return 1
  local pid
  pid=$(head -1 "$data/postmaster.pid")
  kill -0 "$pid" 2>/dev/null
}

init_cluster() {
  say "initialising a new cluster in $data (superuser supabase_admin, port $port)"
  mkdir -p "$stack_dir"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$stack_dir"
  as_owner "$bin/initdb" -D "$data" -U supabase_admin --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$data/postgresql.conf" <<CONF
# local stack settings
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$stack_dir'
max_connections = 200
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
timezone = '${STACK_TIMEZONE:-UTC}'
log_min_messages = warning
CONF
  echo "$grants_mode" >"$stack_dir/grants_mode"
}

start() {
  if running; then
    say "already running on port $port (pid $(head -1 "$data/postmaster.pid"))"
  else
    [ -d "$data" ] || init_cluster
    say "starting Postgres $pg_major on 127.0.0.1:$port"
    as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null
    head -1 "$data/postmaster.pid" >"$stack_dir/postgres.pid"
  fi
  local mode
  mode=$(cat "$stack_dir/grants_mode" 2>/dev/null || echo "$grants_mode")
  say "applying the Supabase compatibility bootstrap (grants: $mode)"
  superuser_psql -d postgres -v grants_mode="$mode" -f dev/supabase-compat/bootstrap.sql >/dev/null
  say "installing the pg_net and Vault stand-ins (dev/supabase-compat)"
  superuser_psql -d postgres -f dev/supabase-compat/pg_net.sql >/dev/null
  superuser_psql -d postgres -f dev/supabase-compat/vault.sql >/dev/null
  start_worker
  # STACK_MIGRATE=0: a bare project (the migration-repair test applies its own history).
  [ "${STACK_MIGRATE:-1}" = 0 ] || migrate
}

worker_running() {
  [ -f "$worker_pid_file" ] || return 1
  local pid
  pid=$(cat "$worker_pid_file")
  kill -0 "$pid" 2>/dev/null && grep -q net_worker.ts "/proc/$pid/cmdline" 2>/dev/null
}

# pg_net's background worker, stood in for by a Deno process (its own session, output to a log).
start_worker() {
  if worker_running; then
    say "pg_net stand-in worker already running (pid $(cat "$worker_pid_file"))"
    return
  fi
  say "starting the pg_net stand-in worker (log: $worker_log)"
  NET_WORKER_DB_URL="postgresql://supabase_admin@127.0.0.1:$port/postgres?sslmode=disable" \
    setsid "$repo/node_modules/.bin/deno" run --allow-net --allow-env --allow-read \
    "$repo/dev/supabase-compat/net_worker.ts" </dev/null >"$worker_log" 2>&1 &
  echo $! >"$worker_pid_file"
  local i
  for i in $(seq 1 200); do
    grep -q "worker started" "$worker_log" 2>/dev/null && return
    worker_running || { cat "$worker_log" >&2; say "the pg_net stand-in worker failed to start"; exit 1; }
    sleep 0.1
  done
  say "the pg_net stand-in worker did not report ready within 20 s"
  exit 1
}

stop_worker() {
  if worker_running; then
    local pid i
    pid=$(cat "$worker_pid_file")
    say "stopping the pg_net stand-in worker (pid $pid)"
    kill "$pid"
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$worker_pid_file"
}

migrate() {
  say "applying migrations with the Supabase CLI as the non-superuser postgres role"
  (cd "$repo" && "$supabase" migration up --db-url "postgresql://postgres@127.0.0.1:$port/postgres?sslmode=disable" 2>&1 |
    grep -vE '^(Connecting|$)' | sed 's/^/  /' >&2)
}

seed() {
  say "loading supabase/seed.sql"
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -f supabase/seed.sql >/dev/null
}

stop() {
  stop_worker
  if running; then
    say "stopping Postgres on port $port"
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  else
    say "not running"
  fi
  rm -f "$stack_dir/postgres.pid"
}

case "${1:-}" in
  start) start ;;
  migrate) migrate ;;
  seed) seed ;;
  stop) stop ;;
  reset)
    stop
    say "deleting $stack_dir"
    rm -rf "$stack_dir"
    start
    ;;
  status)
    if running; then echo "running on 127.0.0.1:$port ($stack_dir)"; else echo "stopped"; exit 1; fi
    if worker_running; then echo "pg_net stand-in worker: pid $(cat "$worker_pid_file")"; else echo "pg_net stand-in worker: stopped"; fi
    ;;
  url) echo "postgresql://postgres@127.0.0.1:$port/postgres?sslmode=disable" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
