#!/usr/bin/env bash
# Puts a real nginx, then a real Caddy, in front of clientele, each running the example in
# contrib/ (contrib/nginx/clientele.conf, contrib/Caddyfile), and checks that the login limits
# see each end user's address through them:
#
#   scripts/proxy-test.sh target/release/clientele       (run by .ci/run, as root)
#
# clientele runs as the examples say (ip_header = "X-Real-IP", on 127.0.0.1) with a fresh
# database, the demo customers and login_max_failures = 3; a --public key (browser code,
# whose logins count per visitor address). End users are told apart the honest way: curl
# connects to the proxy from different loopback addresses (--interface 127.0.0.N), so the
# proxy's own idea of the client ($remote_addr, {remote_host}) differs. For each proxy:
#   - end user A fails 3 logins on 3 different accounts, then is refused (429, Retry-After)
#     on a 4th account: A's address is what got counted;
#   - end user B, at the same time, is not refused (401 for a wrong password, 200 for a right
#     one): the limit did not fall on the proxy's address, shared by everyone;
#   - end user C sends its own X-Real-IP and X-Forwarded-For, a new address each time: still
#     refused after 3 failures (the proxy overwrote what C sent);
#   - end user D sends A's address in those headers: not refused (nobody can borrow another's
#     address to lock them out);
#   - (nginx) a shop back end with a --forwards-client-address key names its visitors in
#     X-Forwarded-For: the example passes it through, so visitors are counted apart.
#
# What is changed in the examples, and only that (each replacement must match exactly, or
# the test stops): clientele's port (8000 in the examples) for the test's free port, and
#   nginx: the listen ports (80, 443) for free ports on 127.0.0.1 (the [::] lines dropped:
#          CI may have no IPv6), and the certificate paths for a throwaway CA's certificate
#          for api.shop.example made here with openssl: the test speaks HTTPS to nginx and
#          checks the certificate;
#   Caddy: the site address api.shop.example becomes http://api.shop.example:PORT, and a
#          global options block is put before it (no admin endpoint, no automatic HTTPS, bind
#          to 127.0.0.1): automatic certificates need a public name. The reverse_proxy block
#          runs as written.
# nginx and Caddy run from a temporary folder with their own configuration, logs and pid
# file: a system nginx or Caddy is never touched. Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "proxy-test: FAILED: $*" >&2; exit 1; }
step() { echo "== proxy-test: $*"; }

