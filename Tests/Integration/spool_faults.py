#!/usr/bin/env python3
"""The spool under faults, with the real binary (needs root: it mounts a small tmpfs).

  full disk   a 512 KiB tmpfs as the spool, filled up: 503 + Retry-After, nothing half-written; 200 once space is freed
  read-only   the same tmpfs remounted read-only: 503; 200 again once writable
  crash       SIGKILL the whole FastCGI server (supervisor and workers) at random moments during bursts of signed
              requests, restart it, repeat; then every request that got a 200 has its complete file in new/, no file
              in new/ is partial, and nothing was left anywhere else (files are unnamed until complete: tmp/ stays
              empty, and there is nothing to clean).

Usage: spool_faults.py PATH/TO/webhook-handler [--rounds N]
"""
import hashlib, hmac, json, os, random, signal, subprocess, sys, tempfile, threading, time

from checks import Checks, parse_cgi, signed_cgi_environment

HANDLER = os.path.realpath(sys.argv[1])
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 12
SECRET = "spool-fault-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


def sign(body):
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def cgi(body, spool):
    done = subprocess.run([HANDLER], env=signed_cgi_environment(SECRET, body, spool), input=body, capture_output=True, timeout=30)
    return parse_cgi(done.stdout)


def files(spool, sub):
    path = os.path.join(spool, sub)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def check_complete(spool, name):
    """A spool file is complete when its envelope's length and id match the body after it."""
    with open(os.path.join(spool, "new", name), "rb") as f:
        data = f.read()
    line, sep, body = data.partition(b"\n")
    try:
        meta = json.loads(line)
    except ValueError:
        return False
    return bool(sep) and meta.get("length") == len(body) and meta.get("id") == name == hashlib.sha256(body).hexdigest()


def body_of(size, tag):
    filler = "x" * max(0, size - 60)
    return json.dumps({"tag": tag, "filler": filler}, separators=(",", ":")).encode()


def test_full_and_read_only(work):
    mount = os.path.join(work, "small")
    os.makedirs(mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", mount], check=True)
    try:
        spool = os.path.join(mount, "spool")
        status, _, _ = cgi(body_of(100, "first"), spool)
        expect("tmpfs spool: a first payload is stored", status == 200)
        filler = os.path.join(mount, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        big = body_of(300_000, "too-big-for-what-is-left")
        status, headers, body = cgi(big, spool)
        expect("full disk: 503", status == 503, "status %d %r" % (status, body))
        expect("full disk: Retry-After", headers.get("retry-after") == "30", headers)
        expect("full disk: a JSON reason", json.loads(body or b"{}").get("reason", "").startswith("the payload could not"))
        expect("full disk: nothing half-written in tmp/", files(spool, "tmp") == [], files(spool, "tmp"))
        expect("full disk: nothing new in new/", len(files(spool, "new")) == 1, files(spool, "new"))
        os.remove(filler)
        status, _, _ = cgi(big, spool)
        expect("space freed: 200 again", status == 200)
        expect("space freed: the payload is complete", check_complete(spool, hashlib.sha256(big).hexdigest()))

        subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
        status, headers, _ = cgi(body_of(200, "read-only"), spool)
        expect("read-only spool: 503 with Retry-After", status == 503 and headers.get("retry-after") == "30", status)
        subprocess.run(["mount", "-o", "remount,rw", mount], check=True)
        status, _, _ = cgi(body_of(200, "read-only"), spool)
        expect("writable again: 200", status == 200)
        expect("tmpfs spool: tmp/ empty at the end", files(spool, "tmp") == [])
    finally:
        subprocess.run(["umount", mount], check=False)


class Server:
    def __init__(self, socket_path, spool, log):
        env = {"API_SECRET_KEY": SECRET, "WEBHOOK_SPOOL_DIR": spool}
        self.log = open(log, "ab")
        self.process = subprocess.Popen([HANDLER, "--listen", socket_path, "--workers", "3"], env=env,
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while not os.path.exists(socket_path) or len(self.workers()) < 3:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    def workers(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.process.pid, self.process.pid)) as f:
                return [int(pid) for pid in f.read().split()]
        except OSError:
            return []

    def kill_all(self):
        """SIGKILL the supervisor and every worker, as a power cut would."""
        victims = [self.process.pid] + self.workers()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        for pid in victims[1:]:
            while os.path.exists("/proc/%d" % pid) and open("/proc/%d/stat" % pid).read().split()[2] != "Z":
                time.sleep(0.005)
        self.log.close()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=40)
        self.log.close()
        return code


def fastcgi(socket_path, body):
    env = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
           "REMOTE_ADDR": "127.0.0.1", "HTTP_X_SIGNATURE": sign(body)}
    try:
        done = subprocess.run(["cgi-fcgi", "-bind", "-connect", socket_path], env=env, input=body,
                              capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return 0, {}, b""
    return parse_cgi(done.stdout)


def test_crash(work):
    spool = os.path.join(work, "spool")
    socket_path = os.path.join(work, "handler.sock")
    log = os.path.join(work, "crash.log")
    acknowledged = {}          # id -> body, for every request answered 200
    failures = 0
    lock = threading.Lock()
    counter = [0]

    def client(stop_at):
        nonlocal failures
        while time.time() < stop_at:
            with lock:
                counter[0] += 1
                n = counter[0]
            body = body_of(random.choice([200, 5_000, 60_000, 250_000]), "crash-%d" % n)
            status, _, answer = fastcgi(socket_path, body)
            with lock:
                if status == 200:
                    acknowledged[json.loads(answer)["id"]] = body
                else:
                    failures += 1

    for round_number in range(ROUNDS):
        server = Server(socket_path, spool, log)
        stop_at = time.time() + 0.25 + random.random() * 0.5
        threads = [threading.Thread(target=client, args=(stop_at + 1,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(max(0, stop_at - time.time()))
        server.kill_all()
        for thread in threads:
            thread.join()
        if os.path.exists(socket_path):
            os.remove(socket_path)

    stale = files(spool, "tmp")
    server = Server(socket_path, spool, log)
    expect("crash: %d rounds: %d requests failed (in flight at a kill, or sent while down), %d acknowledged" % (ROUNDS, failures, len(acknowledged)),
           len(acknowledged) > 0 and failures > 0, "(nothing was interrupted: the test did not exercise a crash)")
    missing = [i for i in acknowledged if not os.path.exists(os.path.join(spool, "new", i))]
    expect("crash: every acknowledged payload is in new/", not missing, missing[:3])
    partial = [name for name in files(spool, "new") if not check_complete(spool, name)]
    expect("crash: no file in new/ is partial (%d files)" % len(files(spool, "new")), not partial, partial[:3])
    expect("crash: every acknowledged body is stored exactly",
           all(open(os.path.join(spool, "new", i), "rb").read().partition(b"\n")[2] == b for i, b in acknowledged.items()
               if i not in missing))
    expect("crash: no half-written file anywhere: tmp/ stayed empty", stale == [], stale[:3])
    status, _, answer = fastcgi(socket_path, body_of(100, "after the crashes"))
    expect("crash: serving again after the restart", status == 200, answer)
    expect("crash: clean stop", server.stop() == 0)


def main():
    if os.geteuid() != 0:
        expect("spool_faults.py runs as root (it mounts a tmpfs)", False)
        return checks.summary()
    with tempfile.TemporaryDirectory(prefix="webhook-spool-") as work:
        test_full_and_read_only(work)
        test_crash(work)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
