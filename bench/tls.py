#!/usr/bin/env python3
"""The cost of HTTPS and of the metrics, on this machine, in one run (issue 19).

Run through bench/tls.sh, which installs wrk, nginx and openssl first. Steps:
  1. build clientele (release); generate N customers (10,000) and import them; make a
     self-signed certificate (P-256);
  2. start three clientele servers on the same database: this build over plain HTTP, this
     build over HTTPS (tls_certs/tls_key), and the build to compare the metrics' cost with
     (--baseline BINARY: the last build without /metrics) over plain HTTP; save the bytes
     clientele answers (one file per sampled id, the whole list) and serve them with nginx
     over HTTP and over HTTPS with the same certificate (nginx's defaults otherwise);
  3. in ROUNDS alternating rounds, wrk with the same settings against each: one customer by
     id at 64 connections (keep-alive), the whole list at 16 connections, and one customer by
     id with a new connection (so a new TLS handshake) per request at 16 connections;
  4. print each figure against nginx's over the same protocol, the cost of TLS for each
     server (HTTPS against HTTP), and this build's by id against the baseline's (target:
     within 3%); exit 1 when a target is missed.
Load goes to 127.0.0.1 only, and every wrk run is bounded by --duration.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (Report, clean_up, conclude, download, errors_of,  # noqa: E402
                      fetch, generate, lua_lookup, parse_wrk, release_binary, sample_ids, sh,
                      start_nginx, wait_http, wait_port, wrk_bound, wrk_command)

HTTP_PORT = 18180
HTTPS_PORT = 18181
BASELINE_PORT = 18182
NGINX_HTTP_PORT = 18183
NGINX_HTTPS_PORT = 18184
ROUNDS = int(os.environ.get("TLS_BENCH_ROUNDS", "3"))
# This build's one customer by id against the baseline's: the metrics may cost at most 3%.
METRICS_TARGET = 0.97


def run_wrk(port, path, connections, duration, script=None, headers=(), scheme="http"):
    cmd = wrk_command(port, path, connections, duration, script, headers, scheme=scheme)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=wrk_bound(cmd)).stdout
    return parse_wrk(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--baseline", help="the build to compare the metrics' cost with")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    n, duration = args.customers, args.duration
    load_before = os.getloadavg()[0]
    binary = release_binary()
    work = Path(tempfile.mkdtemp(prefix="clientele-tls-"))
    # Every clientele here runs in `work`, with no Rocket.toml: the same built-in defaults for
    # this build and the baseline (an older one refuses settings it does not know).
    os.chdir(work)
    www = work / "www"
    (www / "by_id").mkdir(parents=True)
    db = work / "bench.db"
    env = dict(os.environ, ROCKET_DATABASE=str(db), ROCKET_ADDRESS="127.0.0.1",
               ROCKET_LOG_LEVEL="critical", ROCKET_CLI_COLORS="false")
    report = Report()
    procs = []
    log = (work / "clientele.log").open("w")
    results = {}
    try:
        print(f"generating and importing {n:,} customers...", file=sys.stderr)
        data = work / "customers.csv"
        generate(n, data, csv=True)
        sh(binary, "import", str(data), env=env, stderr=subprocess.DEVNULL)
        key = subprocess.run([binary, "keys", "create", "bench"], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        # The baseline may be older than this build's schema: its own database, the same
        # customers, a key of its own.
        baseline_env = dict(env, ROCKET_DATABASE=str(work / "baseline.db"))
        baseline_key = key
        if args.baseline:
            sh(args.baseline, "import", str(data), env=baseline_env, stderr=subprocess.DEVNULL)
            baseline_key = subprocess.run(
                [args.baseline, "keys", "create", "bench"], env=baseline_env, check=True,
                capture_output=True, text=True).stdout.strip()
        cert, private = work / "cert.pem", work / "key.pem"
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
           "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
           "-keyout", str(private), "-out", str(cert), stderr=subprocess.DEVNULL)

        servers = {"http": (binary, HTTP_PORT, env, {}),
                   "https": (binary, HTTPS_PORT, env,
                             {"ROCKET_TLS_CERTS": str(cert), "ROCKET_TLS_KEY": str(private)})}
        if args.baseline:
            servers["baseline"] = (args.baseline, BASELINE_PORT, baseline_env, {})
        for name, (program, port, environment, extra) in servers.items():
            proc = subprocess.Popen([program, "serve"], cwd=work, stdout=log, stderr=log,
                                    env=dict(environment, ROCKET_PORT=str(port), **extra))
            procs.append(proc)
            wait_port(port) if name == "https" else wait_http(port)

        ids = sample_ids(n)
        for i in ids:
            body, _ = fetch(HTTP_PORT, f"/CUSTOMER/LIST/?id_client={i}&apikey={key}")
            (www / "by_id" / f"{i}.json").write_bytes(body)
        whole_path = f"/CUSTOMER/LIST/?apikey={key}"
        download(HTTP_PORT, whole_path, save=www / "all.json")
        procs.append(start_nginx(work, [(NGINX_HTTP_PORT, www),
                                        (NGINX_HTTPS_PORT, www, cert, private)]))
        ids_lua, baseline_lua = work / "ids.lua", work / "baseline-ids.lua"
        lua_lookup(ids_lua, ids, key)
        lua_lookup(baseline_lua, ids, baseline_key)

        targets = {  # (scheme, port) of each server measured
            "clientele http": ("http", HTTP_PORT), "nginx http": ("http", NGINX_HTTP_PORT),
            "clientele https": ("https", HTTPS_PORT), "nginx https": ("https", NGINX_HTTPS_PORT),
        }
        if args.baseline:
            targets["baseline http"] = ("http", BASELINE_PORT)
        phases = {
            "one customer by id, 64 conn": ("/", 64, ids_lua, ()),
            "whole list, 16 conn": (whole_path, 16, None, ()),
            "one customer by id, a new connection per request, 16 conn":
                ("/", 16, ids_lua, ("Connection: close",)),
        }
        rates = {(phase, target): [] for phase in phases for target in targets}
        for round_no in range(ROUNDS):
            order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
            for phase, (path, conns, script, headers) in phases.items():
                for target in order:
                    if phase.startswith("whole") and target.startswith("baseline"):
                        continue
                    scheme, port = targets[target]
                    # The baseline's own key (its own database).
                    lua = baseline_lua if target.startswith("baseline") and script else script
                    print(f"round {round_no + 1}: {phase}, {target}", file=sys.stderr)
                    result = run_wrk(port, path, conns, duration, lua, headers, scheme)
                    errors = errors_of(result)
                    if errors and "new connection" not in phase:
                        raise SystemExit(f"{target}, {phase}: {errors}")
                    rates[(phase, target)].append(result["rps"])
                    results[f"{phase} / {target} / {round_no}"] = {
                        k: v for k, v in result.items() if k != "raw"}

        mean = {k: statistics.mean(v) for k, v in rates.items() if v}
        for phase in phases:
            for proto in ("http", "https"):
                ours, theirs = mean[(phase, f"clientele {proto}")], mean[(phase, f"nginx {proto}")]
                report.add(f"{phase}, {proto.upper()} (mean of {ROUNDS})", f"{ours:.0f} req/s",
                           f"nginx {proto.upper()}: {theirs:.0f} req/s", ours / theirs)
            for server in ("clientele", "nginx"):
                plain, secure = mean[(phase, f"{server} http")], mean[(phase, f"{server} https")]
                report.add(f"{phase}: {server}'s HTTPS against its HTTP",
                           f"{secure:.0f} req/s", f"{plain:.0f} req/s", secure / plain)
        if args.baseline:
            phase = "one customer by id, 64 conn"
            ours, base = mean[(phase, "clientele http")], mean[(phase, "baseline http")]
            report.add(f"{phase}, with /metrics counting (mean of {ROUNDS})",
                       f"{ours:.0f} req/s", f"the build without metrics: {base:.0f} req/s",
                       ours / base, f">= {METRICS_TARGET}x", ours / base >= METRICS_TARGET)
        load_after = os.getloadavg()[0]
        text = report.markdown() + (
            f"\n\n{n:,} customers, {ROUNDS} rounds of {duration} s per figure; load average "
            f"{load_before:.2f} before, {load_after:.2f} after.")
        return conclude(report, text, work, results, args.keep)
    finally:
        clean_up(procs, log, work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
