#!/usr/bin/env python3
"""The status page through real nginx (deploy/nginx/webhook.conf's /webhook-status and /webhook-ping, on their own
loopback-only listener): a known mix of requests — verified, duplicates, bad signatures, wrong methods, concurrent,
over several workers with a hook — and the status shows exactly those counts, as JSON and as OpenMetrics (read by
prometheus_client's own parser); the format negotiated from Accept as Prometheus sends it; `promtool check metrics`;
Debian's real Prometheus scraping it with deploy/prometheus/prometheus.yml's job (up == 1, the series present);
neither page reachable through the public listener, nor through a reverse proxy on the same host; workers holding
kept-alive connections and max_workers_reached (raw FastCGI connections); payloads not yet named out of the
journal counted while the namer is stopped; ping answering 503 with the reason
without a secret, with a spool that cannot be written or is full, and with a failing journal; then `webhook-handler
status` for a spool, as a CGI set-up would use it.

Usage: status.py PATH/TO/webhook-handler
"""
import http.client, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time
import urllib.parse, urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from checks import Checks, x_signature, children, fcgi_request, free_port, wait_until
from nginx_server import Nginx, connectable, started

HANDLER = os.path.realpath(sys.argv[1])
SECRET = "status-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


def request(port, method, path, body=b"", signature=None, accept=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["x-signature"] = signature
    if accept:
        headers["Accept"] = accept
    connection.request(method, path, body=body if method in ("POST", "PUT") else None, headers=headers)
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return answer.status, answer.getheader("Content-Type"), data


def sign(body):
    return x_signature(SECRET, body)


def samples(text):
    """{(name, labels): value} from OpenMetrics text, through prometheus_client's parser (which refuses bad text)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends
RECIPES = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "deploy")


def start_handler(work, name, *arguments, env=None):
    """The handler on its own socket in `work`; returns (process, socket path, log path)."""
    socket_path, log_path = os.path.join(work, name + ".sock"), os.path.join(work, name + ".log")
    log = open(log_path, "ab")
    process = subprocess.Popen([HANDLER, "--listen", socket_path, "--socket-mode", "0666", *arguments],
                               env=env or {"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}, stdout=log, stderr=log)
    started(lambda: os.path.exists(socket_path), "the handler's socket")
    return process, socket_path, log_path


def stop(process):
    process.terminate()
    process.wait(timeout=60)


def nginx_conf(work, name, server):
    """A minimal nginx (pid, logs and temp files in work/name) serving `server`; returns its process."""
    root = os.path.join(work, name)
    os.makedirs(root, exist_ok=True)
    temp = "".join("%s_temp_path %s/%s;\n" % (kind, root, kind) for kind in ["client_body", "fastcgi", "proxy", "uwsgi", "scgi"])
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write("daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                "events { worker_connections 64; }\nhttp {\n access_log off;\n%s%s\n}\n" % (root, root, temp, server))
    return subprocess.Popen(["nginx", "-e", os.path.join(root, "error.log"), "-c", conf], stdin=subprocess.DEVNULL)


def check_listeners(work, nginx):
    """#20.9: status and ping answer on their own loopback listener only, also behind a reverse proxy on this host."""
    spellings = ["/webhook-status", "/webhook-status?openmetrics", "/webhook-ping", "//webhook-status",
                 "/api/../webhook-status", "/webhook%2Dstatus", "/WEBHOOK-STATUS"]
    public = [(path, request(nginx.port, "GET", path)[0]) for path in spellings]
    expect("listeners: the public listener answers neither status nor ping (%s)" % public,
           all(status == 404 for _, status in public))
    proxy_port = free_port()
    proxy = nginx_conf(work, "proxy", "server {\n listen 127.0.0.1:%d;\n location / {\n  proxy_pass http://127.0.0.1:%d;\n"
                       "  proxy_set_header X-Forwarded-For $remote_addr;\n }\n}\n" % (proxy_port, nginx.port))
    try:
        started(lambda: connectable(proxy_port), "the reverse proxy")
        through = [(path, request(proxy_port, "GET", path)[0]) for path in spellings]
        expect("listeners: the proxy works (GET /api/webhook through it is the handler's 405)",
               request(proxy_port, "GET", "/api/webhook")[0] == 405)
        expect("listeners: through a reverse proxy on this host, neither status nor ping (%s)" % through,
               all(status == 404 for _, status in through))
    finally:
        stop(proxy)
    status, _, body = request(nginx.status_port, "GET", "/webhook-ping")
    expect("listeners: the status listener answers ping", status == 200 and body == b"pong\n", (status, body))
    expect("listeners: and nothing else (404)", request(nginx.status_port, "GET", "/api/webhook")[0] == 404)


def check_negotiation(port):
    """The format from Accept (as Prometheus sends it) or the query; then promtool's lint of the text format."""
    cases = [(None, "", "application/json"), ("*/*", "", "application/json"),
             ("text/html,application/xhtml+xml,*/*;q=0.8", "", "application/json"),
             (PROMETHEUS_ACCEPT, "", "application/openmetrics-text; version=1.0.0; charset=utf-8"),
             ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "", "text/plain; version=0.0.4; charset=utf-8"),
             ("application/json;q=0.9,text/plain;q=0.2", "", "application/json"),
             (None, "?openmetrics=", "application/openmetrics-text; version=1.0.0; charset=utf-8"),
             (None, "?openmetrics=1", "application/openmetrics-text; version=1.0.0; charset=utf-8"),
             (None, "?openmetrics", "application/openmetrics-text; version=1.0.0; charset=utf-8")]
    for accept, query, wanted in cases:
        status, content_type, _ = request(port, "GET", "/webhook-status" + query, accept=accept)
        expect("negotiation: Accept %s, query %r: %s" % (accept, query, wanted), status == 200 and content_type == wanted,
               content_type)
    _, _, text = request(port, "GET", "/webhook-status", accept="text/plain;version=0.0.4")
    linted = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    expect("promtool check metrics: the Prometheus text format passes its lint", linted.returncode == 0,
           (linted.stdout + linted.stderr).decode()[-800:])
    _, _, text = request(port, "GET", "/webhook-status", accept=PROMETHEUS_ACCEPT)
    try:
        families = {family.name: family for family in text_string_to_metric_families(text.decode())}
    except ValueError:
        families = {}
    expect("openmetrics: seconds and bytes carry their # UNIT",
           "webhook_spool_filesystem_avail_bytes" in families
           and families["webhook_request_duration_seconds"].unit == "seconds"
           and families["webhook_spool_filesystem_avail_bytes"].unit == "bytes")
    return families


