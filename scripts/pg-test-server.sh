#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL server (Debian's packages, installed if
# missing): one primary on a free port of 127.0.0.1 (from 55432 up), all its data in a
# temporary folder. The command runs with, in its environment:
#
#   CLIENTELE_TEST_POSTGRES  postgres://clientele:clientele-pw@127.0.0.1:PORT/clientele?target_session_attrs=read-write
#                            the role `clientele` owns the database `clientele` and may
#                            CREATE DATABASE (a test suite makes and drops one per test)
#   CLIENTELE_TEST_POSTGRES_PORT  the port alone
#
# Then the server is stopped and the folder removed, whatever happened (Ctrl-C included),
# and the script exits with the command's status.
#
#   scripts/pg-test-server.sh cargo test --test api
#   scripts/pg-test-server.sh                # no command: print the URL, serve until Ctrl-C
#
# Run it as root (the server then runs as the user `postgres`) or as any other user once
# PostgreSQL is installed. fsync is off (PG_FSYNC=on to turn it back on): nothing in this
# server outlives it, and tests that create a database each run much faster.
set -euo pipefail
# shellcheck source=scripts/pg-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg-lib.sh"

pg_install
pg_workdir
pg_trap_cleanup

# A port found free may be taken before the server binds it (another run starting at the
# same moment): then the next free one, a few times.
from=${CLIENTELE_TEST_POSTGRES_FROM_PORT:-55432}
for attempt in 1 2 3 4 5; do
  port=$(pg_free_port "$from")
  node="$PG_WORKDIR/primary$attempt"
  set +e
  (set -e; PG_FSYNC=${PG_FSYNC:-off} pg_start_primary "$node" "$port")
  started=$?
  set -e
  # (Started in a subshell: the exit trap must still know the server, to stop it.)
  _PG_NODES+=("$node")
  [ "$started" -eq 0 ] && break
  if [ "$attempt" -eq 5 ]; then
    echo "pg: PostgreSQL did not start on 5 ports from ${CLIENTELE_TEST_POSTGRES_FROM_PORT:-55432}" >&2
    exit 1
  fi
  echo "pg: port $port was taken meanwhile; trying the next free one" >&2
  from=$((port + 1))
done

CLIENTELE_TEST_POSTGRES=$(pg_url "$port")
CLIENTELE_TEST_POSTGRES_PORT=$port
export CLIENTELE_TEST_POSTGRES CLIENTELE_TEST_POSTGRES_PORT
echo "CLIENTELE_TEST_POSTGRES=$CLIENTELE_TEST_POSTGRES" >&2

if [ $# -eq 0 ]; then
  echo "PostgreSQL is serving; Ctrl-C stops it and removes its folder." >&2
  # `sleep` in the background and `wait`: a signal interrupts `wait` at once, so the trap
  # runs without waiting for sleep to end; the trap then ends sleep too.
  sleep infinity &
  sleeper=$!
  trap 'kill "$sleeper" 2>/dev/null || true; pg_cleanup' EXIT
  wait "$sleeper" || true
  exit 0
fi

# The command's status becomes ours; `|| status=$?` keeps `set -e` from exiting first.
status=0
"$@" || status=$?
exit "$status"
