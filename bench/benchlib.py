#!/usr/bin/env python3
"""What the benchmarks in bench/ share: building, starting and timing clientele, wrk and its
output, the lua scripts, nginx serving the same bytes, a rate-limited writer, RSS sampling,
and the report table. Used by run.py, mixed.py and pg.py (limits.py and lockout.py import the
same names through run.py). Load goes to 127.0.0.1 only, and every run here is bounded in time.
"""
import hashlib
import http.client
import json
import math
import multiprocessing
import os
import queue
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def release_binary():
    """Builds clientele in release mode (the benchmarks' only build) and returns its path."""
    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    return str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/clientele")


def wait_http(port, path="/health", timeout=30.0):
    """Seconds until GET path on port answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.002)
    raise SystemExit(f"nothing answered on port {port}")


def fetch(port, path, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as r:
        return r.read(), r.headers


def download(port, path, headers=None, save=None):
    """Reads a response in pieces: (seconds, bytes, headers, sha256), optionally saved."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    digest, size = hashlib.sha256(), 0
    out = save.open("wb") if save else None
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=900) as response:
        while True:
            piece = response.read(MIB)
            if not piece:
                break
            size += len(piece)
            digest.update(piece)
            if out:
                out.write(piece)
        took = time.monotonic() - start
        headers = response.headers
    if out:
        out.close()
    return took, size, headers, digest.hexdigest()


def rss_kib(pid, field="VmRSS"):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak RSS of a process while a phase runs, sampled every 20 ms."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, 0, True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def run_sampled(command, env):
    """Runs a command to its end, sampling its RSS: (seconds, peak KiB)."""
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, rss_kib(proc.pid))
        time.sleep(0.02)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err}")
    return time.monotonic() - start, peak


def parse_duration_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def parse_bytes(text):
    """wrk's sizes ("812.34KB", "1.02GB": powers of 1024) in bytes."""
    value, unit = re.match(r"([\d.]+)([KMGT]?)B", text).groups()
    return float(value) * 1024 ** " KMGT".index(unit or " ")


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_duration_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = parse_duration_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    transfer = re.search(r"Transfer/sec:\s+(\S+)", out)
    done = re.search(r"(\d+) requests in ([\d.]+\w+), (\S+) read", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "",
            # wrk counts every byte read, of whole answers and of those cut by the end of the
            # run alike: the figure for answers too large to complete many of.
            "bytes_per_s": parse_bytes(transfer.group(1)) if transfer else 0.0,
            "requests": int(done.group(1)) if done else 0, "raw": out}


def wrk_command(port, path, connections, duration, script=None, headers=(), timeout="10s",
                scheme="http"):
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "--timeout", timeout]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(f"{scheme}://127.0.0.1:{port}{path}")
    return cmd


def wrk_bound(cmd):
    """Seconds after which a wrk command is overdue (its duration, plus its request timeout,
    plus slack): wrk is killed then rather than left to hang the benchmark."""
    duration = float(next(a for a in cmd if a.startswith("-d"))[2:-1])
    timeout = parse_duration_ms(cmd[cmd.index("--timeout") + 1]) / 1000
    return duration + timeout + 30


def wrk(port, path, connections, duration, script=None, headers=(), timeout="10s"):
    cmd = wrk_command(port, path, connections, duration, script, headers, timeout)
    return parse_wrk(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                    timeout=wrk_bound(cmd)).stdout)


