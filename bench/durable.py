#!/usr/bin/env python3
"""The durable path timed, sustained and in bursts: distinct signed 1 KiB payloads through the nginx recipe
(deploy/nginx/webhook.conf, kept connections, the handler's default workers), wrk -t2 at 16 and at 64 connections,
against two anchors measured in the same run at the same concurrency:

  verify-only   the same requests to a handler without a spool (what the 200 costs when it promises nothing)
  durable       the handler with its spool on the file system under test: every 200 is on disk (through the
                journal, as by default; in bursts also with --no-spool-journal: a sync per file and directory)
  PostgreSQL    pgbench with as many clients, one 1 KiB row per transaction, synchronous_commit on (a database's
                group commit on the same file system)

on two file systems: this machine's root file system (/var/tmp), and a default ext4 *with* a journal on a loop
device (direct I/O, made with `mkfs.ext4 -N 8000000`: inodes for millions of payload files; inode tables written at
once, as on a server long past its first mount), which this script makes, mounts and removes again.

A sustained row counts a payload only when a consumer can take it: a file in the spool's new/. Its time is the load
(--seconds) plus the drain after it (until every acknowledged payload is named in new/) plus the handler's stop
(its last checkpoint): every deferred cost is paid inside the time. A burst row (--burst-seconds) counts what was
answered 200 during the load, as a sender sees it. p99 is per run (one run per row). Every answer must be 200 and
every acknowledged payload stored, or the run fails. Then, on the root file system at 16 connections, what a
stored payload costs the handler's processes: system calls (strace -c), syncs among them, user-space instructions
(callgrind).

Usage: bench/durable.py PATH/TO/webhook-handler [--smoke] [--seconds S] [--burst-seconds B] [--connections 16,64]
                        [--file-systems root,ext4] [--max-rate N] [--no-costs]
  --seconds S        each sustained row's load (default 300: the judged run; --smoke: 3)
  --burst-seconds B  each burst row's load (default 10; --smoke: 1)
  --max-rate N       bodies signed per second of a durable row (default 30000; the run fails if wrk needs more)
"""
import argparse, contextlib, os, re, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "Tests", "Integration"))
from checks import wait_until  # noqa: E402
from nginx_server import Nginx  # noqa: E402
from postgres_server import Postgres, pgbench_inserts  # noqa: E402

BENCH = os.path.dirname(os.path.realpath(__file__))
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("handler")
parser.add_argument("--smoke", action="store_true")
parser.add_argument("--seconds", type=float)
parser.add_argument("--burst-seconds", type=float)
parser.add_argument("--connections", default="16,64")
parser.add_argument("--file-systems", default="root,ext4")
parser.add_argument("--max-rate", type=int, default=30_000)
parser.add_argument("--no-costs", action="store_true")
OPTIONS = parser.parse_args()
HANDLER = os.path.realpath(OPTIONS.handler)
SECONDS = OPTIONS.seconds or (3 if OPTIONS.smoke else 300)
BURST = OPTIONS.burst_seconds or (1 if OPTIONS.smoke else 10)
CONNECTIONS = [int(c) for c in OPTIONS.connections.split(",")]
SECRET = "durable-secret-%d" % os.getpid()
# The loop device's ext4: inodes for millions of files; the smoke run's is small (it stores a few thousand).
INODES, IMAGE_GIB = (200_000, 2) if OPTIONS.smoke else (8_000_000, None)


def sign(work, name, count):
    """Signs bodies 1..count of run `name` for wrk's two threads; the signatures' path prefix."""
    prefix = os.path.join(work, "signatures-" + name)
    subprocess.run([SIGNER, SECRET, name, str(int(count)), "2", prefix], check=True)
    return prefix


