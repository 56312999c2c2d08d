#!/usr/bin/env bash
# The failover demo: two clientele nodes on one PostgreSQL primary with a synchronous hot
# standby; the primary is killed mid-traffic and the standby promoted. It proves that:
#   - no acknowledged write is lost: every customer whose ADD got 200/201 is found afterwards,
#     through either node;
#   - nothing breaks loudly or hangs during the switch: while no primary accepts writes the
#     nodes answer 503 with the JSON envelope, never 500, and every answer comes within 5 s;
# and measures the failover time: from the kill until a write through node A is
# acknowledged again.
#
#   scripts/pg-cluster-demo.sh [PATH_TO_CLIENTELE]     (default: target/release/clientele)
#
# Run as root on Debian (PostgreSQL is installed from Debian's packages if missing, and its
# servers run as the user `postgres`); needs curl. Everything lives in a temporary folder,
# removed at exit with every server stopped, on success, failure or Ctrl-C.
#
# How it is wired (all by environment, no Rocket.toml is read: the nodes run in a folder of
# the temporary one, with none above):
#   PostgreSQL  primary 127.0.0.1:P1, standby `standby1` 127.0.0.1:P2 (free ports from 55432),
#               synchronous: a commit returns only once the standby has it
#   node A      ROCKET_PORT=8101, node B ROCKET_PORT=8102 (DEMO_NODE_A_PORT, DEMO_NODE_B_PORT)
#               ROCKET_DATABASE=postgres://clientele:clientele-pw@127.0.0.1:P1,127.0.0.1:P2/clientele?target_session_attrs=read-write
#               ROCKET_ADDRESS=127.0.0.1 ROCKET_SEED_DEMO=false ROCKET_LOG_LEVEL=normal
#   traffic     a writer registering customers through node A (POST /CUSTOMER/ADD/), a reader
#               looking the latest acknowledged one up through node B (GET /CUSTOMER/LIST/?email=),
#               both with a write key (X-API-Key) made by `clientele keys create demo --write`
#
# Exit status: 0 when nothing was lost and every answer was 200/201 or a JSON 503; 1 otherwise.
set -euo pipefail
# Times are $EPOCHREALTIME (seconds since the epoch, to the microsecond, no fork); LC_ALL=C
# keeps a '.' in it and in awk's numbers, whatever the caller's locale.
export LC_ALL=C

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pg-lib.sh
. "$root/scripts/pg-lib.sh"

bin=${1:-${CARGO_TARGET_DIR:-$root/target}/release/clientele}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac

port_a=${DEMO_NODE_A_PORT:-8101}
port_b=${DEMO_NODE_B_PORT:-8102}
traffic_secs=${DEMO_TRAFFIC_SECS:-3}          # traffic before the kill, and again after failover
failover_timeout=${DEMO_FAILOVER_TIMEOUT:-60} # give up waiting for a write to succeed again
max_requests=20000                            # per loop: the loops stop by themselves anyway

say() { printf '== %s\n' "$*"; }
die() {
  printf 'demo: error: %s\n' "$*" >&2
  exit 1
}
# secs_between T0 T1: T1 - T0 in seconds, 3 decimals.
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

[ -x "$bin" ] || die "no clientele binary at $bin (cargo build --release, or pass its path)"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
for port in "$port_a" "$port_b"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is taken on 127.0.0.1 (set DEMO_NODE_A_PORT / DEMO_NODE_B_PORT)"
  fi
done
# The nodes get their whole configuration from the variables set below: none inherited.
while read -r var; do
  case $var in ROCKET_*) unset "$var" ;; esac
done < <(compgen -e)

