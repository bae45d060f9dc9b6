#!/usr/bin/env python3
"""The spool's cur/ retention (issue #19 item 7), with the real binaries: files in cur/ whose modification time is
older than the retention are removed, fresher ones and dot-files kept, new/ and tmp/ never touched, by

  hook runners  a FastCGI server with --exec and no journal (the runners alone prune), at most once every 5 min
  namer         a FastCGI server without --exec (its namer prunes for any consumer), more than one run's 10,000
  cgi           a CGI's runner, WEBHOOK_KEEP_CUR_DAYS from the environment; off keeps cur/ forever
  manual        webhook-handler spool prune [--older-than DAYS], 7 days by default
  refused       bad values for --keep-cur-days, WEBHOOK_KEEP_CUR_DAYS, --older-than: a clear error, exit 64
  forwarder     webhook-forwarder forward as a service against a real PostgreSQL, --keep-cur-days 1

Usage: retention.py PATH/TO/webhook-handler [PATH/TO/webhook-forwarder]
"""
import json, os, re, signal, socket, subprocess, sys, tempfile, time

from checks import Checks, fcgi_request, signed_cgi_environment, wait_until, x_signature

HANDLER = os.path.realpath(sys.argv[1])
FORWARDER = os.path.realpath(sys.argv[2]) if len(sys.argv) > 2 else None
SECRET = "retention-secret-%d" % os.getpid()
DAY = 86400
checks = Checks()
expect = checks.expect


def seed(spool, ages):
    """Makes the spool's directories and, for each `sub/name: age in days`, a file that old (its mtime)."""
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(spool, sub), mode=0o700, exist_ok=True)
    now = time.time()
    for path, days in ages.items():
        name = os.path.join(spool, path)
        with open(name, "w") as f:
            f.write('{"id":"%s","length":2}\n{}' % os.path.basename(path))
        os.utime(name, (now - days * DAY, now - days * DAY))


# Two days old in cur/ (to go), one hour and a fresh one (to stay), and what retention must never touch.
AGES = {"cur/old-a": 2, "cur/old-b": 30, "cur/old-c": 2, "cur/fresh": 1 / 24, "cur/.hidden.recovered": 30,
        "new/old-waiting": 30, "tmp/old-leftover": 30}


def kept_and_gone(label, spool, gone=("cur/old-a", "cur/old-b", "cur/old-c"),
                  kept=("cur/fresh", "cur/.hidden.recovered", "new/old-waiting", "tmp/old-leftover")):
    exists = lambda path: os.path.exists(os.path.join(spool, path))
    removed = wait_until(lambda: not any(exists(path) for path in gone), seconds=15)
    expect("%s: the files in cur/ older than the retention are removed" % label, removed,
           [path for path in gone if exists(path)])
    expect("%s: fresher ones in cur/, dot-files, new/ and tmp/ are kept" % label, all(exists(path) for path in kept),
           [path for path in kept if not exists(path)])


def fail_hook_for(spool, name):
    """Marks new/NAME failed (given up), so that hook runners leave it where it is."""
    os.makedirs(os.path.join(spool, ".hook-given-up"), exist_ok=True)
    open(os.path.join(spool, ".hook-given-up", name), "w").write("given up for the test\n")


class Server:
    """webhook-handler --listen on a unix socket, its log kept."""

    def __init__(self, work, name, arguments, env=None):
        self.socket = os.path.join(work, name + ".sock")
        self.log_path = os.path.join(work, name + ".log")
        self.log = open(self.log_path, "ab")
        environment = {"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin", **(env or {})}
        self.process = subprocess.Popen([HANDLER, "--listen", self.socket] + arguments, env=environment,
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        if not wait_until(lambda: os.path.exists(self.socket)):
            raise RuntimeError("the handler did not start: " + self.text())

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def post(self, body):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(self.socket)
            status, answer = fcgi_request(client, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
                                                   "HTTP_X_SIGNATURE": x_signature(SECRET, body)}, body=body)
        return status, json.loads(answer)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        finally:
            self.log.close()


def test_hook_runners(work):
    spool = os.path.join(work, "runners")
    seed(spool, AGES)
    fail_hook_for(spool, "old-waiting")
    server = Server(work, "runners", ["--spool-dir", spool, "--no-spool-journal", "--exec", "cat > /dev/null",
                                      "--keep-cur-days", "1"])
    try:
        status, answer = server.post(b'{"n": 1}')
        delivered = wait_until(lambda: os.path.exists(os.path.join(spool, "cur", answer.get("id", "-"))))
        expect("runners: a delivery is handled and moved to cur/", status == 200 and delivered, answer)
        kept_and_gone("runners", spool)
        expect("runners: the delivery just moved to cur/ is kept", os.path.exists(os.path.join(spool, "cur", answer["id"])))
        line = [text for text in server.text().splitlines() if "from cur/" in text]
        expect("runners: one log line says what went: 'removed 3 files from cur/ stored more than 1 day ago (12 KiB "
               "of disk); 1 kept'", len(line) == 1 and re.search(r"removed 3 files from cur/ stored more than 1 day ago "
                                                                 r"\(\d+ KiB of disk\); 1 kept", line[0]), line)

        seed(spool, {"cur/old-d": 2})
        status, answer = server.post(b'{"n": 2}')
        wait_until(lambda: os.path.exists(os.path.join(spool, "cur", answer.get("id", "-"))))
        time.sleep(1)
        expect("runners: within 5 minutes of a prune, the next delivery's runner does not prune again",
               os.path.exists(os.path.join(spool, "cur/old-d")))
        stamp = os.path.join(spool, ".cur-pruned")
        os.utime(stamp, (time.time() - 301, time.time() - 301))
        status, answer = server.post(b'{"n": 3}')
        expect("runners: 5 minutes later (the stamp's mtime moved back) the next runner prunes again",
               wait_until(lambda: not os.path.exists(os.path.join(spool, "cur/old-d"))))
    finally:
        server.stop()


