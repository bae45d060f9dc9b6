#!/usr/bin/env python3
"""The status page through real nginx (deploy/nginx/webhook.conf's /webhook-status and /webhook-ping): a known mix
of requests — verified, duplicates, bad signatures, wrong methods, concurrent, over several workers with a hook —
and the status shows exactly those counts, as JSON and as OpenMetrics (read by prometheus_client's own parser);
then `webhook-handler status` for a spool, as a CGI set-up would use it.

Usage: status.py PATH/TO/webhook-handler
"""
import hashlib, hmac, http.client, json, os, subprocess, sys, tempfile, threading

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from checks import Checks, wait_until
from nginx_server import Nginx, started

HANDLER = os.path.realpath(sys.argv[1])
SECRET = "status-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


def request(port, method, path, body=b"", signature=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["x-signature"] = signature
    connection.request(method, path, body=body if method in ("POST", "PUT") else None, headers=headers)
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return answer.status, answer.getheader("Content-Type"), data


def sign(body):
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def samples(text):
    """{(name, labels): value} from OpenMetrics text, through prometheus_client's parser (which refuses bad text)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


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
        port = nginx.port
        try:
            status, content_type, body = request(port, "GET", "/webhook-ping")
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
            threads = [threading.Thread(target=client, args=(mix[40 + i::8],)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            expect("mix: 75 requests answered as expected",
                   sorted(statuses) == sorted([200] * 50 + [400] * 15 + [405] * 10), statuses)
            hooks_done = wait_until(lambda: len(os.listdir(os.path.join(spool, "cur"))) == 40, seconds=30)

            status, content_type, body = request(port, "GET", "/webhook-status")
            page = json.loads(body)
            expect("status: JSON", status == 200 and content_type == "application/json", body[:200])
            expect("status: requests by status, exactly (%s)" % page.get("requests"),
                   page["requests"] == {"200": 50, "400": 15, "405": 10, "413": 0, "500": 0, "502": 0, "503": 0, "other": 0})
            expect("status: payloads stored, duplicate, store failures (%s)" % page.get("payloads"),
                   page["payloads"] == {"stored": 40, "duplicate": 10, "store_failures": 0})
            expect("status: the hook ran once per stored payload (%s)" % page.get("hook_runs"),
                   hooks_done and page["hook_runs"] == {"ok": 40, "failed": 0, "timeout": 0})
            workers = page["workers"]
            expect("status: workers 4, busy 1 (this request), idle 3 (%s)" % workers,
                   workers["total"] == 4 and workers["busy"] == 1 and workers["idle"] == 3)
            expect("status: the spool's backlog is empty, nothing failed (%s)" % page.get("spool"),
                   page["spool"]["new"] == 0 and page["spool"]["hook_failures"] == 0)
            expect("status: 75 request durations", page["request_duration_seconds"]["count"] == 75)

            status, content_type, body = request(port, "GET", "/webhook-status?openmetrics")
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
            again = json.loads(request(port, "GET", "/webhook-status")[2])
            expect("status: requests to the status page are not counted", again["requests"] == page["requests"])
            expect("status: POST to the status page is 405", request(port, "POST", "/webhook-status", b"{}")[0] == 405)
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
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
