#!/usr/bin/env python3
"""What the benchmarks in bench/ share: building, starting and timing clientele, wrk and its
output, the lua scripts, nginx serving the same bytes, a rate-limited writer, RSS sampling,
and the report table. Used by run.py, mixed.py and pg.py (limits.py and lockout.py import the
same names through run.py). Load goes to 127.0.0.1 only, and every run here is bounded in time.
"""
import hashlib
import json
import os
import re
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


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_duration_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = parse_duration_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "", "raw": out}


def wrk_command(port, path, connections, duration, script=None, headers=()):
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "--timeout", "10s"]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    return cmd


def wrk(port, path, connections, duration, script=None, headers=()):
    cmd = wrk_command(port, path, connections, duration, script, headers)
    return parse_wrk(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def wrk_beside(command):
    """Starts a wrk run in the background; .result() waits and parses it."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    class Running:
        @staticmethod
        def result():
            return parse_wrk(proc.communicate()[0])
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

    def __init__(self):
        self.rows = []

    def add(self, figure, measured, against="", ratio=None, target="", ok=None):
        self.rows.append({"figure": figure, "measured": measured, "against": against,
                          "ratio": "" if ratio is None else f"{ratio:.2f}", "target": target,
                          "result": "" if ok is None else ("met" if ok else "MISSED")})

    def missed(self):
        return [r["figure"] for r in self.rows if r["result"] == "MISSED"]

    def markdown(self):
        lines = ["| figure | clientele | compared with | ratio | target | result |",
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
    """nginx serving the bytes saved from clientele, one server block per (port, root).

    Each root holds `all.json` (and `all.json.gz`) for the whole list and `by_id/ID.json` for
    one customer, so `/CUSTOMER/LIST/?apikey=K` and `/CUSTOMER/LIST/?id_client=ID&apikey=K`
    take the same paths and lua scripts as against clientele. sendfile, gzip_static, no access
    log. Returns the process (the caller stops it)."""
    blocks = "".join(f"""
  server {{
    listen 127.0.0.1:{port};
    root {root};
    gzip_static on;
    etag on;
    location = /CUSTOMER/LIST/ {{ try_files /$file.json =404; }}
  }}""" for port, root in servers)
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
        for port, _ in servers:
            wait_port(port)
    except SystemExit:
        nginx.terminate()
        nginx.wait()
        raise SystemExit("nginx did not start: " + (Path(work) / "nginx.log").read_text())
    return nginx
