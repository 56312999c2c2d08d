# shellcheck shell=bash
# PostgreSQL from Debian's packages on loopback, for tests and for the failover demo.
#
# Source it from a bash script that runs with `set -euo pipefail`:
#
#   . "$(dirname "$0")/pg-lib.sh"
#   pg_install
#   pg_workdir                        # sets PG_WORKDIR (a fresh mktemp -d), removed by pg_cleanup
#   trap pg_cleanup EXIT              # or pg_trap_cleanup, which also turns INT/TERM/HUP into exit
#   port=$(pg_free_port 55432)
#   pg_start_primary "$PG_WORKDIR/primary" "$port"
#   export DATABASE_URL=$(pg_url "$port")
#
# Every node lives in one folder DIR: DIR/data (the cluster), DIR/run (its Unix socket),
# DIR/postgres.log (its log) and DIR/port. PostgreSQL refuses to run as root, so when the
# caller is root the servers run as PG_RUN_USER (default: `postgres`, which Debian's package
# creates; else a system user `clientele-pg` made on first use). A caller that is not root
# runs them as itself.
#
# Who may connect:
#   - over TCP, on 127.0.0.1 only, with a password (scram-sha-256): the role `clientele`
#     (password `clientele-pw`, may create databases, owns the database `clientele`), the
#     superuser `postgres` (password `postgres-pw`) and the replication role `replicator`;
#   - over the node's Unix socket, without a password (trust): the socket sits in DIR/run,
#     inside a 0700 folder of the server's user, so only that user and root reach it. The
#     functions below use it for administration, as the superuser.
#
# Functions that register a node or a folder for cleanup (pg_workdir, pg_start_primary,
# pg_start_standby) must run in the calling shell, never inside $(...): a subshell's
# registration is lost, and pg_cleanup would then leave a server running.
#
# Settings (environment, read when a function runs):
#   PG_RUN_USER          OS user that runs the servers when the caller is root
#   PG_WAIT_SECS         how long to wait for a start, a promotion, a sync standby (60)
#   PG_FSYNC             `on` (default) or `off`: off is faster and fine for throwaway test
#                        servers (nothing survives them anyway); the failover demo keeps it on
#   PG_MAX_CONNECTIONS   max_connections of a new primary (200: a test suite opens a pool per test)

# The accounts every cluster made here has; pg_url and pg_createdb use them.
PG_APP_USER=clientele
PG_APP_PASSWORD=clientele-pw
PG_APP_DB=clientele
PG_SUPERUSER=postgres
PG_SUPERUSER_PASSWORD=postgres-pw
PG_REPL_USER=replicator
PG_REPL_PASSWORD=replicator-pw

# What pg_cleanup undoes: node folders started here, and folders to remove.
_PG_NODES=()
_PG_WORKDIRS=()

_pg_log() { printf 'pg: %s\n' "$*" >&2; }
_pg_die() {
  printf 'pg: error: %s\n' "$*" >&2
  return 1
}

# Prints the bin folder of the newest PostgreSQL installed from Debian's packages
# (/usr/lib/postgresql/<version>/bin), or fails when there is none.
pg_bindir() {
  local initdb
  initdb=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
    sort -V | tail -n 1)
  [ -n "$initdb" ] || { _pg_die "no initdb under /usr/lib/postgresql/*/bin (run pg_install)"; return 1; }
  dirname "$initdb"
}

# Installs Debian's postgresql and postgresql-client when no server binaries are there yet.
# Quiet and idempotent: a second call does nothing. Runs `apt-get update` only if the first
# install attempt fails (a machine whose package lists are missing or stale).
pg_install() {
  if pg_bindir >/dev/null 2>&1; then return 0; fi
  [ "$(id -u)" -eq 0 ] || { _pg_die "PostgreSQL is not installed and installing it needs root"; return 1; }
  _pg_log "installing postgresql and postgresql-client from Debian's packages"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client)
  if ! "${apt[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    "${apt[@]}" >/dev/null
  fi
  pg_bindir >/dev/null
}