[ $# -eq 1 ] || { echo "usage: $0 PATH/TO/clientele" >&2; exit 2; }
binary=$(realpath "$1")
[ -x "$binary" ] || fail "$1 is not an executable"
[ "$(id -u)" -eq 0 ] || fail "run as root (it installs nginx and Caddy if missing)"

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v caddy >/dev/null || missing+=(caddy)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  # Debian's nginx and caddy packages start their system service when installed, where an
  # init system runs: a policy-rc.d that says no keeps them stopped (if none is there yet).
  made_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=true
  fi
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
  if $made_policy; then rm -f /usr/sbin/policy-rc.d; fi
fi

work=$(mktemp -d)
# nginx's workers run as nobody: they must reach their temporary folders inside.
chmod 711 "$work"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ $status -ne 0 ]; then
    for log in "$work"/clientele.log "$work"/nginx/error.log "$work"/caddy/caddy.log; do
      [ -s "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }
    done
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The first port from $1 on which nothing listens on 127.0.0.1 (a refused connection).
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

# Copies standard input to standard output with every OLD replaced by NEW (fixed strings),
# failing unless OLD occurs exactly COUNT times: an example that changed must stop the test,
# not be tested half-substituted.
replace() { # OLD NEW COUNT
  awk -v old="$1" -v new="$2" -v want="$3" '
    { line = $0; out = ""
      while ((i = index(line, old)) > 0) { out = out substr(line, 1, i - 1) new; line = substr(line, i + length(old)); n++ }
      print out line }
    END { if (n != want) { printf "proxy-test: expected %d of \"%s\" in the example, found %d\n", want, old, n > "/dev/stderr"; exit 1 } }'
}
# Drops the lines equal to LINE (leading blanks ignored), failing unless there are COUNT.
drop_line() { # LINE COUNT
  awk -v drop="$1" -v want="$2" '
    { t = $0; sub(/^[ \t]+/, "", t) } t == drop { n++; next } { print }
    END { if (n != want) { printf "proxy-test: expected %d lines \"%s\" in the example, found %d\n", want, drop, n > "/dev/stderr"; exit 1 } }'
}

# --- clientele, as the examples' comments configure it --------------------------------------
clientele_pid=
start_clientele() { # NAME
  local log="$work/clientele.log" db="$work/$1.db"
  if [ -n "$clientele_pid" ]; then kill "$clientele_pid"; wait "$clientele_pid" 2>/dev/null || true; fi
  : >"$log"
  ROCKET_DATABASE="$db" ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT=0 ROCKET_SEED_DEMO=true \
    ROCKET_IP_HEADER=X-Real-IP ROCKET_LOGIN_MAX_FAILURES=3 ROCKET_LOGIN_WINDOW_SECS=300 \
    ROCKET_ARGON2_MEMORY_KIB=64 ROCKET_ARGON2_ITERATIONS=1 ROCKET_LOG_LEVEL=normal \
    "$binary" serve >"$log" 2>&1 &
  clientele_pid=$!
  pids+=("$clientele_pid")
  clientele_port=
  for _ in $(seq 1 100); do
    clientele_port=$(sed -n 's#.*launched from http://127.0.0.1:\([0-9]*\).*#\1#p' "$log" | head -1)
    [ -n "$clientele_port" ] && break
    kill -0 "$clientele_pid" 2>/dev/null || fail "clientele exited at start-up"
    sleep 0.1
  done
  [ -n "$clientele_port" ] || fail "clientele did not start within 10 s"
  public_key=$(ROCKET_DATABASE="$db" "$binary" keys create web --public 2>/dev/null)
  backend_key=$(ROCKET_DATABASE="$db" "$binary" keys create shop-backend --forwards-client-address 2>/dev/null)
  echo "clientele on 127.0.0.1:$clientele_port (ip_header = \"X-Real-IP\", login_max_failures = 3)"
}

# --- the checks, through one proxy ------------------------------------------------------------
# curl's options to reach the proxy (set per proxy), and its base URL.
proxy_curl=()
base=

# One login attempt with a wrong password unless $3 is given, from loopback address $1, with
# any further curl options; prints the status. The answer is in $work/answer.json, its
# headers in $work/answer.headers.
login() { # FROM EMAIL [PASSWORD] [CURL OPTIONS...]
  local from=$1 email=$2 password=${3:-not-the-password}
  shift 3
  curl -sS -o "$work/answer.json" -D "$work/answer.headers" -w '%{http_code}' \
    --interface "$from" "${proxy_curl[@]}" "$@" \
    -H 'Content-Type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/CUSTOMER/LOGIN/"
}
expect() { # WANTED GOT WHAT
  [ "$2" = "$1" ] || fail "$3: expected $1, got $2: $(cat "$work/answer.json" 2>/dev/null)"
  echo "  $3: $2"
}

check_proxy() { # NAME, and A B C D: four loopback addresses, one per end user
  local name=$1 a=$2 b=$3 c=$4 d=$5 i status
  local key=(-H "X-API-Key: $public_key")
  step "$name: end user A ($a) fails 3 logins on 3 accounts, then is refused"
  for i in 1 2 3; do
    expect 401 "$(login "$a" "a$i@nowhere.example" "" "${key[@]}")" "A, account a$i, wrong password"
  done
  expect 429 "$(login "$a" "a4@nowhere.example" "" "${key[@]}")" "A, account a4 (A's 4th failure)"
  grep -qi '^retry-after: [0-9]' "$work/answer.headers" || fail "A's 429 has no Retry-After"
  expect true "$(jq -r '.success == "false"' "$work/answer.json")" "A's 429 is clientele's JSON"

  step "$name: end user B ($b) is not refused meanwhile"
  expect 401 "$(login "$b" "b1@nowhere.example" "" "${key[@]}")" "B, account b1, wrong password"
  expect 200 "$(login "$b" jdoe@example.com password123 "${key[@]}")" "B, jdoe, right password"

  step "$name: end user C ($c) sends its own X-Real-IP and X-Forwarded-For: still counted as $c"
  for i in 1 2 3; do
    expect 401 "$(login "$c" "c$i@nowhere.example" "" "${key[@]}" \
      -H "X-Real-IP: 198.51.100.$i" -H "X-Forwarded-For: 198.51.100.$i")" \
      "C, account c$i, claiming 198.51.100.$i"
  done
  expect 429 "$(login "$c" c4@nowhere.example "" "${key[@]}" \
    -H "X-Real-IP: 198.51.100.4" -H "X-Forwarded-For: 198.51.100.4")" \
    "C, account c4, claiming 198.51.100.4 (C's 4th failure)"

  step "$name: end user D ($d) claims A's address ($a): not refused"
  expect 401 "$(login "$d" d1@nowhere.example "" "${key[@]}" \
    -H "X-Real-IP: $a" -H "X-Forwarded-For: $a")" "D, account d1, claiming $a"
}

# A shop back end (a --forwards-client-address key) names its visitors in X-Forwarded-For.
check_forwarded_visitors() { # NAME FROM
  local name=$1 from=$2 i
  local key=(-H "X-API-Key: $backend_key")
  step "$name: a shop back end ($from) names its visitors in X-Forwarded-For: counted apart"
  for i in 1 2 3; do
    expect 401 "$(login "$from" "v$i@nowhere.example" "" "${key[@]}" -H "X-Forwarded-For: 203.0.113.7")" \
      "visitor 203.0.113.7, account v$i"
  done
  expect 429 "$(login "$from" v4@nowhere.example "" "${key[@]}" -H "X-Forwarded-For: 203.0.113.7")" \
    "visitor 203.0.113.7, account v4 (its 4th failure)"
  expect 401 "$(login "$from" w1@nowhere.example "" "${key[@]}" -H "X-Forwarded-For: 203.0.113.8")" \
    "visitor 203.0.113.8, account w1"
}

# --- nginx ------------------------------------------------------------------------------------
step "nginx $(nginx -v 2>&1 | sed 's#.*/##') with contrib/nginx/clientele.conf"
start_clientele nginx
ngx=$work/nginx
mkdir -p "$ngx/tmp" "$work/tls"
chmod 711 "$ngx"
chown nobody:nogroup "$ngx/tmp"
# A throwaway CA and a certificate for api.shop.example signed by it (curl checks it).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=proxy-test CA' \
  -keyout "$work/tls/ca.key" -out "$work/tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj '/CN=api.shop.example' \
  -keyout "$work/tls/key.pem" -out "$work/tls/cert.csr" 2>/dev/null
printf 'subjectAltName=DNS:api.shop.example\n' >"$work/tls/ext"
openssl x509 -req -in "$work/tls/cert.csr" -CA "$work/tls/ca.pem" -CAkey "$work/tls/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/tls/ext" -out "$work/tls/cert.pem" 2>/dev/null
http_port=$(free_port 18080)
https_port=$(free_port $((http_port + 1)))
replace 'server 127.0.0.1:8000;' "server 127.0.0.1:$clientele_port;" 1 <contrib/nginx/clientele.conf |
  replace 'listen 80;' "listen 127.0.0.1:$http_port;" 1 |
  replace 'listen 443 ssl;' "listen 127.0.0.1:$https_port ssl;" 1 |
  drop_line 'listen [::]:80;' 1 |
  drop_line 'listen [::]:443 ssl;' 1 |
  replace /etc/letsencrypt/live/api.shop.example/fullchain.pem "$work/tls/cert.pem" 1 |
  replace /etc/letsencrypt/live/api.shop.example/privkey.pem "$work/tls/key.pem" 1 \
    >"$ngx/clientele.conf"
echo "the example, as run (diff against contrib/nginx/clientele.conf):"
diff contrib/nginx/clientele.conf "$ngx/clientele.conf" | sed 's/^/  /' || true
cat >"$ngx/nginx.conf" <<EOF
# proxy-test's own nginx: its files in $ngx, nothing of the system's.
worker_processes 1;
user nobody nogroup;
pid $ngx/nginx.pid;
error_log $ngx/error.log;
events { worker_connections 256; }
http {
    access_log $ngx/access.log;
    client_body_temp_path $ngx/tmp/body;
    proxy_temp_path $ngx/tmp/proxy;
    fastcgi_temp_path $ngx/tmp/fastcgi;
    uwsgi_temp_path $ngx/tmp/uwsgi;
    scgi_temp_path $ngx/tmp/scgi;
    include $ngx/clientele.conf;
}
EOF
nginx -t -q -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" || fail "nginx refused the configuration"
nginx -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" -g 'daemon off;' &
pids+=($!)
proxy_curl=(--cacert "$work/tls/ca.pem" --resolve "api.shop.example:$https_port:127.0.0.1")
base=https://api.shop.example:$https_port
for _ in $(seq 1 50); do
  curl -s -o /dev/null "${proxy_curl[@]}" "$base/health" && break
  sleep 0.1
done
expect 200 "$(curl -sS -o "$work/answer.json" -w '%{http_code}' "${proxy_curl[@]}" "$base/health")" \
  "GET /health over HTTPS through nginx, certificate checked"
status=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' \
  --resolve "api.shop.example:$http_port:127.0.0.1" "http://api.shop.example:$http_port/health")
[[ $status == "301 https://api.shop.example/health" ]] || fail "plain HTTP answered $status, not a redirect to HTTPS"
echo "  plain HTTP: $status"
check_proxy nginx 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5
check_forwarded_visitors nginx 127.0.0.6

# --- Caddy ------------------------------------------------------------------------------------
step "Caddy $(caddy version | cut -d' ' -f1) with contrib/Caddyfile"
start_clientele caddy
cdy=$work/caddy
mkdir -p "$cdy"
caddy_port=$(free_port 18090)
{
  printf '{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n\n'
  replace 'api.shop.example {' "http://api.shop.example:$caddy_port {" 1 <contrib/Caddyfile |
    replace 'reverse_proxy 127.0.0.1:8000 {' "reverse_proxy 127.0.0.1:$clientele_port {" 1
} >"$cdy/Caddyfile"
echo "the example, as run (diff against contrib/Caddyfile):"
diff contrib/Caddyfile "$cdy/Caddyfile" | sed 's/^/  /' || true
# Caddy keeps its state under HOME and XDG folders: the test's own.
HOME=$cdy XDG_CONFIG_HOME=$cdy/config XDG_DATA_HOME=$cdy/data \
  caddy run --adapter caddyfile --config "$cdy/Caddyfile" >"$cdy/caddy.log" 2>&1 &
pids+=($!)
proxy_curl=(--resolve "api.shop.example:$caddy_port:127.0.0.1")
base=http://api.shop.example:$caddy_port
for _ in $(seq 1 50); do
  curl -s -o /dev/null "${proxy_curl[@]}" "$base/health" && break
  sleep 0.1
done
expect 200 "$(curl -sS -o "$work/answer.json" -w '%{http_code}' "${proxy_curl[@]}" "$base/health")" \
  "GET /health through Caddy"
check_proxy Caddy 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15

echo "proxy-test: all checks passed"
