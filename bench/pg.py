#!/usr/bin/env python3
"""A PostgreSQL-backed clientele node against a SQLite-backed one, same data, one run.

Run through bench/pg.sh, which starts a throwaway PostgreSQL (fsync on) and sets
CLIENTELE_TEST_POSTGRES. For each size given to --customers (default 10,000):
  1. generate N customers as CSV (bench/gen_customers.py), `clientele import` them into a
     fresh SQLite file, give 8 of them passwords (`clientele passwd`), create a read key and
     a write key there, then `clientele copy-to` a new PostgreSQL database (timed: that is how
     a shop moves), so both nodes hold the same customers, hashes and keys;
  2. start both nodes side by side (SQLite on 18090, PostgreSQL on 18091, or the next free
     ports) and check that they answer the same bytes for the same customers, and the same
     total;
  3. one customer by id at 64 connections, 2,000 sampled ids (the memo answers both), in
     alternating rounds: the PostgreSQL node must reach 0.8x the SQLite node; then the
     PostgreSQL node against nginx serving the same bytes (saved from it, served as files as
     bench/run.py does), one after the other: by id at 64 connections, the same ids, at least
     1.0x nginx with a p99 at most 1.5x nginx's; the whole list's 304 at 16 connections, at
     least 1.0x nginx (issue 18: the memo paths on PostgreSQL serve from memory);
  4. by id at random ids over all N with the response cache and memo off
     (ROCKET_RESPONSE_CACHE_MIB=0), 64 connections: every request reaches the database;
  5. updates per second (POST /CUSTOMER/UPDATE/, a new city for a random customer, 4
     connections), then logins per second (right password, 16 connections; Argon2id
     dominates), each node alone, against the raw Argon2id rate (`clientele login-rate`);
and once, at the end: scripts/pg-cluster-demo.sh with the same binary (its failover time).
Prints two tables per size (figure, SQLite, PostgreSQL, ratio, target, result; then the
PostgreSQL node against nginx) and exits 1 when a target is missed or a node answered errors. Load goes to 127.0.0.1 only, and every wrk
run is bounded by --duration.
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
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as base  # noqa: E402  (wrk, lua, nginx, wait_http, generate, sample_ids)
from benchlib import errors_of  # noqa: E402

ROOT = base.ROOT
SQLITE_PORT = 18090
PG_PORT = 18091
NGINX_PORT = 18092
ROUNDS = 3          # rounds of the by-id comparison (the target), alternating who goes first
UNCACHED_ROUNDS = 2
TARGET = 0.8
NODES = ("sqlite", "pg")
LABEL = {"sqlite": "SQLite", "pg": "PostgreSQL"}


def psql_binary():
    found = shutil.which("psql")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    if not candidates:
        raise SystemExit("no psql found (scripts/pg-test-server.sh installs PostgreSQL)")
    return str(candidates[-1])


def psql(url, sql):
    """One statement through psql (libpq reads the same URL as clientele); its output."""
    return subprocess.run([psql_binary(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           url, "-c", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def masked(url):
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def free_gib(path):
    return shutil.disk_usage(path).free / 2**30


def lua_random_ids(path, n, key):
    """GET one customer per request, any of the N, at random: nothing repeats enough to matter."""
    path.write_text(
        "math.randomseed(42)\n"
        "request = function()\n"
        f"  return wrk.format('GET', '/CUSTOMER/LIST/?id_client=' .. math.random({n}) .. "
        f"'&apikey={key}')\n"
        "end\n")


def lua_writes(path, n, key):
    """POST /CUSTOMER/UPDATE/ {"clcleunik":ID,"city":"..."} for a random customer of the N."""
    path.write_text(
        "math.randomseed(7)\n"
        "local count = 0\n"
        "request = function()\n"
        "  count = count + 1\n"
        f"  local body = '{{\"clcleunik\":' .. math.random({n}) .. "
        "',\"city\":\"Bench city ' .. count .. '\"}'\n"
        "  return wrk.format('POST', '/CUSTOMER/UPDATE/', "
        f"{{['Content-Type'] = 'application/json', ['X-API-Key'] = '{key}'}}, body)\n"
        "end\n")


def wrk_run(port, path, connections, duration, script, threads=None, timeout="10s"):
    cmd = base.wrk_command(port, path, connections, duration, script)
    if threads is not None:
        cmd[1] = f"-t{threads}"
    if timeout != "10s":
        cmd[cmd.index("--timeout") + 1] = timeout
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return base.parse_wrk(out)


class Table:
    """figure | SQLite | PostgreSQL | ratio (PostgreSQL / SQLite) | target | result."""

    def __init__(self):
        self.rows = []

    def add(self, figure, sqlite, pg, ratio=None, target="", ok=None):
        self.rows.append({"figure": figure, "sqlite": sqlite, "pg": pg,
                          "ratio": "" if ratio is None else f"{ratio:.2f}", "target": target,
                          "result": "" if ok is None else ("pass" if ok else "FAIL")})

    def failed(self):
        return [r["figure"] for r in self.rows if r["result"] == "FAIL"]

    def markdown(self):
        lines = ["| figure | SQLite node | PostgreSQL node | ratio | target | result |",
                 "|---|---|---|---:|---|---|"]
        lines += [f"| {r['figure']} | {r['sqlite']} | {r['pg']} | {r['ratio']} | {r['target']} "
                  f"| {r['result']} |" for r in self.rows]
        return "\n".join(lines)


def rate(r):
    text = base.rate(r)
    bad = errors_of(r)
    return f"{text} ({bad})" if bad else text


class Nodes:
    """The two clientele nodes, started and stopped together, with one environment each."""

    def __init__(self, binary, envs, work):
        self.binary, self.envs, self.work = binary, envs, work
        self.procs = {}
        self.log = (work / "nodes.log").open("a")

    def start(self, **extra):
        started = {}
        for node in NODES:
            env = dict(self.envs[node], **extra)
            port = int(env["ROCKET_PORT"])
            begin = time.monotonic()
            self.procs[node] = subprocess.Popen([self.binary, "serve"], env=env, cwd=ROOT,
                                                stdout=self.log, stderr=self.log)
            base.wait_http(port, timeout=60)
            started[node] = time.monotonic() - begin
        return started

    def stop(self):
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = {}

    def died(self):
        return [node for node, proc in self.procs.items() if proc.poll() is not None]


def against_nginx(n, port, key, ids, ids_lua, duration, work, report):
    """The PostgreSQL node (memo on, warm) against nginx serving the bytes it answers: by id at
    64 connections and the whole list's 304 at 16, each pair one after the other, who goes
    first alternating. Fills `report`, returns the raw results."""
    www = work / f"www-{n}"
    (www / "by_id").mkdir(parents=True)
    for i in ids:
        body, _ = base.fetch(port, f"/CUSTOMER/LIST/?id_client={i}&apikey={key}")
        (www / "by_id" / f"{i}.json").write_bytes(body)
    whole_path = f"/CUSTOMER/LIST/?apikey={key}"
    _, _, headers, whole_sha = base.download(port, whole_path, save=www / "all.json")
    base.download(port, whole_path, {"Accept-Encoding": "gzip"}, www / "all.json.gz")
    etags = {"clientele": headers["ETag"]}
    nginx = base.start_nginx(work, [(NGINX_PORT, www)])
    raw = {}
    try:
        _, _, nginx_headers, nginx_sha = base.download(NGINX_PORT, whole_path)
        if nginx_sha != whole_sha:
            raise SystemExit("nginx does not serve the bytes saved from the PostgreSQL node")
        etags["nginx"] = nginx_headers["ETag"]
        phases = [("one customer by id, 64 conn, memo on", "/", 64, ids_lua, False),
                  ("whole list revalidation (304), 16 conn", whole_path, 16, None, True)]
        for index, (name, path, connections, script, conditional) in enumerate(phases):
            row = {}
            for server in (("clientele", "nginx") if index % 2 == 0 else ("nginx", "clientele")):
                revalidate = [f"If-None-Match: {etags[server]}"] if conditional else []
                row[server] = base.wrk(port if server == "clientele" else NGINX_PORT, path,
                                       connections, duration, script, revalidate)
            raw[name] = row
            ours, theirs = row["clientele"], row["nginx"]
            bad = errors_of(ours)
            ratio = ours["rps"] / theirs["rps"]
            report.add(name, rate(ours), "nginx " + rate(theirs), ratio,
                       ">= 1.0x nginx" + (", no errors" if bad else ""),
                       ratio >= 1.0 and not bad)
            if not conditional:
                p99 = ours["p99"] / theirs["p99"]
                report.add("  its p99", f"{ours['p99']:.2f} ms", f"nginx {theirs['p99']:.2f} ms",
                           p99, "<= 1.5x nginx's", p99 <= 1.5)
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(www, ignore_errors=True)
    return raw


def one_size(n, binary, pg_root_url, duration, work, table, versus):
    """Everything at N customers; fills `table` (SQLite against PostgreSQL) and `versus`
    (the PostgreSQL node against nginx), returns raw results."""
    raw = {}
    db = work / "shop.db"
    env = dict(os.environ, ROCKET_ADDRESS="127.0.0.1", ROCKET_LOG_LEVEL="critical",
               ROCKET_CLI_COLORS="false", ROCKET_SEED_DEMO="false",
               ROCKET_LOGIN_MAX_FAILURES="1000000")
    env.pop("ROCKET_RESPONSE_CACHE_MIB", None)
    sqlite_env = dict(env, ROCKET_DATABASE=str(db), ROCKET_PORT=str(SQLITE_PORT))

    # 1. The shop in SQLite, then moved to PostgreSQL.
    print(f"[{n:,}] generating and importing into SQLite...", file=sys.stderr)
    csv = work / "customers.csv"
    begin = time.monotonic()
    base.generate(n, csv, csv=True)
    generated = time.monotonic() - begin
    imported, import_peak = base.run_sampled([binary, "import", str(csv)], sqlite_env)
    csv.unlink()
    # Strong enough for `passwd`'s check (zxcvbn score 2 or more); customer 1's logs in below.
    for i in range(1, 9):
        base.sh(binary, "passwd", str(i), input=f"lavande moulin {i} rouge bench\n".encode(),
                env=sqlite_env, stderr=subprocess.DEVNULL)
    password = "lavande moulin 1 rouge bench"

    def create_key(*extra):
        return subprocess.run([binary, "keys", "create", *extra], env=sqlite_env, check=True,
                              capture_output=True, text=True).stdout.strip()
    key = create_key("bench")
    write_key = create_key("bench-writer", "--write")
    sqlite_mb = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal")
                    if Path(f"{db}{s}").exists()) / 1e6

    dbname = f"bench_{n}"
    psql(pg_root_url, f'DROP DATABASE IF EXISTS "{dbname}"')
    psql(pg_root_url, f'CREATE DATABASE "{dbname}"')
    url = with_database(pg_root_url, dbname)
    print(f"[{n:,}] clientele copy-to {masked(url)} ...", file=sys.stderr)
    begin = time.monotonic()
    copy = subprocess.run([binary, "copy-to", url], env=sqlite_env, capture_output=True,
                          text=True)
    copied = time.monotonic() - begin
    if copy.returncode != 0:
        raise SystemExit(f"copy-to failed after {copied:.1f} s:\n{copy.stdout}{copy.stderr}")
    copy_said = " ".join((copy.stdout + copy.stderr).split())
    pg_mb = int(psql(url, "SELECT pg_database_size(current_database())")) / 1e6
    raw["setup"] = {"generate_s": generated, "import_s": imported, "import_peak_kib": import_peak,
                    "copy_to_s": copied, "copy_to_output": copy_said,
                    "sqlite_mb": sqlite_mb, "pg_mb": pg_mb}
    print(f"[{n:,}] copy-to took {copied:.1f} s: {copy_said}", file=sys.stderr)
    table.add(f"moving in: import CSV into SQLite / copy-to PostgreSQL",
              f"import {imported:.1f} s ({sqlite_mb:.0f} MB file)",
              f"copy-to {copied:.1f} s ({pg_mb:.0f} MB database)", copied / imported)

    envs = {"sqlite": sqlite_env,
            "pg": dict(env, ROCKET_DATABASE=url, ROCKET_PORT=str(PG_PORT))}
    ports = {"sqlite": SQLITE_PORT, "pg": PG_PORT}
    nodes = Nodes(binary, envs, work)
    try:
        # 2. Same bytes from both.
        started = nodes.start()
        table.add("start to first answer", f"{started['sqlite'] * 1000:.0f} ms",
                  f"{started['pg'] * 1000:.0f} ms", started["pg"] / started["sqlite"])
        ids = base.sample_ids(n)
        for i in (ids[0], ids[len(ids) // 2], ids[-1]):
            bodies = {node: base.fetch(ports[node], f"/CUSTOMER/LIST/?id_client={i}",
                                       {"X-API-Key": key})[0] for node in NODES}
            if bodies["sqlite"] != bodies["pg"]:
                raise SystemExit(f"the nodes answer different bytes for customer {i}:\n"
                                 f"{bodies['sqlite']!r}\n{bodies['pg']!r}")
        totals = {node: base.fetch(ports[node], "/CUSTOMER/LIST/?limit=1",
                                   {"X-API-Key": key})[1].get("X-Total-Count") for node in NODES}
        if None in totals.values() or totals["sqlite"] != totals["pg"]:
            raise SystemExit(f"the nodes count different customers: {totals}")

        # 3. By id at 64 connections, the memo answering: alternating rounds.
        ids_lua = work / "ids.lua"
        base.lua_ids(ids_lua, ids, key)
        for node in NODES:  # fill each node's memo with wrk's own requests (headers and all)
            wrk_run(ports[node], "/", 64, 2, ids_lua)
        runs = {node: [] for node in NODES}
        for r in range(ROUNDS):
            for node in (NODES if r % 2 == 0 else NODES[::-1]):
                runs[node].append(wrk_run(ports[node], "/", 64, duration, ids_lua))
        raw["by_id_memo"] = runs
        mean = {node: sum(x["rps"] for x in runs[node]) / ROUNDS for node in NODES}
        p99 = {node: max(x["p99"] for x in runs[node]) for node in NODES}
        bad = {node: "; ".join(filter(None, (errors_of(x) for x in runs[node]))) for node in NODES}
        ratio = mean["pg"] / mean["sqlite"]

        def cell(node):
            each = ", ".join(f"{x['rps']:.0f}" for x in runs[node])
            return (f"{mean[node]:.0f} req/s (rounds {each}), "
                    f"worst p99 {p99[node]:.2f} ms" + (f" ({bad[node]})" if bad[node] else ""))
        table.add(f"one customer by id, 64 conn, memo on (mean of {ROUNDS}, alternating)",
                  cell("sqlite"), cell("pg"), ratio, f">= {TARGET}x SQLite",
                  ratio >= TARGET and not any(bad.values()))
        raw["pg_against_nginx"] = against_nginx(n, PG_PORT, key, ids, ids_lua, duration, work,
                                                versus)
        nodes.stop()

        # 4. Uncached: every request reaches the database.
        nodes.start(ROCKET_RESPONSE_CACHE_MIB="0")
        random_lua = work / "random-ids.lua"
        lua_random_ids(random_lua, n, key)
        runs = {node: [] for node in NODES}
        for r in range(UNCACHED_ROUNDS):
            for node in (NODES[::-1] if r % 2 == 0 else NODES):
                runs[node].append(wrk_run(ports[node], "/", 64, duration, random_lua))
        raw["by_id_uncached"] = runs
        mean = {node: sum(x["rps"] for x in runs[node]) / UNCACHED_ROUNDS for node in NODES}
        bad = {node: "; ".join(filter(None, (errors_of(x) for x in runs[node]))) for node in NODES}
        p50 = {node: sum(x["p50"] for x in runs[node]) / UNCACHED_ROUNDS for node in NODES}
        p99 = {node: max(x["p99"] for x in runs[node]) for node in NODES}

        def cell2(node):
            return (f"{mean[node]:.0f} req/s, p50 {p50[node]:.2f} / worst p99 {p99[node]:.2f} ms"
                    + (f" ({bad[node]})" if bad[node] else ""))
        table.add(f"one customer by id at random over {n:,}, 64 conn, cache and memo off "
                  f"(mean of {UNCACHED_ROUNDS})", cell2("sqlite"), cell2("pg"),
                  mean["pg"] / mean["sqlite"], "no errors", not any(bad.values()))
        nodes.stop()

        # 5. Writes, then logins, one node at a time; the raw Argon2id rate first.
        raw_out = subprocess.run([binary, "login-rate", "--seconds", "5"], env=sqlite_env,
                                 check=True, capture_output=True, text=True).stdout
        argon = float(raw_out.split()[0])
        workers = re.search(r"on (\d+) login worker", raw_out).group(1)
        nodes.start()
        writes_lua = work / "writes.lua"
        lua_writes(writes_lua, n, write_key)
        writes = {}
        for node in NODES:
            writes[node] = wrk_run(ports[node], "/CUSTOMER/UPDATE/", 4, duration, writes_lua)
        raw["writes"] = writes
        table.add("updates (POST /CUSTOMER/UPDATE/, random customer), 4 conn",
                  rate(writes["sqlite"]), rate(writes["pg"]),
                  writes["pg"]["rps"] / writes["sqlite"]["rps"], "no errors",
                  not any(errors_of(writes[node]) for node in NODES))
        login_lua = work / "login.lua"
        base.lua_login(login_lua, "user1@example.be", password, key)
        logins = {}
        for node in NODES:
            logins[node] = wrk_run(ports[node], "/CUSTOMER/LOGIN/", 16, duration, login_lua,
                                   threads=1, timeout="30s")
        raw["logins"] = logins
        table.add(f"logins (right password), 16 conn; raw Argon2id {argon:.1f}/s on "
                  f"{workers} worker(s)", rate(logins["sqlite"]), rate(logins["pg"]),
                  logins["pg"]["rps"] / logins["sqlite"]["rps"], "no errors",
                  not any(errors_of(logins[node]) for node in NODES))
        dead = nodes.died()
        if dead:
            table.add("nodes alive at the end", "" if "sqlite" not in dead else "DIED",
                      "" if "pg" not in dead else "DIED", target="both", ok=False)
    finally:
        nodes.stop()
        nodes.log.close()
    psql(pg_root_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return raw


def free_port(start):
    """The first port from `start` on which nothing listens on 127.0.0.1."""
    for port in range(start, start + 500):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit(f"no free port from {start}")


def failover(binary):
    """scripts/pg-cluster-demo.sh with this binary: (seconds or None, exit status, output).
    Its nodes get free ports: the demo's defaults (8101, 8102) may be another run's."""
    for attempt in range(3):
        port_a = free_port(18111)
        port_b = free_port(port_a + 1)
        env = dict(os.environ, DEMO_NODE_A_PORT=str(port_a), DEMO_NODE_B_PORT=str(port_b))
        demo = subprocess.run(["bash", str(ROOT / "scripts/pg-cluster-demo.sh"), binary],
                              capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
        out = demo.stdout + demo.stderr
        # Ports are found free, not reserved: a test starting beside us can take one first.
        # Only such a clash before any traffic is tried again.
        if demo.returncode == 0 or not re.search(r"Address already in use|is taken", out):
            break
        print(f"failover demo: a port was taken meanwhile, again ({attempt + 1})", file=sys.stderr)
        time.sleep(2)
    found = re.search(r"failover time\s+([\d.]+) s", out)
    return (float(found.group(1)) if found else None), demo.returncode, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000],
                        help="one or more sizes, each measured in turn (default 10000)")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--no-failover", action="store_true",
                        help="skip scripts/pg-cluster-demo.sh")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    pg_root_url = os.environ.get("CLIENTELE_TEST_POSTGRES")
    if not pg_root_url:
        raise SystemExit("CLIENTELE_TEST_POSTGRES is not set: run bench/pg.sh")
    began = time.monotonic()
    binary = base.release_binary()
    # Another run (a test, a demo) may hold the usual ports: wait_http would then time it.
    global SQLITE_PORT, PG_PORT, NGINX_PORT
    SQLITE_PORT = free_port(SQLITE_PORT)
    PG_PORT = free_port(max(PG_PORT, SQLITE_PORT + 1))
    NGINX_PORT = free_port(max(NGINX_PORT, PG_PORT + 1))
    server_version = psql(pg_root_url, "SHOW server_version")
    fsync = psql(pg_root_url, "SHOW fsync")
    sync_commit = psql(pg_root_url, "SHOW synchronous_commit")
    work = Path(tempfile.mkdtemp(prefix="clientele-pgbench-"))
    texts, results, failed = [], {}, []
    try:
        for n in args.customers:
            if n >= 100_000:
                # A million: the CSV (~200 MB), the SQLite file (~0.5 GB), the PostgreSQL
                # database and its WAL (a few GB at most): refuse below 10 GiB.
                for path in sorted({str(work), str(ROOT)}):
                    if free_gib(path) < 10:
                        raise SystemExit(f"only {free_gib(path):.1f} GiB free on {path}: "
                                         f"{n:,} customers needs about 10")
            table, versus = Table(), base.Report("PostgreSQL node")
            size_began = time.monotonic()
            # Others' builds and tests on this machine skew every figure: say how busy it was.
            load_before = os.getloadavg()[0]
            results[n] = one_size(n, binary, pg_root_url, args.duration, work, table, versus)
            took = time.monotonic() - size_began
            text = "\n".join([
                f"**SQLite node against PostgreSQL node at {n:,} customers, same data; wrk "
                f"{args.duration} s per run, {os.cpu_count()} cores, "
                f"{time.strftime('%Y-%m-%d')}, PostgreSQL {server_version} on 127.0.0.1 "
                f"(fsync {fsync}, synchronous_commit {sync_commit}), {took / 60:.1f} min, "
                f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after**", "",
                table.markdown(), "",
                f"**The PostgreSQL node against nginx serving the same bytes, {n:,} customers, "
                f"memo on (issue 18)**", "", versus.markdown()])
            print(text + "\n", flush=True)
            texts.append(text)
            failed += [f"{row} at {n:,}" for row in table.failed() + versus.missed()]
        if not args.no_failover:
            print("failover demo (scripts/pg-cluster-demo.sh)...", file=sys.stderr)
            seconds, status, out = failover(binary)
            (work / "failover.log").write_text(out)
            results["failover"] = {"seconds": seconds, "status": status}
            table = Table()
            table.add("failover: primary killed, standby promoted, until a write through the "
                      "node is acknowledged (scripts/pg-cluster-demo.sh)", "n/a (one file)",
                      f"{seconds:.2f} s" if seconds is not None else
                      "no figure: " + (out.strip().splitlines() or ["no output"])[-1],
                      target="demo passes (no acked write lost, no 500)", ok=status == 0)
            summary = [line for line in out.splitlines()
                       if re.match(r"(requests|acknowledged|503|500|slowest|failover|OK|FAILED)",
                                   line)]
            text = table.markdown() + "\n\n```\n" + "\n".join(summary) + "\n```"
            print(text, flush=True)
            texts.append(text)
            if status != 0:
                failed.append("failover demo")
                print(out[-4000:], file=sys.stderr)
        (work / "report.md").write_text("\n\n".join(texts) + "\n")
        (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"\n{time.monotonic() - began:.0f} s in all")
        if failed:
            print("\nfailed: " + "; ".join(failed))
        if args.keep:
            print(f"(raw results, report and node logs in {work})")
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
