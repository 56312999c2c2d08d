#!/usr/bin/env bash
# Automatic certificates against pebble, the ACME test server (Debian's package `pebble`), all
# on loopback: clientele gets a certificate at start (TLS-ALPN-01 on its own HTTPS port), serves
# it, keeps it beside the database (0700 folder, 0600 files), reuses it after a restart, and
# renews one that is near its end without a restart being needed.
#
#   scripts/acme-test.sh target/debug/clientele
#
# Installs pebble if missing (as root). Exits non-zero on any failure.
set -euo pipefail
binary=$(realpath "${1:?usage: scripts/acme-test.sh BINARY}")

if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null \
  || ! command -v openssl >/dev/null || ! command -v curl >/dev/null \
  || ! /usr/bin/python3 -c "import cryptography" 2>/dev/null; then
  echo "== installing pebble, openssl, curl and python3-cryptography"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble openssl curl \
    python3-cryptography >/dev/null
fi

# shellcheck source=scripts/test-lib.sh
source "$(dirname "$0")/test-lib.sh"
domain=shop.test
https_port=$(free_port)
dns_port=$(free_port)
acme_port=$(free_port)
management_port=$(free_port)

# Pebble's own HTTPS certificate, from a CA made here: clientele trusts it with acme_ca_root.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=test-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
  -keyout "$work/pebble.key" -out "$work/pebble.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/san.ext"
openssl x509 -req -in "$work/pebble.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/san.ext" -out "$work/pebble.pem" 2>/dev/null

# Every name resolves to 127.0.0.1 through pebble's test DNS server; pebble validates on
# clientele's HTTPS port (tlsPort).
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns_port" \
  -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$(free_port)" \
  >"$work/dns.log" 2>&1 &
pids+=($!)
cat >"$work/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$acme_port",
  "managementListenAddress": "127.0.0.1:$management_port",
  "certificate": "$work/pebble.pem", "privateKey": "$work/pebble.key",
  "httpPort": 5002, "tlsPort": $https_port, "ocspResponderURL": "",
  "externalAccountBindingRequired": false}}
EOF
# No random nonce rejections or validation delays: the test is about clientele, not retries.
PEBBLE_WFE_NONCEREJECT=0 PEBBLE_VA_NOSLEEP=1 \
  pebble -config "$work/pebble.json" -dnsserver "127.0.0.1:$dns_port" >"$work/pebble.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -s --cacert "$work/ca.pem" "https://127.0.0.1:$acme_port/dir" >/dev/null && break
  sleep 0.1
done
curl -sf --cacert "$work/ca.pem" "https://127.0.0.1:$acme_port/dir" >/dev/null \
  || fail "pebble did not start"

mkdir -p "$work/shop/data"
cat >"$work/shop/Rocket.toml" <<EOF
[default]
database = "data/clientele.db"
seed_demo = true
port = $https_port
acme_domains = ["$domain"]
acme_email = "owner@shop.test"
acme_directory = "https://127.0.0.1:$acme_port/dir"
acme_ca_root = "$work/ca.pem"
EOF

start() {
  local log=$1
  (cd "$work/shop" && exec "$binary" serve >"$work/$log.log" 2>&1) &
  server=$!
  pids+=($server)
}
stop() {
  kill "$server"
  wait "$server" 2>/dev/null || true
}
wait_for_log() {
  local log=$1 text=$2
  for _ in $(seq 1 300); do
    grep -q "$text" "$work/$log.log" && return 0
    sleep 0.1
  done
  fail "no \"$text\" in $log.log"
}
# The certificate served now, and that it verifies against pebble's root for the domain.
served_serial() {
  echo | openssl s_client -connect "127.0.0.1:$https_port" -servername "$domain" 2>/dev/null \
    | openssl x509 -noout -serial
}
roots() {
  curl -sf --cacert "$work/ca.pem" "https://127.0.0.1:$management_port/roots/0" >"$work/root.pem"
  curl -sf --cacert "$work/ca.pem" "https://127.0.0.1:$management_port/intermediates/0" \
    >>"$work/root.pem" || true
}