# --- Cleanup, whatever happens ----------------------------------------------------------
node_pids=()
loop_pids=()
cleanup() {
  local status=$? pid log
  [ -z "${stop_file:-}" ] || touch "$stop_file" 2>/dev/null || true
  for pid in "${loop_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${loop_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # SIGTERM: clientele finishes what is in flight within 5 s; then SIGKILL.
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do
    for _ in $(seq 70); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # On failure, the end of each node's log, before the folder goes.
  if [ "$status" -ne 0 ] && [ -n "${work:-}" ]; then
    for log in "$work"/nodes/*.log; do
      [ -s "$log" ] || continue
      printf -- '--- last lines of %s\n' "${log##*/}" >&2
      tail -n 25 "$log" >&2 || true
    done
  fi
  pg_cleanup
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- PostgreSQL: a primary and a synchronous hot standby ----------------------------------
say "PostgreSQL"
pg_install
pg_workdir
work=$PG_WORKDIR
p1=$(pg_free_port 55432)
p2=$(pg_free_port $((p1 + 1)))
pg_start_primary "$work/primary" "$p1"
pg_start_standby "$work/standby" "$p2" "$p1" standby1
pg_make_synchronous "$work/primary" standby1
db_url=$(pg_url "$p1" "$p2")
echo "primary 127.0.0.1:$p1, synchronous standby standby1 127.0.0.1:$p2 ($("$(pg_bindir)/postgres" --version))"

# --- Two clientele nodes --------------------------------------------------------------------
# They run from $work/nodes: no Rocket.toml there or in a folder above (Rocket looks upwards).
mkdir -p "$work/nodes"
for dir in "$work/nodes" "$work" "$(dirname "$work")" /; do
  [ ! -e "${dir%/}/Rocket.toml" ] || die "${dir%/}/Rocket.toml would be read by the nodes"
done

# The nodes' whole configuration (the port aside): environment only.
node_env=(ROCKET_DATABASE="$db_url" ROCKET_ADDRESS=127.0.0.1 ROCKET_SEED_DEMO=false
  ROCKET_LOG_LEVEL=normal)

say "clientele: a write key, then nodes A (:$port_a) and B (:$port_b)"
# The key goes to stdout; the notice about it to stderr. It also creates the schema, before
# two nodes start at once.
key=$(cd "$work/nodes" && env "${node_env[@]}" ROCKET_PORT="$port_a" \
  "$bin" keys create demo --write 2>"$work/nodes/keys.log") ||
  die "clientele keys create failed: $(cat "$work/nodes/keys.log")"
if [ -z "$key" ] || [ "$(printf '%s\n' "$key" | wc -l)" -ne 1 ]; then
  die "clientele keys create did not print one key on stdout"
fi

# start_node NAME PORT: starts a node in the background and waits until GET /health is 200.
start_node() {
  local name=$1 port=$2 pid code
  # `exec` in the background subshell: $! is then the server itself, which cleanup stops.
  (cd "$work/nodes" && exec env "${node_env[@]}" ROCKET_PORT="$port" "$bin" serve) \
    >"$work/nodes/node-$name.log" 2>&1 &
  pid=$!
  node_pids+=("$pid")
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || die "node $name exited at start-up (its log is below)"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health" || true)
    if [ "$code" = 200 ]; then
      echo "node $name: healthy on 127.0.0.1:$port (pid $pid)"
      return 0
    fi
    sleep 0.1
  done
  die "node $name: GET /health did not answer 200 within 30 s (last: $code)"
}
start_node A "$port_a"
start_node B "$port_b"

# --- Traffic ------------------------------------------------------------------------------
# Each request appends one line to its loop's event file:
#   START END STATUS CURL_EXIT EMAIL NOTE
# STATUS is 000 when no answer came (CURL_EXIT 28: no answer within 5 s, a hang). NOTE:
#   ok       200/201 as expected (for a read: the customer is in it)
#   json     a 503 with the JSON error envelope
#   nojson   any other status, or a 503 whose body is not the envelope
#   missing  a read answered 200 without the acknowledged customer
stop_file=$work/stop
acked=$work/acked       # emails whose ADD was acknowledged, in order
writes=$work/writes.events
reads=$work/reads.events
: >"$acked"
: >"$writes"
: >"$reads"
curl_opts=(-s --max-time 5 -H "X-API-Key: $key")

