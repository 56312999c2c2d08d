#!/usr/bin/env bash
# Builds the Debian package with `cargo deb` and tests it on this machine, as root (run by
# .ci/run on a clean Debian 12, where systemd need not run as PID 1):
#   - the package's config and unit are made from Rocket.toml and contrib/ (debian/sync.sh);
#   - `dpkg -i`: the user clientele, the configuration root:clientele 0640 (its folder 0750),
#     the state folder clientele's alone, `systemd-analyze verify` of the installed unit;
#   - the installed binary started as the unit starts it: its user and group, Environment=,
#     WorkingDirectory=, UMask= and ExecStart=, read from the installed unit; a small import
#     and a key made the same way; a list by id and a login answered 200 in JSON;
#   - `dpkg -r`: the database stays; `dpkg -i` again: the same key and customer still work;
#   - `dpkg --purge`: the database still stays.
# The one difference from the unit: ROCKET_PORT=0 (a free port, as a drop-in would set it),
# so that the test never collides with something on port 8000.
#
# It refuses to run where clientele is installed, or its user or /var/lib/clientele exist:
# it removes everything it made when it ends (the database it made included), whatever
# happened. Exits non-zero, saying what failed, on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "deb-test: FAILED: $*" >&2; exit 1; }
step() { echo "== deb-test: $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and removes a package)"
if dpkg-query -W -f '${Status}' clientele 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "the clientele package is installed here; this test would remove it"
fi
if getent passwd clientele >/dev/null || getent group clientele >/dev/null || [ -e /var/lib/clientele ] || [ -e /etc/clientele ]; then
  fail "the user or group clientele, /var/lib/clientele or /etc/clientele exists here; this test would remove it"
fi

missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v adduser >/dev/null || missing+=(adduser)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
  step "installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0
fi

# dpkg, waiting (up to 5 min) while another apt or dpkg holds its lock rather than failing:
# dpkg has no lock timeout of its own, and exits 2 on a held lock.
dpkg_run() {
  local status
  for _ in $(seq 1 300); do
    status=0
    dpkg "$@" 2>"$work/dpkg.err" || status=$?
    if [ $status -eq 2 ] && grep -q 'lock' "$work/dpkg.err"; then sleep 1; continue; fi
    cat "$work/dpkg.err" >&2
    return $status
  done
  cat "$work/dpkg.err" >&2
  return 2
}

work=$(mktemp -d)
server_pid=
installed=false
cleanup() {
  local status=$?
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if $installed; then
    dpkg_run --purge clientele >/dev/null 2>&1 || true
    rm -rf /var/lib/clientele /etc/clientele
    userdel clientele 2>/dev/null || true
    groupdel clientele 2>/dev/null || true
  fi
  if [ $status -ne 0 ] && [ -s "$work/server.log" ]; then
    echo "deb-test: the server's log:" >&2
    cat "$work/server.log" >&2
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "debian/sync.sh --check"
debian/sync.sh --check

step "cargo deb"
deb=$(cargo deb | tail -n 1)
[ -f "$deb" ] || fail "cargo deb did not print the package's path (got: $deb)"
echo "$deb"

step "the package's contents"
dpkg-deb -c "$deb" >"$work/contents"
expect_entry() { # MODE PATH
  grep -Eq "^$1 0/0 +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" "$work/contents" ||
    fail "the package lacks $2 with mode $1:"$'\n'"$(cat "$work/contents")"
}
expect_entry -rwxr-xr-x usr/bin/clientele
expect_entry -rw-r----- etc/clientele/clientele.toml
expect_entry -rw-r--r-- usr/lib/systemd/system/clientele.service
expect_entry -rw-r--r-- usr/share/doc/clientele/examples/nginx/clientele.conf
expect_entry -rw-r--r-- usr/share/doc/clientele/examples/Caddyfile
expect_entry -rw-r--r-- usr/share/doc/clientele/examples/https-on-443.conf
if grep -q '\./var/lib' "$work/contents"; then
  fail "the package ships files in /var/lib: dpkg would remove them with it"
fi
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/clientele/clientele.toml ] ||
  fail "/etc/clientele/clientele.toml is not the package's one conffile"

step "dpkg -i"
installed=true
dpkg_run -i "$deb"

step "the user, the configuration, the state folder"
getent passwd clientele >/dev/null || fail "no user clientele"
uid=$(id -u clientele)
[ "$uid" -lt 1000 ] || fail "clientele is not a system user (uid $uid)"
[ "$(getent passwd clientele | cut -d: -f7)" = /usr/sbin/nologin ] || fail "clientele has a login shell"
expect_stat() { # PATH OWNER:GROUP MODE
  local got
  got=$(stat -c '%U:%G %a' "$1") || fail "$1 is missing"
  [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
  echo "$1: $got"
}
expect_stat /etc/clientele root:clientele 750
expect_stat /etc/clientele/clientele.toml root:clientele 640
expect_stat /var/lib/clientele clientele:clientele 700
# The packaged configuration starts a real shop: no demo customers, the database in the
# state folder, on this machine's loopback, port 8000.
config=/etc/clientele/clientele.toml
for line in 'seed_demo = false' 'database = "/var/lib/clientele/clientele.db"' \
  'address = "127.0.0.1"' 'port = 8000'; do
  grep -qx "$line" "$config" || fail "$config lacks the line: $line"
done
# What the service may read, a stranger may not.
if setpriv --reuid nobody --regid nogroup --clear-groups cat "$config" >/dev/null 2>&1; then
  fail "the user nobody can read $config"
fi

unit=/usr/lib/systemd/system/clientele.service
step "systemd-analyze verify $unit"
systemd-analyze verify "$unit"
# With the README's drop-in for HTTPS on port 443 (step 6) as well.
dropin_dir=/etc/systemd/system/clientele.service.d
mkdir -p "$dropin_dir"
cp /usr/share/doc/clientele/examples/https-on-443.conf "$dropin_dir/"
systemd-analyze verify "$unit"
rm -r "$dropin_dir"
echo "the unit with the https-on-443.conf drop-in verifies too"

# --- The binary started as the unit starts it ----------------------------------------------
# The unit's last value for KEY (systemd's rule for single-valued settings).
unit_value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
service_user=$(unit_value User)
service_group=$(unit_value Group)
workdir=$(unit_value WorkingDirectory)
umask_value=$(unit_value UMask)
exec_start=$(unit_value ExecStart)
if [ "$service_user" != clientele ] || [ "$service_group" != clientele ]; then
  fail "the unit runs as $service_user:$service_group, not clientele:clientele"
fi
[ "$(unit_value StateDirectory)" = clientele ] || fail "the unit has no StateDirectory=clientele"
# Only plain values are read here: no quotes, no ExecStart= prefixes, no specifiers.
if grep -E '^(Environment|ExecStart|WorkingDirectory)=' "$unit" | grep -q "[\"'%\\]"; then
  fail "the unit quotes or uses specifiers; this test reads plain values only"
fi
case $exec_start in [-@:+!]*) fail "ExecStart= has a prefix this test does not read: $exec_start" ;; esac
read -r -a exec_argv <<<"$exec_start"
[ "${exec_argv[0]}" = /usr/bin/clientele ] || fail "ExecStart= runs ${exec_argv[0]}, not /usr/bin/clientele"
# What systemd gives a service with User=: a clean environment with PATH and the user's
# HOME, USER, LOGNAME and SHELL, then the unit's Environment= lines, in order.
service_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin HOME="$(getent passwd clientele | cut -d: -f6)"
  USER=clientele LOGNAME=clientele SHELL=/usr/sbin/nologin)
