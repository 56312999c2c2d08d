# Shared by the scripts that start servers for one test (acme-test.sh, metrics-test.sh):
# source it after `set -euo pipefail`. It makes $work (removed at exit), stops every process
# whose pid is added to `pids` at exit, and defines fail() and free_port().
# shellcheck shell=bash

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Says what failed, shows the end of every log in $work, and exits 1.
fail() {
  echo "FAIL: $*" >&2
  for log in "$work"/*.log; do echo "--- $log" >&2; tail -30 "$log" >&2; done
  exit 1
}

# A loopback port nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
