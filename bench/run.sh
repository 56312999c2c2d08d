#!/usr/bin/env bash
# The speed benchmark: clientele against nginx serving the same bytes, on this machine.
#   bench/run.sh                         # 10,000 customers (about 5 minutes after the build)
#   bench/run.sh --customers 1000000     # a million (about 8 minutes after the build)
# Installs wrk and nginx from Debian's packages if they are missing. Exits non-zero when a
# target is missed. Results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
exec python3 bench/run.py "$@"
