#!/usr/bin/env python3
"""Payloads reach PostgreSQL and its consumers, with real PostgreSQL 15 servers started here on 127.0.0.1:

  two hosts     two spools storing overlapping payloads, both forwarded: one row per payload, bodies byte-exact
  outage        PostgreSQL stopped: the handler still answers 200 and stores; forward --once fails loudly and
                loses nothing; once PostgreSQL is back everything arrives
  crashes       the forwarder SIGKILLed between its commit and its moves (strace holds the moves), and at random
                moments: run again, every payload arrives once
  consumers     two competing consumers over 300 payloads: each handled exactly once; a consumer SIGKILLed
                mid-payload: that payload is handled again once its lease has run out
  failover      host=A,B target_session_attrs=read-write with A down: the payloads go to B
  retention     purge deletes handled payloads older than N days, and only those

Usage: postgres.py PATH/TO/webhook-handler PATH/TO/webhook-forwarder
"""
import hashlib, json, os, random, signal, subprocess, sys, tempfile, time

from checks import Checks, parse_cgi, signed_cgi_environment, wait_until
from postgres_server import BIN, Postgres

HANDLER, FORWARDER = (os.path.realpath(p) for p in sys.argv[1:3])
SECRET = "postgres-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


def deliver(spool, body):
    """One verified delivery to a handler host (the handler as a CGI, storing into `spool`); returns the status."""
    env = signed_cgi_environment(SECRET, body, spool)
    return parse_cgi(subprocess.run([HANDLER], env=env, input=body, capture_output=True, timeout=30).stdout)[0]


def payload(n, tag="p"):
    """Distinct bodies, some ending in bytes that are not text (a NUL, a lone 0xff): bodies are bytes, not JSON."""
    return json.dumps({"n": n, "tag": tag}).encode() + bytes([0, 0xE9, 0xFF])[: n % 4]


def new_files(spool):
    path = os.path.join(spool, "new")
    return os.listdir(path) if os.path.isdir(path) else []


def forward(spool, url, *extra, strace=None, host="host-a"):
    command = [FORWARDER, "forward", "--once", "--spool-dir", spool, "--database-url", url, "--host-name", host] + list(extra)
    if strace:
        command = ["strace", "-f", "-qq", "-o", "/dev/null"] + strace + command
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def rows_are_exact(pg):
    """Every row's id is the SHA-256 of its body (the x-signature scheme's payload id)."""
    return pg.sql("SELECT count(*) FROM webhook_payloads WHERE id <> encode(sha256(body), 'hex')") == "0"


def test_two_hosts_and_an_outage(work, pg):
    spool_a, spool_b = os.path.join(work, "host-a"), os.path.join(work, "host-b")
    statuses = [deliver(spool_a, payload(n)) for n in range(0, 200)] + [deliver(spool_b, payload(n)) for n in range(100, 300)]
    expect("two hosts: 400 deliveries (100 of them to both hosts) answered 200", statuses == [200] * 400)
    a, b = forward(spool_a, pg.url, host="host-a"), forward(spool_b, pg.url, host="host-b")
    expect("two hosts: both forwarded (%s / %s)" % (a.stdout.strip(), b.stdout.strip()),
           a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr)
    expect("two hosts: one row per distinct payload (300)", pg.sql("SELECT count(*) FROM webhook_payloads") == "300")
    expect("two hosts: every body is byte-identical to what the sender sent (sha256(body) = id)", rows_are_exact(pg))
    expect("two hosts: the rows name the host each came through",
           pg.sql("SELECT string_agg(DISTINCT host, ',' ORDER BY host) FROM webhook_payloads") == "host-a,host-b")
    expect("two hosts: new/ is empty on both", not new_files(spool_a) and not new_files(spool_b))
    sample = payload(7)
    stored = pg.sql("SELECT encode(body, 'hex') FROM webhook_payloads WHERE id = '%s'" % hashlib.sha256(sample).hexdigest())
    expect("two hosts: a body with NUL and non-ASCII bytes is stored exactly", bytes.fromhex(stored) == sample)

    pg.stop()
    statuses = [deliver(spool_a, payload(n, "outage")) for n in range(50)]
    expect("outage: with PostgreSQL stopped the handler still answers 200 and stores", statuses == [200] * 50
           and len(new_files(spool_a)) == 50)
    failed = forward(spool_a, pg.url)
    expect("outage: forward --once fails loudly (exit %d: %s)" % (failed.returncode, failed.stderr.strip()[-120:]),
           failed.returncode == 1 and "cannot forward" in failed.stderr and "stay in" in failed.stderr)
    expect("outage: nothing is lost: the 50 payloads stay in new/", len(new_files(spool_a)) == 50)
    pg.start()
    again = forward(spool_a, pg.url)
    expect("outage: once PostgreSQL is back everything arrives (%s)" % again.stdout.strip(),
           again.returncode == 0 and pg.sql("SELECT count(*) FROM webhook_payloads") == "350" and not new_files(spool_a))


