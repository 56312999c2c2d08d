#!/usr/bin/env bash
# The connection and memory bounds: RSS under 256 connections; 1,100 stalled request heads
# (under a hard open-files limit of 1,024) and 2,000 stalled request bodies, each while a
# normal client is served; then (bench/lockout.py) a storm of wrong passwords through a
# shop's key while another customer logs in, and mirror-mode writes stuck on a slow master
# while reads, /health and logins answer.
#   bench/limits.sh [--customers N] [--duration S]
# Installs wrk from Debian's packages if it is missing. Exits non-zero when a bound is missed.
# Results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# This script opens more than 1,100 sockets itself.
ulimit -Sn "$(ulimit -Hn)"
python3 bench/limits.py "$@"
exec python3 bench/lockout.py
