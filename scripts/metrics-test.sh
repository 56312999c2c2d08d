#!/usr/bin/env bash
# /metrics as Prometheus reads it: `promtool check metrics` on the text (with every kind of
# series present: requests, logins, writes, backups), then a real Prometheus scraping one
# server both ways the README shows (the keyless loopback listener, and the main port with a
# read key in credentials_file), until both targets are up and the customers gauge is read.
#
#   scripts/metrics-test.sh target/debug/clientele
#
# Installs Debian's prometheus (promtool comes with it) and curl if missing, as root.
set -euo pipefail
binary=$(realpath "${1:?usage: scripts/metrics-test.sh BINARY}")
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
  || ! command -v curl >/dev/null || ! command -v jq >/dev/null; then
  echo "== installing prometheus, curl and jq"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus curl jq >/dev/null
fi

# shellcheck source=scripts/test-lib.sh
source "$root/scripts/test-lib.sh"

port=$(free_port)
metrics_port=$(free_port)
prometheus_port=$(free_port)
mkdir -p "$work/shop"
cd "$work/shop"
ROCKET_DATABASE="$work/shop/c.db" ROCKET_PORT=$port ROCKET_SEED_DEMO=true \
  ROCKET_METRICS_ADDRESS="127.0.0.1:$metrics_port" ROCKET_BACKUP_DIR="$work/shop/backups" \
  ROCKET_ARGON2_MEMORY_KIB=64 ROCKET_ARGON2_ITERATIONS=1 "$binary" serve >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q "launched from" "$work/server.log" && break
  sleep 0.1
done
grep -q "launched from" "$work/server.log" || fail "the server did not start"
key=$(ROCKET_DATABASE="$work/shop/c.db" "$binary" keys create prometheus --write 2>/dev/null)
base="http://127.0.0.1:$port"

# Something in every family: lists (memo, lane, app), an unknown path, logins of every
# outcome, a write.
for id in 1 1 1 2 3; do
  curl -sf -o /dev/null -H "X-API-Key: $key" "$base/CUSTOMER/LIST/?id_client=$id"
done
curl -s -o /dev/null -H "X-API-Key: $key" "$base/nowhere"
login() {
  curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" -H 'Content-Type: application/json' \
    -d "{\"email\":\"jdoe@example.com\",\"password\":\"$1\"}" "$base/CUSTOMER/LOGIN/"
}
[ "$(login password123)" = 200 ] || fail "the demo login failed"
for _ in $(seq 1 12); do login wrong >/dev/null; done
[ "$(login wrong)" = 429 ] || fail "the login limit did not answer 429"
curl -sf -o /dev/null -H "X-API-Key: $key" -H 'Content-Type: application/json' \
  -d '{"id_client": 2, "city": "Namur"}' "$base/CUSTOMER/UPDATE/" || fail "the update failed"
for _ in $(seq 1 50); do
  ls "$work/shop/backups"/clientele-*Z.db >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== promtool check metrics"
curl -sf -H "X-API-Key: $key" "$base/metrics" >"$work/metrics.txt" || fail "/metrics with a key"
for family in clientele_http_requests_total clientele_http_request_duration_seconds_bucket \
  clientele_list_answers_total 'clientele_logins_total{outcome="limited"}' \
  'clientele_writes_total{action="update"} 1' clientele_customers clientele_database_bytes \
  'clientele_backups_total{result="ok"} 1' clientele_connections_open; do
  grep -qF "$family" "$work/metrics.txt" || fail "no $family in /metrics"
done
# promtool prints lint problems and exits non-zero on them.
promtool check metrics <"$work/metrics.txt"
echo "promtool: $(wc -l <"$work/metrics.txt") lines, no problems"
curl -sf "http://127.0.0.1:$metrics_port/metrics" | promtool check metrics
echo "promtool: the keyless listener's text too"

echo "== the README's step 7: its job appended to Debian's prometheus.yml passes promtool"
readme=$root/README.md
sed -n "/^cat >>\/etc\/prometheus\/prometheus.yml <<'YAML'$/,/^YAML$/p" "$readme" \
  | sed '1d;$d' >"$work/readme-job.yml"
grep -q "job_name: clientele" "$work/readme-job.yml" || fail "no Prometheus job found in the README"
cat /etc/prometheus/prometheus.yml "$work/readme-job.yml" >"$work/debian-prometheus.yml"
promtool check config "$work/debian-prometheus.yml" >/dev/null \
  || fail "Debian's prometheus.yml with the README's job does not pass promtool"
grep -A3 "job_name: clientele" "$work/debian-prometheus.yml" | grep -q "127.0.0.1:9464" \
  || fail "the README's job does not scrape the README's metrics_address"
echo "Debian's prometheus.yml with the README's job: valid"

echo "== a real Prometheus scrapes both ways"
read_key=$(ROCKET_DATABASE="$work/shop/c.db" "$binary" keys create scraper 2>/dev/null)
printf '%s' "$read_key" >"$work/clientele.key"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: clientele
    static_configs:
      - targets: ['127.0.0.1:$metrics_port']
  - job_name: clientele-with-key
    authorization:
      credentials_file: $work/clientele.key
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prometheus_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
query() {
  curl -sf "http://127.0.0.1:$prometheus_port/api/v1/query" --data-urlencode "query=$1" || true
}
for _ in $(seq 1 150); do
  up=$(query 'sum(up{job=~"clientele.*"})' | jq -r '.data.result[0].value[1] // "0"' 2>/dev/null)
  [ "$up" = 2 ] && break
  sleep 0.2
done
[ "$up" = 2 ] || fail "both targets are not up: $(query 'up' | jq -c .data.result)"
customers=$(query 'clientele_customers{job="clientele-with-key"}' | jq -r '.data.result[0].value[1]')
[ "$customers" = 25 ] || fail "Prometheus read clientele_customers = $customers, not 25"
if grep -qF "$read_key" "$work/server.log"; then fail "the scraper's key is in the log"; fi
echo "Prometheus scraped both targets: up = 2, clientele_customers = $customers"
echo "metrics: all checks passed"
