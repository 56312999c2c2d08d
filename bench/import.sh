#!/usr/bin/env bash
# Import benchmark: times `clientele import` of N customers (10,000 by default) into a fresh
# database, without passwords (rows/s: parsing, checking, writing) and with plain-text
# passwords (Argon2id with the shipped parameters: hashes/s, per core).
#   bench/import.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/clientele
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cores=$(nproc)

python3 bench/gen_customers.py "$n" > "$work/plain.json"
python3 bench/gen_customers.py "$n" --passwords > "$work/passwords.json"

# Seconds (as a decimal) that one import takes, from a fresh database each time.
time_import() {
  rm -f "$work/bench.db"*
  local start end
  start=$(date +%s.%N)
  ROCKET_DATABASE="$work/bench.db" ROCKET_LOG_LEVEL=critical "$bin" import "$1" >/dev/null 2>"$work/import.log" \
    || { cat "$work/import.log"; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l 2>/dev/null || python3 -c "print($end - $start)"
}

t_plain=$(time_import "$work/plain.json")
t_pw=$(time_import "$work/passwords.json")
python3 - "$n" "$cores" "$t_plain" "$t_pw" <<'PY'
import sys
n, cores, t_plain, t_pw = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
hash_time = max(t_pw - t_plain, 1e-9)
print(f"customers:                      {n}")
print(f"cores:                          {cores}")
print(f"import without passwords:       {t_plain:8.2f} s   {n / t_plain:10.0f} rows/s")
print(f"import with plain passwords:    {t_pw:8.2f} s")
print(f"  of which hashing (Argon2id m=19456 KiB, t=2, p=1):")
print(f"                                {hash_time:8.2f} s   {n / hash_time:10.1f} hashes/s"
      f"   {n / hash_time / cores:8.1f} hashes/s per core")
PY
