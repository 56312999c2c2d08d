#!/usr/bin/env python3
"""The connection and memory bounds, measured on this machine against the release binary.

  1. Memory under many connections: wrk with 256 connections for --duration seconds, on
     lookups by id, then on the whole list; peak RSS during each, and RSS afterwards.
  2. Stalled clients: the server started with a soft open-files limit of 1,024 (the common
     default); 1,100 connections send half a request head and stop. A normal client then asks
     for a customer 50 times: every answer and the slowest latency are reported. After the
     header timeout (5 s here, 30 s by default) the stalled connections must have been closed.

Exits non-zero when a bound is missed: peak RSS at or over 256 MiB, a normal request that is
refused or slower than 1 s, a stalled connection still open after the timeout.
  bench/limits.sh [--customers N] [--duration S]
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (ROOT, RssSampler, fetch, lua_ids, release_binary, rss_kib, sh,  # noqa: E402
                 wait_http, wrk)

PORT = 18090
STALLED = 1100
HEADER_TIMEOUT = 5
RSS_BOUND_KIB = 256 * 1024


def start(binary, env, log, soft_files=None):
    command = [binary, "serve"]
    if soft_files:
        command = ["bash", "-c", f"ulimit -Sn {soft_files} && exec \"$0\" serve", binary]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=ROOT)
    wait_http(PORT)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    args = parser.parse_args()

    binary = release_binary()
    work = Path(tempfile.mkdtemp(prefix="clientele-limits-"))
    db = work / "limits.db"
    env = dict(os.environ, ROCKET_DATABASE=str(db), ROCKET_PORT=str(PORT),
               ROCKET_ADDRESS="127.0.0.1", ROCKET_LOG_LEVEL="critical",
               ROCKET_HEADER_TIMEOUT_SECS=str(HEADER_TIMEOUT))
    data = work / "customers.json"
    with data.open("w") as out:
        sh(sys.executable, str(ROOT / "bench/gen_customers.py"), str(args.customers), stdout=out)
    sh(binary, "import", str(data), env=env, stderr=subprocess.DEVNULL)
    log = (work / "clientele.log").open("w")
    failures = []

    # 1. Memory under 256 connections.
    proc = start(binary, env, log)
    idle = rss_kib(proc.pid)
    script = work / "ids.lua"
    lua_ids(script, range(1, args.customers + 1), "")
    rows = []
    for name, path, lua in [("by id", "/", script), ("whole list", "/CUSTOMER/LIST/", None)]:
        sampler = RssSampler(proc.pid)
        result = wrk(PORT, path, 256, args.duration, script=lua)
        peak = sampler.stop()
        rows.append((name, result["rps"], result["p99"], peak, result["non2xx"],
                     result["socket_errors"]))
        if peak >= RSS_BOUND_KIB:
            failures.append(f"peak RSS {peak // 1024} MiB under 256 connections ({name})")
    time.sleep(1)
    after = rss_kib(proc.pid)
    stop(proc)
    print(f"# {args.customers} customers, 256 connections, {args.duration} s per run")
    print(f"idle RSS before: {idle / 1024:.0f} MiB; after the runs: {after / 1024:.0f} MiB")
    print("| load | req/s | p99 ms | peak RSS MiB | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|")
    for name, rps, p99, peak, bad, errors in rows:
        print(f"| {name} | {rps:,.0f} | {p99:.1f} | {peak / 1024:.0f} | {bad} | {errors or '-'} |")

    # 2. 1,100 stalled connections under a 1,024 soft open-files limit.
    proc = start(binary, env, log, soft_files=1024)
    stalled = []
    for _ in range(STALLED):
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        stalled.append(s)
    time.sleep(0.5)
    latencies, refused = [], 0
    for i in range(50):
        started = time.monotonic()
        try:
            body, _ = fetch(PORT, f"/CUSTOMER/LIST/?id_client={i + 1}")
            assert body.startswith(b'{"success":"true"')
            latencies.append(time.monotonic() - started)
        except Exception:  # noqa: BLE001 - any failure is a refusal here
            refused += 1
    rss_stalled = rss_kib(proc.pid)
    time.sleep(HEADER_TIMEOUT + 2)
    still_open = 0
    for s in stalled:
        s.settimeout(0.2)
        try:
            if s.recv(1) != b"":
                still_open += 1
        except socket.timeout:
            still_open += 1
        except OSError:
            pass
        s.close()
    stop(proc)
    slowest = max(latencies) * 1000 if latencies else float("nan")
    print(f"\n# {STALLED} stalled connections, soft open-files limit 1024 at start")
    print(f"normal requests answered: {len(latencies)} of 50, refused: {refused}, "
          f"slowest: {slowest:.1f} ms; RSS with the stalled connections: {rss_stalled / 1024:.0f} MiB")
    print(f"stalled connections still open {HEADER_TIMEOUT + 2} s later "
          f"(header timeout {HEADER_TIMEOUT} s): {still_open}")
    if refused or slowest > 1000:
        failures.append(f"{refused} normal requests refused, slowest {slowest:.0f} ms")
    if still_open:
        failures.append(f"{still_open} stalled connections outlived the header timeout")

    for failure in failures:
        print(f"MISSED: {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