echo "== a certificate is obtained at start"
start first
wait_for_log first "a new certificate is in use"
roots
# A server reached by a name other than localhost needs a key.
key=$(cd "$work/shop" && "$binary" keys create acme-test 2>/dev/null)
body=$(curl -sf --cacert "$work/root.pem" --resolve "$domain:$https_port:127.0.0.1" \
  -H "X-API-Key: $key" "https://$domain:$https_port/CUSTOMER/LIST/?id_client=1") \
  || fail "HTTPS request failed"
echo "$body" | grep -q '"clcleunik":1' || fail "unexpected answer: $body"
echo "served over HTTPS with pebble's certificate for $domain"
first_serial=$(served_serial)

echo "== kept beside the database, not readable by others"
folder="$work/shop/data/acme"
[ "$(stat -c %a "$folder")" = 700 ] || fail "$folder is $(stat -c %a "$folder"), not 700"
files=$(find "$folder" -type f)
[ -n "$files" ] || fail "nothing kept in $folder"
for file in $files; do
  [ "$(stat -c %a "$file")" = 600 ] || fail "$file is $(stat -c %a "$file"), not 600"
done
ls "$folder"/certificate-*.pem >/dev/null || fail "no certificate file in $folder"
ls "$folder"/account-*.pem >/dev/null || fail "no account file in $folder"
echo "folder 700, files 600: $(echo $files | wc -w) files"

echo "== reused after a restart, without a new order; files opened to others are closed again"
stop
orders_before=$(grep -c "Issued certificate serial" "$work/pebble.log" || true)
chmod 644 "$folder"/certificate-*.pem
chmod 755 "$folder"
start second
wait_for_log second "serving the certificate kept from before"
[ "$(stat -c %a "$folder")" = 700 ] || fail "$folder was not closed again"
for file in "$folder"/*; do
  [ "$(stat -c %a "$file")" = 600 ] || fail "$file was not closed again"
done
sleep 1
[ "$(served_serial)" = "$first_serial" ] || fail "a different certificate after the restart"
orders_after=$(grep -c "Issued certificate serial" "$work/pebble.log" || true)
[ "$orders_after" = "$orders_before" ] || fail "the restart ordered a new certificate"
grep -q "a new certificate is in use" "$work/second.log" && fail "the restart ordered anew"
echo "same certificate ($first_serial), no new order"

echo "== renewed before it expires"
# Replace the kept certificate with one that has a fifth of its life left (valid from nine
# days ago to two days from now): clientele serves it, then renews it at once.
stop
cert_file=$(ls "$folder"/certificate-*.pem)
/usr/bin/python3 - "$domain" "$cert_file" "$work/old.pem" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
domain, kept, cert_out = sys.argv[1:]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=9))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256()))
pem = cert.public_bytes(serialization.Encoding.PEM)
open(cert_out, "wb").write(pem)
open(kept, "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()) + pem)
PY
old_serial=$(openssl x509 -noout -serial -in "$work/old.pem")
# And a damaged account key: set aside, and a new account made for the renewal.
account_file=$(ls "$folder"/account-*.pem)
echo garbage >"$account_file"
start third
wait_for_log third "a new account"
wait_for_log third "a new certificate is in use"
ls "$folder"/account-*.damaged >/dev/null || fail "the damaged account key was not set aside"
sleep 0.5
renewed=$(served_serial)
[ "$renewed" != "$old_serial" ] || fail "still serving the old certificate"
curl -sf --cacert "$work/root.pem" --resolve "$domain:$https_port:127.0.0.1" \
  "https://$domain:$https_port/health" >/dev/null || fail "the renewed certificate does not verify"
[ "$(stat -c %a "$cert_file")" = 600 ] || fail "the renewed file is not 600"
echo "renewed: $old_serial -> $renewed, without a restart"
stop
echo "ACME with pebble: all checks passed"
