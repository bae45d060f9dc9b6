#!/usr/bin/env python3
"""The durable path timed: distinct signed 1 KiB payloads through the nginx recipe (deploy/nginx/webhook.conf, kept
connections), wrk -t2 -c16, against two anchors measured in the same run on the same disk:

  verify-only   the same requests to a handler without a spool (what the 200 costs when it promises nothing)
  durable       the handler with its spool on this machine's disk: every 200 is on disk (through the journal, as
                by default, and again with --no-spool-journal: a sync of each payload's file and directory)
  PostgreSQL    pgbench, 16 clients, one 1 KiB row per transaction, synchronous_commit on (a database's group
                commit on the same disk)

and prints the ratios issue #12 asks about (durable / verify-only, durable / pgbench) with p99. Medians of 3 runs
(1 with --smoke). Every answer must be 200 and every acknowledged payload stored, or the run fails.

Usage: bench/durable.py PATH/TO/webhook-handler [--smoke]
"""
import hashlib, hmac, os, re, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "Tests", "Integration"))
from nginx_server import Nginx, started  # noqa: E402
from postgres_server import Postgres, pgbench_inserts  # noqa: E402

HANDLER = os.path.realpath(sys.argv[1])
SMOKE = "--smoke" in sys.argv
RUNS, SECONDS = (1, 2) if SMOKE else (3, 10)
SIGNED = SECONDS * 80_000  # more than a run can send: verify-only reached 31,000/s here
SECRET = "durable-secret-%d" % os.getpid()
LUA = os.path.join(os.path.dirname(os.path.realpath(__file__)), "durable.lua")


def sign_all(path, run):
    """The signatures of bodies 1..SIGNED, exactly as durable.lua writes them."""
    key, pad = SECRET.encode(), "x" * 980
    with open(path, "w") as f:
        for i in range(1, SIGNED + 1):
            body = '{"n":%d,"run":"%s","pad":"%s"}' % (i, run, pad)
            f.write(hmac.new(key, body.encode(), hashlib.sha256).hexdigest() + "\n")


def timed(work, label, spool, extra=()):
    """Medians over RUNS of wrk through nginx to a fresh handler (with `spool`, or none)."""
    results = []
    for run in range(RUNS):
        name = "%s-%d" % (label, run)
        socket_path = os.path.join(work, name + ".sock")
        arguments = [HANDLER, "--listen", socket_path, "--socket-mode", "0666", "--access-log", "failures"]
        if spool:
            os.makedirs(spool, exist_ok=True)
            arguments += ["--spool-dir", os.path.join(spool, name)] + list(extra)
        log = open(os.path.join(work, name + ".log"), "ab")
        handler = subprocess.Popen(arguments, env={"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}, stdout=log,
                                   stderr=log)
        started(lambda: os.path.exists(socket_path), "the handler's socket")
        nginx_dir = os.path.join(work, name + "-nginx")
        os.makedirs(nginx_dir)
        nginx = Nginx(nginx_dir, socket_path)
        signatures = os.path.join(work, "signatures-%s" % name)
        sign_all(signatures, name)
        env = dict(os.environ, DURABLE_SIGNATURES=signatures, DURABLE_RUN=name, DURABLE_THREADS="2")
        done = subprocess.run(["wrk", "-t2", "-c16", "-d%ds" % SECONDS, "-s", LUA,
                               "http://127.0.0.1:%d/api/webhook" % nginx.port], capture_output=True, text=True, env=env)
        nginx.stop()
        handler.terminate()
        handler.wait(timeout=60)
        line = re.search(r"DURABLE (.*)", done.stdout)
        if not line:
            raise RuntimeError(done.stdout + done.stderr)
        values = dict(item.split("=") for item in line.group(1).split())
        if values["unexpected"] != "0" or values["errors"] != "0" or values["exhausted"] != "0":
            raise RuntimeError("%s: %s" % (label, line.group(1)))
        if spool:
            stored = len(os.listdir(os.path.join(spool, name, "new")))
            if stored < int(values["requests"]):
                raise RuntimeError("%s: %d answered 200, %d stored" % (label, int(values["requests"]), stored))
        results.append((float(values["rps"]), float(values["p99_ms"])))
        os.remove(signatures)
    return statistics.median(r for r, _ in results), statistics.median(p for _, p in results)


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-durable-", dir="/var/tmp") as work:  # /var/tmp: the disk
        os.chmod(work, 0o755)
        load = os.getloadavg()
        verify, verify_p99 = timed(work, "verify-only", None)
        durable, durable_p99 = timed(work, "durable", os.path.join(work, "spools"))
        per_file, per_file_p99 = timed(work, "per-file", os.path.join(work, "spools"), ["--no-spool-journal"])
        pg = Postgres(work, "postgres")
        try:
            anchor = statistics.median(pgbench_inserts(pg, 16, SECONDS, work) for _ in range(RUNS))
        finally:
            pg.stop()
    print("load average before: %.2f %.2f %.2f, after: %.2f %.2f %.2f" % (load + os.getloadavg()))
    print("| workload (distinct signed 1 KiB payloads, nginx recipe, wrk -t2 -c16) | per second | p99 ms |"
          " x verify-only | x PostgreSQL |")
    print("|---|---:|---:|---:|---:|")
    print("| verify-only (no spool) | %.0f | %.2f | 1.00 | %.2f |" % (verify, verify_p99, verify / anchor))
    print("| durable: spool on this disk, every 200 synced (journal) | %.0f | %.2f | %.2f | %.2f |"
          % (durable, durable_p99, durable / verify, durable / anchor))
    print("| durable, --no-spool-journal (a sync per file and directory) | %.0f | %.2f | %.2f | %.2f |"
          % (per_file, per_file_p99, per_file / verify, per_file / anchor))
    print("| PostgreSQL 15: pgbench, 16 clients, one 1 KiB insert per transaction | %.0f | | %.2f | 1.00 |"
          % (anchor, anchor / verify))
    print("targets (#12): durable >= 0.5x verify-only: %s; >= 1.0x PostgreSQL: %s; p99 <= 10 ms: %s" % (
        "met" if durable >= 0.5 * verify else "not met", "met" if durable >= anchor else "not met",
        "met" if durable_p99 <= 10 else "not met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