# Prints the OS user that runs the servers, creating `clientele-pg` if no user fits.
_pg_run_user() {
  if [ "$(id -u)" -ne 0 ]; then id -un; return 0; fi
  if [ -n "${PG_RUN_USER:-}" ]; then
    id -u "$PG_RUN_USER" >/dev/null 2>&1 || { _pg_die "PG_RUN_USER=$PG_RUN_USER does not exist"; return 1; }
    printf '%s\n' "$PG_RUN_USER"
  elif id -u postgres >/dev/null 2>&1; then
    echo postgres
  else
    id -u clientele-pg >/dev/null 2>&1 ||
      useradd --system --no-create-home --shell /usr/sbin/nologin clientele-pg
    echo clientele-pg
  fi
}

# Runs a command as the servers' user, from / (so that a server or initdb started from a
# folder that user cannot read, such as /root, does not warn about it). Environment for the
# command goes through `env NAME=VALUE` at its front: runuser does not pass everything on.
_pg_as() {
  local user
  user=$(_pg_run_user) || return 1
  if [ "$(id -u)" -eq 0 ] && [ "$user" != root ]; then
    (cd / && runuser -u "$user" -- "$@")
  else
    (cd / && "$@")
  fi
}

# Node folders become parts of file paths inside postgresql.conf (between single quotes)
# and of a Unix socket path (at most 107 bytes): keep them plain.
_pg_check_dir() {
  case $1 in
    /*) ;;
    *) _pg_die "node folder must be an absolute path: $1"; return 1 ;;
  esac
  case $1 in
    *[!A-Za-z0-9._/-]*) _pg_die "node folder may hold only letters, digits and ._-/: $1"; return 1 ;;
  esac
  [ "${#1}" -le 80 ] || { _pg_die "node folder path too long for a Unix socket: $1"; return 1; }
}

_pg_check_port() {
  case $1 in
    '' | *[!0-9]*) _pg_die "not a port number: $1"; return 1 ;;
  esac
  if [ "$1" -lt 1024 ] || [ "$1" -gt 65535 ]; then
    _pg_die "port out of range: $1"
    return 1
  fi
}

# Names that end up inside SQL and configuration strings: letters, digits, _ and - only.
_pg_check_name() {
  case $1 in
    '' | *[!A-Za-z0-9_-]*) _pg_die "name may hold only letters, digits, _ and -: '$1'"; return 1 ;;
  esac
}

# pg_workdir: makes a fresh temporary folder (mktemp -d), owned by the servers' user and
# mode 0700, sets PG_WORKDIR to it and registers it for removal by pg_cleanup. Call it in
# the current shell (not in $(...)).
pg_workdir() {
  local user
  user=$(_pg_run_user) || return 1
  PG_WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/clientele-pg.XXXXXX")
  _PG_WORKDIRS+=("$PG_WORKDIR")
  chown "$user:" "$PG_WORKDIR"
  chmod 0700 "$PG_WORKDIR"
}

# pg_free_port [FROM]: prints the first port from FROM (default 55432) on which nothing
# listens on 127.0.0.1. Ports are not reserved: to get two, start the second search after
# the first port (P2=$(pg_free_port $((P1 + 1)))).
pg_free_port() {
  local port=${1:-55432} last
  last=$((port + 500))
  while [ "$port" -le "$last" ] && [ "$port" -le 65535 ]; do
    # A connection that fails means no listener (refused at once on loopback).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
    port=$((port + 1))
  done
  _pg_die "no free port from ${1:-55432} to $last"
}

# _pg_psql DIR ARGS...: psql as the superuser over DIR's Unix socket, unaligned, tuples
# only, stopping at the first error.
_pg_psql() {
  local dir=$1 bin
  shift
  bin=$(pg_bindir) || return 1
  "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir/run" -p "$(cat "$dir/port")" \
    -U "$PG_SUPERUSER" -d postgres "$@"
}

# _pg_ctl_start DIR: starts the node in DIR and waits until it accepts connections; on
# failure shows the end of its log.
_pg_ctl_start() {
  local dir=$1 bin
  bin=$(pg_bindir) || return 1
  if ! _pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "${PG_WAIT_SECS:-60}" \
    start >/dev/null; then
    _pg_log "PostgreSQL in $dir did not start; the end of $dir/postgres.log:"
    tail -n 20 "$dir/postgres.log" >&2 || true
    return 1
  fi
}

# Makes the node folder DIR (and its socket folder) for the servers' user, mode 0700.
_pg_node_dir() {
  local dir=$1 user
  user=$(_pg_run_user) || return 1
  [ ! -e "$dir/data" ] || { _pg_die "$dir/data already exists"; return 1; }
  mkdir -p "$dir/run"
  chown "$user:" "$dir" "$dir/run"
  chmod 0700 "$dir" "$dir/run"
  # The servers' user must be able to reach DIR through its parents.
  _pg_as test -x "$dir" || { _pg_die "$(_pg_run_user) cannot reach $dir (a parent folder is private?)"; return 1; }
}

# pg_start_primary DIR PORT: a new cluster in DIR listening on 127.0.0.1:PORT, ready to
# stream to standbys (wal_level=replica, max_wal_senders, hot_standby), with the roles
# `clientele` (CREATEDB, owner of the database `clientele`), `replicator` (REPLICATION) and
# the superuser `postgres`, all with passwords, scram-sha-256 on 127.0.0.1.
pg_start_primary() {
  local dir=$1 port=$2 bin pwfile
  _pg_check_dir "$dir" && _pg_check_port "$port" || return 1
  bin=$(pg_bindir) || return 1
  _pg_node_dir "$dir" || return 1
  echo "$port" >"$dir/port"

  # The superuser's password goes to initdb through a file, never on a command line.
  pwfile=$dir/superuser.pw
  printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pwfile"
  chown "$(_pg_run_user):" "$pwfile"
  chmod 0600 "$pwfile"
  # C.UTF-8 ships with Debian's libc: UTF-8 text, byte-order sorting, same on every machine.
  if ! _pg_as "$bin/initdb" -D "$dir/data" -U "$PG_SUPERUSER" --pwfile="$pwfile" \
    -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
    >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    return 1
  fi
  rm -f "$pwfile"

  # Who may connect: the socket (private folder) without password; TCP on 127.0.0.1 only,
  # with a scram-sha-256 password; replication connections for `replicator` only.
  cat >"$dir/data/pg_hba.conf" <<EOF
# TYPE  DATABASE     USER           ADDRESS         METHOD
local   all          all                            trust
local   replication  all                            trust
host    all          all            127.0.0.1/32    scram-sha-256
host    replication  $PG_REPL_USER  127.0.0.1/32    scram-sha-256
EOF
  # Later lines win over initdb's defaults above them. A standby copies this file with the
  # base backup and appends its own port and socket folder (pg_start_standby).
  cat >>"$dir/data/postgresql.conf" <<EOF

# --- scripts/pg-lib.sh ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
password_encryption = 'scram-sha-256'
max_connections = ${PG_MAX_CONNECTIONS:-200}
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '256MB'
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
fsync = ${PG_FSYNC:-on}
EOF

  # Registered before it starts, so that a start that fails half-way is still stopped.
  _PG_NODES+=("$dir")
  _pg_ctl_start "$dir" || return 1

  _pg_psql "$dir" >/dev/null <<EOF || { _pg_die "could not create the roles in $dir"; return 1; }
CREATE ROLE "$PG_APP_USER" LOGIN CREATEDB PASSWORD '$PG_APP_PASSWORD';
CREATE DATABASE "$PG_APP_DB" OWNER "$PG_APP_USER";
CREATE ROLE "$PG_REPL_USER" LOGIN REPLICATION PASSWORD '$PG_REPL_PASSWORD';
EOF
  _pg_log "primary up: $dir, 127.0.0.1:$port ($("$bin/postgres" --version))"
}

# pg_start_standby DIR PORT PRIMARY_PORT NAME: a hot standby in DIR on 127.0.0.1:PORT,
# made by pg_basebackup -R from the primary on PRIMARY_PORT and streaming from it as
# application_name NAME. Returns once the standby accepts read-only connections and its
# WAL receiver is streaming.
pg_start_standby() {
  local dir=$1 port=$2 primary_port=$3 name=$4 bin state='' i
  _pg_check_dir "$dir" && _pg_check_port "$port" && _pg_check_port "$primary_port" &&
    _pg_check_name "$name" || return 1
  bin=$(pg_bindir) || return 1
  _pg_node_dir "$dir" || return 1
  echo "$port" >"$dir/port"

  # A fast checkpoint on the primary, the WAL streamed alongside the copy, and -R writes
  # standby.signal plus a primary_conninfo (replaced below to add application_name).
  if ! _pg_as env PGPASSWORD="$PG_REPL_PASSWORD" "$bin/pg_basebackup" -h 127.0.0.1 \
    -p "$primary_port" -U "$PG_REPL_USER" -D "$dir/data" -R -X stream -c fast --no-password \
    >"$dir/basebackup.log" 2>&1; then
    cat "$dir/basebackup.log" >&2
    return 1
  fi

  # Its own port and socket folder (the copied postgresql.conf names the primary's).
  cat >>"$dir/data/postgresql.conf" <<EOF

# --- scripts/pg-lib.sh: standby ---
port = $port
unix_socket_directories = '$dir/run'
hot_standby = on
EOF
  # postgresql.auto.conf wins over postgresql.conf, and its last line for a setting wins.
  # synchronous_standby_names is cleared in case the primary had set one before the base
  # backup: after a promotion this node has no standby, and a sync setting would make every
  # commit wait forever.
  cat >>"$dir/data/postgresql.auto.conf" <<EOF
primary_conninfo = 'host=127.0.0.1 port=$primary_port user=$PG_REPL_USER password=$PG_REPL_PASSWORD application_name=$name'
synchronous_standby_names = ''
EOF

  _PG_NODES+=("$dir")
  _pg_ctl_start "$dir" || return 1

  for ((i = 0; i < ${PG_WAIT_SECS:-60} * 10; i++)); do
    state=$(_pg_psql "$dir" -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || true)
    [ "$state" = streaming ] && break
    sleep 0.1
  done
  [ "$state" = streaming ] || { _pg_die "standby $name in $dir is not streaming (status: '$state')"; return 1; }
  _pg_log "standby $name up: $dir, 127.0.0.1:$port, streaming from 127.0.0.1:$primary_port"
}

# pg_make_synchronous PRIMARY_DIR NAME: the primary in PRIMARY_DIR waits for the standby
# NAME to confirm each commit (synchronous_standby_names = 'NAME', synchronous_commit = on),
# from when this returns: it reloads the configuration and waits until pg_stat_replication
# shows NAME with sync_state 'sync'.
pg_make_synchronous() {
  local dir=$1 name=$2 state='' i
  _pg_check_name "$name" || return 1
  # Double quotes keep the name exactly as written (standby names are case-insensitive
  # identifiers otherwise).
  _pg_psql "$dir" >/dev/null <<EOF || return 1
ALTER SYSTEM SET synchronous_standby_names = '"$name"';
ALTER SYSTEM SET synchronous_commit = 'on';
SELECT pg_reload_conf();
EOF
  for ((i = 0; i < ${PG_WAIT_SECS:-60} * 10; i++)); do
    state=$(_pg_psql "$dir" -c \
      "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$name'" || true)
    [ "$state" = sync ] && break
    sleep 0.1
  done
  [ "$state" = sync ] || { _pg_die "standby $name did not become synchronous (sync_state: '$state')"; return 1; }
  _pg_log "standby $name is synchronous: every commit on $dir now waits for it"
}

# pg_kill DIR: stops the node in DIR at once, as a crash would (pg_ctl stop -m immediate:
# no checkpoint, clients cut off). Its folder stays, for pg_cleanup.
pg_kill() {
  local dir=$1 bin
  bin=$(pg_bindir) || return 1
  _pg_as "$bin/pg_ctl" -D "$dir/data" stop -m immediate -w -t "${PG_WAIT_SECS:-60}" >/dev/null
}

# pg_stop DIR: a clean stop (pg_ctl stop -m fast: clients disconnected, then a checkpoint).
pg_stop() {
  local dir=$1 bin
  bin=$(pg_bindir) || return 1
  _pg_as "$bin/pg_ctl" -D "$dir/data" stop -m fast -w -t "${PG_WAIT_SECS:-60}" >/dev/null
}

# pg_promote DIR: promotes the standby in DIR to a primary (pg_ctl promote) and returns once
# pg_is_in_recovery() is false there, i.e. it accepts writes.
pg_promote() {
  local dir=$1 bin recovering='' i
  bin=$(pg_bindir) || return 1
  _pg_as "$bin/pg_ctl" -D "$dir/data" promote -w -t "${PG_WAIT_SECS:-60}" >/dev/null || return 1
  for ((i = 0; i < ${PG_WAIT_SECS:-60} * 20; i++)); do
    recovering=$(_pg_psql "$dir" -c "SELECT pg_is_in_recovery()" 2>/dev/null || true)
    [ "$recovering" = f ] && return 0
    sleep 0.05
  done
  _pg_die "$dir is still in recovery after promotion"
}

# pg_url PORT [PORT2]: prints the URL of the database `clientele` as the role `clientele`.
# With two ports it lists both hosts; target_session_attrs=read-write makes the client
# (libpq, tokio-postgres) try them in order and keep the first that accepts writes, i.e.
# whichever is the primary. Multi-host syntax: postgres://user:pw@h1:p1,h2:p2/db?...
pg_url() {
  pg_url_db "$PG_APP_DB" "$@"
}

# pg_url_db DB PORT [PORT2]: the same URL for another database (e.g. one made by pg_createdb).
pg_url_db() {
  local db=$1 hosts=127.0.0.1:$2
  if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    _pg_die "usage: pg_url_db DB PORT [PORT2]"
    return 1
  fi
  [ $# -lt 3 ] || hosts+=,127.0.0.1:$3
  printf 'postgres://%s:%s@%s/%s?target_session_attrs=read-write\n' \
    "$PG_APP_USER" "$PG_APP_PASSWORD" "$hosts" "$db"
}

# _pg_app_psql PORT ARGS...: psql over TCP as `clientele`, with its password.
_pg_app_psql() {
  local port=$1 bin
  shift
  bin=$(pg_bindir) || return 1
  PGPASSWORD=$PG_APP_PASSWORD "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 \
    -p "$port" -U "$PG_APP_USER" -d "$PG_APP_DB" --no-password "$@"
}

# pg_createdb PORT NAME: creates the database NAME, owned by `clientele`, on the server at
# 127.0.0.1:PORT (as `clientele` itself, which has CREATEDB: what a test suite does too).
pg_createdb() {
  local port=$1 name=$2
  _pg_check_name "$name" || return 1
  _pg_app_psql "$port" -c "CREATE DATABASE \"$name\" OWNER \"$PG_APP_USER\""
}

# pg_dropdb PORT NAME: drops the database NAME, closing its connections first.
pg_dropdb() {
  local port=$1 name=$2
  _pg_check_name "$name" || return 1
  _pg_app_psql "$port" -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)"
}

# pg_cleanup: stops every node started here (immediately: their data is thrown away) and
# removes every folder from pg_workdir. Safe to call twice and under `set -e`; meant for
# `trap pg_cleanup EXIT`, or to be called from the caller's own exit trap.
pg_cleanup() {
  local dir bin
  bin=$(pg_bindir 2>/dev/null) || bin=
  for dir in "${_PG_NODES[@]}"; do
    if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
      _pg_as "$bin/pg_ctl" -D "$dir/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
  done
  _PG_NODES=()
  for dir in "${_PG_WORKDIRS[@]}"; do
    [ -n "$dir" ] && rm -rf -- "$dir"
  done
  _PG_WORKDIRS=()
}

# pg_trap_cleanup: runs pg_cleanup on exit, and makes Ctrl-C, SIGTERM and SIGHUP exit (so
# that the exit trap runs) with the shell's usual status for them.
pg_trap_cleanup() {
  trap pg_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}