def test_namer(work):
    spool = os.path.join(work, "namer")
    seed(spool, AGES)
    many = os.path.join(spool, "cur")
    old = time.time() - 3 * DAY
    for n in range(12000):
        name = os.path.join(many, "bulk-%05d" % n)
        open(name, "w").close()
        os.utime(name, (old, old))
    server = Server(work, "namer", ["--spool-dir", spool, "--keep-cur-days", "2.5"])
    try:
        kept_and_gone("namer (no --exec, a consumer of its own; 2.5 days)", spool, gone=("cur/old-b",),
                      kept=("cur/old-a", "cur/old-c", "cur/fresh", "cur/.hidden.recovered", "new/old-waiting",
                            "tmp/old-leftover"))
        expect("namer: 12,000 old files, more than one run's 10,000, are all removed, in runs one after the other",
               wait_until(lambda: not [n for n in os.listdir(many) if n.startswith("bulk-")], seconds=30),
               len(os.listdir(many)))
        lines = [text for text in server.text().splitlines() if "from cur/" in text]
        expect("namer: the first run stops at 10,000 and says more remain; 2.5 days reads '2.5 days'",
               lines and "removed 10000 files" in lines[0] and "more to remove" in lines[0]
               and "stored more than 2.5 days ago" in lines[0], lines)
        status, answer = server.post(b'{"n": "namer"}')
        expect("namer: deliveries are still stored", status == 200 and wait_until(
            lambda: os.path.exists(os.path.join(spool, "new", answer.get("id", "-")))), answer)
    finally:
        server.stop()


def cgi(spool, body, **extra):
    env = signed_cgi_environment(SECRET, body, spool, WEBHOOK_EXEC="cat > /dev/null", **extra)
    done = subprocess.run([HANDLER], env=env, input=body, capture_output=True, timeout=60)
    return done.stdout.split(b"\r\n", 1)[0]


def test_cgi(work):
    spool = os.path.join(work, "cgi-off")
    seed(spool, AGES)
    fail_hook_for(spool, "old-waiting")
    status = cgi(spool, b'{"cgi": "off"}', WEBHOOK_KEEP_CUR_DAYS="off")
    wait_until(lambda: not os.listdir(os.path.join(spool, "new")) == ["old-waiting"], seconds=5)
    time.sleep(1)
    expect("cgi: WEBHOOK_KEEP_CUR_DAYS=off keeps cur/ forever", b"200" in status and all(
        os.path.exists(os.path.join(spool, path)) for path in AGES), status)

    spool = os.path.join(work, "cgi")
    seed(spool, AGES)
    fail_hook_for(spool, "old-waiting")
    status = cgi(spool, b'{"cgi": 1}', WEBHOOK_KEEP_CUR_DAYS="1")
    expect("cgi: the delivery is answered 200", b"200" in status, status)
    kept_and_gone("cgi (WEBHOOK_KEEP_CUR_DAYS=1, the CGI's runner)", spool)
    log = os.path.join(spool, "hook.log")
    expect("cgi: the runner's line is in DIR/hook.log", wait_until(
        lambda: os.path.exists(log) and "removed 3 files" in open(log).read()))

    spool = os.path.join(work, "cgi-bad")
    seed(spool, AGES)
    fail_hook_for(spool, "old-waiting")
    done = subprocess.run([HANDLER], env=signed_cgi_environment(SECRET, b"{}", spool, WEBHOOK_KEEP_CUR_DAYS="soon"),
                          input=b"{}", capture_output=True, timeout=60)
    expect("cgi: a bad WEBHOOK_KEEP_CUR_DAYS does not fail the delivery; it is logged, and cur/ kept forever",
           b"200" in done.stdout.split(b"\r\n", 1)[0] and b"WEBHOOK_KEEP_CUR_DAYS must be a number of days" in done.stderr
           and b"keeping cur/ forever" in done.stderr, done.stderr[-300:])
    time.sleep(3)  # the CGI's runner has run (it prunes at once when nothing says when it last did)
    expect("cgi: a misspelled value deletes nothing (a 30-day-old file is still in cur/)",
           os.path.exists(os.path.join(spool, "cur/old-b")))


