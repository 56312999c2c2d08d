#!/usr/bin/env python3
"""Two day-one bounds under load, against the release binary (run by bench/limits.sh).

  1. Login lockout through a shop: 16 threads send wrong passwords for 24 of the 25 demo
     accounts through one read key, from one address (a shop's login form), for --duration
     seconds. Meanwhile the 25th customer logs in with the right password every 100 ms:
     every one of those logins must be 200. Then, with a --forwards-client-address key, one
     visitor's address that failed 10 times gets 429 while another visitor gets in.
  2. Mirror mode with a stalled master: the old API takes 5 s to answer each write, and 60
     account updates are sent at once. Meanwhile list reads, /health and logins run in a
     loop: each must answer within 1 s (the README: requests never wait for the old API).

Argon2 runs at the test suite's cost here: these are bounds on the limiter and on waiting,
not on hashing. Exits non-zero when a bound is missed.
  python3 bench/lockout.py [--duration S]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from limits import stop  # noqa: E402
from run import ROOT, release_binary, wait_http  # noqa: E402

PORT = 18091
MASTER_PORT = 18092
READ_BOUND = 1.0


def call(path, body=None, headers=None, timeout=30):
    """(status, seconds) of one request to the server under test."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.monotonic() - start


def serve(binary, db, extra_env, log):
    env = dict(os.environ, ROCKET_DATABASE=str(db), ROCKET_PORT=str(PORT),
               ROCKET_LOG_LEVEL="critical", ROCKET_ARGON2_MEMORY_KIB="64",
               ROCKET_ARGON2_ITERATIONS="1", ROCKET_SEED_DEMO="true")
    env.update(extra_env)
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log, cwd=ROOT)
    wait_http(PORT)
    return proc


def key(binary, db, name, *flags):
    out = subprocess.run([binary, "keys", "create", name, *flags], check=True, cwd=ROOT,
                         env=dict(os.environ, ROCKET_DATABASE=str(db)),
                         capture_output=True, text=True)
    return out.stdout.strip()


def lockout(binary, work, duration, log):
    demo = json.loads((ROOT / "data/demo-customers.json").read_text())
    customers = demo["result"]["customer"] if isinstance(demo, dict) else demo
    victim = next(c for c in customers if c["email"] == "jdoe@example.com")
    others = [c["email"] for c in customers if c is not victim]
    db = work / "lockout.db"
    proc = serve(binary, db, {}, log)
    failures = 0
    try:
        print(f"\n# login limits: a visitor through a forwarding key, then 16 threads of wrong "
              f"passwords for {len(others)} accounts through one read key for {duration} s")
        # First, on a fresh server: a forwarding key limits one visitor's address only.
        forwarding = key(binary, db, "shop-backend", "--forwards-client-address")
        visitor = {"X-API-Key": forwarding, "X-Forwarded-For": "198.51.100.7"}
        for n in range(10):
            call("/CUSTOMER/LOGIN/", {"email": others[n], "password": "wrong"}, visitor)
        blocked, _ = call("/CUSTOMER/LOGIN/", {"email": victim["email"],
                                               "password": victim["password"]}, visitor)
        other, _ = call("/CUSTOMER/LOGIN/", {"email": victim["email"],
                                             "password": victim["password"]},
                        {"X-API-Key": forwarding, "X-Forwarded-For": "203.0.113.5"})
        print(f"forwarding key: the visitor with 10 failures gets {blocked}, "
              f"another visitor gets {other}")
        if blocked != 429 or other != 200:
            failures += 1
        shop = key(binary, db, "shop")
        headers = {"X-API-Key": shop}
        stop_at = time.monotonic() + duration
        counts = {}
        lock = threading.Lock()

        def attacker(n):
            i = n
            while time.monotonic() < stop_at:
                status, _ = call("/CUSTOMER/LOGIN/", {"email": others[i % len(others)],
                                                      "password": f"guess-{i}"}, headers)
                with lock:
                    counts[status] = counts.get(status, 0) + 1
                i += 16

        threads = [threading.Thread(target=attacker, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        victim_statuses = []
        while time.monotonic() < stop_at:
            status, _ = call("/CUSTOMER/LOGIN/", {"email": victim["email"],
                                                  "password": victim["password"]}, headers)
            victim_statuses.append(status)
            time.sleep(0.1)
        for t in threads:
            t.join()
        refused = sum(1 for s in victim_statuses if s != 200)
        print(f"attacker answers: {dict(sorted(counts.items()))}")
        print(f"the other customer's right-password logins: {len(victim_statuses)}, "
              f"refused: {refused}")
        if refused or not victim_statuses:
            failures += 1

    finally:
        stop(proc)
    return failures


class Master(BaseHTTPRequestHandler):
    """The old API: a list of the 25 demo customers; every write takes 5 s."""
    customers = []

    def log_message(self, *args):
        pass

    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"success": "true", "message": "Customers list",
                    "result": {"customer": Master.customers}})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(5)
        self._send({"success": "true", "message": "Customer updated"})


