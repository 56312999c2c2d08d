#!/usr/bin/env bash
# Proves docs/litestream.yml works: runs clientele, replicates its database with Litestream to
# a local folder while customers are imported, restores the replica into a new file, and
# checks that the restored database serves the same customers. Needs npm (Litestream's Linux
# binary ships in the npm package @flydotio/litestream-linux-x64) and python3.
#   scripts/litestream-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

npm install --silent --no-save --prefix "$work/npm" @flydotio/litestream-linux-x64 >/dev/null
litestream=$(find "$work/npm/node_modules/@flydotio" -name litestream -type f | head -1)
echo "litestream $("$litestream" version)"
cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/clientele

export CLIENTELE_DB="$work/clientele.db" CLIENTELE_REPLICA="$work/replica"
export ROCKET_DATABASE="$CLIENTELE_DB" ROCKET_PORT=0 ROCKET_LOG_LEVEL=critical

"$bin" serve >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$CLIENTELE_DB" ] && break; sleep 0.1; done
"$litestream" replicate -config docs/litestream.yml >"$work/litestream.log" 2>&1 &
pids+=($!)
sleep 2

python3 bench/gen_customers.py 500 --passwords > "$work/customers.json"
ROCKET_ARGON2_MEMORY_KIB=64 ROCKET_ARGON2_ITERATIONS=1 "$bin" import "$work/customers.json"
sleep 3
kill -TERM "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true

"$litestream" restore -config docs/litestream.yml -o "$work/restored.db" "$CLIENTELE_DB"
live=$("$bin" export)
restored=$(ROCKET_DATABASE="$work/restored.db" "$bin" export)
count=$(printf '%s' "$restored" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["result"]["customer"]))')
if [ "$live" = "$restored" ]; then
  echo "OK: the restored replica serves the same $count customers as the live database"
else
  echo "FAILED: the restored replica differs from the live database" >&2
  exit 1
fi