def prune(spool, *arguments, env=None):
    return subprocess.run([HANDLER, "spool", "prune", "--spool-dir", spool] + list(arguments), capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60)


def test_manual(work):
    spool = os.path.join(work, "manual")
    seed(spool, AGES)
    done = prune(spool, "--older-than", "1")
    expect("manual: spool prune --older-than 1 exits 0 and says what it removed",
           done.returncode == 0 and "removed 3 files" in done.stdout and "from cur/" in done.stdout, done)
    kept_and_gone("manual", spool)

    seed(spool, {"cur/week-and-a-day": 8, "cur/six-days": 6})
    done = prune(spool)
    gone = not os.path.exists(os.path.join(spool, "cur/week-and-a-day"))
    expect("manual: without --older-than, 7 days: 8 days old removed, 6 days old kept",
           done.returncode == 0 and gone and os.path.exists(os.path.join(spool, "cur/six-days")), done)
    seed(spool, {"cur/thirty-hours": 30 / 24})
    done = prune(spool, env={"WEBHOOK_KEEP_CUR_DAYS": "1"})
    expect("manual: WEBHOOK_KEEP_CUR_DAYS=1 is its default", done.returncode == 0
           and not os.path.exists(os.path.join(spool, "cur/thirty-hours")), done)
    done = prune(os.path.join(work, "no-such-spool"), "--older-than", "1")
    expect("manual: a missing spool is an error (exit 1, saying which directory)",
           done.returncode == 1 and "no-such-spool/cur" in done.stderr, done)


def test_refused(work):
    spool = os.path.join(work, "refused")
    seed(spool, {})
    cases = [
        ("--keep-cur-days abc", [HANDLER, "--listen", os.path.join(work, "x.sock"), "--spool-dir", spool,
                                 "--keep-cur-days", "abc"], {}, "--keep-cur-days must be a number of days"),
        ("--keep-cur-days 0.01 (under an hour)", [HANDLER, "--listen", os.path.join(work, "x.sock"), "--spool-dir",
                                                  spool, "--keep-cur-days", "0.01"], {}, "at least 0.042 (one hour)"),
        ("WEBHOOK_KEEP_CUR_DAYS=-3 for serve", [HANDLER, "--listen", os.path.join(work, "x.sock"), "--spool-dir",
                                                spool], {"WEBHOOK_KEEP_CUR_DAYS": "-3"},
         "WEBHOOK_KEEP_CUR_DAYS must be a number of days"),
        ("spool prune --older-than 7x", [HANDLER, "spool", "prune", "--spool-dir", spool, "--older-than", "7x"], {},
         "--older-than must be a number of days"),
    ]
    if FORWARDER:
        cases.append(("forward --keep-cur-days week", [FORWARDER, "forward", "--spool-dir", spool, "--keep-cur-days",
                                                       "week"], {}, "--keep-cur-days must be a number of days"))
    for label, command, env, said in cases:
        # Its own process group: a server that wrongly starts is stopped with everything it forked.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True,
                                   env={"PATH": "/usr/bin:/bin", "API_SECRET_KEY": SECRET, **env})
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate()
        expect("refused: %s: exit 64, saying what a value may be" % label, process.returncode == 64 and said in stderr,
               (process.returncode, stderr[-400:]))


def test_forwarder(work):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from postgres_server import Postgres
    os.chmod(work, 0o755)
    pg = Postgres(work, "retention-pg")
    spool = os.path.join(work, "forwarded")
    seed(spool, {path: age for path, age in AGES.items() if path != "new/old-waiting"})
    log_path = os.path.join(work, "forwarder.log")
    log = open(log_path, "ab")
    service = subprocess.Popen([FORWARDER, "forward", "--spool-dir", spool, "--database-url", pg.url,
                                "--keep-cur-days", "1"], stdout=log, stderr=log)
    try:
        body = b'{"forwarded": 1}'
        done = subprocess.run([HANDLER], env=signed_cgi_environment(SECRET, body, spool), input=body,
                              capture_output=True, timeout=60)
        ident = json.loads(done.stdout.split(b"\r\n\r\n", 1)[1])["id"]
        moved = wait_until(lambda: os.path.exists(os.path.join(spool, "cur", ident)), seconds=15)
        expect("forwarder: the service forwards a delivery and moves it to cur/", moved)
        kept_and_gone("forwarder (forward as a service, --keep-cur-days 1)", spool,
                      kept=("cur/fresh", "cur/.hidden.recovered", "tmp/old-leftover", "cur/" + ident))
        expect("forwarder: its log says what it removed", wait_until(
            lambda: "removed 3 files" in open(log_path).read()), open(log_path).read()[-500:])
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
        log.close()
        pg.stop()


def main():
    tests = [test_hook_runners, test_namer, test_cgi, test_manual, test_refused]
    if FORWARDER:
        tests.append(test_forwarder)
    only = os.environ.get("RETENTION_TESTS", "").split()
    return checks.run("webhook-retention-", [t for t in tests if not only or t.__name__ in only])


if __name__ == "__main__":
    sys.exit(main())