class Handler:
    """A fresh handler (its spool in `spool`, or none) behind the nginx recipe; `wrapper` runs it under strace or
    valgrind. Those not stopped yet are in `live` (a failed run stops them with `stop_all`)."""
    live = []

    def __init__(self, work, name, spool=None, extra=(), wrapper=()):
        self.name, self.spool = name, spool and os.path.join(spool, name)
        socket_path = os.path.join(work, name + ".sock")
        arguments = [HANDLER, "--listen", socket_path, "--socket-mode", "0666", "--access-log", "failures"]
        if self.spool:
            os.makedirs(spool, exist_ok=True)
            arguments += ["--spool-dir", self.spool] + list(extra)
        self.log = os.path.join(work, name + ".log")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(list(wrapper) + arguments, env={"API_SECRET_KEY": SECRET,
                                            "PATH": "/usr/bin:/bin"}, stdout=log, stderr=log)
        # Under valgrind on a loaded machine a start takes tens of seconds.
        if not wait_until(lambda: os.path.exists(socket_path), 120 if wrapper else 20):
            self.process.kill()
            self.process.wait()
            raise RuntimeError("%s did not start: %s" % (name, open(self.log, errors="replace").read()[-500:]))
        self.pid = self.process.pid
        if wrapper and wrapper[0] != "valgrind":  # the handler is the wrapper's child
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                self.pid = int(f.read().split()[0])
        Handler.live.append(self)
        nginx_dir = os.path.join(work, name + "-nginx")
        os.makedirs(nginx_dir)
        self.nginx = Nginx(nginx_dir, socket_path)

    def load(self, connections, seconds, signatures, wrap=False):
        """wrk -t2 -cCONNECTIONS for `seconds`; the values durable.lua printed, checked."""
        env = dict(os.environ, DURABLE_SIGNATURES=signatures, DURABLE_RUN=self.name, DURABLE_THREADS="2",
                   DURABLE_WRAP="1" if wrap else "0")
        # A slow answer is latency (in p99), not an error: wrk's own time-out is 2 s.
        done = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % max(1, round(seconds)), "--timeout", "60s", "-s",
                               os.path.join(BENCH, "durable.lua"), "http://127.0.0.1:%d/api/webhook" % self.nginx.port],
                              capture_output=True, text=True, env=env)
        for thread in (0, 1):
            os.remove("%s-%d" % (signatures, thread))
        line = re.search(r"DURABLE (.*)", done.stdout)
        if not line:
            raise RuntimeError(done.stdout + done.stderr)
        values = dict(item.split("=") for item in line.group(1).split())
        if values["exhausted"] != "0":
            raise RuntimeError("%s: wrk sent every signed body: raise --max-rate (%s)" % (self.name, line.group(1)))
        if values["unexpected"] != "0" or values["errors"] != "0":
            raise RuntimeError("%s: %s" % (self.name, line.group(1)))
        return {key: float(value) for key, value in values.items()}

    def stored(self):
        with os.scandir(os.path.join(self.spool, "new")) as entries:
            return sum(1 for _ in entries)

    def drain(self, acknowledged, limit):
        """Waits until every acknowledged payload is a file in new/; the seconds it took."""
        began = time.monotonic()
        while self.stored() < acknowledged:
            if time.monotonic() - began > limit:
                raise RuntimeError("%s: %d of %d acknowledged payloads in new/ after %d s"
                                   % (self.name, self.stored(), acknowledged, limit))
            time.sleep(0.2)
        return time.monotonic() - began

    def stop(self):
        """Stops nginx and the handler (SIGTERM: its last checkpoint); the seconds the handler took."""
        self.nginx.stop()
        began = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        self.process.wait(timeout=120)
        Handler.live.remove(self)
        return time.monotonic() - began

    @staticmethod
    def stop_all():
        for handler in list(Handler.live):
            if hasattr(handler, "nginx"):
                handler.nginx.stop()
            handler.process.kill()  # the workers and the namer die with their supervisor
            handler.process.wait()
            time.sleep(0.5)
        Handler.live.clear()


def burst(work, name, spool, connections, extra=()):
    """A burst: what was answered 200 per second of load (the naming after it is not timed); all stored after."""
    handler = Handler(work, name, spool, extra)
    values = handler.load(connections, BURST, sign(work, name, OPTIONS.max_rate * BURST))
    handler.stop()
    if handler.stored() < values["requests"]:
        raise RuntimeError("%s: %d answered 200, %d stored" % (name, values["requests"], handler.stored()))
    return {"rate": values["rps"], "p99": values["p99_ms"], "time": "%.0f" % values["seconds"],
            "count": values["requests"]}


def sustained(work, name, spool, connections):
    """The judged row: payloads in new/ per second of load + drain + stop."""
    handler = Handler(work, name, spool)
    values = handler.load(connections, SECONDS, sign(work, name, OPTIONS.max_rate * SECONDS))
    drained = handler.drain(values["requests"], max(120, SECONDS))
    stopped = handler.stop()
    stored = handler.stored()
    if stored < values["requests"]:
        raise RuntimeError("%s: %d answered 200, %d stored" % (name, values["requests"], stored))
    seconds = values["seconds"] + drained + stopped
    return {"rate": stored / seconds, "p99": values["p99_ms"], "count": stored, "burst": values["rps"],
            "time": "%.0f + %.1f + %.1f" % (values["seconds"], drained, stopped)}