while IFS= read -r assignment; do
  read -r -a words <<<"$assignment"
  service_env+=("${words[@]}")
done < <(sed -n 's/^Environment=//p' "$unit")
printf 'the unit environment: %s\n' "${service_env[*]}"
printf '%s\n' "${service_env[@]}" | grep -qx ROCKET_CONFIG=/etc/clientele/clientele.toml ||
  fail "the unit does not set ROCKET_CONFIG=/etc/clientele/clientele.toml"

# Runs a command as the service runs: its user, group, folder, umask and environment, no new
# privileges. Extra NAME=VALUE words before the command are added to the environment. Called
# in a subshell, which it replaces (exec): started with `&`, $! is the command itself.
as_service_exec() {
  local extra=()
  while [[ $# -gt 0 && $1 == *=* ]]; do extra+=("$1"); shift; done
  cd "$workdir"
  umask "${umask_value:-0022}"
  exec setpriv --reuid "$service_user" --regid "$service_group" --init-groups --no-new-privs \
    env -i "${service_env[@]}" "${extra[@]}" "$@"
}
as_service() { (as_service_exec "$@"); }

start_service() {
  (as_service_exec ROCKET_PORT=0 "${exec_argv[@]}") >"$work/server.log" 2>&1 &
  server_pid=$!
  port=
  for _ in $(seq 1 100); do
    port=$(sed -n 's#.*launched from http://127.0.0.1:\([0-9]*\).*#\1#p' "$work/server.log" | head -1)
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "the service exited at start-up"
    sleep 0.1
  done
  [ -n "$port" ] || fail "the service did not say where it listens within 10 s"
  grep -q "configuration: /etc/clientele/clientele.toml" "$work/server.log" ||
    fail "the service did not read /etc/clientele/clientele.toml"
  echo "the service listens on 127.0.0.1:$port (pid $server_pid, as $(ps -o user= -p "$server_pid"))"
  [ "$(ps -o user= -p "$server_pid")" = clientele ] || fail "the service does not run as clientele"
}

stop_service() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# Fetches one customer by id with the key; checks 200, JSON, the customer, no password.
check_list() { # KEY
  local status
  status=$(curl -sS -o "$work/list.json" -D "$work/list.headers" -w '%{http_code}' \
    -H "X-API-Key: $1" "http://127.0.0.1:$port/CUSTOMER/LIST/?id_client=7")
  [ "$status" = 200 ] || fail "the list by id answered $status: $(cat "$work/list.json")"
  grep -qi '^content-type: application/json' "$work/list.headers" || fail "the list is not JSON"
  jq -e '.success == "true" and (.result.customer | length) == 1
         and .result.customer[0].clcleunik == 7 and .result.customer[0].email == "ada@shop.test"
         and (.result.customer[0] | has("password") | not)' "$work/list.json" >/dev/null ||
    fail "the list by id answered: $(cat "$work/list.json")"
  echo "GET /CUSTOMER/LIST/?id_client=7 with the key: 200, $(jq -c '.result.customer[0] | {clcleunik, email}' "$work/list.json")"
}

step "import a customer, as the service's user"
printf '%s\n' 'clcleunik,customerNumber,email,login,firstName,lastName,password' \
  '7,C007,ada@shop.test,ada,Ada,Lovelace,Analytical-Engine-1843' |
  as_service /usr/bin/clientele import - --format csv
expect_stat /var/lib/clientele/clientele.db clientele:clientele 600

step "start the installed binary as the unit would"
start_service

step "create a key, as the service's user"
key=$(as_service /usr/bin/clientele keys create deb-test)
[[ $key == clt_* ]] || fail "keys create printed no key: $key"
check_list "$key"
status=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/CUSTOMER/LIST/?id_client=7")
[ "$status" = 401 ] || fail "without a key the list answered $status, not 401"
echo "without a key: 401"
status=$(curl -sS -o "$work/login.json" -w '%{http_code}' -H "X-API-Key: $key" \
  -H 'Content-Type: application/json' -d '{"email":"ada@shop.test","password":"Analytical-Engine-1843"}' \
  "http://127.0.0.1:$port/CUSTOMER/LOGIN/")
[ "$status" = 200 ] || fail "the imported customer's login answered $status: $(cat "$work/login.json")"
echo "POST /CUSTOMER/LOGIN/ with the imported password: 200"
if grep -qF "$key" "$work/server.log"; then fail "the key appears in the service's log"; fi
# The packaged configuration takes a backup at start (then daily), private to the service.
backup=
for _ in $(seq 1 100); do
  backup=$(find /var/lib/clientele/backups -name 'clientele-*Z.db' 2>/dev/null | head -1)
  [ -n "$backup" ] && break
  sleep 0.1
done
[ -n "$backup" ] || fail "no scheduled backup in /var/lib/clientele/backups"
expect_stat "$backup" clientele:clientele 600
expect_stat /var/lib/clientele/backups clientele:clientele 700
stop_service

step "dpkg -r: the database stays"
dpkg_run -r clientele
[ ! -e /usr/bin/clientele ] || fail "/usr/bin/clientele is still there after dpkg -r"
expect_stat /var/lib/clientele/clientele.db clientele:clientele 600
[ -f "$config" ] || fail "dpkg -r removed the configuration (a conffile stays until purge)"
getent passwd clientele >/dev/null || fail "dpkg -r removed the user clientele"

step "dpkg -i again: the same key and customer"
dpkg_run -i "$deb"
expect_stat /etc/clientele/clientele.toml root:clientele 640
start_service
check_list "$key"
stop_service

step "dpkg -i over the installed package (an upgrade's path): still the same"
dpkg_run -i "$deb"
expect_stat /etc/clientele/clientele.toml root:clientele 640
expect_stat /var/lib/clientele clientele:clientele 700
start_service
check_list "$key"
stop_service

step "dpkg --purge: the configuration goes, the database stays"
dpkg_run --purge clientele
[ ! -e "$config" ] || fail "dpkg --purge left $config"
expect_stat /var/lib/clientele/clientele.db clientele:clientele 600
if dpkg-statoverride --list | grep -q clientele; then fail "dpkg --purge left statoverrides"; fi

echo "deb-test: all checks passed"