def check_prometheus(work, status_port):
    """Debian's Prometheus scrapes deploy/prometheus/prometheus.yml's job (only its target's port changed)."""
    with open(os.path.join(RECIPES, "prometheus", "prometheus.yml")) as f:
        config = f.read().replace("127.0.0.1:8081", "127.0.0.1:%d" % status_port)
    config = config.replace("scrape_interval: 15s", "scrape_interval: 1s").replace("evaluation_interval: 15s", "evaluation_interval: 1s")
    root = os.path.join(work, "prometheus")
    os.makedirs(root)
    with open(os.path.join(root, "prometheus.yml"), "w") as f:
        f.write(config)
    shutil.copy(os.path.join(RECIPES, "prometheus", "webhook.rules.yml"), root)  # loaded by the real thing too
    checked = subprocess.run(["promtool", "check", "config", os.path.join(root, "prometheus.yml")], capture_output=True,
                             text=True, timeout=60)
    expect("prometheus: promtool check config accepts the example", checked.returncode == 0, checked.stdout + checked.stderr)
    port = free_port()
    log = open(os.path.join(root, "log"), "ab")
    prometheus = subprocess.Popen(["prometheus", "--config.file=" + os.path.join(root, "prometheus.yml"),
                                   "--storage.tsdb.path=" + os.path.join(root, "data"),
                                   "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=log,
                                  stdin=subprocess.DEVNULL, cwd=root)

    def query(expression):
        url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(expression))
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.load(answer)["data"]["result"]
        except OSError:
            return []
    try:
        up = wait_until(lambda: [r["value"][1] for r in query('up{job="webhook-handler"}')] == ["1"], seconds=60)
        expect("prometheus: the target is up (up == 1)", up, query("up"))
        for name in ["webhook_requests_total", "webhook_payloads_stored_total", "webhook_workers",
                     "webhook_request_duration_seconds_bucket", "webhook_build_info", "webhook_spool_new_payloads",
                     "webhook_journal_unnamed_payloads", "webhook_spool_filesystem_avail_bytes"]:
            found = wait_until(lambda: query(name) != [], seconds=20)
            expect("prometheus: the series %s is stored" % name, found)
        expect("prometheus: it evaluates the shipped rules (a recording rule's series)",
               wait_until(lambda: query("webhook:spool_filesystem_avail:ratio") != [], seconds=60))
        stored = query("webhook_payloads_stored_total")
        expect("prometheus: it holds the handler's count (40 stored)", stored and stored[0]["value"][1] == "40", stored)
    finally:
        stop(prometheus)
        log.close()