# note_for STATUS BODY_FILE: the NOTE of an answer that is not a success.
note_for() {
  if [ "$1" = 503 ] && grep -q '^{.*"success" *: *"false"' "$2" 2>/dev/null; then
    echo json
  else
    echo nojson
  fi
}

writer() {
  local i=0 email t0 t1 code rc note body=$work/writer.body
  while [ ! -e "$stop_file" ] && [ "$i" -lt "$max_requests" ]; do
    i=$((i + 1))
    email="failover-$i@demo.example"
    t0=$EPOCHREALTIME
    rc=0
    code=$(curl "${curl_opts[@]}" -o "$body" -w '%{http_code}' -X POST \
      -H 'Content-Type: application/json' \
      -d "{\"email\":\"$email\",\"lastName\":\"Failover\",\"firstName\":\"Writer $i\",\"city\":\"Namur\"}" \
      "http://127.0.0.1:$port_a/CUSTOMER/ADD/") || rc=$?
    t1=$EPOCHREALTIME
    case $code in
      200 | 201)
        note=ok
        echo "$email" >>"$acked"
        ;;
      *) note=$(note_for "$code" "$body") ;;
    esac
    echo "$t0 $t1 ${code:-000} $rc $email $note" >>"$writes"
    sleep 0.01
  done
}

reader() {
  local i=0 email t0 t1 code rc note body=$work/reader.body
  while [ ! -e "$stop_file" ] && [ "$i" -lt "$max_requests" ]; do
    email=$(tail -n 1 "$acked")
    if [ -z "$email" ]; then
      sleep 0.05
      continue
    fi
    i=$((i + 1))
    t0=$EPOCHREALTIME
    rc=0
    code=$(curl "${curl_opts[@]}" -o "$body" -w '%{http_code}' \
      "http://127.0.0.1:$port_b/CUSTOMER/LIST/?email=$email") || rc=$?
    t1=$EPOCHREALTIME
    case $code in
      200) if grep -qF "\"email\":\"$email\"" "$body"; then note=ok; else note=missing; fi ;;
      *) note=$(note_for "$code" "$body") ;;
    esac
    echo "$t0 $t1 ${code:-000} $rc $email $note" >>"$reads"
    sleep 0.02
  done
}

say "traffic: writes through node A, reads through node B, ${traffic_secs} s"
writer &
loop_pids+=($!)
reader &
loop_pids+=($!)
sleep "$traffic_secs"
acked_before=$(wc -l <"$acked")
[ "$acked_before" -gt 0 ] || die "no write was acknowledged before the failover: nothing to prove"

# --- Failover -----------------------------------------------------------------------------
say "failover: killing the primary (pg_ctl stop -m immediate), promoting the standby"
t_kill=$EPOCHREALTIME
pg_kill "$work/primary"
t_killed=$EPOCHREALTIME
pg_promote "$work/standby"
t_promoted=$EPOCHREALTIME
echo "primary down $(secs_between "$t_kill" "$t_killed") s after the kill began;" \
  "standby promoted $(secs_between "$t_killed" "$t_promoted") s later"

# The failover ends at the first acknowledged write that *started* after the primary was
# gone (one started before could have been committed by the old primary).
t_back=
deadline=$(awk -v t="$t_kill" -v d="$failover_timeout" 'BEGIN { printf "%d", t + d }')
while [ -z "$t_back" ]; do
  t_back=$(awk -v k="$t_killed" '$1 > k && $6 == "ok" { print $2; exit }' "$writes")
  [ -n "$t_back" ] && break
  [ "${EPOCHSECONDS}" -lt "$deadline" ] || die "no write was acknowledged within ${failover_timeout} s of the kill"
  sleep 0.05
done
failover=$(secs_between "$t_kill" "$t_back")
echo "writes through node A acknowledged again ${failover} s after the kill"

say "traffic after the failover, ${traffic_secs} s"
sleep "$traffic_secs"
touch "$stop_file"
for pid in "${loop_pids[@]}"; do wait "$pid" || true; done
loop_pids=()

