#!/usr/bin/env bash
# Cost at scale (a million customers by default): imports, start-up, idle memory, the whole
# list streamed, paging, lookups. Each figure with its target; non-zero exit on a miss.
#   bench/scale.sh [--customers N]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
exec python3 bench/scale.py "$@"
