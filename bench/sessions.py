#!/usr/bin/env python3
"""Customer sessions against the release binary: what a browser's own list costs, and logins.

  1. One customer by id with a read key (the back end's call), 64 connections, against a
     public key with that customer's session listing itself (the browser's call), same run,
     alternating twice. Target: the session list costs at most 1.5x the read key's by id,
     i.e. its req/s at least 0.67x.
  2. Logins through a public key at saturation (each creates a session row), 16 connections,
     against `clientele login-rate` (the raw Argon2id rate on the login workers). Target:
     at least 0.9x the raw rate.

Default Argon2id settings. Prints a table; exits non-zero when a target is missed.
  python3 bench/sessions.py [--duration S]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from limits import stop  # noqa: E402
from run import ROOT, parse_wrk, release_binary, wait_http, wrk  # noqa: E402

PORT = 18093


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    binary = release_binary()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "sessions.db"
        env = dict(os.environ, ROCKET_DATABASE=str(db), ROCKET_PORT=str(PORT),
                   ROCKET_LOG_LEVEL="critical", ROCKET_SEED_DEMO="true")
        log = (work / "server.log").open("w")
        proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log, cwd=ROOT)
        failures = 0
        try:
            wait_http(PORT)

            def key(name, *flags):
                return subprocess.run([binary, "keys", "create", name, *flags], env=env,
                                      check=True, capture_output=True, text=True).stdout.strip()

            read, public = key("backend"), key("web", "--public")
            body = json.dumps({"email": "jdoe@example.com", "password": "password123"}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{PORT}/CUSTOMER/LOGIN/", data=body,
                headers={"Content-Type": "application/json", "X-API-Key": public})
            with urllib.request.urlopen(request) as r:
                token = json.load(r)["result"]["token"]
            rows = {"by id, read key": [], "own record, public key + session": []}
            for _ in range(2):
                rows["by id, read key"].append(wrk(
                    PORT, "/CUSTOMER/LIST/?id_client=1", 64, args.duration,
                    headers=[f"X-API-Key: {read}"]))
                rows["own record, public key + session"].append(wrk(
                    PORT, "/CUSTOMER/LIST/", 64, args.duration,
                    headers=[f"X-API-Key: {public}", f"Authorization: Bearer {token}"]))
            print(f"# one customer, 64 connections, {args.duration} s per run, two rounds")
            print("| call | req/s (each round) | p99 ms (each round) | non-2xx |")
            print("|---|---|---|---|")
            best = {}
            for name, results in rows.items():
                best[name] = max(r["rps"] for r in results)
                rates = " / ".join(f"{r['rps']:,.0f}" for r in results)
                p99s = " / ".join(f"{r['p99']:.2f}" for r in results)
                print(f"| {name} | {rates} | {p99s} | {sum(r['non2xx'] for r in results)} |")
                failures += sum(r["non2xx"] for r in results) > 0
            ratio = best["own record, public key + session"] / best["by id, read key"]
            print(f"session list / read key by id: {ratio:.2f}x (target >= 0.67x: cost <= 1.5x)")
            failures += ratio < 0.67

            raw_out = subprocess.run([binary, "login-rate", "--seconds", "5"], env=env,
                                     check=True, capture_output=True, text=True).stdout
            raw = float(raw_out.split()[0])
            # Every demo customer in turn: parallel logins of one account would meet its own
            # limit (each attempt counts until its check refunds it).
            demo = json.loads((ROOT / "data/demo-customers.json").read_text())
            accounts = [(c["email"], c["password"]) for c in demo["result"]["customer"]]
            login_lua = work / "login.lua"
            bodies = ",".join(json.dumps(json.dumps({"email": e, "password": p}))
                              for e, p in accounts)
            login_lua.write_text(
                f"local bodies = {{{bodies}}}\n"
                "local n = 0\n"
                "request = function()\n"
                "  n = n + 1\n"
                "  return wrk.format('POST', nil, {['Content-Type'] = 'application/json', "
                f"['X-API-Key'] = '{public}'}}, bodies[n % #bodies + 1])\n"
                "end\n")
            logins = parse_wrk(subprocess.run(
                ["wrk", "-t1", "-c16", f"-d{args.duration}s", "--latency", "--timeout", "30s",
                 "-s", str(login_lua), f"http://127.0.0.1:{PORT}/CUSTOMER/LOGIN/"],
                check=True, capture_output=True, text=True).stdout)
            sessions = subprocess.run(
                ["sqlite3", str(db), "SELECT count(*) FROM session"],
                capture_output=True, text=True).stdout.strip() or "?"
            print(f"\n# logins through a public key, 16 connections, {args.duration} s")
            raw_line = re.sub(r"\s+", " ", raw_out.strip())
            print(f"logins/s: {logins['rps']:.1f} (non-2xx {logins['non2xx']}); raw Argon2id: "
                  f"{raw:.1f}/s ({raw_line}); ratio {logins['rps'] / raw:.2f}x "
                  f"(target >= 0.9x); sessions stored: {sessions}")
            failures += logins["non2xx"] > 0 or logins["rps"] < 0.9 * raw
        finally:
            stop(proc)
    if failures:
        print(f"\n{failures} target(s) missed")
        sys.exit(1)
    print("\nevery target met")


if __name__ == "__main__":
    main()
