#!/usr/bin/env python3
"""The durable path timed: distinct signed 1 KiB payloads through the nginx recipe (deploy/nginx/webhook.conf, kept
connections), wrk -t2 -c16, against two anchors measured in the same run on the same disk:

  verify-only   the same requests to a handler without a spool (what the 200 costs when it promises nothing)
  durable       the handler with its spool on this machine's disk: every 200 is on disk (through the journal, as
                by default, and again with --no-spool-journal: a sync of each payload's file and directory)
  PostgreSQL    pgbench, 16 clients, one 1 KiB row per transaction, synchronous_commit on (a database's group
                commit on the same disk)

and prints the ratios issue #12 asks about (durable / verify-only, durable / pgbench) with p99. Medians of 3 runs
(1 with --smoke). Every answer must be 200 and every acknowledged payload stored, or the run fails. Then what a
request costs the handler in each mode: system calls (strace -c), syncs among them, instructions (callgrind).

Usage: bench/durable.py PATH/TO/webhook-handler [--smoke]
"""
import hashlib, hmac, os, re, signal, statistics, subprocess, sys, tempfile

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


def one_run(work, name, spool, extra=(), seconds=None, wrapper=()):
    """wrk through nginx to a fresh handler (with its spool under `spool`, or none) for `seconds`; the values wrk's
    script printed. `wrapper` runs the handler under perf or strace."""
    socket_path = os.path.join(work, name + ".sock")
    arguments = [HANDLER, "--listen", socket_path, "--socket-mode", "0666", "--access-log", "failures"]
    if spool:
        os.makedirs(spool, exist_ok=True)
        arguments += ["--spool-dir", os.path.join(spool, name)] + list(extra)
    log = open(os.path.join(work, name + ".log"), "ab")
    process = subprocess.Popen(list(wrapper) + arguments, env={"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"},
                               stdout=log, stderr=log)
    started(lambda: os.path.exists(socket_path), "the handler's socket")
    nginx_dir = os.path.join(work, name + "-nginx")
    os.makedirs(nginx_dir)
    nginx = Nginx(nginx_dir, socket_path)
    signatures = os.path.join(work, "signatures-%s" % name)
    sign_all(signatures, name)
    env = dict(os.environ, DURABLE_SIGNATURES=signatures, DURABLE_RUN=name, DURABLE_THREADS="2")
    done = subprocess.run(["wrk", "-t2", "-c16", "-d%ds" % (seconds or SECONDS), "-s", LUA,
                           "http://127.0.0.1:%d/api/webhook" % nginx.port], capture_output=True, text=True, env=env)
    nginx.stop()
    handler = process.pid
    if wrapper and wrapper[0] != "valgrind":  # the handler is the wrapper's child
        with open("/proc/%d/task/%d/children" % (process.pid, process.pid)) as f:
            handler = int(f.read().split()[0])
    os.kill(handler, signal.SIGTERM)
    process.wait(timeout=60)
    os.remove(signatures)
    line = re.search(r"DURABLE (.*)", done.stdout)
    if not line:
        raise RuntimeError(done.stdout + done.stderr)
    values = dict(item.split("=") for item in line.group(1).split())
    if values["unexpected"] != "0" or values["errors"] != "0" or values["exhausted"] != "0":
        raise RuntimeError("%s: %s" % (name, line.group(1)))
    if spool:
        stored = len(os.listdir(os.path.join(spool, name, "new")))
        if stored < int(values["requests"]):
            raise RuntimeError("%s: %d answered 200, %d stored" % (name, int(values["requests"]), stored))
    return values


def timed(work, label, spool, extra=()):
    """Medians over RUNS: requests per second and p99."""
    results = [one_run(work, "%s-%d" % (label, run), spool, extra) for run in range(RUNS)]
    return statistics.median(float(v["rps"]) for v in results), statistics.median(float(v["p99_ms"]) for v in results)


def costs(work, label, spool, extra=()):
    """What one request costs the handler's processes (workers, supervisor, namer): system calls (strace -c -f; the
    syncs among them) in a 2 s run, and user-space instructions (valgrind's callgrind: the difference between a 1 s
    and a 3 s run, so that start-up does not count), per request."""
    traced = os.path.join(work, label + ".strace")
    requests = int(one_run(work, label + "-strace", spool, extra, 2, ["strace", "-f", "-c", "-o", traced])["requests"])
    calls, syncs = 0, 0
    for row in open(traced):
        fields = row.split()
        if len(fields) >= 5 and fields[-1] == "total":
            calls = int(fields[3])
        elif len(fields) >= 5 and fields[-1] in ("fsync", "fdatasync", "syncfs"):
            syncs += int(fields[3])
    counts = []
    for seconds in (1, 3):
        out = os.path.join(work, "%s-callgrind-%d" % (label, seconds))
        os.makedirs(out)
        served = int(one_run(work, "%s-callgrind-%d" % (label, seconds), spool, extra, seconds,
                             ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/%%p" % out])["requests"])
        total = 0
        for name in os.listdir(out):
            total += next((int(r.split()[1]) for r in open(os.path.join(out, name)) if r.startswith("summary:")), 0)
        counts.append((served, total))
    (short_requests, short_total), (long_requests, long_total) = counts
    instructions = (long_total - short_total) / max(1, long_requests - short_requests)
    return calls / requests, syncs / requests, instructions


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-durable-", dir="/var/tmp") as work:  # /var/tmp: the disk
        os.chmod(work, 0o755)
        load = os.getloadavg()
        spools = os.path.join(work, "spools")
        verify, verify_p99 = timed(work, "verify-only", None)
        durable, durable_p99 = timed(work, "durable", spools)
        per_file, per_file_p99 = timed(work, "per-file", spools, ["--no-spool-journal"])
        pg = Postgres(work, "postgres")
        try:
            anchor = statistics.median(pgbench_inserts(pg, 16, SECONDS, work) for _ in range(RUNS))
        finally:
            pg.stop()
        cost = {label: costs(work, label + "-cost", spool, extra) for label, spool, extra in [
            ("verify-only", None, ()), ("journal", spools, ()), ("per-file", spools, ["--no-spool-journal"])]}
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
    print()
    print("| per request, all handler processes | system calls | of them syncs | instructions (user space) |")
    print("|---|---:|---:|---:|")
    for label, (calls, syncs, instructions) in cost.items():
        print("| %s | %.1f | %.2f | %.0f |" % (label, calls, syncs, instructions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