def test_crashes(work, pg):
    spool = os.path.join(work, "crashing")
    bodies = [payload(n, "crash") for n in range(1500)]
    for body in bodies:
        deliver(spool, body)
    before = int(pg.sql("SELECT count(*) FROM webhook_payloads"))
    # The moves after the commit are held back 3 s; the forwarder is killed while it waits.
    held = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=rename:delay_enter=3000000:when=1",
                             FORWARDER, "forward", "--once", "--spool-dir", spool, "--database-url", pg.url,
                             "--batch-size", "2000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = wait_until(lambda: int(pg.sql("SELECT count(*) FROM webhook_payloads")) == before + 1500, seconds=20)
    with open("/proc/%d/task/%d/children" % (held.pid, held.pid)) as f:  # strace may have probe children too
        forwarder = [int(pid) for pid in f.read().split() if os.readlink("/proc/%s/exe" % pid) == FORWARDER]
    os.kill(forwarder[0], signal.SIGKILL)  # the forwarder itself: strace would only detach from it
    held.wait()
    expect("crash after the commit, before the moves: the rows are in, the files still in new/",
           committed and len(new_files(spool)) == 1500)
    for body in [payload(n, "crash-again") for n in range(1500)]:
        deliver(spool, body)
    for _ in range(3):  # and at random moments, in small batches, with payloads not yet forwarded
        moment = random.uniform(0.05, 0.4)
        process = subprocess.Popen([FORWARDER, "forward", "--once", "--spool-dir", spool, "--database-url", pg.url,
                                    "--batch-size", "50"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(moment)
        process.kill()
        process.wait()
    last = forward(spool, pg.url)
    expect("crashes: run again, every payload arrives once (%s)" % last.stdout.strip(),
           last.returncode == 0 and int(pg.sql("SELECT count(*) FROM webhook_payloads")) == before + 3000
           and not new_files(spool) and rows_are_exact(pg))


def start_consumer(work, pg, name, command, lease="3"):
    log = open(os.path.join(work, name + ".log"), "ab")
    return subprocess.Popen([FORWARDER, "consume", "--database-url", pg.url, "--exec", command, "--lease-seconds", lease],
                            stdout=log, stderr=log)


def test_consumers(work, pg):
    pg.sql("DELETE FROM webhook_payloads")
    spool = os.path.join(work, "for-consumers")
    for n in range(320):
        deliver(spool, payload(n, "consume"))
    handled = os.path.join(work, "handled")
    command = 'echo "$WEBHOOK_ID $(sha256sum | cut -c1-64)" >> %s' % handled
    consumers = [start_consumer(work, pg, "consumer-%d" % i, command) for i in range(2)]
    time.sleep(0.5)
    forwarded = forward(spool, pg.url)  # the consumers are woken by its NOTIFY
    done = wait_until(lambda: pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'done'") == "320", seconds=60)
    for consumer in consumers:
        consumer.send_signal(signal.SIGTERM)
    codes = [consumer.wait(timeout=30) for consumer in consumers]
    lines = open(handled).read().split("\n")[:-1]
    ids = [line.split()[0] for line in lines]
    expect("consumers: two competing consumers handled all 320 payloads (%s)" % forwarded.stdout.strip(), done)
    expect("consumers: each exactly once (%d runs, %d distinct)" % (len(ids), len(set(ids))),
           len(ids) == 320 and len(set(ids)) == 320)
    expect("consumers: each command read the payload's own body", all(i == digest for i, digest in
                                                                       (line.split() for line in lines)))
    busy = [open(os.path.join(work, "consumer-%d.log" % i)).read().count("; done") for i in range(2)]
    expect("consumers: both took a share (%s)" % busy, min(busy) > 0)
    expect("consumers: both stopped on SIGTERM with exit 0", codes == [0, 0], codes)

    body = payload(1, "killed mid-payload")
    deliver(spool, body)
    forward(spool, pg.url)
    hung = os.path.join(work, "hung")
    first = start_consumer(work, pg, "first", "echo $$ > %s; sleep 60" % hung, lease="3")
    wait_until(lambda: os.path.exists(hung) and open(hung).read().strip(), seconds=10)
    first.kill()
    first.wait()
    os.killpg(int(open(hung).read()), signal.SIGKILL)  # its command (a process group of its own) too
    second = start_consumer(work, pg, "second", "cat > /dev/null; echo $WEBHOOK_ID >> %s" % handled, lease="3")
    ident = hashlib.sha256(body).hexdigest()
    again = wait_until(lambda: pg.sql("SELECT state || ' ' || attempts FROM webhook_payloads WHERE id = '%s'" % ident)
                       == "done 2", seconds=20)
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=30)
    expect("consumers: a consumer SIGKILLed mid-payload: once its lease ran out another handled it (attempt 2)",
           again and open(handled).read().count(ident) == 1)


def test_service(work, pg):
    spool = os.path.join(work, "service")
    deliver(spool, payload(0, "service"))
    log_path = os.path.join(work, "forwarder.log")
    log = open(log_path, "ab")
    service = subprocess.Popen([FORWARDER, "forward", "--spool-dir", spool, "--database-url", pg.url], stdout=log,
                               stderr=log)
    count = lambda: int(pg.sql("SELECT count(*) FROM webhook_payloads WHERE host IS NOT NULL AND id IN (%s)" % ",".join(
        "'%s'" % i for i in os.listdir(os.path.join(spool, "cur")) + os.listdir(os.path.join(spool, "new")))) or 0)
    wait_until(lambda: not new_files(spool), seconds=10)
    time.sleep(0.5)
    began = time.time()
    deliver(spool, payload(1, "service"))
    prompt = wait_until(lambda: not new_files(spool), seconds=4.5)
    expect("service: a stored payload is forwarded at once, woken by the spool, not the 5 s look (%.2f s)"
           % (time.time() - began), prompt and time.time() - began < 2 and count() == 2)
    pg.stop()
    statuses = [deliver(spool, payload(n, "service")) for n in range(2, 12)]
    waited = wait_until(lambda: "cannot forward" in open(log_path).read(), seconds=10)
    expect("service: PostgreSQL stopped: deliveries still 200, the forwarder says why and keeps them",
           statuses == [200] * 10 and waited and len(new_files(spool)) == 10)
    pg.start()
    arrived = wait_until(lambda: not new_files(spool), seconds=45)
    expect("service: PostgreSQL back: it reconnects by itself and everything arrives", arrived and count() == 12)
    service.send_signal(signal.SIGTERM)
    expect("service: SIGTERM stops it with exit 0", service.wait(timeout=10) == 0)


def test_failover(work, pg):
    standby = Postgres(work, "server-b")
    spool = os.path.join(work, "failover")
    for n in range(40):
        deliver(spool, payload(n, "failover"))
    pg.stop()
    url = "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres target_session_attrs=read-write " \
          "connect_timeout=5" % (pg.port, standby.port)
    moved = forward(spool, url)
    expect("failover: with A down the payloads go to B (%s)" % moved.stdout.strip(),
           moved.returncode == 0 and standby.sql("SELECT count(*) FROM webhook_payloads") == "40")
    standby.stop()
    pg.start()


def test_once_and_hooks(work, pg):
    spool = os.path.join(work, "once")
    for n in range(3):
        deliver(spool, payload(n, "once"))
    forward(spool, pg.url)
    pending = int(pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'pending'"))
    failing = subprocess.run([FORWARDER, "consume", "--once", "--database-url", pg.url, "--exec", "echo no >&2; exit 3"],
                             capture_output=True, text=True, timeout=60)
    retried = pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'pending' AND attempts = 1 AND "
                     "available_at > now() AND last_error LIKE 'exited with status 3%'")
    expect("consume --once: a failing command exits 1 and leaves each payload for a later try (%s)"
           % failing.stdout.strip(), failing.returncode == 1 and int(retried) == pending, failing.stderr[-300:])
    pg.sql("UPDATE webhook_payloads SET available_at = now() WHERE state = 'pending'")
    passing = subprocess.run([FORWARDER, "consume", "--once", "--database-url", pg.url, "--exec", "cat > /dev/null"],
                             capture_output=True, text=True, timeout=60)
    expect("consume --once: handles what is there and exits 0 (%s)" % passing.stdout.strip(),
           passing.returncode == 0 and passing.stdout.strip() == "%d done, 0 failed" % pending)

    hooked = os.path.join(work, "hooked")
    body = payload(1, "hooked")
    env = signed_cgi_environment(SECRET, body, hooked, WEBHOOK_EXEC="true")
    subprocess.run([HANDLER], env=env, input=body, capture_output=True, timeout=30)
    warned = forward(hooked, pg.url)
    expect("a forwarder on a spool whose handler also runs --exec says each payload goes to one of them",
           "also runs an --exec hook" in warned.stderr, warned.stderr[-300:])


def test_purge(work, pg):
    pg.sql("UPDATE webhook_payloads SET state = 'done', done_at = now() - interval '10 days' "
           "WHERE id IN (SELECT id FROM webhook_payloads ORDER BY id LIMIT 5)")
    pending = pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'pending'")
    purged = subprocess.run([FORWARDER, "purge", "--database-url", pg.url, "--older-than-days", "7"],
                            capture_output=True, text=True, timeout=30)
    expect("retention: purge deletes the payloads handled more than 7 days ago (%s)" % purged.stdout.strip(),
           purged.stdout.strip() == "purged 5 payloads"
           and pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'pending'") == pending)


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-postgres-") as work:
        os.chmod(work, 0o755)
        pg = Postgres(work, "server-a")
        try:
            for test in (test_two_hosts_and_an_outage, test_crashes, test_service, test_consumers, test_failover,
                         test_once_and_hooks, test_purge):
                try:
                    test(work, pg)
                except Exception as error:  # a test that cannot run is a failure, not a crash of the suite
                    expect("%s ran" % test.__name__, False, repr(error))
        finally:
            for server in ("server-a", "server-b"):
                data = os.path.join(work, server, "data")
                if os.path.exists(os.path.join(data, "postmaster.pid")):
                    subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(BIN, "pg_ctl"), "-D", data,
                                    "-m", "immediate", "-w", "stop"], capture_output=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
