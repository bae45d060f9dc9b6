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
  #19           migrations and least-privilege roles; a million-row take on its index; retention inside consume;
                time-outs and SIGTERM against a silent server; synchronous commits and bytea_output=escape;
                secrets out of logs and ps; a wrong spool or torn file; lease renewal; attempts, failed, retry;
                byte-bounded batches that split and set aside (each test's docstring names its item)

Usage: postgres.py PATH/TO/webhook-handler PATH/TO/webhook-forwarder [TEST_NAME ...]
"""
import hashlib, json, os, random, re, signal, socket, subprocess, sys, tempfile, time

from checks import Checks, parse_cgi, signed_cgi_environment, wait_until
from postgres_server import BIN, Postgres, spool_of

HANDLER, FORWARDER = (os.path.realpath(p) for p in sys.argv[1:3])
ROOT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")
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


def start_consumer(work, pg, name, command, lease="3", url=None, *extra):
    log = open(os.path.join(work, name + ".log"), "ab")
    return subprocess.Popen([FORWARDER, "consume", "--database-url", url or pg.url, "--exec", command, "--lease-seconds",
                             lease, "--renew-seconds", "1"] + list(extra), stdout=log, stderr=log)


def group_members(pgid):
    """The processes still in process group `pgid`."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as f:
                state, _, group = f.read().rsplit(")", 1)[1].split()[:3]
                if int(group) == pgid and state != "Z":  # a zombie is dead, waiting for whoever adopted it
                    members.append(int(pid))
        except (OSError, IndexError, ValueError):
            pass
    return members


def test_consumers(work, pg):
    run("migrate", "--database-url", pg.url)
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
    first = start_consumer(work, pg, "first", "echo $(ps -o pgid= $$) > %s; sleep 60" % hung, lease="3")
    wait_until(lambda: os.path.exists(hung) and open(hung).read().strip(), seconds=10)
    group = int(open(hung).read())
    first.kill()
    first.wait()
    gone = wait_until(lambda: not group_members(group), seconds=1)
    left = group_members(group)
    for pid in left:  # do not leave them to the reaper
        os.kill(pid, signal.SIGKILL)
    expect("consumers: a consumer SIGKILLed mid-command: within a second no process of its command remains (%s)" % left,
           gone and not left)
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


def run(*arguments, timeout=120, **kwargs):
    return subprocess.run([FORWARDER] + list(arguments), capture_output=True, text=True, timeout=timeout, **kwargs)


def test_schema_and_roles(work, pg):
    """#19.10: DDL only in `migrate` or when the table is absent; the forwarder and the consumer under roles with
    only the grants docs/forwarder.md lists; an older table is refused until migrated."""
    url = pg.database("leastpriv")
    first, again = run("migrate", "--database-url", url), run("migrate", "--database-url", url)
    expect("migrate: creates the schema, versioned (%s), and a second run does nothing (%s)"
           % (first.stdout.strip(), again.stdout.strip()),
           first.returncode == 0 and "applied migrations 1, 2, 3" in first.stdout and "up to date" in again.stdout
           and pg.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM webhook_forwarder_migrations", url) == "1,2,3",
           first.stderr + again.stderr)
    grants = re.findall(r"^    (GRANT .*;|CREATE ROLE .*;)$", open(os.path.join(ROOT, "docs", "forwarder.md")).read(), re.M)
    for grant in grants:
        pg.sql(grant, url)
    spool = os.path.join(work, "leastpriv")
    spool_of(spool, 50, tag="leastpriv")
    as_forwarder = url.replace("user=postgres", "user=webhook_forwarder")
    as_consumer = url.replace("user=postgres", "user=webhook_consumer")
    moved = run("forward", "--once", "--spool-dir", spool, "--database-url", as_forwarder)
    consumed = run("consume", "--once", "--database-url", as_consumer, "--exec", "cat > /dev/null")
    listed = run("list", "--state", "done", "--database-url", as_consumer)
    expect("least privilege: with only the documented grants (%d statements) forward, consume and list work (%s / %s)"
           % (len(grants), moved.stdout.strip(), consumed.stdout.strip()),
           len(grants) >= 4 and moved.returncode == 0 and consumed.stdout.strip() == "50 done, 0 failed"
           and len(listed.stdout.splitlines()) == 50, moved.stderr[-300:] + consumed.stderr[-300:] + listed.stderr[-300:])

    old = pg.database("oldschema")
    pg.sql("CREATE TABLE webhook_payloads (id text PRIMARY KEY, body bytea NOT NULL, received timestamptz NOT NULL, "
           "remote_addr text, content_type text, sender text, scheme text, host text NOT NULL, forwarded_at timestamptz "
           "NOT NULL DEFAULT now(), state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')), attempts "
           "integer NOT NULL DEFAULT 0, available_at timestamptz NOT NULL DEFAULT now(), lease_until timestamptz, "
           "last_error text, done_at timestamptz)", old)
    refused = run("forward", "--once", "--spool-dir", spool, "--database-url", old)
    upgraded = run("migrate", "--database-url", old)
    expect("an older table is refused with the command that upgrades it, and migrate upgrades it (%s)"
           % upgraded.stdout.strip(), refused.returncode == 1 and "webhook-forwarder migrate" in refused.stderr
           and upgraded.returncode == 0 and pg.sql("SELECT count(*) FROM pg_indexes WHERE indexname = "
                                                   "'webhook_payloads_take'", old) == "1", refused.stderr[-300:])


def explained(pg, marker):
    """The plans auto_explain logged for statements whose text contains `marker`."""
    log = open(os.path.join(pg.directory, "log"), errors="replace").read()
    entries = [entry.split(" LOG: ")[0].rsplit("\n", 1)[0] for entry in log.split("plan:")[1:]]
    return [entry for entry in entries if marker in entry]


def test_million(work, pg):
    """#19.5 and 7: a million pending rows: the take is an index scan in the take's order (no sort); retention
    inside consume deletes old done rows by index, in small batches."""
    url = pg.database("million")
    run("migrate", "--database-url", url)
    pg.sql("INSERT INTO webhook_payloads (id, body, received, host, available_at) SELECT md5(g::text), "
           "convert_to('{}', 'UTF8'), now(), 'h', now() - interval '1 day' + g * interval '1 ms' "
           "FROM generate_series(1, 1000000) g", url)
    pg.sql("INSERT INTO webhook_payloads (id, body, received, host, state, done_at) SELECT 'done' || g, '\\x00', now(), "
           "'h', 'done', now() - interval '30 days' FROM generate_series(1, 3000) g", url)
    pg.sql("ANALYZE webhook_payloads", url)
    pg.sql("ALTER DATABASE million SET session_preload_libraries = 'auto_explain'", url)
    pg.sql("ALTER DATABASE million SET auto_explain.log_min_duration = 0", url)
    consumer = start_consumer(work, pg, "million", "cat > /dev/null", "30", url, "--keep-done-days", "7")
    done = wait_until(lambda: pg.sql("SELECT count(*) >= 50 FROM webhook_payloads WHERE done_at > now() - interval '1 hour'",
                                     url) == "t", seconds=120)
    consumer.send_signal(signal.SIGTERM)
    consumer.wait(timeout=30)
    takes = explained(pg, "LIMIT 1 FOR UPDATE SKIP LOCKED")
    take_plans_ok = takes and all("Index Scan using webhook_payloads_take" in plan and "Sort" not in plan for plan in takes)
    expect("a million pending rows: every take is an index scan on webhook_payloads_take, no sort (%d plans)" % len(takes),
           done and take_plans_ok, takes[0][:800] if takes else "no plan logged")
    deletes = explained(pg, "DELETE FROM webhook_payloads")
    left = pg.sql("SELECT count(*) FROM webhook_payloads WHERE done_at < now() - interval '7 days'", url)
    expect("retention: consume deleted the rows done more than 7 days ago (%s left), by the done_at index"
           % left, left == "0" and deletes and all("webhook_payloads_done" in plan for plan in deletes),
           deletes[0][:800] if deletes else "no DELETE logged")
    pg.sql("DROP DATABASE million")


def test_listing_once(work, pg):
    """#19.6: one pass lists new/ once, not once per batch."""
    spool = os.path.join(work, "listing")
    spool_of(spool, 3000, size=100, tag="listing")
    traced = forward(spool, pg.url, "--batch-size", "100", strace=["-e", "trace=openat", "-o", os.path.join(work, "openat")])
    listings = open(os.path.join(work, "openat")).read().count('/new", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY')
    expect("forward lists new/ once for 30 batches of 100, not once a batch (%d listings; %s)"
           % (listings, traced.stdout.strip()), traced.returncode == 0 and 1 <= listings <= 2, traced.stderr[-300:])


def silent_port():
    """A port that accepts connections (the kernel does, from the backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


def test_timeouts(work, pg):
    """#19.9: time-outs by default (the URL has no connect_timeout); the URL's own wins; SIGTERM within a second
    while the server is silent."""
    listener = silent_port()
    url = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % listener.getsockname()[1]
    spool = os.path.join(work, "silent")
    spool_of(spool, 3, tag="silent")
    began = time.time()
    try:
        silent = forward(spool, url)
        took = time.time() - began
        expect("a silent server: forward --once gives up by itself within the default 10 s (%.1f s: %s)"
               % (took, silent.stderr.strip()[-160:]), silent.returncode == 1 and took < 20 and len(new_files(spool)) == 3)
    except subprocess.TimeoutExpired:
        expect("a silent server: forward --once gives up by itself", False, "still waiting after 120 s")
    began = time.time()
    own = forward(spool, url + " connect_timeout=3")
    expect("the URL's connect_timeout=3 overrides the default (%.1f s)" % (time.time() - began),
           own.returncode == 1 and time.time() - began < 7)
    for name, command in (("forward", [FORWARDER, "forward", "--spool-dir", spool, "--database-url", url]),
                          ("consume", [FORWARDER, "consume", "--database-url", url, "--exec", "true"])):
        service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        service.send_signal(signal.SIGTERM)
        began = time.time()
        try:
            code = service.wait(timeout=5)
        except subprocess.TimeoutExpired:
            service.kill()
            code = service.wait()
        expect("%s: SIGTERM while the server is silent stops it within a second (%.2f s, exit %s)"
               % (name, time.time() - began, code), time.time() - began < 1.0 and code == 0)
    listener.close()


def test_session_settings(work, pg):
    """#19.11 and 12: a database with synchronous_commit=off and bytea_output=escape: the forwarder's commits are
    synchronous; takes still read exact bodies; forward --from-cur --since re-inserts what a failover lost."""
    url = pg.database("settings")
    run("migrate", "--database-url", url)
    pg.sql("ALTER DATABASE settings SET synchronous_commit = off", url)
    pg.sql("ALTER DATABASE settings SET bytea_output = 'escape'", url)
    pg.sql("CREATE TABLE commit_modes (mode text); CREATE FUNCTION record_mode() RETURNS trigger LANGUAGE plpgsql AS "
           "$$BEGIN INSERT INTO commit_modes VALUES (current_setting('synchronous_commit')); RETURN NULL; END$$; "
           "CREATE TRIGGER record_mode AFTER INSERT ON webhook_payloads FOR EACH STATEMENT EXECUTE FUNCTION record_mode()",
           url)
    spool = os.path.join(work, "settings")
    for n in range(12):
        deliver(spool, payload(n, "settings"))
    moved = forward(spool, url)
    expect("synchronous_commit=off for the database: the forwarder's session commits with it on (%s)"
           % pg.sql("SELECT string_agg(DISTINCT mode, ',') FROM commit_modes", url),
           moved.returncode == 0 and pg.sql("SELECT string_agg(DISTINCT mode, ',') FROM commit_modes", url) == "on")
    handled = os.path.join(work, "settings-handled")
    consumed = run("consume", "--once", "--database-url", url, "--exec",
                   'echo "$WEBHOOK_ID $(sha256sum | cut -c1-64)" >> %s' % handled)
    lines = open(handled).read().split() if os.path.exists(handled) else []
    expect("bytea_output=escape: every take reads the exact body (%s)" % consumed.stdout.strip(),
           consumed.stdout.strip() == "12 done, 0 failed" and len(lines) == 24
           and all(lines[i] == lines[i + 1] for i in range(0, 24, 2)), consumed.stderr[-300:])
    pg.sql("DELETE FROM webhook_payloads WHERE id IN (SELECT id FROM webhook_payloads ORDER BY id LIMIT 5)", url)
    cur = sorted(os.listdir(os.path.join(spool, "cur")))
    again = forward(spool, url, "--from-cur", "--since", "1h")
    expect("forward --from-cur --since 1h puts back the 5 rows a failover lost, files stay in cur/ (%s)"
           % again.stdout.strip(), again.returncode == 0 and "forwarded 5 payloads" in again.stdout
           and pg.sql("SELECT count(*) FROM webhook_payloads", url) == "12"
           and sorted(os.listdir(os.path.join(spool, "cur"))) == cur, again.stderr[-300:])


def test_secrets(work, pg):
    """#19.13: no password fragment in the log; --database-url disappears from the command line."""
    spool = os.path.join(work, "secrets")
    spool_of(spool, 1, tag="secrets")
    malformed = forward(spool, "host=127.0.0.1 port=%d password=hunter2 tail-of-the-secret" % pg.port)
    expect("a malformed URL: the error says so without quoting the password's fragments (%s)" % malformed.stderr.strip(),
           malformed.returncode == 1 and "tail-of-the-secret" not in malformed.stderr
           and "hunter2" not in malformed.stderr and "malformed" in malformed.stderr)
    service = subprocess.Popen([FORWARDER, "forward", "--spool-dir", spool, "--database-url", pg.url + " password=pw-in-argv"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    shown = open("/proc/%d/cmdline" % service.pid, "rb").read()
    service.send_signal(signal.SIGTERM)
    service.wait(timeout=10)
    expect("--database-url is wiped from /proc/PID/cmdline once it has started", b"pw-in-argv" not in shown, shown)


def test_spool_errors(work, pg):
    """#19.14: a wrong spool directory or a torn file is an error, not "forwarded 0"."""
    wrong = forward(os.path.join(work, "no-such-spool"), pg.url)
    expect("forward --once on a missing spool exits 1 saying so (%s)" % wrong.stderr.strip()[-120:],
           wrong.returncode == 1 and "cannot read the spool" in wrong.stderr and "forwarded 0" not in wrong.stdout)
    service = subprocess.run([FORWARDER, "forward", "--spool-dir", os.path.join(work, "no-such-spool"), "--database-url",
                              pg.url], capture_output=True, text=True, timeout=10)
    expect("the forward service on a missing spool exits 1 at once", service.returncode == 1)
    spool = os.path.join(work, "torn")
    spool_of(spool, 5, tag="torn")
    with open(os.path.join(spool, "new", "f" * 64), "wb") as f:
        f.write(b'{"id":"' + b"f" * 64 + b'","received":"2026-11-30T00:00:00.000Z","length":100}\n{"short"')
    torn = forward(spool, pg.url)
    expect("a torn file in new/: the others are forwarded, it stays, the run says so and exits 1 (%s)" % torn.stdout.strip(),
           torn.returncode == 1 and "cannot be read whole" in torn.stderr and "forwarded 5" in torn.stdout
           and new_files(spool) == ["f" * 64], torn.stderr[-300:])


def test_leases(work, pg):
    """#19.2: the lease is renewed while the command runs, so a second consumer never takes a payload whose first
    consumer lives; a lease shorter than two renewals is refused."""
    run("migrate", "--database-url", pg.url)
    short = run("consume", "--once", "--database-url", pg.url, "--exec", "true", "--lease-seconds", "3")
    expect("a 3 s lease with the default 10 s renewal is refused (exit %d: %s)" % (short.returncode, short.stderr.strip()[-120:]),
           short.returncode == 64 and "--renew-seconds" in short.stderr)
    pg.sql("DELETE FROM webhook_payloads")
    spool = os.path.join(work, "leases")
    deliver(spool, payload(1, "lease"))
    forward(spool, pg.url)
    runs = os.path.join(work, "lease-runs")
    command = "cat > /dev/null; echo start >> %s; sleep 7; echo end >> %s" % (runs, runs)
    first = start_consumer(work, pg, "lease-1", command, "2")
    wait_until(lambda: os.path.exists(runs), seconds=10)
    second = start_consumer(work, pg, "lease-2", command, "2")
    finished = wait_until(lambda: pg.sql("SELECT state FROM webhook_payloads") == "done", seconds=20)
    for consumer in (first, second):
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(timeout=20)
    said = open(runs).read().split()
    expect("a 2 s lease renewed every second: a 7 s command runs once, never twice at once (%s)" % said,
           finished and said == ["start", "end"] and pg.sql("SELECT attempts FROM webhook_payloads") == "1")


def test_lease_lost(work, pg):
    """#19.2: a consumer that lives but has lost its lease (another consumer took the payload after it ran out)
    stops its command at its next renewal, so the payload is not run twice at once."""
    run("migrate", "--database-url", pg.url)
    pg.sql("DELETE FROM webhook_payloads")
    spool = os.path.join(work, "lease-lost")
    deliver(spool, payload(1, "lease lost"))
    forward(spool, pg.url)
    hung = os.path.join(work, "lease-lost-group")
    first = start_consumer(work, pg, "lease-lost", "echo $(ps -o pgid= $$) > %s; sleep 30" % hung, "3")
    wait_until(lambda: os.path.exists(hung) and open(hung).read().strip(), seconds=10)
    group = int(open(hung).read())
    # What another consumer's take does once the lease has run out (a renewal late by more than the lease).
    pg.sql("UPDATE webhook_payloads SET attempts = attempts + 1, available_at = now() + interval '60 s'")
    gone = wait_until(lambda: not group_members(group), seconds=3)
    left = group_members(group)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    first.send_signal(signal.SIGTERM)
    code = first.wait(timeout=30)
    said = open(os.path.join(work, "lease-lost.log")).read()
    expect("a lease lost while the command runs: the command is killed at the next renewal (%s)" % left,
           gone and not left and "lease was lost" in said and code == 0, said[-300:])

    # The consumer's connection is cut: its renewals fail, and the command must end before the 3 s lease does.
    pg.sql("DELETE FROM webhook_payloads")
    deliver(spool, payload(2, "lease unrenewable"))
    forward(spool, pg.url)
    os.unlink(hung)
    cut = start_consumer(work, pg, "lease-cut", "echo $(ps -o pgid= $$) > %s; sleep 30" % hung, "3")
    wait_until(lambda: os.path.exists(hung) and open(hung).read().strip(), seconds=10)
    group = int(open(hung).read())
    cut_at = time.monotonic()
    pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
           "AND backend_type = 'client backend'")
    gone = wait_until(lambda: not group_members(group), seconds=5)
    took = time.monotonic() - cut_at
    left = group_members(group)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    pg.sql("UPDATE webhook_payloads SET state = 'done', done_at = now()")  # not taken again before SIGTERM
    cut.send_signal(signal.SIGTERM)
    code = cut.wait(timeout=30)
    said = open(os.path.join(work, "lease-cut.log")).read()
    expect("renewals failing: the command is killed before its 3 s lease runs out (%.1f s, %s)" % (took, left),
           gone and not left and took < 3 and "before its lease runs out" in said and code == 0, said[-300:])


def test_pipelined_commits(work, pg):
    """#19 (forward >= 0.5x COPY): forward pipelines its batches (batch N+1 is read from the spool while N runs and
    commits), and a file still leaves new/ only after its batch's commit returned. Forced: batch 3's commit is held
    (a deferred trigger sleeps in it) and its session is terminated meanwhile, so that commit never happens."""
    url = pg.database("pipelined")
    run("migrate", "--database-url", url)
    spool = os.path.join(work, "pipelined")
    ids = sorted(spool_of(spool, 2000, size=200, tag="pipelined"))  # the forwarder takes new/ in name order
    pg.sql("CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(60); RETURN NULL; "
           "END$$; CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON webhook_payloads DEFERRABLE INITIALLY DEFERRED "
           "FOR EACH ROW WHEN (NEW.id = '%s') EXECUTE FUNCTION hold_commit()" % ids[1200], url)
    log_path = os.path.join(work, "pipelined.log")
    process = subprocess.Popen([FORWARDER, "forward", "--once", "--spool-dir", spool, "--database-url", url,
                                "--batch-size", "500"], stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    sleeping = "FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = 'pipelined'"
    held = wait_until(lambda: pg.sql("SELECT count(*) " + sleeping) == "1", seconds=30)
    time.sleep(1)  # whatever the forwarder does before batch 3's commit returns, it has done by now
    moved_early = sorted(set(os.listdir(os.path.join(spool, "cur"))) - set(ids[:1000]))
    pg.sql("SELECT pg_terminate_backend(pid) " + sleeping)
    if not held:
        process.kill()
    process.wait(timeout=60)
    rows = set(pg.sql("SELECT id FROM webhook_payloads", url).split())
    cur = set(os.listdir(os.path.join(spool, "cur")))
    expect("pipelined batches: batch 3's commit held then lost, the run fails (exit %s); only batches 1-2 (%d files) "
           "left new/, each with its row; batch 3's files were not moved early (%d were)"
           % (process.returncode, len(cur), len(moved_early)),
           held and process.returncode == 1 and not moved_early and cur == set(ids[:1000]) and rows == cur
           and len(new_files(spool)) == 1000, open(log_path).read()[-300:])
    pg.sql("DROP TRIGGER hold_commit ON webhook_payloads", url)
    again = forward(spool, url)
    expect("pipelined batches: run again, the other 1000 arrive (%s)" % again.stdout.strip(),
           again.returncode == 0 and pg.sql("SELECT count(*) FROM webhook_payloads", url) == "2000" and not new_files(spool))


def test_lease_token(work, pg):
    """#19.2: a lease is a token drawn at each take, not (id, attempts), which repeats once `retry` resets attempts.
    Forced: consumer A is stopped (SIGSTOP) while its command runs, past its lease; meanwhile B takes the payload and
    gives up on it (exit 65), `retry` sends it back, and C takes it again (attempt 1 again, as A's) and runs a long
    command. A's command ends while A is stopped; on SIGCONT A must see its lease gone, not complete C's."""
    run("migrate", "--database-url", pg.url)
    pg.sql("DELETE FROM webhook_payloads")
    spool = os.path.join(work, "lease-token")
    deliver(spool, payload(1, "lease token"))
    forward(spool, pg.url)
    ident = pg.sql("SELECT id FROM webhook_payloads")
    started = os.path.join(work, "lease-token-started")
    first = start_consumer(work, pg, "lease-token-a", "cat > /dev/null; echo a >> %s; sleep 2" % started, "3")
    wait_until(lambda: os.path.exists(started), seconds=10)
    os.kill(first.pid, signal.SIGSTOP)
    state = lambda: pg.sql("SELECT state || ' ' || attempts FROM webhook_payloads")
    expired = wait_until(lambda: pg.sql("SELECT (available_at < now())::text FROM webhook_payloads") == "true", seconds=10)
    gave_up = run("consume", "--once", "--database-url", pg.url, "--exec", "cat > /dev/null; exit 65")
    after_b = state()
    back = run("retry", ident, "--database-url", pg.url)
    third = start_consumer(work, pg, "lease-token-c", "cat > /dev/null; echo c >> %s; sleep 6" % started, "3")
    taken = wait_until(lambda: open(started).read().split() == ["a", "c"], seconds=10)
    time.sleep(2.5)  # A's command has ended by now
    os.kill(first.pid, signal.SIGCONT)
    time.sleep(2)  # A records its outcome (or, with the old key, C's)
    while_c_runs = state()
    finished = wait_until(lambda: state() == "done 1", seconds=15)
    for consumer in (first, third):
        consumer.send_signal(signal.SIGTERM)
    codes = [consumer.wait(timeout=30) for consumer in (first, third)]
    said = open(os.path.join(work, "lease-token-a.log")).read()
    expect("a retried payload: B gave up (%s), retry sent it back (%s), C took it as attempt 1 again"
           % (after_b, back.stdout.strip()), expired and after_b == "failed 2"
           and back.returncode == 0 and taken, gave_up.stderr[-300:])
    expect("a consumer stopped past its lease, resumed while C holds the same (id, attempt): it does not complete C's "
           "lease (%r while C runs; A: %s)" % (while_c_runs, [line for line in said.splitlines() if "attempt 1" in line][-1:]),
           while_c_runs == "pending 1" and "lease had run out" in said and finished and codes == [0, 0], said[-400:])


def test_attempts(work, pg):
    """#19.4: WEBHOOK_ATTEMPT, backoff with jitter, --max-attempts then failed with every attempt's error, the
    give-up status, list --state failed, retry."""
    run("migrate", "--database-url", pg.url)
    pg.sql("DELETE FROM webhook_payloads")
    spool = os.path.join(work, "attempts")
    ids = spool_of(spool, 6, tag="attempts")
    forward(spool, pg.url)
    seen = os.path.join(work, "attempt-numbers")
    failing = 'echo "$WEBHOOK_ATTEMPT" >> %s; echo "no luck $WEBHOOK_ATTEMPT" >&2; exit 3' % seen
    for _ in range(3):
        pg.sql("UPDATE webhook_payloads SET available_at = now() WHERE state = 'pending'")
        run("consume", "--once", "--max-attempts", "3", "--database-url", pg.url, "--exec", failing)
    numbers = sorted(open(seen).read().split())
    failed = pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'failed' AND attempts = 3 "
                    "AND jsonb_array_length(errors) = 3 AND errors->2->>'error' LIKE '%no luck 3%'")
    expect("--max-attempts 3: the command saw WEBHOOK_ATTEMPT 1, 2, 3; then each payload is failed with its 3 errors",
           numbers == ["1"] * 6 + ["2"] * 6 + ["3"] * 6 and failed == "6", numbers)
    listed = run("list", "--state", "failed", "--database-url", pg.url)
    expect("list --state failed shows them", sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted(ids))
    back = run("retry", ids[0], "--database-url", pg.url)
    expect("retry ID sends one back (%s)" % back.stdout.strip(),
           back.stdout.strip() == "sent back 1 payloads" and pg.sql("SELECT state FROM webhook_payloads WHERE id = '%s'"
                                                                   % ids[0]) == "pending")
    run("retry", "--failed", "--database-url", pg.url)
    jittered = run("consume", "--once", "--database-url", pg.url, "--exec", "exit 3")
    pauses = pg.sql("SELECT string_agg(round(extract(epoch FROM available_at - (errors->-1->>'at')::timestamptz), 2)::text, "
                    "' ') FROM webhook_payloads").split()
    expect("the first retry waits 10 s +-25 %%, jittered (%s)" % pauses,
           jittered.returncode == 1 and len(pauses) == 6 and all(7.4 <= float(p) <= 12.6 for p in pauses)
           and len(set(pauses)) > 1)
    pg.sql("UPDATE webhook_payloads SET available_at = now()")
    gave_up = run("consume", "--once", "--database-url", pg.url, "--exec", "exit 65")
    expect("exit 65 fails a payload for good at once (%s)" % gave_up.stdout.strip(),
           pg.sql("SELECT count(*) FROM webhook_payloads WHERE state = 'failed' AND attempts = 2") == "6")
    run("retry", "--failed", "--database-url", pg.url)
    passing = run("consume", "--once", "--database-url", pg.url, "--exec", "cat > /dev/null")
    expect("retry --failed: all of them handled after (%s)" % passing.stdout.strip(), passing.stdout.strip() == "6 done, 0 failed")


def test_batches(work, pg):
    """#19.8: batches bounded by bytes; a batch refused for what it carries is split; the one payload that can
    never be inserted is set aside, not retried forever ahead of the rest."""
    url = pg.database("batches")
    run("migrate", "--database-url", url)
    pg.sql("CREATE TABLE statements (tx bigint); CREATE FUNCTION count_tx() RETURNS trigger LANGUAGE plpgsql AS "
           "$$BEGIN INSERT INTO statements VALUES (txid_current()); RETURN NULL; END$$; "
           "CREATE TRIGGER count_tx AFTER INSERT ON webhook_payloads FOR EACH STATEMENT EXECUTE FUNCTION count_tx()", url)
    spool = os.path.join(work, "batches")
    spool_of(spool, 20, size=300000, tag="big")
    sized = forward(spool, url, "--batch-bytes", "1000000")
    transactions = int(pg.sql("SELECT count(DISTINCT tx) FROM statements", url))
    expect("--batch-bytes 1 MB: 20 bodies of 300 kB go in 7 transactions of at most 4, not one (%d; %s)"
           % (transactions, sized.stdout.strip()), sized.returncode == 0 and transactions == 7, sized.stderr[-300:])
    pg.sql("ALTER TABLE webhook_payloads ADD CONSTRAINT stand_in_for_too_large CHECK (length(body) < 200000) NOT VALID", url)
    ids = spool_of(spool, 30, size=100, tag="small")
    spool_of(spool, 1, size=250000, tag="refused")
    refused = forward(spool, url)
    aside = os.listdir(os.path.join(spool, "unforwardable")) if os.path.isdir(os.path.join(spool, "unforwardable")) else []
    expect("a payload PostgreSQL refuses even alone is set aside and said, the 30 others forwarded (%s)"
           % refused.stdout.strip(), refused.returncode == 1 and len(aside) == 1 and not new_files(spool)
           and "forwarded 30" in refused.stdout and "set aside" in refused.stderr
           and pg.sql("SELECT count(*) FROM webhook_payloads WHERE id IN (%s)" % ",".join("'%s'" % i for i in ids), url)
           == "30", refused.stderr[-300:])


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-postgres-") as work:
        os.chmod(work, 0o755)
        pg = Postgres(work, "server-a")
        try:
            only = sys.argv[3:]  # test names to run, for development; all by default
            for test in (test_two_hosts_and_an_outage, test_crashes, test_service, test_consumers, test_failover,
                         test_once_and_hooks, test_purge, test_schema_and_roles, test_listing_once, test_timeouts,
                         test_session_settings, test_secrets, test_spool_errors, test_leases, test_lease_lost,
                         test_lease_token, test_attempts, test_batches, test_pipelined_commits, test_million):
                if only and test.__name__ not in only:
                    continue
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
