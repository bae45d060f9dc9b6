#!/usr/bin/env python3
"""How fast webhook-forwarder drains a backlog, on a small and a large one, against PostgreSQL at its best on the
same rows in the same run (ratios, not absolute numbers: the machine is shared).

For each backlog size (20,000 and 1,000,000 payloads of 1 KiB; --smoke: 1,000 and 5,000), on a fresh database:
  forward   the payloads waiting in a spool's new/, `webhook-forwarder forward --once` (one connection, batches of
            500, each file moved to cur/ after its commit): payloads/s
  COPY      the anchor: the same rows (same bodies, same columns) loaded by the server with COPY from a file into a
            table like webhook_payloads (same indexes): rows/s; forward is reported as a ratio of it (goal >= 0.5)
  consume   two `webhook-forwarder consume --exec true` services for a fixed time over the whole backlog:
            payloads/s at steady state with a no-op command (each run starts /bin/sh under the guard)
  EXPLAIN   (ANALYZE) of the take on the whole backlog: an index scan, no sort
Linear, not quadratic: each tool's rate on the large backlog within 20 % of its rate on the small one.

Usage: bench/forward.py PATH/TO/webhook-forwarder [--smoke] [--sizes 20000,1000000] [--consume-seconds 60]
"""
import json, os, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "Tests", "Integration"))
from postgres_server import Postgres, spool_of  # noqa: E402

FORWARDER = os.path.realpath(sys.argv[1])
SMOKE = "--smoke" in sys.argv
option = lambda name, default: sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default
SIZES = [int(n) for n in option("--sizes", "1000,5000" if SMOKE else "20000,1000000").split(",")]
CONSUME_SECONDS = float(option("--consume-seconds", "5" if SMOKE else "60"))

TAKE = ("UPDATE webhook_payloads SET available_at = now() + interval '60 s', attempts = attempts + 1 "
        "WHERE id = (SELECT id FROM webhook_payloads WHERE state = 'pending' AND available_at <= now() "
        "ORDER BY available_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id")


def copy_file(spool, path):
    """The spool's rows as COPY text: the same ids, bodies (hex bytea) and envelope columns forward inserts."""
    with open(path, "w") as out:
        for directory in ("cur", "new"):
            for name in os.listdir(os.path.join(spool, directory)):
                with open(os.path.join(spool, directory, name), "rb") as f:
                    line, body = f.read().split(b"\n", 1)
                envelope = json.loads(line)
                out.write("%s\t\\\\x%s\t%s\t%s\t%s\t\\N\t%s\tbench\n" % (
                    envelope["id"], body.hex(), envelope["received"], envelope["remote_addr"],
                    envelope["content_type"], envelope["scheme"]))
    os.chmod(path, 0o644)


def measure(pg, work, size):
    name = "backlog_%d" % size
    url = pg.database(name)
    subprocess.run([FORWARDER, "migrate", "--database-url", url], check=True, capture_output=True)
    spool = os.path.join(work, name)
    spool_of(spool, size, size=1000, tag=name)
    began = time.time()
    done = subprocess.run([FORWARDER, "forward", "--once", "--spool-dir", spool, "--database-url", url],
                          capture_output=True, text=True)
    forward = size / (time.time() - began)
    rows = int(pg.sql("SELECT count(*) FROM webhook_payloads", url))
    if done.returncode != 0 or rows != size:
        raise RuntimeError("forward: %s %s rows=%d" % (done.stdout, done.stderr, rows))

    rows_file = os.path.join(work, name + ".copy")
    copy_file(spool, rows_file)
    pg.sql("CREATE TABLE copied (LIKE webhook_payloads INCLUDING ALL)", url)
    began = time.time()
    pg.sql("COPY copied (id, body, received, remote_addr, content_type, sender, scheme, host) FROM '%s'" % rows_file, url)
    copy = size / (time.time() - began)
    os.unlink(rows_file)
    pg.sql("DROP TABLE copied", url)
    pg.sql("VACUUM ANALYZE webhook_payloads", url)

    plan = pg.sql("BEGIN; EXPLAIN (ANALYZE, COSTS OFF) %s; ROLLBACK" % TAKE, url)
    log = open(os.path.join(work, name + ".consume.log"), "ab")
    consumers = [subprocess.Popen([FORWARDER, "consume", "--database-url", url, "--exec", "true", "--keep-done-days",
                                   "0"], stdout=log, stderr=log) for _ in range(2)]
    time.sleep(2)  # both connected and busy: count from here
    start = int(pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'done'", url))
    time.sleep(CONSUME_SECONDS)
    end = int(pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'done'", url))
    for consumer in consumers:
        consumer.send_signal(signal.SIGTERM)
    for consumer in consumers:
        consumer.wait(timeout=60)
    consume = (end - start) / CONSUME_SECONDS
    pg.sql("DROP DATABASE %s" % name)
    subprocess.run(["rm", "-rf", spool])
    return {"forward": forward, "copy": copy, "consume": consume, "plan": plan}


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-forward-bench-") as work:
        os.chmod(work, 0o755)
        pg = Postgres(work, "server")
        try:
            results = {size: measure(pg, work, size) for size in SIZES}
        finally:
            pg.stop()
    small, large = SIZES[0], SIZES[-1]
    print("| backlog | forward /s | COPY /s (anchor) | forward / COPY | consume /s (no-op, 2 consumers) |")
    print("|---|---|---|---|---|")
    for size in SIZES:
        r = results[size]
        print("| %d | %.0f | %.0f | %.2f | %.0f |" % (size, r["forward"], r["copy"], r["forward"] / r["copy"], r["consume"]))
    linear = {tool: results[large][tool] / results[small][tool] for tool in ("forward", "copy", "consume")}
    print("\nlarge / small backlog rate (linear: 0.8 or more): " + ", ".join("%s %.2f" % kv for kv in linear.items()))
    print("\nEXPLAIN (ANALYZE) of the take on %d rows:\n%s" % (large, results[large]["plan"]))
    indexed = "Index Scan using webhook_payloads_take" in results[large]["plan"] and "Sort" not in results[large]["plan"]
    print("\nthe take is an index scan in the take's order: %s" % ("yes" if indexed else "NO"))
    return 0 if indexed else 1


if __name__ == "__main__":
    sys.exit(main())
