#!/usr/bin/env python3
"""What ships for Prometheus and Grafana, checked against the real thing:

  rules       deploy/prometheus/webhook.rules.yml passes `promtool check rules`, and each alert's unit test in
              webhook.rules.test.yml passes `promtool test rules` (each alert fires for its failure, not before)
  forwarder   webhook-forwarder's textfile for node_exporter, against a real PostgreSQL 15: rows forwarded, a
              failed batch, the consumer's runs by result, rows by state; `promtool check metrics` accepts it
  names       every metric named by the Grafana dashboard (deploy/grafana/) and by the rules is one the handler's
              exposition (a FastCGI server with a journaled spool) or the forwarder's file really has, or a
              recording rule
  logs        logfmt lines (every field key=value, parsed back; hostile text quoted) with level=; under journald
              (JOURNAL_STREAM naming stderr, as systemd sets it) a <N> priority prefix and no ts=; the web
              server's request id in the access line and in the hook's environment; then the real journald
              (systemd-journald started here in a mount namespace of its own, the handler's stderr its stream via
              systemd-cat, JOURNAL_STREAM set as systemd sets it): PRIORITY 6/4/3 for a 200/400/500, the message
              without the prefix or a timestamp, `journalctl -p err` finding only the 500

Usage: monitoring.py PATH/TO/webhook-handler PATH/TO/webhook-forwarder
"""
import json, os, re, socket, subprocess, sys, tempfile

from checks import Checks, x_signature, fcgi_request, parse_cgi, signed_cgi_environment, wait_until
from postgres_server import Postgres

HANDLER, FORWARDER = (os.path.realpath(p) for p in sys.argv[1:3])
DEPLOY = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "deploy")
SECRET = "monitoring-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


