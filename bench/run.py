#!/usr/bin/env python3
"""clientele against nginx serving the same bytes, on this machine, in one run.

Run through bench/run.sh, which installs wrk and nginx first. Steps:
  1. build clientele (release), generate N customers, import them into a fresh database,
     give 8 of them passwords, create an API key;
  2. start clientele, save the exact bytes it answers (one file per sampled id, the whole
     list, its gzip copy) and serve those files with nginx on another loopback port;
  3. for each phase, run wrk with the same settings against both servers, alternating
     which goes first, and sample clientele's RSS while it runs;
  4. print a table with each figure, nginx's, and the ratio, then the targets; exit 1 if one
     is missed.
Load goes to 127.0.0.1 only, and every wrk run is bounded by --duration.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENTELE_PORT = 18080
NGINX_PORT = 18081
MIB = 1024 * 1024


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


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


def parse_duration_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(port, path, connections, duration, script=None, headers=()):
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_duration_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = parse_duration_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "", "raw": out}


def lua_ids(path, ids, key):
    table = ",".join(str(i) for i in ids)
    path.write_text(
        f"local ids = {{{table}}}\n"
        "math.randomseed(42)\n"
        "request = function()\n"
        "  local id = ids[math.random(#ids)]\n"
        f"  return wrk.format('GET', '/CUSTOMER/LIST/?id_client=' .. id .. '&apikey={key}')\n"
        "end\n")


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


def start_clientele(binary, env, log):
    start = time.monotonic()
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log, cwd=ROOT)
    up = wait_http(CLIENTELE_PORT)
    return proc, time.monotonic() - start if up is not None else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    n, duration = args.customers, args.duration

    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = str(target / "release/clientele")
    work = Path(tempfile.mkdtemp(prefix="clientele-bench-"))
    www = work / "www"
    (www / "by_id").mkdir(parents=True)
    db = work / "bench.db"
    # The failure limit is raised so the login timing phase can fail as often as it needs.
    env = dict(os.environ, ROCKET_DATABASE=str(db), ROCKET_PORT=str(CLIENTELE_PORT),
               ROCKET_ADDRESS="127.0.0.1", ROCKET_LOG_LEVEL="critical", ROCKET_CLI_COLORS="false",
               ROCKET_LOGIN_MAX_FAILURES="1000000")
    procs = []
    try:
        # 1. Data, passwords for 8 customers, a key.
        data = work / "customers.json"
        with data.open("w") as out:
            sh(sys.executable, str(ROOT / "bench/gen_customers.py"), str(n), stdout=out)
        sh(binary, "import", str(data), env=env, stderr=subprocess.DEVNULL)
        passwords = {}
        for i in range(1, 9):
            # Strong enough for `passwd`'s check (zxcvbn score 2 or more).
            passwords[i] = f"lavande moulin {i} rouge bench"
            sh(binary, "passwd", str(i), input=(passwords[i] + "\n").encode(), env=env,
               stderr=subprocess.DEVNULL)
        key = subprocess.run([binary, "keys", "create", "bench"], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        write_key = subprocess.run([binary, "keys", "create", "bench-writer", "--write"],
                                   env=env, check=True, capture_output=True,
                                   text=True).stdout.strip()

        # 2. clientele, and its bytes for nginx.
        log = (work / "clientele.log").open("w")
        proc, startup = start_clientele(binary, env, log)
        procs.append(proc)
        ids = sorted({1 + (i * 7919) % n for i in range(min(n, 500))})
        for i in ids:
            body, _ = fetch(CLIENTELE_PORT, f"/CUSTOMER/LIST/?id_client={i}&apikey={key}")
            (www / "by_id" / f"{i}.json").write_bytes(body)
        whole, headers = fetch(CLIENTELE_PORT, f"/CUSTOMER/LIST/?apikey={key}")
        (www / "all.json").write_bytes(whole)
        gz, gz_headers = fetch(CLIENTELE_PORT, f"/CUSTOMER/LIST/?apikey={key}",
                               {"Accept-Encoding": "gzip"})
        assert gz_headers.get("Content-Encoding") == "gzip", gz_headers
        (www / "all.json.gz").write_bytes(gz)
        etag = headers["ETag"]
        conf = work / "nginx.conf"
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
  map $arg_id_client $file {{ "" all; default by_id/$arg_id_client; }}
  server {{
    listen 127.0.0.1:{NGINX_PORT};
    root {www};
    gzip_static on;
    etag on;
    location = /CUSTOMER/LIST/ {{ try_files /$file.json =404; }}
  }}
}}
""")
        (work / "tmp").mkdir()
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work), "-e", "stderr",
                                  "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        procs.append(nginx)
        time.sleep(0.5)
        nginx_body, nginx_headers = fetch(NGINX_PORT, f"/CUSTOMER/LIST/?apikey={key}")
        assert nginx_body == whole, "nginx must serve the same bytes"
        nginx_etag = nginx_headers["ETag"]
        sample = www / "by_id" / f"{ids[0]}.json"
        assert fetch(NGINX_PORT, f"/CUSTOMER/LIST/?id_client={ids[0]}&apikey={key}")[0] == sample.read_bytes()

        ids_lua = work / "ids.lua"
        lua_ids(ids_lua, ids, key)
        login_lua = work / "login.lua"
        lua_login(login_lua, f"user1@example.be", passwords[1], key)
        whole_path = f"/CUSTOMER/LIST/?apikey={key}"

        phases = []
        for c in (1, 16, 64):
            phases.append((f"one customer by id, {c} conn", "/", c, ids_lua, (), None))
        for c in (1, 16, 64):
            phases.append((f"whole list, {c} conn", whole_path, c, None, (), None))
        phases.append(("whole list gzip, 16 conn", whole_path, 16, None,
                       ("Accept-Encoding: gzip",), None))
        phases.append(("revalidation 304, 16 conn", whole_path, 16, None, (), "etag"))

        results = []
        for index, (name, path, c, script, hdrs, conditional) in enumerate(phases):
            row = {"phase": name}
            order = ["clientele", "nginx"] if index % 2 == 0 else ["nginx", "clientele"]
            for server in order:
                port = CLIENTELE_PORT if server == "clientele" else NGINX_PORT
                extra = list(hdrs)
                if conditional:
                    extra.append(f"If-None-Match: {etag if server == 'clientele' else nginx_etag}")
                sampler = RssSampler(proc.pid) if server == "clientele" else None
                row[server] = wrk(port, path, c, duration, script, extra)
                if sampler:
                    row["rss_kib"] = sampler.stop()
                if row[server]["non2xx"] and not conditional:
                    raise SystemExit(f"{server} answered errors in '{name}':\n{row[server]['raw']}")
            results.append(row)

        # Logins saturating the pool while list-by-id runs at 16 connections.
        unloaded = next(r for r in results if r["phase"] == "one customer by id, 16 conn")
        login_proc = subprocess.Popen(
            ["wrk", "-t1", "-c8", f"-d{duration + 2}s", "-s", str(login_lua),
             f"http://127.0.0.1:{CLIENTELE_PORT}/CUSTOMER/LOGIN/"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        sampler = RssSampler(proc.pid)
        loaded = wrk(CLIENTELE_PORT, "/", 16, duration, ids_lua)
        peak = sampler.stop()
        login_out = login_proc.communicate()[0]
        login_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", login_out).group(1))
        login_bad = re.search(r"Non-2xx or 3xx responses: (\d+)", login_out)
        results.append({"phase": "id, 16 conn, logins saturating", "clientele": loaded,
                        "rss_kib": peak, "unloaded_rps": unloaded["clientele"]["rps"],
                        "beside": f"logins {login_rps:.0f}/s",
                        "login_errors": int(login_bad.group(1)) if login_bad else 0})

        # Account-page updates (4 connections, as fast as they go) while list-by-id runs at
        # 64 connections: updates/s sustained, and what the reads keep meanwhile.
        unloaded64 = next(r for r in results if r["phase"] == "one customer by id, 64 conn")
        updates_lua = work / "updates.lua"
        lua_updates(updates_lua, ids, write_key)
        update_proc = subprocess.Popen(
            ["wrk", "-t1", "-c4", f"-d{duration + 2}s", "--latency", "-s", str(updates_lua),
             f"http://127.0.0.1:{CLIENTELE_PORT}/CUSTOMER/UPDATE/"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        sampler = RssSampler(proc.pid)
        reading = wrk(CLIENTELE_PORT, "/", 64, duration, ids_lua)
        peak = sampler.stop()
        update_out = update_proc.communicate()[0]
        update_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", update_out).group(1))
        update_p99 = parse_duration_ms(re.search(r"\n\s+99%\s+(\S+)", update_out).group(1))
        update_bad = re.search(r"Non-2xx or 3xx responses: (\d+)", update_out)
        if update_bad:
            raise SystemExit(f"updates answered errors:\n{update_out}")
        results.append({"phase": "id, 64 conn, updates running", "clientele": reading,
                        "rss_kib": peak, "unloaded_rps": unloaded64["clientele"]["rps"],
                        "beside": f"updates {update_rps:.0f}/s (p99 {update_p99:.1f} ms)"})
        peak_all = max(rss_kib(proc.pid, "VmHWM"), *(r.get("rss_kib", 0) for r in results))

        # Wrong password and unknown account must take about the same time. The two are
        # interleaved, so that any drift in the machine's load falls on both alike.
        def login_once(email):
            body = json.dumps({"email": email, "password": "not-the-password"}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{CLIENTELE_PORT}/CUSTOMER/LOGIN/", data=body,
                headers={"Content-Type": "application/json", "X-API-Key": key})
            start = time.perf_counter()
            try:
                urllib.request.urlopen(request, timeout=30).read()
            except urllib.error.HTTPError as error:
                assert error.code == 401, error.code
            return (time.perf_counter() - start) * 1000
        time.sleep(2)
        pairs = [(login_once("user2@example.be"), login_once("nobody@example.be"))
                 for _ in range(40)]
        wrong_ms = sorted(p[0] for p in pairs)[len(pairs) // 2]
        unknown_ms = sorted(p[1] for p in pairs)[len(pairs) // 2]

        # Start-up time to the first answered request, on the N-customer database.
        proc.terminate()
        proc.wait()
        procs.remove(proc)
        proc, startup = start_clientele(binary, env, log)
        procs.append(proc)
        proc.terminate()
        proc.wait()
        procs.remove(proc)

        # Idle RSS with the demo data.
        demo_env = dict(env, ROCKET_DATABASE=str(work / "demo.db"), ROCKET_SEED_DEMO="true")
        demo, _ = start_clientele(binary, demo_env, log)
        procs.append(demo)
        fetch(CLIENTELE_PORT, "/CUSTOMER/LIST/")
        time.sleep(1)
        idle_rss = rss_kib(demo.pid)

        # 4. The table and the targets.
        lines = [f"clientele vs nginx, {n} customers, wrk {duration} s per run, "
                 f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}",
                 "", "| phase | clientele req/s | nginx req/s | ratio | clientele p50 / p99 ms "
                 "| nginx p50 / p99 ms | clientele peak RSS MiB |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for r in results:
            c = r["clientele"]
            if "nginx" in r:
                x = r["nginx"]
                lines.append(f"| {r['phase']} | {c['rps']:.0f} | {x['rps']:.0f} | "
                             f"{c['rps'] / x['rps']:.2f} | {c['p50']:.2f} / {c['p99']:.2f} | "
                             f"{x['p50']:.2f} / {x['p99']:.2f} | {r['rss_kib'] / 1024:.1f} |")
            else:
                lines.append(f"| {r['phase']} | {c['rps']:.0f} | (unloaded {r['unloaded_rps']:.0f}) "
                             f"| {c['rps'] / r['unloaded_rps']:.2f} | {c['p50']:.2f} / {c['p99']:.2f} "
                             f"| {r['beside']} | {r['rss_kib'] / 1024:.1f} |")
        lines += ["", f"response sizes: one customer ~{len(next(iter((www / 'by_id').iterdir())).read_bytes())} B, "
                      f"whole list {len(whole) / MIB:.1f} MiB ({len(gz) / MIB:.1f} MiB gzip)",
                  f"clientele peak RSS over the run: {peak_all / 1024:.1f} MiB; "
                  f"idle RSS with the demo data: {idle_rss / 1024:.1f} MiB; "
                  f"start to first answered request: {startup * 1000:.0f} ms",
                  f"login, median of 40 interleaved: wrong password {wrong_ms:.1f} ms, "
                  f"unknown account {unknown_ms:.1f} ms"]

        def ratio(name):
            r = next(r for r in results if r["phase"] == name)
            return r["clientele"]["rps"] / r["nginx"]["rps"]

        by_id64 = next(r for r in results if r["phase"] == "one customer by id, 64 conn")
        saturated = next(r for r in results if r["phase"] == "id, 16 conn, logins saturating")
        targets = [
            ("one customer, 64 conn: >= 0.5x nginx", ratio("one customer by id, 64 conn") >= 0.5),
            ("one customer, 64 conn: p99 < 5 ms", by_id64["clientele"]["p99"] < 5.0),
            ("whole list, 16 conn: >= 0.5x nginx", ratio("whole list, 16 conn") >= 0.5),
            ("whole list gzip, 16 conn: >= 0.5x nginx", ratio("whole list gzip, 16 conn") >= 0.5),
            ("304 revalidation: >= 0.5x nginx", ratio("revalidation 304, 16 conn") >= 0.5),
            ("by id under login load: >= 0.4x unloaded",
             saturated["clientele"]["rps"] >= 0.4 * saturated["unloaded_rps"]),
            ("idle RSS with the demo data < 40 MiB", idle_rss < 40 * 1024),
            ("unknown account within 20% of wrong password",
             abs(unknown_ms - wrong_ms) <= 0.2 * wrong_ms),
        ]
        if n >= 100000:
            targets += [
                ("peak RSS < 256 MiB", peak_all < 256 * 1024),
                ("start to first answer < 300 ms", startup < 0.3),
            ]
        lines += ["", "| target | result |", "|---|---|"]
        lines += [f"| {name} | {'met' if ok else 'MISSED'} |" for name, ok in targets]
        report = "\n".join(lines)
        print(report)
        (work / "report.md").write_text(report + "\n")
        (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"\n(raw wrk output and logs in {work})" if args.keep else "")
        return 0 if all(ok for _, ok in targets) else 1
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