def verify_only(work, connections):
    handler = Handler(work, "verify-only-c%d" % connections)
    values = handler.load(connections, SECONDS, sign(work, "verify-only-c%d" % connections, 400_000), wrap=True)
    handler.stop()
    return {"rate": values["rps"], "p99": values["p99_ms"], "time": "%.0f" % values["seconds"],
            "count": values["requests"]}


def pgbench(directory, work, connections):
    pg = Postgres(directory, "postgres-c%d" % connections)
    try:
        return {"rate": pgbench_inserts(pg, connections, max(1, round(SECONDS)), work), "time": "%.0f" % SECONDS}
    finally:
        pg.stop()
        shutil.rmtree(pg.directory, ignore_errors=True)


@contextlib.contextmanager
def file_system(kind, work):
    """A directory on the file system under test: the root file system's /var/tmp, or a fresh ext4 with a journal
    on a loop device (direct I/O), mounted here and removed on the way out."""
    if kind == "root":
        directory = os.path.join(work, "root-fs")
        os.makedirs(directory)
        yield directory
        return
    image, mount = os.path.join(work, "ext4.img"), os.path.join(work, "ext4")
    # Room for every payload file (4 KiB each) of the longest row at the signing rate, the journal's slots and
    # PostgreSQL; sparse, so only what is written takes space.
    gib = IMAGE_GIB or 4 + int(OPTIONS.max_rate * SECONDS * 4500 / 2**30)
    with open(image, "wb") as f:
        f.truncate(gib << 30)
    device = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", image], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(INODES), "-E", "lazy_itable_init=0,lazy_journal_init=0",
                        device], check=True)
        os.makedirs(mount)
        subprocess.run(["mount", "-t", "ext4", device, mount], check=True)
        try:
            os.chmod(mount, 0o755)
            yield mount
        finally:
            subprocess.run(["umount", mount], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=True)
        os.remove(image)