def wrk_beside(command):
    """Starts a wrk run in the background; .result() waits and parses it."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    class Running:
        @staticmethod
        def result():
            try:
                return parse_wrk(proc.communicate(timeout=wrk_bound(command))[0])
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise SystemExit(f"wrk overran its duration: {' '.join(command)}")
    return Running


def lua_lookup(path, ids, key, query="id_client={}"):
    """GET one customer per request, chosen at random among `ids`, by id, email or login."""
    before, after = query.split("{}")
    table = ",".join(str(i) for i in ids)
    path.write_text(
        f"local ids = {{{table}}}\n"
        "math.randomseed(42)\n"
        "request = function()\n"
        "  local id = ids[math.random(#ids)]\n"
        f"  return wrk.format('GET', '/CUSTOMER/LIST/?{before}' .. id .. '{after}&apikey={key}')\n"
        "end\n")


def lua_ids(path, ids, key):
    lua_lookup(path, ids, key)


def lua_updates(path, ids, key):
    """An account page saving: POST /CUSTOMER/UPDATE/ with a new city, random customers."""
    table = ",".join(str(i) for i in ids)
    path.write_text(
        f"local ids = {{{table}}}\n"
        "math.randomseed(7)\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local id = ids[math.random(#ids)]\n"
        "  local body = '{\"id_client\":\"' .. id .. '\",\"city\":\"City ' .. n .. '\"}'\n"
        "  return wrk.format('POST', '/CUSTOMER/UPDATE/?apikey=" + key + "', "
        "{['Content-Type'] = 'application/json'}, body)\n"
        "end\n")


def lua_login(path, email, password, key):
    body = json.dumps({"email": email, "password": password})
    path.write_text(
        "wrk.method = 'POST'\n"
        f"wrk.body = {json.dumps(body)}\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['X-API-Key'] = '{key}'\n")


def start_clientele(binary, env, log, port):
    start = time.monotonic()
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log, cwd=ROOT)
    wait_http(port)
    return proc, time.monotonic() - start


def stop(proc, procs):
    proc.terminate()
    proc.wait()
    procs.remove(proc)


def sample_ids(n, count=2000):
    """Up to `count` distinct ids spread over 1..n (7919 is prime, so none repeat)."""
    return sorted({1 + (i * 7919) % n for i in range(min(n, count))})


class Report:
    """Each figure with what it is compared with, the ratio and the target."""

    def __init__(self, measured="clientele"):
        self.rows = []
        self.measured = measured

    def add(self, figure, measured, against="", ratio=None, target="", ok=None):
        self.rows.append({"figure": figure, "measured": measured, "against": against,
                          "ratio": "" if ratio is None else f"{ratio:.2f}", "target": target,
                          "result": "" if ok is None else ("met" if ok else "MISSED")})

    def missed(self):
        return [r["figure"] for r in self.rows if r["result"] == "MISSED"]

    def markdown(self):
        lines = [f"| figure | {self.measured} | compared with | ratio | target | result |",
                 "|---|---|---|---:|---|---|"]
        lines += [f"| {r['figure']} | {r['measured']} | {r['against']} | {r['ratio']} | "
                  f"{r['target']} | {r['result']} |" for r in self.rows]
        return "\n".join(lines)


def rate(r):
    return f"{r['rps']:.0f} req/s, p50 {r['p50']:.2f} / p99 {r['p99']:.2f} ms"


def generate(n, path, csv=False):
    command = [sys.executable, str(ROOT / "bench/gen_customers.py"), str(n)]
    with path.open("w") as out:
        sh(*command, *(["--csv"] if csv else []), stdout=out)



def wait_port(port, timeout=10.0):
    """Waits until something accepts connections on 127.0.0.1:port."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise SystemExit(f"nothing listens on port {port}")


def start_nginx(work, servers):
    """nginx serving the bytes saved from clientele, one server block per (port, root), or
    per (port, root, certificate, key) for HTTPS (TLS 1.2 and 1.3, nginx's defaults
    otherwise: session tickets on, no shared session cache).

    Each root holds `all.json` (and `all.json.gz`) for the whole list and `by_id/ID.json` for
    one customer, so `/CUSTOMER/LIST/?apikey=K` and `/CUSTOMER/LIST/?id_client=ID&apikey=K`
    take the same paths and lua scripts as against clientele. sendfile, gzip_static, no access
    log. Returns the process (the caller stops it)."""
    def tls(server):
        if len(server) < 4:
            return ""
        return (f" ssl;\n    ssl_certificate {server[2]}; ssl_certificate_key {server[3]};\n"
                "    ssl_protocols TLSv1.2 TLSv1.3")
    blocks = "".join(f"""
  server {{
    listen 127.0.0.1:{server[0]}{tls(server)};
    root {server[1]};
    gzip_static on;
    etag on;
    location = /CUSTOMER/LIST/ {{ try_files /$file.json =404; }}
  }}""" for server in servers)
    conf = Path(work) / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes auto;
pid {work}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  default_type application/json;
  types {{ }}
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  map $arg_id_client $file {{ "" all; default by_id/$arg_id_client; }}{blocks}
}}
""")
    (Path(work) / "tmp").mkdir(exist_ok=True)
    log = (Path(work) / "nginx.log").open("a")
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work), "-e", "stderr",
                              "-g", "daemon off;"], stdout=log, stderr=log)
    log.close()
    try:
        for server in servers:
            wait_port(server[0])
    except SystemExit:
        nginx.terminate()
        nginx.wait()
        raise SystemExit("nginx did not start: " + (Path(work) / "nginx.log").read_text())
    return nginx


def random_ids(n, count=100_000, seed=18):
    """min(n, count) distinct ids drawn from all of 1..n, the same for the same arguments."""
    return sorted(random.Random(seed).sample(range(1, n + 1), min(n, count)))


def lua_random_file(path, ids_file, key, query="id_client={}"):
    """GET one customer per request, uniformly at random among the ids listed one a line in
    `ids_file` (read by each wrk thread: a table of 100,000 is too long for a lua literal).
    Each thread draws its own sequence, from a fixed seed."""
    before, after = query.split("{}")
    path.write_text(
        "local ids = {}\n"
        f"for line in io.lines('{Path(ids_file).resolve()}') do ids[#ids + 1] = line end\n"
        "local threads = 0\n"
        "function setup(thread)\n"
        "  threads = threads + 1\n"
        "  thread:set('seed', threads)\n"
        "end\n"
        "function init(args)\n"
        "  math.randomseed(42 + (seed or 0))\n"
        "end\n"
        "request = function()\n"
        "  local id = ids[math.random(#ids)]\n"
        f"  return wrk.format('GET', '/CUSTOMER/LIST/?{before}' .. id .. '{after}&apikey={key}')\n"
        "end\n")


def fetch_to_files(port, items, threads=8):
    """GETs each (path, file) of `items` once over keep-alive connections, `threads` at a
    time, writing each 200 answer's exact bytes to its file; any other answer stops the run."""
    work = queue.SimpleQueue()
    for item in items:
        work.put(item)
    failed = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while not failed:
                try:
                    path, dest = work.get_nowait()
                except queue.Empty:
                    return
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    failed.append(f"{path}: HTTP {response.status} {body[:200]!r}")
                    return
                Path(dest).write_bytes(body)
        finally:
            conn.close()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failed:
        raise SystemExit("fetching the answers for nginx failed: " + failed[0])


