#!/usr/bin/env python3
"""Cost at scale: N customers (a million by default) on this machine, release build.

  1. import from CSV and from the old API's JSON: time and peak RSS;
  2. start to first answered request, and idle RSS;
  3. the whole list: one download, 4 at once (peak RSS), gzip, a 304;
  4. walking every customer by pages of 10,000 with `after` (and with `offset`), against
     one whole download;
  5. one customer by id, by email, by login.
Prints each figure with its target (issue 12) and exits non-zero when one is missed.
It does not yet cover the wrk comparisons with nginx or the login load (bench/run.sh).

  bench/scale.sh [--customers N]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, RssSampler as Sampler, rss_kib as rss  # noqa: E402

PORT = 18410
MIB = 1024 * 1024


def peak_rss_of(command, env):
    """Runs `command`, sampling its RSS; returns (seconds, peak KiB, stderr)."""
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, rss(proc.pid))
        time.sleep(0.02)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(err)
    return time.monotonic() - start, peak, err


def download(base, path, headers=None):
    request = urllib.request.Request(base + path, headers=headers or {})
    start = time.monotonic()
    size = 0
    with urllib.request.urlopen(request, timeout=900) as response:
        etag = response.headers.get("ETag")
        while True:
            piece = response.read(MIB)
            if not piece:
                break
            size += len(piece)
    return time.monotonic() - start, size, etag


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.customers
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/clientele")
    work = Path(tempfile.mkdtemp(prefix="clientele-scale-"))
    rows, failures = [], []

    def figure(name, value, target=None, ok=None):
        rows.append((name, value, target or "", "" if ok is None else ("met" if ok else "MISSED")))
        if ok is False:
            failures.append(name)

    gen = [sys.executable, str(ROOT / "bench/gen_customers.py"), str(n)]
    (work / "c.csv").write_bytes(subprocess.run(gen + ["--csv"], capture_output=True, check=True).stdout)
    (work / "c.json").write_bytes(subprocess.run(gen, capture_output=True, check=True).stdout)
    for kind in ("csv", "json"):
        env = dict(os.environ, ROCKET_DATABASE=str(work / f"{kind}.db"), ROCKET_LOG_LEVEL="critical")
        seconds, peak, _ = peak_rss_of([binary, "import", str(work / f"c.{kind}")], env)
        size = (work / f"c.{kind}").stat().st_size / 1e6
        figure(f"import {n} from {kind.upper()} ({size:.0f} MB)", f"{seconds:.1f} s",
               "< 60 s", seconds < 60)
        figure(f"  peak RSS", f"{peak / 1024:.0f} MiB", "< 256 MiB", peak < 256 * 1024)

    env = dict(os.environ, ROCKET_DATABASE=str(work / "csv.db"), ROCKET_PORT=str(PORT),
               ROCKET_LOG_LEVEL="critical")
    base = f"http://127.0.0.1:{PORT}"
    start = time.monotonic()
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.002)
        started = time.monotonic() - start
        figure("start to first answered request", f"{started * 1000:.0f} ms", "< 300 ms",
               started < 0.3)
        time.sleep(1)
        idle = rss(proc.pid)
        figure("idle RSS", f"{idle / 1024:.0f} MiB", "< 64 MiB", idle < 64 * 1024)

        sampler = Sampler(proc.pid)
        one, size, etag = download(base, "/CUSTOMER/LIST/")
        figure(f"whole list ({size / 1e6:.0f} MB), one download", f"{one:.2f} s")
        results = [None] * 4
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, download(base, "/CUSTOMER/LIST/"))) for i in range(4)]
        begin = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        four = time.monotonic() - begin
        peak = sampler.stop()
        figure("whole list, 4 downloads at once", f"{four:.2f} s, peak RSS {peak / 1024:.0f} MiB",
               "peak RSS < 256 MiB", peak < 256 * 1024)
        sampler = Sampler(proc.pid)
        gz, gz_size, _ = download(base, "/CUSTOMER/LIST/", {"Accept-Encoding": "gzip"})
        peak = sampler.stop()
        figure("whole list gzip", f"{gz_size / 1e6:.0f} MB in {gz:.2f} s, peak RSS {peak / 1024:.0f} MiB",
               "streamed, not in memory", peak < 256 * 1024)
        begin = time.monotonic()
        try:
            urllib.request.urlopen(urllib.request.Request(
                base + "/CUSTOMER/LIST/", headers={"If-None-Match": etag}), timeout=10)
            status = 200
        except urllib.error.HTTPError as error:
            status = error.code
        took = (time.monotonic() - begin) * 1000
        figure("If-None-Match on the whole list", f"HTTP {status} in {took:.1f} ms",
               "304, no rebuild", status == 304 and took < 100)

        for name, path in [("after", "/CUSTOMER/LIST/?after={}&limit=10000"),
                           ("offset", "/CUSTOMER/LIST/?offset={}&limit=10000")]:
            begin, cursor, pages = time.monotonic(), 0, 0
            while True:
                with urllib.request.urlopen(base + path.format(cursor), timeout=60) as response:
                    body = response.read()
                ids = re.findall(rb'"clcleunik":(\d+)', body[-2000:])
                if not ids:
                    break
                pages += 1
                cursor = int(ids[-1]) if name == "after" else cursor + 10000
            walk = time.monotonic() - begin
            target = "<= 3x one download" if name == "after" else None
            ok = walk <= 3 * one if name == "after" else None
            figure(f"walk all by pages of 10,000 with {name}",
                   f"{pages} pages in {walk:.2f} s ({walk / one:.2f}x)", target, ok)
        mid = n // 2 + 7
        for name, path in [("by id", f"?id_client={mid}"), ("by email", f"?email=user{mid}@example.be"),
                           ("by login", f"?login=user{mid}")]:
            times = []
            for _ in range(20):
                begin = time.monotonic()
                urllib.request.urlopen(base + "/CUSTOMER/LIST/" + path).read()
                times.append((time.monotonic() - begin) * 1000)
            figure(f"one customer {name}, median of 20", f"{sorted(times)[10]:.2f} ms")
    finally:
        proc.terminate()
        proc.wait()

    print(f"clientele at {n} customers, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}\n")
    print("| figure | measured | target | result |\n|---|---|---|---|")
    for name, value, target, result in rows:
        print(f"| {name} | {value} | {target} | {result} |")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
