#!/usr/bin/env bash
# Runs the README's shell loop for the changes feed ("Following changes", the block after
# "In shell") as written, against a running clientele: first with a stale token in since.txt
# (it must start again from 0, not stop silently), then once more (nothing new).
#   tests/readme/changes-loop.sh API KEY EXPECTED_CUSTOMERS
set -euo pipefail
api=$1 key=$2 expected=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
block=$(awk '/^In shell \(with `jq`/ {found=1} found && /^```sh$/ {inside=1; next}
             inside && /^```$/ {exit} inside {print}' "$root/README.md")
[ -n "$block" ] || { echo "the README's shell loop was not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo 987654321 > since.txt                       # a token from another database
API=$api KEY=$key bash -euo pipefail -c "$block" 2> loop.err
grep -q "too old" loop.err || { echo "the loop did not say it started again:" >&2; cat loop.err >&2; exit 1; }
got=$(wc -l < changed.jsonl)
[ "$got" -eq "$expected" ] || { echo "expected $expected customers, got $got" >&2; exit 1; }
next=$(cat since.txt)
[ "$next" != 987654321 ] && [ "$next" != 0 ] || { echo "since.txt kept $next" >&2; exit 1; }
# A second run from the kept token finds nothing new and succeeds.
API=$api KEY=$key bash -euo pipefail -c "$block"
[ "$(wc -l < changed.jsonl)" -eq "$expected" ] || { echo "the second run added rows" >&2; exit 1; }
# An error other than 410 (a wrong key) stops the loop loudly and keeps since.txt.
if API=$api KEY=wrong bash -euo pipefail -c "$block" 2> wrong.err; then
  echo "a wrong key did not stop the loop" >&2; exit 1
fi
grep -q 401 wrong.err && [ "$(cat since.txt)" = "$next" ] || { cat wrong.err >&2; exit 1; }
echo "the README's changes loop: started again after a 410, $expected customers, stops on 401"