def check_workers(work):
    """Kept-alive connections are told from idle workers, and max_workers_reached counts requests that left no
    worker waiting for a new connection: two workers, one holding a kept connection, then a request on a second."""
    handler, socket_path, _ = start_handler(work, "workers", "--workers", "2", "--spool-dir", os.path.join(work, "spool-w"))
    try:
        first = socket.socket(socket.AF_UNIX)
        first.connect(socket_path)
        expect("workers: a request on a kept connection",
               fcgi_request(first, {"REQUEST_METHOD": "GET", "WEBHOOK_ENDPOINT": "ping"})[0] == 200)
        # The first worker marks itself kept just after its answer has gone: ask until it has (each ask counts).
        for attempt in range(1, 21):
            second = socket.socket(socket.AF_UNIX)
            second.connect(socket_path)
            status, body = fcgi_request(second, {"REQUEST_METHOD": "GET", "WEBHOOK_ENDPOINT": "status"}, keep=False)
            second.close()
            workers = json.loads(body)["workers"] if status == 200 else {}
            if workers.get("busy") == 1:
                break
        first.close()
        expect("workers: one busy (this request), one holding a kept-alive connection, none idle (%s)" % workers,
               workers.get("total") == 2 and workers.get("busy") == 1 and workers.get("kept_alive") == 1
               and workers.get("idle") == 0)
        expect("workers: each such request left no worker waiting for a new connection: max_reached %d (%s)"
               % (attempt, workers), workers.get("max_reached") == attempt)
    finally:
        stop(handler)


def check_journal_backlog(work):
    """Payloads answered 200 but not yet named out of the journal are counted, with the oldest one's age: the namer
    is stopped (SIGSTOP) while three are delivered."""
    handler, socket_path, _ = start_handler(work, "journal-backlog", "--workers", "2", "--spool-dir",
                                            os.path.join(work, "spool-b"))

    def status():
        client = socket.socket(socket.AF_UNIX)
        client.connect(socket_path)
        answer = fcgi_request(client, {"REQUEST_METHOD": "GET", "WEBHOOK_ENDPOINT": "status"}, keep=False)[1]
        client.close()
        return json.loads(answer)

    namer = None
    try:
        wait_until(lambda: any(open("/proc/%d/comm" % p).read().strip() == "webhook-namer" for p in children(handler.pid)))
        namer = next(p for p in children(handler.pid) if open("/proc/%d/comm" % p).read().strip() == "webhook-namer")
        os.kill(namer, signal.SIGSTOP)
        for n in range(3):
            body = json.dumps({"unnamed": n}).encode()
            client = socket.socket(socket.AF_UNIX)
            client.connect(socket_path)
            answer = fcgi_request(client, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
                                           "HTTP_X_SIGNATURE": sign(body)}, keep=False, body=body)
            client.close()
            expect("journal backlog: delivery %d answered 200" % n, answer[0] == 200, answer)
        time.sleep(2.2)
        page = status()
        journal, spool = page.get("journal", {}), page.get("spool", {})
        expect("journal backlog: 3 unnamed, the oldest at least 2 s old, none in new/ yet (%s, new %s)"
               % (journal, spool.get("new")), journal.get("unnamed") == 3
               and (journal.get("oldest_unnamed_seconds") or 0) >= 2 and spool.get("new") == 0)
        os.kill(namer, signal.SIGCONT)
        named = wait_until(lambda: status()["journal"]["unnamed"] == 0 and status()["spool"]["new"] == 3, seconds=20)
        expect("journal backlog: the namer resumed: 0 unnamed, 3 in new/", named, status())
    finally:
        if namer:
            os.kill(namer, signal.SIGCONT)
        stop(handler)