def percentile(values, p):
    """The p-th percentile (nearest rank) of `values`, 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _write_at_rate(port, key, ids, per_second, stop, results):
    """The rate-limited writer's process: one keep-alive connection, one account update
    (POST /CUSTOMER/UPDATE/, a new city for a random customer of `ids`, as lua_updates) every
    1/per_second s on a fixed schedule. An update that comes back late delays the next ones,
    which then go at once until the schedule is caught up (at most a second behind: past that
    the missed slots are dropped). Sends back (start, seconds, status) for each update, status
    0 for a connection error."""
    rng = random.Random(7)
    period = 1.0 / per_second
    records, errors = [], []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    path = f"/CUSTOMER/UPDATE/?apikey={key}"
    headers = {"Content-Type": "application/json"}
    due, count = time.monotonic(), 0
    while True:
        wait = due - time.monotonic()
        if wait > 0 and stop.wait(wait):
            break
        if stop.is_set():
            break
        count += 1
        body = json.dumps({"id_client": str(rng.choice(ids)), "city": f"City {count}"})
        start = time.monotonic()
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            answer = response.read()
            status = response.status
            if status >= 300 and len(errors) < 5:
                errors.append(f"HTTP {status}: {answer[:200]!r}")
        except (OSError, http.client.HTTPException) as error:
            status = 0
            if len(errors) < 5:
                errors.append(repr(error))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        records.append((start, time.monotonic() - start, status))
        due += period
        if due < time.monotonic() - 1.0:
            due = time.monotonic()
    conn.close()
    results.put({"records": records, "errors": errors})


class RateWriter:
    """Account updates at a fixed rate, in a process of its own (so that its timings do not
    wait on this one's threads), until .stop(), which returns what .window() summarises."""

    def __init__(self, port, key, ids, per_second):
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self.queue = context.Queue()
        self.per_second = per_second
        self.proc = context.Process(target=_write_at_rate, daemon=True,
                                    args=(port, key, list(ids), per_second, self.stop_event,
                                          self.queue))
        self.proc.start()
        self.records, self.errors = [], []

    def stop(self):
        self.stop_event.set()
        try:
            got = self.queue.get(timeout=60)
        except queue.Empty:
            self.proc.kill()
            raise SystemExit("the rate-limited writer did not stop")
        self.proc.join(timeout=10)
        self.records, self.errors = got["records"], got["errors"]
        return self

    def window(self, begin=None, end=None):
        """Updates started within [begin, end] (all when not given): how many, the rate
        achieved, p50 and p99 in ms, and the errors (non-2xx answers and connection errors)."""
        chosen = [r for r in self.records
                  if (begin is None or r[0] >= begin) and (end is None or r[0] <= end)]
        if begin is None and chosen:
            begin = chosen[0][0]
        if end is None and chosen:
            end = chosen[-1][0]
        span = (end - begin) if chosen and end > begin else 0
        latencies = [r[1] * 1000 for r in chosen]
        bad = sum(1 for r in chosen if not 200 <= r[2] < 300)
        return {"count": len(chosen), "rate": len(chosen) / span if span else 0.0,
                "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                "max": max(latencies, default=0.0), "errors": bad, "examples": self.errors}


def conclude(report, text, work, results, keep):
    """Prints the table, keeps it and the raw results in `work`, names the targets missed:
    the exit status (1 when any was)."""
    print(text)
    (work / "report.md").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    missed = report.missed()
    if missed:
        print("\nmissed: " + "; ".join(missed))
    if keep:
        print(f"\n(raw wrk output and logs in {work})")
    return 1 if missed else 0


def clean_up(procs, log, work, keep):
    """Stops every process still running, closes the log, removes `work` unless kept."""
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    log.close()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


def errors_of(result):
    """'' when every answer was 2xx/3xx and no socket error; else what went wrong."""
    parts = []
    if result["non2xx"]:
        parts.append(f"{result['non2xx']} non-2xx")
    if result["socket_errors"]:
        parts.append("socket errors: " + result["socket_errors"])
    return "; ".join(parts)