def costs(work, label, spool, extra=()):
    """What one stored payload (one request for verify-only) costs the handler's processes (workers, supervisor,
    namer): system calls (strace -c -f; the syncs among them) in a 2 s run, and user-space instructions (valgrind's
    callgrind: the difference between a 1 s and a 3 s run, so that start-up does not count; the handler's stop
    names what is left, so naming is counted)."""
    traced = os.path.join(work, label + ".strace")
    handler = Handler(work, label + "-strace", spool, extra, ["strace", "-f", "-c", "-o", traced])
    requests = handler.load(16, 2, sign(work, label + "-strace", 80_000), wrap=not spool)["requests"]
    handler.stop()
    calls, syncs = 0, 0
    for row in open(traced):
        fields = row.split()
        if len(fields) >= 5 and fields[-1] == "total":
            calls = int(fields[3])
        elif len(fields) >= 5 and fields[-1] in ("fsync", "fdatasync", "syncfs"):
            syncs += int(fields[3])
    counts = []
    for seconds in (1, 3):
        name = "%s-callgrind-%d" % (label, seconds)
        out = os.path.join(work, name)
        os.makedirs(out)
        handler = Handler(work, name, spool, extra, ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/%%p" % out])
        served = handler.load(16, seconds, sign(work, name, 30_000 * seconds), wrap=not spool)["requests"]
        handler.stop()
        stored = handler.stored() if spool else served
        total = 0
        for dump in os.listdir(out):
            total += next((int(r.split()[1]) for r in open(os.path.join(out, dump)) if r.startswith("summary:")), 0)
        counts.append((stored, total))
    (short_count, short_total), (long_count, long_total) = counts
    # On a loaded machine the longer run under valgrind may store hardly more than the shorter one (or fewer): then
    # the difference says nothing, and none is given.
    instructions = None if long_count - short_count < max(100, short_count // 2) else \
        (long_total - short_total) / (long_count - short_count)
    return calls / requests, syncs / requests, instructions


def rows_on(kind, directory, work, c):
    """The rows of one file system at `c` connections: the bursts, the sustained run, pgbench; each printed (to
    stderr) as soon as it is measured, so that a long run that fails later still shows what it measured."""
    spools = os.path.join(directory, "spools-c%d" % c)
    rows = [(kind, c, "durable, burst (journal)", burst(work, "burst-%s-c%d" % (kind, c), spools, c))]
    print("measured:", rows[-1], file=sys.stderr, flush=True)
    rows.append((kind, c, "durable, burst (--no-spool-journal)",
                 burst(work, "per-file-%s-c%d" % (kind, c), spools, c, ["--no-spool-journal"])))
    print("measured:", rows[-1], file=sys.stderr, flush=True)
    subprocess.run(["rm", "-rf", spools], check=True)
    rows.append((kind, c, "**durable, sustained (journal)**", sustained(work, "sustained-%s-c%d" % (kind, c), spools, c)))
    print("measured:", rows[-1], file=sys.stderr, flush=True)
    subprocess.run(["rm", "-rf", spools], check=True)  # millions of files after a full run: not on the next row's disk
    rows.append((kind, c, "pgbench, %d clients" % c, pgbench(directory, work, c)))
    print("measured:", rows[-1], file=sys.stderr, flush=True)
    return rows


def ratio(a, b):
    return "%.2f" % (a / b) if b else ""


def main():
    global SIGNER
    with tempfile.TemporaryDirectory(prefix="webhook-durable-", dir="/var/tmp") as work:  # /var/tmp: the disk
        try:
            os.chmod(work, 0o755)
            SIGNER = os.path.join(work, "sign-bodies")
            subprocess.run(["gcc", "-O2", "-o", SIGNER, os.path.join(BENCH, "sign-bodies.c"), "-lcrypto"], check=True)
            load = os.getloadavg()
            began = time.monotonic()
            verify = {c: verify_only(work, c) for c in CONNECTIONS}
            print("measured: verify-only", verify, file=sys.stderr, flush=True)
            rows = []  # (file system, connections, row, values)
            for kind in filter(None, OPTIONS.file_systems.split(",")):  # "": only verify-only and the costs
                with file_system(kind, work) as directory, contextlib.ExitStack() as stack:
                    stack.callback(Handler.stop_all)  # before the file system is unmounted
                    for c in CONNECTIONS:
                        rows += rows_on(kind, directory, work, c)
            cost = {} if OPTIONS.no_costs else {
                label: costs(work, label + "-cost", spool, extra) for label, spool, extra in [
                    ("verify-only", None, ()), ("journal", os.path.join(work, "cost-spools"), ()),
                    ("per-file", os.path.join(work, "cost-spools"), ["--no-spool-journal"])]}
            took = time.monotonic() - began
        finally:
            Handler.stop_all()
    print("sustained rows: %.0f s of load each, then the drain and the stop; bursts %.0f s; the whole run %.0f s"
          % (SECONDS, BURST, took))
    print("load average before: %.2f %.2f %.2f, after: %.2f %.2f %.2f" % (load + os.getloadavg()))
    print("| file system | conns | row | seconds (load + drain + stop) | payloads | per second | p99 ms "
          "| x verify-only | x pgbench |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for c in CONNECTIONS:
        v = verify[c]
        print("| (none) | %d | verify-only (no spool) | %s | %d | %.0f | %.2f | 1.00 | |"
              % (c, v["time"], v["count"], v["rate"], v["p99"]))
    anchors = {(kind, c): values["rate"] for kind, c, row, values in rows if row.startswith("pgbench")}
    for kind, c, row, values in rows:
        print("| %s | %d | %s | %s | %s | %.0f | %s | %s | %s |" % (
            "root" if kind == "root" else "ext4+journal (loop)", c, row, values["time"],
            "%d" % values["count"] if "count" in values else "", values["rate"],
            "%.2f" % values["p99"] if "p99" in values else "", ratio(values["rate"], verify[c]["rate"]),
            ratio(values["rate"], anchors[(kind, c)])))
    print()
    for kind, c, row, values in rows:
        if "sustained" not in row:
            continue
        judged = ["%.2fx pgbench (target >= 1.0): %s" % (values["rate"] / anchors[(kind, c)],
                                                        "met" if values["rate"] >= anchors[(kind, c)] else "not met")]
        if c == 64:
            judged.append("%.2fx verify-only (target >= 0.5): %s" % (
                values["rate"] / verify[c]["rate"], "met" if values["rate"] >= 0.5 * verify[c]["rate"] else "not met"))
        if c == 16:
            judged.append("p99 %.2f ms (target <= 10): %s" % (values["p99"], "met" if values["p99"] <= 10 else "not met"))
        print("targets, %s, %d connections, sustained: %s" % (kind, c, "; ".join(judged)))
    if cost:
        print()
        print("| per stored payload (verify-only: per request), all handler processes, root file system, 16 "
              "connections | system calls | of them syncs | instructions (user space) |")
        print("|---|---:|---:|---:|")
        for label, (calls, syncs, instructions) in cost.items():
            print("| %s | %.1f | %.2f | %s |" % (label, calls, syncs, "%.0f" % instructions if instructions else
                                                "n/a (the 3 s run stored too few more than the 1 s run)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
