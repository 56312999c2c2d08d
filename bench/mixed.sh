#!/usr/bin/env bash
# A mixed day (issue 18): reads at random ids on 128 connections, alone and then beside 8
# whole-list downloads with gzip, 2 login loops and one account update every 10 ms.
#   bench/mixed.sh                         # 10,000 customers (about 1 minute after the build)
#   bench/mixed.sh --customers 1000000     # a million
#   bench/mixed.sh --duration 30 --keep    # longer runs; keep raw wrk output and logs
# Installs wrk from Debian's packages if it is missing. Exits non-zero when a target is
# missed. Results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec python3 bench/mixed.py "$@"