def check_ping(work):
    """Ping is 503 with the reason whenever a delivery could not be accepted now."""
    def ping_body(socket_path):
        nginx = Nginx(tempfile.mkdtemp(dir=work), socket_path)
        try:
            status, _, body = request(nginx.status_port, "GET", "/webhook-ping")
            return status, body.decode(errors="replace")
        finally:
            nginx.stop()

    handler, socket_path, _ = start_handler(work, "nosecret", "--workers", "2", "--spool-dir", os.path.join(work, "spool-n"),
                                            env={"PATH": "/usr/bin:/bin"})
    try:
        status, body = ping_body(socket_path)
        expect("ping: no secret configured: 503, saying so (%r)" % body, status == 503 and "no secret" in body)
    finally:
        stop(handler)

    # A spool on a tmpfs: full, then read-only; the same handler is healthy again once room is made.
    mount = os.path.join(work, "small")
    os.makedirs(mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount], check=True)
    try:
        handler, socket_path, _ = start_handler(work, "small", "--workers", "2", "--spool-dir", os.path.join(mount, "spool"))
        try:
            expect("ping: healthy first", ping_body(socket_path) == (200, "pong\n"))
            filler = os.path.join(mount, "filler")
            subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k"], capture_output=True)
            status, body = ping_body(socket_path)
            expect("ping: a full file system: 503, saying so (%r)" % body, status == 503 and "spool" in body)
            os.unlink(filler)
            expect("ping: room made: pong again", ping_body(socket_path) == (200, "pong\n"))
            # new/ read-only (a bind mount of itself: the journal's open log keeps the file system busy for a remount)
            new = os.path.join(mount, "spool", "new")
            subprocess.run(["mount", "--bind", new, new], check=True)
            try:
                subprocess.run(["mount", "-o", "remount,bind,ro", new], check=True)
                status, body = ping_body(socket_path)
                expect("ping: a read-only spool: 503, saying why (%r)" % body,
                       status == 503 and "Read-only file system" in body)
            finally:
                subprocess.run(["umount", new])
            expect("ping: writable again: pong", ping_body(socket_path) == (200, "pong\n"))
        finally:
            stop(handler)
    finally:
        subprocess.run(["umount", "-l", mount])

    # A failing journal: every fdatasync fails (strace injects EIO), so no worker can take a slot; deliveries are
    # still stored with a sync of their own (fsync), but the host is not healthy.
    socket_path = os.path.join(work, "journal2.sock")
    log = open(os.path.join(work, "journal2.log"), "ab")
    traced = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync", "-e", "inject=fdatasync:error=EIO",
                               HANDLER, "--listen", socket_path, "--socket-mode", "0666", "--workers", "2",
                               "--spool-dir", os.path.join(work, "spool-j")],
                              env={"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}, stdout=log, stderr=log)
    try:
        started(lambda: os.path.exists(socket_path), "the traced handler's socket")
        status, body = ping_body(socket_path)
        expect("ping: a failing journal: 503, saying so (%r)" % body, status == 503 and "journal" in body)
        delivered = []
        for n in range(2):
            payload = json.dumps({"fallback": n}).encode()
            client = socket.socket(socket.AF_UNIX)
            client.connect(socket_path)
            delivered.append(fcgi_request(client, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(payload)),
                                                   "HTTP_X_SIGNATURE": sign(payload)}, keep=False, body=payload)[0])
            client.close()

        def fallbacks():  # counted after the response has gone: wait for both workers' counts
            client = socket.socket(socket.AF_UNIX)
            client.connect(socket_path)
            page = json.loads(fcgi_request(client, {"REQUEST_METHOD": "GET", "WEBHOOK_ENDPOINT": "status"}, keep=False)[1])
            client.close()
            return page.get("journal", {}).get("fallbacks")
        expect("status: deliveries stored without the journal count as fallbacks",
               delivered == [200, 200] and wait_until(lambda: fallbacks() == 2, seconds=10), fallbacks())
    finally:
        for pid in children(traced.pid):  # the handler: strace would only detach from it
            os.kill(pid, signal.SIGTERM)
        traced.wait(timeout=60)
        log.close()


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-status-") as work:
        os.chmod(work, 0o755)
        socket_path, spool = os.path.join(work, "handler.sock"), os.path.join(work, "spool")
        log = open(os.path.join(work, "handler.log"), "ab")
        handler = subprocess.Popen([HANDLER, "--listen", socket_path, "--socket-mode", "0666", "--workers", "4",
                                    "--spool-dir", spool, "--exec", "cat > /dev/null"],
                                   env={"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}, stdout=log, stderr=log)
        started(lambda: os.path.exists(socket_path), "the handler's socket")
        nginx = Nginx(work, socket_path)
        port, status_port = nginx.port, nginx.status_port
        try:
            status, content_type, body = request(status_port, "GET", "/webhook-ping")
            expect("ping: pong", status == 200 and body == b"pong\n" and content_type.startswith("text/plain"), body)
            bodies = [json.dumps({"n": n}).encode() for n in range(40)]
            mix = [("POST", b, sign(b)) for b in bodies]                                       # 40 stored
            mix += [("POST", b, sign(b)) for b in bodies[:10]]                                 # 10 duplicates
            mix += [("POST", b'{"bad":%d}' % n, sign(b"other")) for n in range(15)]             # 15 bad signatures
            mix += [("GET", b"", None)] * 7 + [("PUT", b"{}", None)] * 3                        # 10 wrong methods
            statuses, lock = [], threading.Lock()

            def client(part):
                for method, data, signature in part:
                    answer = request(port, method, "/api/webhook", data, signature)[0]
                    with lock:
                        statuses.append(answer)

            client(mix[:40])  # the originals first, so that the duplicates are duplicates
            # ... once named out of the journal: until then a second delivery counts as stored, not as a duplicate
            named = lambda: sum(len(os.listdir(os.path.join(spool, d))) for d in ("new", "cur")) == 40
            expect("mix: the originals named out of the journal", wait_until(named, seconds=30))
            threads = [threading.Thread(target=client, args=(mix[40 + i::8],)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            expect("mix: 75 requests answered as expected",
                   sorted(statuses) == sorted([200] * 50 + [400] * 15 + [405] * 10), statuses)
            hooks_done = wait_until(lambda: len(os.listdir(os.path.join(spool, "cur"))) == 40, seconds=30)
            with open(os.path.join(work, "handler.log"), errors="replace") as f:
                access = [line for line in f if " msg=request " in line]
            with_ids = {line.split(" request_id=")[1].split()[0] for line in access if " request_id=" in line}
            expect("logs: nginx's $request_id in every access line (the recipe's fastcgi_param), each its own",
                   len(access) == 75 and len(with_ids) == 75 and all(len(i) == 32 for i in with_ids), access[:3])

            status, content_type, body = request(status_port, "GET", "/webhook-status")
            page = json.loads(body)
            expect("status: JSON", status == 200 and content_type == "application/json", body[:200])
            expect("status: requests by status, exactly (%s)" % page.get("requests"),
                   page["requests"] == {"200": 50, "400": 15, "405": 10, "413": 0, "500": 0, "502": 0, "503": 0, "other": 0})
            expect("status: payloads stored, duplicate, store failures (%s)" % page.get("payloads"),
                   {k: page["payloads"][k] for k in ("stored", "duplicate", "store_failures")}
                   == {"stored": 40, "duplicate": 10, "store_failures": 0})
            expect("status: the hook ran once per stored payload (%s)" % page.get("hook_runs"),
                   hooks_done and page["hook_runs"] == {"ok": 40, "failed": 0, "timeout": 0})
            workers = page["workers"]
            expect("status: workers 4, busy 1 (this request), the rest idle or holding nginx's kept connections (%s)"
                   % workers, workers["total"] == 4 and workers["busy"] == 1
                   and workers["idle"] + workers.get("kept_alive", -9) == 3 and workers.get("kept_alive", 0) >= 1)
            expect("status: the last store's time (%s)" % page["payloads"].get("last_stored_time"),
                   abs(page["payloads"].get("last_stored_time", 0) - time.time()) < 120)
            journal = page.get("journal", {})
            expect("status: the journal's backlog (%s), the spool's free space" % journal,
                   journal.get("unnamed") == 0 and journal.get("fallbacks") == 0
                   and page["spool"].get("free_bytes", 0) > 0 and page["spool"].get("free_inodes", 0) > 0)
            expect("status: the spool's backlog is empty, nothing failed (%s)" % page.get("spool"),
                   page["spool"]["new"] == 0 and page["spool"]["hook_failures"] == 0)
            expect("status: 75 request durations", page["request_duration_seconds"]["count"] == 75)

            status, content_type, body = request(status_port, "GET", "/webhook-status?openmetrics")
            text = body.decode()
            found = samples(text)
            expect("openmetrics: its content type, ending with # EOF",
                   content_type == "application/openmetrics-text; version=1.0.0; charset=utf-8" and text.endswith("# EOF\n"))
            expect("openmetrics: the same counts, read by prometheus_client's parser",
                   found[("webhook_requests_total", (("status", "200"),))] == 50
                   and found[("webhook_requests_total", (("status", "400"),))] == 15
                   and found[("webhook_requests_total", (("status", "405"),))] == 10
                   and found[("webhook_payloads_stored_total", ())] == 40
                   and found[("webhook_payloads_duplicate_total", ())] == 10
                   and found[("webhook_store_failures_total", ())] == 0
                   and found[("webhook_hook_runs_total", (("result", "ok"),))] == 40
                   and found[("webhook_workers", (("state", "busy"),))] == 1
                   and found[("webhook_spool_new_payloads", ())] == 0
                   and found[("webhook_request_duration_seconds_count", ())] == 75
                   and found[("webhook_request_duration_seconds_bucket", (("le", "+Inf"),))] == 75, text[:600])
            expect("openmetrics: a start time", found[("webhook_start_time_seconds", ())] > 1.7e9)
            again = json.loads(request(status_port, "GET", "/webhook-status")[2])
            expect("status: requests to the status page are not counted", again["requests"] == page["requests"])
            expect("status: POST to the status page is 405", request(status_port, "POST", "/webhook-status", b"{}")[0] == 405)
            families = check_negotiation(status_port)
            expect("openmetrics: build info with a version", "webhook_build" in families
                   and families["webhook_build"].samples[0].labels.get("version"))
            check_listeners(work, nginx)
            check_prometheus(work, status_port)
        finally:
            nginx.stop()
            handler.terminate()
            handler.wait(timeout=60)

        # A CGI set-up has no process to count; the spool still says what waits.
        for n in range(3):
            with open(os.path.join(spool, "new", "waiting-%d" % n), "wb") as f:
                f.write(b'{"id":"x"}\n')
        os.makedirs(os.path.join(spool, ".hook-failed"), exist_ok=True)
        open(os.path.join(spool, ".hook-failed", "waiting-0"), "w").close()
        shown = subprocess.run([HANDLER, "status", "--spool-dir", spool], capture_output=True, text=True, timeout=30)
        page = json.loads(shown.stdout)
        expect("status command: the spool's backlog as JSON (%s)" % page.get("spool"),
               page["spool"]["new"] == 3 and page["spool"]["hook_failures"] == 1 and page["spool"]["oldest_seconds"] >= 0)
        shown = subprocess.run([HANDLER, "status", "--spool-dir", spool, "--openmetrics"], capture_output=True, text=True,
                               timeout=30)
        found = samples(shown.stdout)
        expect("status command: OpenMetrics for node_exporter's textfile collector",
               found[("webhook_spool_new_payloads", ())] == 3 and found[("webhook_spool_hook_failures", ())] == 1)
        check_workers(work)
        check_journal_backlog(work)
        check_ping(work)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
