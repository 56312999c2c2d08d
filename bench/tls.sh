#!/usr/bin/env bash
# The cost of HTTPS (clientele and nginx, each over HTTP and HTTPS, same run) and of the
# metrics (this build against a baseline build without them):
#   bench/tls.sh --baseline /path/to/clientele-without-metrics
# Installs wrk, nginx and openssl from Debian's packages if they are missing. Exits non-zero
# when a target is missed. Results: docs/benchmarks.md ("HTTPS and metrics").
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
exec python3 bench/tls.py "$@"
