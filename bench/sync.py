#!/usr/bin/env python3
"""The mirror's cost: `clientele sync` from a local stand-in for the old API serving N
customers with plain-text passwords (the shipped Argon2id cost), on a fresh database.

  1. first sync: every password hashed (on every core);
  2. second sync of the unchanged list: no password hashed; target under 3 s at 10,000;
  3. a sync after 10 passwords changed: exactly 10 hashed.

  bench/sync.sh [--customers N]
"""
import argparse
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, release_binary  # noqa: E402


def serve(body_ref):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = body_ref[0]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def timed_sync(binary, env, url):
    start = time.monotonic()
    out = subprocess.run([binary, "sync", url], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    hashed = int(re.search(r"(\d+) password\(s\) hashed", out.stderr).group(1))
    return seconds, hashed, out.stderr.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10000)
    args = parser.parse_args()
    n = args.customers
    binary = release_binary()
    work = Path(tempfile.mkdtemp(prefix="clientele-sync-"))
    data = subprocess.run([sys.executable, str(ROOT / "bench/gen_customers.py"), str(n),
                           "--passwords"], capture_output=True, check=True).stdout
    body = [data]
    port = serve(body)
    url = f"http://127.0.0.1:{port}/CUSTOMER/LIST/?apikey=OLDKEY"
    env = dict(os.environ, ROCKET_DATABASE=str(work / "mirror.db"), ROCKET_SEED_DEMO="false",
               ROCKET_LOG_LEVEL="critical")
    first = timed_sync(binary, env, url)
    second = timed_sync(binary, env, url)
    changed = data
    for i in range(1, 11):
        changed = changed.replace(f'"pw-{i}-secret"'.encode(), f'"changed-{i}-secret"'.encode(), 1)
    body[0] = changed
    third = timed_sync(binary, env, url)
    print(f"sync of {n} customers from a local old API, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| sync | seconds | passwords hashed |")
    print("|---|---:|---:|")
    for name, (seconds, hashed, _) in [("first (empty database)", first),
                                        ("second, upstream unchanged", second),
                                        ("third, 10 passwords changed", third)]:
        print(f"| {name} | {seconds:.2f} | {hashed} |")
    ok = second[0] < 3.0 and second[1] == 0
    print(f"\n| target | result |\n|---|---|\n| unchanged upstream of {n}: under 3 s, no hash "
          f"| {'met' if ok else 'MISSED'} |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