# --- Checks -------------------------------------------------------------------------------
# Every acknowledged email must be found through each node.
say "checking every acknowledged write through both nodes"
total_acked=$(wc -l <"$acked")
found_a=0
found_b=0
lost=() # emails missing through at least one node, with what each node answered
check_body=$work/check.body
while read -r email; do
  missing=
  for node in A B; do
    port=$port_a
    [ "$node" = A ] || port=$port_b
    code=$(curl "${curl_opts[@]}" -o "$check_body" -w '%{http_code}' \
      "http://127.0.0.1:$port/CUSTOMER/LIST/?email=$email" || true)
    if [ "$code" = 200 ] && grep -qF "\"email\":\"$email\"" "$check_body"; then
      if [ "$node" = A ]; then found_a=$((found_a + 1)); else found_b=$((found_b + 1)); fi
    else
      missing+=" node $node: $code"
    fi
  done
  [ -z "$missing" ] || lost+=("$email (${missing# })")
done <"$acked"

# One pass over every event (writes and reads alike) for the tallies.
requests=$(cat "$writes" "$reads" | wc -l)
read -r n503 n500 hangs transport unexpected stale slowest < <(
  cat "$writes" "$reads" | awk '
    $3 == 503 { n503++ }
    $3 == 500 { n500++ }
    $4 == 28 { hangs++ }
    $4 != 0 && $4 != 28 { transport++ }
    $4 == 0 && $6 == "nojson" && $3 != 500 { unexpected++ }
    $6 == "missing" { stale++ }
    { d = $2 - $1; if (d > slowest) slowest = d }
    END { printf "%d %d %d %d %d %d %.3f\n", n503, n500, hangs, transport, unexpected, stale, slowest }'
)
dead_nodes=0
for pid in "${node_pids[@]}"; do kill -0 "$pid" 2>/dev/null || dead_nodes=$((dead_nodes + 1)); done

say "summary"
cat <<EOF
PostgreSQL                   $("$(pg_bindir)/postgres" --version | awk '{ print $3 }'), primary :$p1 killed, standby :$p2 promoted
requests                     $requests ($(wc -l <"$writes") writes via A, $(wc -l <"$reads") reads via B)
acknowledged writes          $total_acked ($acked_before before the kill)
found through node A         $found_a / $total_acked
found through node B         $found_b / $total_acked
503 answers                  $n503
500 answers                  $n500
no answer within 5 s         $hangs
connection errors            $transport
other unexpected answers     $unexpected
reads missing an acked write $stale
slowest answer               ${slowest} s
failover time                ${failover} s (kill -> first acknowledged write through node A)
EOF

failures=()
[ "${#lost[@]}" -eq 0 ] || failures+=("${#lost[@]} acknowledged write(s) not found, e.g. ${lost[*]:0:3}")
[ "$n500" -eq 0 ] || failures+=("$n500 answer(s) were 500")
[ "$hangs" -eq 0 ] || failures+=("$hangs request(s) got no answer within 5 s")
[ "$transport" -eq 0 ] || failures+=("$transport request(s) failed at the connection")
[ "$unexpected" -eq 0 ] || failures+=("$unexpected answer(s) neither 200/201 nor a JSON 503")
[ "$stale" -eq 0 ] || failures+=("$stale read(s) through node B missed an acknowledged write")
[ "$dead_nodes" -eq 0 ] || failures+=("$dead_nodes clientele node(s) died during the demo")
if [ "${#failures[@]}" -gt 0 ]; then
  for f in "${failures[@]}"; do echo "FAILED: $f" >&2; done
  if [ "$((unexpected + n500))" -gt 0 ]; then
    echo "first unexpected answers (start end status curl-exit email note):" >&2
    cat "$writes" "$reads" | awk '$6 == "nojson"' | head -n 5 >&2
  fi
  exit 1
fi
echo "OK: no acknowledged write lost, no 500, no hang; failover took ${failover} s"