def samples(text):
    """{name{labels}: value} of a text exposition (the Prometheus format 0.0.4)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def promtool(*arguments, text=None):
    done = subprocess.run(["promtool", *arguments], input=text, capture_output=True, text=True, timeout=120,
                          cwd=os.path.join(DEPLOY, "prometheus"))
    return done.returncode, (done.stdout + done.stderr)[-1500:]


def test_rules():
    status, output = promtool("check", "rules", "webhook.rules.yml")
    expect("rules: promtool check rules", status == 0, output)
    status, output = promtool("test", "rules", "webhook.rules.test.yml")
    expect("rules: every alert's unit test passes (promtool test rules)", status == 0, output)


def handler_exposition(work):
    """The handler's status in the text format, from a FastCGI server with a journaled spool and one delivery."""
    socket_path = os.path.join(work, "handler.sock")
    log = open(os.path.join(work, "handler.log"), "ab")
    handler = subprocess.Popen([HANDLER, "--listen", socket_path, "--workers", "2", "--spool-dir",
                                os.path.join(work, "handler-spool"), "--exec", "cat >/dev/null"],
                               env={"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}, stdout=log, stderr=log)
    try:
        wait_until(lambda: os.path.exists(socket_path))
        client = socket.socket(socket.AF_UNIX)
        client.connect(socket_path)
        status, text = fcgi_request(client, {"REQUEST_METHOD": "GET", "WEBHOOK_ENDPOINT": "status",
                                             "HTTP_ACCEPT": "text/plain;version=0.0.4"}, keep=False)
        client.close()
        expect("names: the handler's exposition", status == 200, text[:300])
        return text.decode()
    finally:
        handler.terminate()
        handler.wait(timeout=60)
        log.close()


def deliver(spool, n):
    body = json.dumps({"n": n}).encode()
    env = signed_cgi_environment(SECRET, body, spool)
    return parse_cgi(subprocess.run([HANDLER], env=env, input=body, capture_output=True, timeout=30).stdout)[0]


def forwarder(*arguments):
    return subprocess.run([FORWARDER, *arguments], capture_output=True, text=True, timeout=120)


def test_forwarder(work):
    """Returns the forwarder's and the consumer's files."""
    pg = Postgres(work, "pg")
    try:
        spool = os.path.join(work, "spool")
        expect("forwarder: 5 deliveries stored", [deliver(spool, n) for n in range(5)] == [200] * 5)
        forwarded_file = os.path.join(work, "webhook-forwarder.prom")
        done = forwarder("forward", "--once", "--spool-dir", spool, "--database-url", pg.url,
                         "--metrics-file", forwarded_file)
        text = open(forwarded_file).read() if os.path.exists(forwarded_file) else ""
        found = samples(text)
        expect("forwarder: its file counts 5 rows forwarded, no lag, a pass just now",
               done.returncode == 0 and found.get("webhook_forwarder_rows_forwarded_total") == 5
               and found.get("webhook_forwarder_lag_seconds") == 0
               and found.get("webhook_forwarder_last_pass_timestamp_seconds", 0) > 1.7e9, text + done.stderr)
        status, output = promtool("check", "metrics", text=text)
        expect("forwarder: promtool check metrics accepts its file", status == 0, output)
        expect("forwarder: no temporary file left", not os.path.exists(forwarded_file + ".tmp"))

        # A batch PostgreSQL refuses: counted, and the payloads stay in new/.
        pg.sql("ALTER TABLE webhook_payloads ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
        expect("forwarder: a sixth delivery", deliver(spool, 5) == 200)
        environment = dict(os.environ, WEBHOOK_METRICS_FILE=forwarded_file)
        done = subprocess.run([FORWARDER, "forward", "--once", "--spool-dir", spool, "--database-url", pg.url],
                              env=environment, capture_output=True, text=True, timeout=120)
        found = samples(open(forwarded_file).read())
        expect("forwarder: the refused batch is counted, and its payload set aside ($WEBHOOK_METRICS_FILE)",
               done.returncode == 1 and found.get("webhook_forwarder_batches_failed_total") == 1
               and found.get("webhook_forwarder_rows_set_aside_total") == 1, found)
        pg.sql("ALTER TABLE webhook_payloads DROP CONSTRAINT refuse_all")

        consumed_file = os.path.join(work, "webhook-consumer.prom")
        done = forwarder("consume", "--once", "--database-url", pg.url, "--exec", "false", "--metrics-file", consumed_file)
        text = open(consumed_file).read() if os.path.exists(consumed_file) else ""
        found = samples(text)
        expect("consumer: 5 failed runs, 5 rows retrying, none pending",
               done.returncode == 1 and found.get('webhook_consumer_runs_total{result="failed"}') == 5
               and found.get('webhook_consumer_runs_total{result="ok"}') == 0
               and found.get('webhook_payload_rows{state="retrying"}') == 5
               and found.get('webhook_payload_rows{state="pending"}') == 0
               and found.get("webhook_payload_oldest_pending_age_seconds", -1) >= 0, text + done.stderr)
        status, output = promtool("check", "metrics", text=text)
        expect("consumer: promtool check metrics accepts its file", status == 0, output)
        pg.sql("UPDATE webhook_payloads SET available_at = now()")
        done = forwarder("consume", "--once", "--database-url", pg.url, "--exec", "cat >/dev/null",
                         "--metrics-file", consumed_file)
        found = samples(open(consumed_file).read())
        expect("consumer: then 5 runs ok, nothing left to do",
               done.returncode == 0 and found.get('webhook_consumer_runs_total{result="ok"}') == 5
               and found.get('webhook_payload_rows{state="retrying"}') == 0, (found, done.stdout, done.stderr[-600:]))
        return open(forwarded_file).read() + open(consumed_file).read()
    finally:
        pg.stop()


def test_names(exposition):
    """Every metric a rule or the dashboard names exists."""
    known = set()
    for key in samples(exposition):
        known.add(key.split("{")[0])
    # A family declared without samples yet (a labelled counter before its first event) is known by the names its
    # samples will have: a histogram's own name, or an OpenMetrics counter's without `_total`, is no series.
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "summary": ["_sum", "_count"],
                "info": ["_info"]}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            for suffix in suffixes.get(kind, [""]):
                known.add(name if name.endswith(suffix) else name + suffix)
    with open(os.path.join(DEPLOY, "prometheus", "webhook.rules.yml")) as f:
        rules = f.read()
    known |= set(re.findall(r"record: (\S+)", rules))
    expressions = {"rules": " ".join(re.findall(r"expr: (.*(?:\n {10}.*)*)", rules))}
    with open(os.path.join(DEPLOY, "grafana", "webhook-handler.json")) as f:
        dashboard = json.load(f)
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [variable["query"] for variable in dashboard["templating"]["list"] if variable["type"] == "query"]
    expect("names: the dashboard has queries (%d)" % len(queries), len(queries) >= 20)
    expressions["dashboard"] = " ".join(queries)
    for where, text in expressions.items():
        named = set(re.findall(r"\bwebhook[_:][a-z0-9_:]+", text))
        unknown = sorted(named - known)
        expect("names: every metric the %s name (%d) is in the expositions" % (where, len(named)), not unknown, unknown)


LOGFMT = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "=]+)')


def logfmt(line):
    """{key: value} of a logfmt line, or None if anything in it is not a key=value pair."""
    fields, rest = {}, line.strip()
    while rest:
        found = LOGFMT.match(rest)
        if not found:
            return None
        value = found.group(2)
        fields[found.group(1)] = json.loads(value) if value.startswith('"') else value
        rest = rest[found.end():].lstrip(" ")
    return fields


def test_logs(work):
    def cgi(extra, journal=None, exec_=None, body=b'{"log":1}'):
        env = signed_cgi_environment(SECRET, body, os.path.join(work, "log-spool"), **extra)
        if exec_:
            env["WEBHOOK_EXEC"] = exec_
        path = os.path.join(work, "stderr.log")
        with open(path, "wb") as stderr:
            if journal:
                status = os.fstat(stderr.fileno())
                env["JOURNAL_STREAM"] = "%d:%d" % (status.st_dev, status.st_ino + (0 if journal == "match" else 1))
            subprocess.run([HANDLER], env=env, input=body, stdout=subprocess.DEVNULL, stderr=stderr, timeout=30)
        return open(path, errors="replace").read().splitlines()

    lines = cgi({"HTTP_X_SIGNATURE": "0" * 64})
    fields = logfmt(lines[0]) if lines else None
    expect("logs: an access line is logfmt with ts=, level=, pid=, msg= (%s)" % lines, fields is not None
           and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fields.get("ts", "")) and fields.get("level") == "warning"
           and fields.get("msg") == "request" and fields.get("status") == "400" and fields.get("method") == "POST"
           and "reason" in fields and fields.get("pid", "").isdigit())
    lines = cgi({"REQUEST_METHOD": 'GE"T =x\\'})
    fields = logfmt(lines[0]) if lines else None
    expect("logs: hostile text is quoted, and parses back (%s)" % lines,
           fields is not None and fields.get("status") == "405" and fields.get("method") == 'GE?T =x\\')
    lines = cgi({"HTTP_X_SIGNATURE": "0" * 64}, journal="match")
    expect("logs: under journald a <4> (warning) prefix and no ts= (%s)" % lines,
           len(lines) == 1 and lines[0].startswith("<4>level=warning pid=") and "ts=" not in lines[0]
           and logfmt(lines[0][3:]) is not None)
    lines = cgi({}, journal="match")
    expect("logs: a delivery is <6> (info) (%s)" % lines, len(lines) == 1 and lines[0].startswith("<6>level=info "))
    lines = cgi({"HTTP_X_SIGNATURE": "0" * 64}, journal="other")
    expect("logs: a JOURNAL_STREAM that is not stderr changes nothing (%s)" % lines, lines and lines[0].startswith("ts="))
    lines = cgi({"API_SECRET_KEY": ""}, journal="match")
    expect("logs: no secret: a 500 at level error, <3> (%s)" % lines,
           lines and lines[-1].startswith("<3>level=error ") and "status=500" in lines[-1])
    ids = os.path.join(work, "hook-request-ids")
    lines = cgi({"WEBHOOK_REQUEST_ID": "0123456789abcdef0123456789abcdef"}, body=b'{"log":2}', exec_='echo "$WEBHOOK_REQUEST_ID" >> %s' % ids)
    access = [logfmt(line) for line in lines if "msg=request" in line]
    expect("logs: the request id in the access line (%s)" % lines,
           access and access[0].get("request_id") == "0123456789abcdef0123456789abcdef")
    expect("logs: and in the hook's environment (WEBHOOK_REQUEST_ID)",
           wait_until(lambda: os.path.exists(ids) and open(ids).read().strip() == "0123456789abcdef0123456789abcdef",
                      seconds=20))


JOURNALD = r"""
set -e
mount -t tmpfs tmpfs /run   # journald's sockets and its runtime journal, private to this namespace
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald >/dev/null 2>&1 &
journald=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.1; done
for signature in "$GOOD" "$BAD"; do
    systemd-cat -t webhook-handler env API_SECRET_KEY="$SECRET" HTTP_X_SIGNATURE="$signature" sh -c \
        'JOURNAL_STREAM=$(stat -L -c %d:%i /dev/stderr) exec "$HANDLER" <"$BODY" >/dev/null'
done
systemd-cat -t webhook-handler sh -c 'JOURNAL_STREAM=$(stat -L -c %d:%i /dev/stderr) exec "$HANDLER" <"$BODY" >/dev/null'
sleep 1
journalctl -D /run/log/journal --no-pager -o json SYSLOG_IDENTIFIER=webhook-handler >"$OUT/all.json"
journalctl -D /run/log/journal --no-pager -o json -p err SYSLOG_IDENTIFIER=webhook-handler >"$OUT/err.json"
kill $journald
wait $journald || true
"""


def test_journald(work):
    if not os.path.exists("/lib/systemd/systemd-journald"):
        expect("journald: systemd-journald is installed (package systemd)", False)
        return
    body = b'{"journald":1}'
    with open(os.path.join(work, "journald-body"), "wb") as f:
        f.write(body)
    env = dict(os.environ, HANDLER=HANDLER, SECRET=SECRET, BODY=os.path.join(work, "journald-body"), OUT=work,
               GOOD=x_signature(SECRET, body), BAD="0" * 64,
               REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(body)), GATEWAY_INTERFACE="CGI/1.1",
               REMOTE_ADDR="127.0.0.1", WEBHOOK_SPOOL_DIR=os.path.join(work, "journald-spool"))
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", JOURNALD], env=env,
                          capture_output=True, text=True, timeout=120)

    def entries(name):
        path = os.path.join(work, name)
        return [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    found = [(entry.get("PRIORITY"), entry.get("MESSAGE", "")) for entry in entries("all.json")]
    expect("journald: three lines at priorities 6, 4, 3 (200, 400, 500) (%s)" % found,
           [priority for priority, _ in found] == ["6", "4", "3"], done.stderr[-500:])
    expect("journald: the message has neither the <N> prefix nor a timestamp, and is logfmt",
           found and all(message.startswith("level=") and "ts=" not in message and logfmt(message) is not None
                         for _, message in found), found)
    errors = [entry.get("MESSAGE", "") for entry in entries("err.json")]
    expect("journald: journalctl -p err finds the 500 only (%s)" % errors,
           len(errors) == 1 and "status=500" in errors[0])


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-monitoring-") as work:
        os.chmod(work, 0o755)
        test_rules()
        exposition = handler_exposition(work)
        exposition += test_forwarder(work)
        test_names(exposition)
        test_logs(work)
        test_journald(work)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
