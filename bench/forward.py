#!/usr/bin/env python3
"""How fast webhook-forwarder moves a spool into PostgreSQL, against pgbench inserting rows of the same size into
the same server in the same run (ratios, not absolute numbers: the machine is shared).

  forwarder   N payloads of 1 KiB waiting in a spool's new/, `webhook-forwarder forward --once` (one connection,
              --batch-size rows per transaction, each file moved to cur/ after the commit)
  pgbench     one 1 KiB row per transaction, 1 client and 16 clients, synchronous_commit on, for a few seconds

Usage: bench/forward.py PATH/TO/webhook-forwarder [--payloads N] [--smoke]
"""
import hashlib, json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "Tests", "Integration"))
from postgres_server import Postgres, pgbench_inserts  # noqa: E402

FORWARDER = os.path.realpath(sys.argv[1])
SMOKE = "--smoke" in sys.argv
PAYLOADS = int(sys.argv[sys.argv.index("--payloads") + 1]) if "--payloads" in sys.argv else (2000 if SMOKE else 20000)
SECONDS = 2 if SMOKE else 8


def spool_of(directory, count):
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    for n in range(count):
        body = json.dumps({"n": n, "pad": "x" * 1000}).encode()
        ident = hashlib.sha256(body).hexdigest()
        envelope = {"id": ident, "received": "2026-11-30T00:00:00.000Z", "remote_addr": "127.0.0.1",
                    "content_type": "application/json", "sender": None, "scheme": "x-signature", "length": len(body)}
        with open(os.path.join(directory, "new", ident), "wb") as f:
            f.write(json.dumps(envelope, separators=(",", ":")).encode() + b"\n" + body)


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-forward-bench-") as work:
        os.chmod(work, 0o755)
        pg = Postgres(work, "server")
        try:
            spool = os.path.join(work, "spool")
            spool_of(spool, PAYLOADS)
            began = time.time()
            done = subprocess.run([FORWARDER, "forward", "--once", "--spool-dir", spool, "--database-url", pg.url],
                                  capture_output=True, text=True)
            took = time.time() - began
            rows = int(pg.sql("SELECT count(*) FROM webhook_payloads"))
            if done.returncode != 0 or rows != PAYLOADS:
                print("FAIL forwarder: %s %s rows=%d" % (done.stdout, done.stderr, rows))
                return 1
            forwarded = PAYLOADS / took
            one, sixteen = pgbench_inserts(pg, 1, SECONDS, work), pgbench_inserts(pg, 16, SECONDS, work)
        finally:
            pg.stop()
    print("| workload | per second | vs pgbench, 1 client | vs pgbench, 16 clients |")
    print("|---|---|---|---|")
    print("| pgbench: one 1 KiB row per transaction, 1 client | %.0f | 1.00 | |" % one)
    print("| pgbench: one 1 KiB row per transaction, 16 clients | %.0f | | 1.00 |" % sixteen)
    print("| webhook-forwarder: %d spooled 1 KiB payloads, one connection, batches of 500 | %.0f | %.2f | %.2f |"
          % (PAYLOADS, forwarded, forwarded / one, forwarded / sixteen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