def stalled_master(binary, work, log):
    demo = json.loads((ROOT / "data/demo-customers.json").read_text())
    Master.customers = demo["result"]["customer"] if isinstance(demo, dict) else demo
    master = ThreadingHTTPServer(("127.0.0.1", MASTER_PORT), Master)
    threading.Thread(target=master.serve_forever, daemon=True).start()
    db = work / "mirror.db"
    upstream = f"http://127.0.0.1:{MASTER_PORT}/CUSTOMER/LIST/?apikey=OLDKEY"
    proc = serve(binary, db, {"ROCKET_UPSTREAM": upstream, "ROCKET_SEED_DEMO": "false",
                              "ROCKET_UPSTREAM_TIMEOUT_SECS": "30"}, log)
    failures = 0
    try:
        # The first sync has run once the list answers with customers.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/CUSTOMER/LIST/?limit=1") as r:
                if json.load(r)["result"]["customer"]:
                    break
            time.sleep(0.2)
        writes = {}
        lock = threading.Lock()

        def write(n):
            status, seconds = call("/CUSTOMER/UPDATE/", {"id_client": 1 + n % 25,
                                                         "city": f"Town {n}"}, timeout=120)
            with lock:
                writes[status] = writes.get(status, 0) + 1

        threads = [threading.Thread(target=write, args=(n,)) for n in range(60)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        slowest = {"list": 0.0, "health": 0.0, "login": 0.0}
        answered = {"list": 0, "health": 0, "login": 0}
        stop_at = time.monotonic() + 8
        jdoe = {"email": "jdoe@example.com", "password": "password123"}
        while time.monotonic() < stop_at:
            for name, (path, body) in {"list": ("/CUSTOMER/LIST/?id_client=3", None),
                                       "health": ("/health", None),
                                       "login": ("/CUSTOMER/LOGIN/", jdoe)}.items():
                status, seconds = call(path, body, timeout=30)
                slowest[name] = max(slowest[name], seconds)
                answered[name] += status < 500
        for t in threads:
            t.join()
        print("\n# mirror mode, a master that takes 5 s per write, 60 updates at once")
        print(f"write answers: {dict(sorted(writes.items()))}")
        for name in slowest:
            print(f"{name}: {answered[name]} answered meanwhile, slowest "
                  f"{slowest[name] * 1000:.0f} ms (bound {READ_BOUND * 1000:.0f} ms)")
            if slowest[name] > READ_BOUND or answered[name] == 0:
                failures += 1
    finally:
        stop(proc)
        master.shutdown()
    return failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    binary = release_binary()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with (work / "server.log").open("w") as log:
            failures = lockout(binary, work, args.duration, log)
            failures += stalled_master(binary, work, log)
    if failures:
        print(f"\n{failures} bound(s) missed")
        sys.exit(1)
    print("\nevery bound held")


if __name__ == "__main__":
    main()
