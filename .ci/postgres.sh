#!/usr/bin/env bash
# A throwaway PostgreSQL server for the postgres sink's tests (runner/tests/postgres.rs):
# Debian's `postgresql` package (installed when missing; needs root or sudo), a cluster in a
# temporary folder, listening on 127.0.0.1 only, password authentication (scram-sha-256).
#
#   bash .ci/postgres.sh start     # prints the URL for RUNNER_POSTGRES_URL
#   bash .ci/postgres.sh stop
#
# RUNNER_PG_PORT (default 15432) and RUNNER_PG_DIR (default /tmp/runner-pg-$PORT) move it.
set -euo pipefail
port="${RUNNER_PG_PORT:-15432}"
dir="${RUNNER_PG_DIR:-/tmp/runner-pg-$port}"
password="runner-test-password"
url="postgres://runner:$password@127.0.0.1:$port/runner"

as_root=()
if [ "$(id -u)" != 0 ]; then
  as_root=(sudo)
fi

bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# The server refuses to run as root: as root, it runs as the package's `postgres` user.
as_server=()
if [ "$(id -u)" = 0 ]; then
  as_server=(runuser -u postgres --)
fi

case "${1:-}" in
  start)
    if [ -z "$(bin_dir)" ]; then
      export DEBIAN_FRONTEND=noninteractive
      "${as_root[@]}" apt-get update -qq
      "${as_root[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi
    bin="$(bin_dir)"
    if [ -f "$dir/postmaster.pid" ] && "${as_server[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      echo "$url"
      exit 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    pwfile="$(mktemp)"
    echo "$password" >"$pwfile"
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$dir" "$pwfile"
    fi
    "${as_server[@]}" "$bin/initdb" -D "$dir" -U runner --pwfile="$pwfile" -A scram-sha-256 >"$dir.initdb.log" 2>&1 \
      || { cat "$dir.initdb.log" >&2; exit 1; }
    rm -f "$pwfile"
    "${as_server[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    PGPASSWORD="$password" "$bin/psql" -h 127.0.0.1 -p "$port" -U runner -d postgres -qc "CREATE DATABASE runner" >/dev/null
    echo "$url"
    ;;
  stop)
    bin="$(bin_dir)"
    if [ -n "$bin" ] && [ -f "$dir/postmaster.pid" ]; then
      "${as_server[@]}" "$bin/pg_ctl" -D "$dir" -m fast stop >/dev/null || true
    fi
    rm -rf "$dir" "$dir.initdb.log"
    ;;
  restart)
    # Stops the server and starts it again on the same data (the sink's reconnect test).
    bin="$(bin_dir)"
    "${as_server[@]}" "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    "${as_server[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop|restart" >&2
    exit 2
    ;;
esac
