#!/usr/bin/env python3
"""The connection and memory bounds, measured on this machine against the release binary.

  1. Memory under many connections: wrk with 256 connections for --duration seconds, on
     lookups by id, then on the whole list; peak RSS during each, and RSS afterwards.
  2. Stalled heads: the server started under a hard (and soft) open-files limit of 1,024, so it
     serves 896 connections at once; 1,100 connections send half a request head and stop. A
     normal client then asks for a customer 50 times: every answer and the slowest latency
     are reported, and how many stalled connections were closed to make room (the oldest
     waiting ones). After the header timeout (5 s here, 30 s by default) every stalled
     connection must have been closed.
  3. Stalled bodies: 2,000 connections send a login head promising 100 bytes of body, send
     one, and stop. A normal client asks for a customer 50 times meanwhile; then every stalled
     connection must have been answered 408 and closed within the body bound (the header
     timeout again) plus 2 s.

Exits non-zero when a bound is missed: peak RSS at or over 256 MiB, a normal request that is
refused or slower than 1 s, a stalled connection still open after its bound.
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
STALLED_BODIES = 2000
HEADER_TIMEOUT = 5
RSS_BOUND_KIB = 256 * 1024


def start(binary, env, log, open_files=None):
    command = [binary, "serve"]
    if open_files:
        # Both limits: the server cannot raise its soft limit past this.
        command = ["bash", "-c", f"ulimit -n {open_files} && exec \"$0\" serve", binary]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=ROOT)
    wait_http(PORT)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def stall(count, first_bytes):
    """`count` connections that each send `first_bytes` and then nothing, with the time each
    was opened."""
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(first_bytes)
        sockets.append((s, time.monotonic()))
    return sockets


def closed(s, wait):
    """Whether the server closed `s` within `wait` seconds, and what it sent; closes `s` then."""
    received = b""
    s.settimeout(max(wait, 0.001))
    try:
        while True:
            piece = s.recv(4096)
            if not piece:
                s.close()
                return True, received
            received += piece
    except socket.timeout:
        return False, received
    except OSError:
        s.close()
        return True, received


def normal_client(count=50):
    """Asks for `count` customers one after the other: (latencies in seconds, refusals)."""
    latencies, refused = [], 0
    for i in range(count):
        started = time.monotonic()
        try:
            body, _ = fetch(PORT, f"/CUSTOMER/LIST/?id_client={i + 1}")
            assert body.startswith(b'{"success":"true"')
            latencies.append(time.monotonic() - started)
        except Exception:  # noqa: BLE001 - any failure is a refusal here
            refused += 1
    return latencies, refused


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

    # 2. 1,100 stalled heads under a hard open-files limit of 1,024.
    proc = start(binary, env, log, open_files=1024)
    stalled = stall(STALLED, b"GET /health HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.5)
    latencies, refused = normal_client()
    rss_stalled = rss_kib(proc.pid)
    early = [closed(s, 0.001)[0] for s, _ in stalled]
    closed_early = sum(early)
    time.sleep(HEADER_TIMEOUT + 2)
    still_open = sum(1 for (s, _), gone in zip(stalled, early)
                     if not gone and not closed(s, 0.2)[0])
    stop(proc)
    slowest = max(latencies) * 1000 if latencies else float("nan")
    print(f"\n# {STALLED} stalled heads, hard open-files limit 1024 (896 connections at once)")
    print(f"normal requests answered: {len(latencies)} of 50, refused: {refused}, "
          f"slowest: {slowest:.1f} ms; RSS with the stalled connections: {rss_stalled / 1024:.0f} MiB")
    print(f"stalled heads closed to make room (oldest first) by then: {closed_early}")
    print(f"stalled heads still open {HEADER_TIMEOUT + 2} s later "
          f"(header timeout {HEADER_TIMEOUT} s): {still_open}")
    if refused or slowest > 1000:
        failures.append(f"stalled heads: {refused} normal requests refused, "
                        f"slowest {slowest:.0f} ms")
    if still_open:
        failures.append(f"{still_open} stalled heads outlived the header timeout")

    # 3. 2,000 stalled bodies.
    proc = start(binary, env, log)
    started = time.monotonic()
    stalled = stall(STALLED_BODIES, b"POST /CUSTOMER/LOGIN/ HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    opened = time.monotonic() - started
    latencies, refused = normal_client()
    bound = HEADER_TIMEOUT + 2
    timed_out, still_open = 0, 0
    for s, opened_at in stalled:
        # Each within its own bound, counted from when it was opened.
        is_closed, answer = closed(s, opened_at + bound - time.monotonic())
        if is_closed:
            timed_out += answer.startswith(b"HTTP/1.1 408")
        else:
            still_open += 1
    last = time.monotonic() - started
    stop(proc)
    slowest = max(latencies) * 1000 if latencies else float("nan")
    print(f"\n# {STALLED_BODIES} stalled bodies (100 bytes promised, 1 sent), opened in "
          f"{opened:.1f} s")
    print(f"normal requests answered meanwhile: {len(latencies)} of 50, refused: {refused}, "
          f"slowest: {slowest:.1f} ms")
    print(f"stalled bodies answered 408 and closed: {timed_out}, all by {last:.1f} s after the "
          f"first was opened; still open {bound} s after their own opening (body bound "
          f"{HEADER_TIMEOUT} s): {still_open}")
    if refused or slowest > 1000:
        failures.append(f"stalled bodies: {refused} normal requests refused, "
                        f"slowest {slowest:.0f} ms")
    if still_open or timed_out < STALLED_BODIES:
        failures.append(f"{still_open} stalled bodies outlived their bound, "
                        f"{STALLED_BODIES - timed_out} got no 408")

    for failure in failures:
        print(f"MISSED: {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
