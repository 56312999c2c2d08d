#!/usr/bin/env bash
# The mirror's cost: first sync, unchanged second sync (target under 3 s at 10,000 customers,
# no password hashed), and a sync after 10 passwords changed.
#   bench/sync.sh [--customers N]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
exec python3 bench/sync.py "$@"
