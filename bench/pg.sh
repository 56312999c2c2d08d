#!/usr/bin/env bash
# A PostgreSQL-backed clientele node against a SQLite-backed one, on the same data, in one run:
# one customer by id (memo on: target 0.8x SQLite), by id uncached, updates, logins, and the
# failover time of scripts/pg-cluster-demo.sh; and the PostgreSQL node against nginx serving
# the same bytes (issue 18: by id at 64 conn and the 304 at 16, each at least 1.0x nginx).
#   bench/pg.sh                                  # 10,000 customers (about 3 minutes after the build)
#   bench/pg.sh --customers 10000 1000000        # both sizes, one after the other
#   bench/pg.sh --duration 15 --keep             # longer wrk runs; keep the raw results and logs
# PostgreSQL comes from Debian's packages (installed if missing) through
# scripts/pg-test-server.sh, on 127.0.0.1, with fsync ON (PG_FSYNC=on; that script defaults
# to off, which would flatter the write figures), removed at exit. Installs wrk, curl and nginx
# if missing. Exits non-zero when a target is missed. Results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A million customers take a few GB between the CSV, the SQLite file and PostgreSQL's files
# (bench/pg.py refuses below 10 GiB free).
df -h "$PWD" "${TMPDIR:-/tmp}" >&2
export PATH="$PATH:/usr/sbin"
export PG_FSYNC=on
exec scripts/pg-test-server.sh python3 bench/pg.py "$@"
