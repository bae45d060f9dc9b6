#!/usr/bin/env python3
"""Every window where a valid delivery could get a 5xx, or a 200 before it is safe, forced open with the real binary.
Races are opened with strace (inject=SYSCALL:delay_enter= / error=), crashes with SIGKILL; nothing relies on luck.

  spool      a concurrent request cannot delete a live write; a failed sync leaves nothing a duplicate would trust;
             a duplicate is answered 200 only after its own sync
  processes  a failed fork does not stop the server; workers die with their supervisor; a silent peer cannot pin
             a worker; SIGTERM with a silent unix connection stops promptly, without spinning; SIGUSR1 does not
             break a body being read; a CGI dies on SIGTERM; a response nobody read is logged as undelivered
  hooks      a burst makes at most --exec-concurrency runners and no zombies; spool retry skips a payload a runner
             has; a failed move to cur/ is a failure; without a spool the command inherits no socket and
             --exec-concurrency holds; SIGKILL to a runner, to spool retry or to a worker mid-command leaves no
             process of the run (in its group, setsid, or below that) after a second

Usage: deliveries.py PATH/TO/webhook-handler
"""
import hashlib, json, os, signal, socket, struct, subprocess, sys, tempfile, threading, time

from checks import Checks, x_signature, children, free_port, parse_cgi, signed_cgi_environment, wait_until

HANDLER = os.path.realpath(sys.argv[1])
SECRET = "deliveries-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


def sign(body):
    return x_signature(SECRET, body)


def payload(tag):
    return json.dumps({"tag": tag, "at": time.time()}).encode()




def cgi_env(body, spool=None, method="POST", **extra):
    return signed_cgi_environment(SECRET, body, spool, method, **extra)


def cgi(body, spool, strace=None, **extra):
    """One CGI request; `strace` options run it under strace -f (to delay or fail its system calls)."""
    command = ["strace", "-f", "-qq", "-o", "/dev/null"] + strace + [HANDLER] if strace else [HANDLER]
    done = subprocess.run(command, env=cgi_env(body, spool, **extra), input=body, capture_output=True, timeout=60)
    return parse_cgi(done.stdout)


def files(spool, sub):
    path = os.path.join(spool, sub)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def executable(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except OSError:
        return False




class Server:
    """webhook-handler --listen on a unix socket (or TCP), optionally under strace."""

    def __init__(self, work, name, arguments=(), strace=None, listen=None, env=None):
        self.socket = listen or os.path.join(work, name + ".sock")
        self.log_path = os.path.join(work, name + ".log")
        self.log = open(self.log_path, "ab")
        command = [HANDLER, "--listen", self.socket, "--socket-mode", "0666"] + list(arguments)
        if strace:
            command = ["strace", "-f", "-qq", "-o", "/dev/null"] + strace + command
        environment = {"API_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}
        environment.update(env or {})
        self.process = subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=self.log)
        self.pid = self.process.pid
        if strace:  # the handler is strace's child (strace may first fork short-lived children of its own)
            def handler():
                return [pid for pid in children(self.process.pid) if executable(pid) == HANDLER]
            wait_until(handler)
            self.pid = handler()[0]
        ready = (lambda: os.path.exists(self.socket)) if self.socket.startswith("/") else (lambda: "serving" in self.text())
        if not wait_until(ready):
            raise RuntimeError("the handler did not start: " + self.text())

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def workers(self):
        return children(self.pid)

    def stop(self, timeout=40):
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.log.close()


def fcgi_record(kind, content, request_id=1):
    return struct.pack(">BBHHBx", 1, kind, request_id, len(content), 0) + content


def fcgi_params(params):
    encoded = b""
    for name, value in params.items():
        for item in (name.encode(), value.encode()):
            encoded += bytes([len(item)]) if len(item) < 128 else struct.pack(">I", len(item) | 0x80000000)
        encoded += name.encode() + value.encode()
    return encoded


def fcgi_head(params):
    """BEGIN_REQUEST (responder, no keep-alive) and the params."""
    return (fcgi_record(1, struct.pack(">HB5x", 1, 0)) + fcgi_record(4, fcgi_params(params)) + fcgi_record(4, b""))


def fcgi_connect(path):
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    return client


def fcgi_read_response(client, timeout=10):
    client.settimeout(timeout)
    data = b""
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    out, offset = b"", 0
    while offset + 8 <= len(data):
        _, kind, _, length, padding = struct.unpack(">BBHHB", data[offset:offset + 7])
        if kind == 6:
            out += data[offset + 8:offset + 8 + length]
        offset += 8 + length + padding
    return parse_cgi(out)


def fcgi_post(path, body, **params):
    client = fcgi_connect(path)
    env = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
           "HTTP_X_SIGNATURE": sign(body)}
    env.update(params)
    client.sendall(fcgi_head(env) + (fcgi_record(5, body) if body else b"") + fcgi_record(5, b""))
    try:
        return fcgi_read_response(client)
    finally:
        client.close()


# -- the spool ------------------------------------------------------------------------------------------------------

def test_spool(work):
    spool = os.path.join(work, "spool")
    body = payload("linked-late")
    slow = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=link,linkat:delay_enter=2000000",
                             HANDLER], env=cgi_env(body, spool), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    slow.stdin.write(body)
    slow.stdin.close()
    time.sleep(0.7)  # the POST is now waiting in link
    other, _, _ = cgi(b"", spool, method="GET")
    out = slow.stdout.read()
    slow.wait(timeout=30)
    status, _, answer = parse_cgi(out)
    expect("spool: another request while a write waits to be linked (405 %s) does not spoil it: 200" % other,
           status == 200, answer)
    expect("spool: ... and the payload is stored", hashlib.sha256(body).hexdigest() in files(spool, "new"))

    body = payload("sync-fails")
    ident = hashlib.sha256(body).hexdigest()
    status, _, answer = cgi(body, spool, strace=["-e", "inject=fsync:error=EIO:when=2"])
    expect("spool: the directory sync fails: 503", status == 503, answer)
    expect("spool: ... and no name is left in new/ for a duplicate to trust", ident not in files(spool, "new"))
    status, _, answer = cgi(body, spool)
    expect("spool: the sender's next try of it is stored anew, not called a duplicate",
           status == 200 and json.loads(answer).get("duplicate") is False, answer)

    status, _, answer = cgi(body, spool, strace=["-e", "inject=fsync:error=EIO"])
    expect("spool: a duplicate is answered only after its own sync (that sync failing: 503, not 200)",
           status == 503, answer)
    status, _, answer = cgi(body, spool)
    expect("spool: ... and with the sync working it is a duplicate: 200",
           status == 200 and json.loads(answer).get("duplicate") is True, answer)
    expect("spool: tmp/ stayed empty throughout", files(spool, "tmp") == [])


# -- processes ------------------------------------------------------------------------------------------------------

def test_fork_failure(work):
    server = Server(work, "fork", ["--workers", "3"], strace=["-e", "trace=clone,clone3,fork,vfork",
                                                              "-e", "inject=clone,clone3,fork,vfork:error=EAGAIN:when=2"])
    wait_until(lambda: len(server.workers()) == 3, seconds=6)
    expect("fork: a worker that cannot be forked (EAGAIN) is tried again; the server keeps serving",
           server.process.poll() is None and len(server.workers()) == 3, server.text()[-400:])
    expect("fork: ... and says so", "cannot start a worker: fork: Resource temporarily unavailable; trying again in 1s"
           in server.text(), server.text()[-400:])
    status, _, _ = fcgi_post(server.socket, payload("after a failed fork"))
    expect("fork: requests are answered", status == 200)
    server.stop()


def test_backoff(work):
    """A worker that fails at once (here: signalfd refused with EMFILE in every worker) is not re-forked every
    second: the pause doubles, 1, 2, 4 … s."""
    server = Server(work, "backoff", ["--workers", "1"], strace=["-e", "inject=signalfd4:error=EMFILE"])
    time.sleep(8)
    text = server.text()
    server.stop()
    deaths = text.count("worker cannot serve")
    expect("backoff: a worker failing at once is started again ever more slowly (%d times in 8 s; 1 s apart would "
           "be 8)" % deaths, 2 <= deaths <= 5 and "starting another in 4s" in text, text[-300:])


def test_parent_death(work):
    server = Server(work, "orphans", ["--workers", "2"])
    workers = server.workers()
    os.kill(server.pid, signal.SIGKILL)
    server.process.wait()
    expect("supervisor killed: its workers (%s) stop too" % workers,
           len(workers) == 2 and wait_until(lambda: not any(alive(p) for p in workers), seconds=5),
           [p for p in workers if alive(p)])
    for pid in workers:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_silent_peers(work):
    server = Server(work, "silent", ["--workers", "1", "--read-timeout-seconds", "1"])
    one_byte = fcgi_connect(server.socket)
    one_byte.send(b"\x01")
    time.sleep(0.2)
    began = time.time()
    status, _, _ = fcgi_post(server.socket, payload("after a one-byte peer"))
    expect("one worker, a peer that sent one byte and went quiet: the next request is served within the read "
           "time-out (%.1f s)" % (time.time() - began), status == 200 and time.time() - began < 4)
    one_byte.close()
    server.stop()

    address = "127.0.0.1:%d" % free_port()
    server = Server(work, "silent-tcp", ["--workers", "1", "--read-timeout-seconds", "1"], listen=address)
    quiet = socket.create_connection(("127.0.0.1", int(address.split(":")[1])))
    time.sleep(0.2)
    began = time.time()
    done = subprocess.run(["cgi-fcgi", "-bind", "-connect", address], input=b"", capture_output=True, timeout=15,
                          env={"REQUEST_METHOD": "GET"})
    expect("TCP: a peer that connects and sends nothing does not pin the worker (%.1f s)" % (time.time() - began),
           parse_cgi(done.stdout)[0] == 405 and time.time() - began < 4)
    quiet.close()
    server.stop()


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().split(") ")[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def test_sigterm_with_a_silent_connection(work):
    server = Server(work, "spin", ["--workers", "1", "--read-timeout-seconds", "2", "--grace-seconds", "20"])
    worker = server.workers()[0]
    silent = fcgi_connect(server.socket)
    time.sleep(0.3)
    began = time.time()
    os.kill(server.pid, signal.SIGTERM)
    time.sleep(1.5)
    burned = cpu_seconds(worker)
    code = server.stop(timeout=30)
    took = time.time() - began
    expect("SIGTERM while a unix connection has sent nothing: the worker does not spin (%.2f s of CPU)" % burned,
           burned < 0.5)
    expect("... and the server stops within the read time-out, not the grace period (%.1f s, exit %s)" % (took, code),
           code == 0 and took < 6)
    silent.close()


def test_sigusr1_mid_body(work):
    server = Server(work, "usr1", ["--workers", "1"])
    body = payload("sigusr1 in the middle") * 50
    client = fcgi_connect(server.socket)
    client.sendall(fcgi_head({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)), "HTTP_X_SIGNATURE": sign(body)})
                   + fcgi_record(5, body[:100]))
    time.sleep(0.5)  # the worker now waits for the rest of the body
    for pid in server.workers():
        os.kill(pid, signal.SIGUSR1)
    time.sleep(0.2)
    client.sendall(fcgi_record(5, body[100:]) + fcgi_record(5, b""))
    status, _, answer = fcgi_read_response(client)
    client.close()
    expect("a SIGUSR1 while the body is being read does not break the read: 200", status == 200, (status, answer))
    expect("... and the worker lives on", server.process.poll() is None and len(server.workers()) == 1)
    server.stop()


def test_cgi_sigterm(work):
    body = payload("never finished")
    env = cgi_env(body, os.path.join(work, "cgi-spool"))
    env["CONTENT_LENGTH"] = str(len(body) + 100)
    process = subprocess.Popen([HANDLER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(body)
    process.stdin.flush()
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        code = None
        process.kill()
        process.wait()
    expect("a CGI waiting for its body ends on SIGTERM (%s)" % code, code == -signal.SIGTERM)
    process.stdin.close()


def test_undelivered(work):
    # The worker's accept is held back 0.3 s: by then the client has sent its request and gone.
    server = Server(work, "undelivered", ["--workers", "1"],
                    strace=["-e", "trace=accept,accept4", "-e", "inject=accept,accept4:delay_exit=300000"])
    client = fcgi_connect(server.socket)
    client.sendall(fcgi_head({"REQUEST_METHOD": "GET", "REMOTE_ADDR": "127.0.0.9"}))
    client.close()  # gone before the answer
    wait_until(lambda: "remote_addr=127.0.0.9 method=GET status=405 " in server.text(), seconds=5)
    expect("a response the web server did not stay for is logged as undelivered",
           "remote_addr=127.0.0.9 method=GET status=405 " in server.text() and "response=undelivered" in server.text(),
           server.text()[-300:])
    server.stop()


# -- hooks ----------------------------------------------------------------------------------------------------------

def handler_processes():
    """Processes running the handler's binary (supervisors, workers and hook runners)."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and executable(int(entry)) == HANDLER]


def test_bounded_runners(work):
    spool = os.path.join(work, "hooks-spool")
    before = set(handler_processes())
    server = Server(work, "burst", ["--workers", "4", "--spool-dir", spool, "--exec", "sleep 0.1",
                                    "--exec-concurrency", "2"])
    peak = [0]
    sending = threading.Event()

    def sample():
        while not sending.is_set() or files(spool, "new"):
            peak[0] = max(peak[0], len(set(handler_processes()) - before))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    statuses = []

    def client(first):
        for n in range(first, 80, 4):
            statuses.append(fcgi_post(server.socket, payload("burst-%d" % n))[0])

    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    sending.set()
    drained = wait_until(lambda: len(files(spool, "cur")) == 80, seconds=60)
    sampler.join()
    expect("hooks: a burst of 80 payloads, all 200, all handed on (cur/ %d)" % len(files(spool, "cur")),
           statuses == [200] * 80 and drained)
    # the supervisor, 4 workers, 2 runners (each with its run's guard, and the guard's child, which runs our binary
    # until it executes /bin/sh), and a worker's short-lived intermediate fork each, at the most
    expect("hooks: at most --exec-concurrency runners at once (peak %d handler processes, bound 15)" % peak[0],
           peak[0] <= 15)
    zombies = [p for w in server.workers() for p in children(w) if not alive(p)]
    expect("hooks: no finished runner is left unreaped", not zombies, zombies)
    server.stop()


def test_retry_and_failed_moves(work):
    spool = os.path.join(work, "retry-spool")
    count = os.path.join(work, "runs")
    body = payload("slow hook")
    status, _, answer = cgi(body, spool, WEBHOOK_EXEC="echo runner >> %s; sleep 2" % count)
    ident = json.loads(answer)["id"]
    wait_until(lambda: os.path.exists(count))
    retry = subprocess.run([HANDLER, "spool", "retry", "--spool-dir", spool, "--exec", "echo retry >> %s" % count],
                           capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    expect("hooks: spool retry skips a payload whose hook a runner is running",
           b"1 being run by a hook runner already" in retry.stdout, retry.stdout)
    wait_until(lambda: ident in files(spool, "cur"), seconds=10)
    expect("hooks: ... so the command ran once", open(count).read() == "runner\n", open(count).read())

    os.rename(os.path.join(spool, "cur"), os.path.join(spool, "cur-away"))
    with open(os.path.join(spool, "cur"), "w"):
        pass  # cur/ is now a file: every move into it fails
    status, _, answer = cgi(payload("cannot move"), spool, WEBHOOK_EXEC="true")
    stuck = json.loads(answer)["id"]
    wait_until(lambda: os.path.exists(os.path.join(spool, ".hook-failed", stuck)), seconds=10)
    retry = subprocess.run([HANDLER, "spool", "retry", "--spool-dir", spool, "--exec", "true"],
                           capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    expect("hooks: a hook that succeeded but whose file could not be moved to cur/ counts as failed (exit %d)"
           % retry.returncode, retry.returncode == 1 and b"0 delivered, 1 failed" in retry.stdout, retry.stdout)
    expect("hooks: ... and the payload stays in new/", stuck in files(spool, "new"))


def run_processes(pids_file, count):
    """The pids a hook command wrote (`count` of them), once it has written them all."""
    wait_until(lambda: os.path.exists(pids_file) and len(open(pids_file).read().split()) >= count, seconds=10)
    return [int(pid) for pid in open(pids_file).read().split()]


def parent(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().split(") ")[1].split()[1])


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def hook_command(pids, runs):
    """A command that leaves processes behind three ways: in its group, in a session of its own (setsid), and a
    child of that; it writes their pids (and its own, first) to `pids`."""
    return ("echo run >> %s; echo $$ >> %s; sleep 31 >/dev/null 2>&1 & echo $! >> %s; "
            "setsid sh -c 'sleep 32 & echo $! >> %s; exec sleep 33' >/dev/null 2>&1 & echo $! >> %s; exec sleep 34"
            % (runs, pids, pids, pids, pids))


def killed_mid_command(name, pids, victim_of):
    """SIGKILLs the process that runs the hook (victim_of(guard pid)) once the command has started everything;
    expects every process of the run to be gone within a second."""
    run = run_processes(pids, 5)
    guard = parent(run[0])
    expect("%s: the command runs under its guard (%s)" % (name, comm(guard)), comm(guard) == "webhook-hook")
    victim = victim_of(guard)
    everything = run + [guard] if victim != guard else run
    if executable(victim) != HANDLER:
        expect("%s: the process to kill (%d) runs the handler" % (name, victim), False)
        return
    os.kill(victim, signal.SIGKILL)
    gone = wait_until(lambda: not any(alive(pid) for pid in everything), seconds=1)
    expect("%s: SIGKILL to it mid-command: within a second no process of the run is left" % name, gone,
           [pid for pid in everything if alive(pid)])
    for pid in everything:  # do not leave them to the reaper if the check failed
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def runner_of(guard):
    """The process that runs the hook: the guard's parent (or, before there were guards, the command's parent)."""
    return parent(guard) if comm(guard) == "webhook-hook" else guard


def test_hook_dies_with_its_runner(work):
    spool = os.path.join(work, "kill-spool")
    pids, runs = os.path.join(work, "kill-pids"), os.path.join(work, "kill-runs")
    status, _, answer = cgi(payload("killed runner"), spool, WEBHOOK_EXEC=hook_command(pids, runs))
    ident = json.loads(answer)["id"]
    killed_mid_command("hooks: a hook runner", pids, runner_of)
    expect("hooks: ... and the payload is still in new/, with no failure counted", ident in files(spool, "new")
           and not os.path.exists(os.path.join(spool, ".hook-failed", ident)))
    os.unlink(pids)
    retry = subprocess.Popen([HANDLER, "spool", "retry", "--spool-dir", spool, "--exec", hook_command(pids, runs)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
    killed_mid_command("hooks: spool retry", pids, lambda guard: retry.pid)
    retry.wait()
    done = subprocess.run([HANDLER, "spool", "retry", "--spool-dir", spool, "--exec", "echo retry >> %s" % runs],
                          capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    expect("hooks: ... then it runs once more, after the killed runs (%s)" % open(runs).read().split(),
           b"1 delivered" in done.stdout and open(runs).read().split() == ["run", "run", "retry"], done.stdout)

    os.unlink(pids)
    server = Server(work, "kill-worker", ["--workers", "1", "--exec", hook_command(pids, runs)])
    def post():
        try:
            fcgi_post(server.socket, payload("killed worker"))
        except OSError:
            pass  # its worker was killed
    client = threading.Thread(target=post)
    client.start()
    killed_mid_command("no spool: a FastCGI worker", pids, runner_of)
    client.join()
    server.stop()


def slot_directories():
    temporary = os.environ.get("TMPDIR", "/tmp")
    return {name for name in os.listdir(temporary) if name.startswith("webhook-handler-hooks.")}


def test_hook_without_spool(work):
    slots_before = slot_directories()
    pidfile = os.path.join(work, "background.pid")
    listing = os.path.join(work, "background.fds")
    server = Server(work, "nospool", ["--workers", "2", "--exec",
                                      "sleep 30 </dev/null >/dev/null 2>&1 & echo $! > %s; ls -l /proc/$!/fd > %s"
                                      % (pidfile, listing)])
    status, _, _ = fcgi_post(server.socket, payload("background"))
    background = int(open(pidfile).read())
    sockets = [line for line in open(listing) if "socket:" in line]
    expect("no spool: a background process the command starts holds no socket of the handler's (%s)" % sockets,
           status == 200 and not sockets)
    expect("no spool: ... and it does not outlive the run", wait_until(lambda: not alive(background), seconds=1))
    server.stop()

    log = os.path.join(work, "intervals")
    server = Server(work, "nospool-limit", ["--workers", "3", "--exec-concurrency", "1", "--exec",
                                            's=$(date +%%s%%N); sleep 0.3; echo "$s $(date +%%s%%N)" >> %s' % log])
    threads = [threading.Thread(target=fcgi_post, args=(server.socket, payload("limit-%d" % n))) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    intervals = sorted(tuple(map(int, line.split())) for line in open(log))
    overlapping = [(a, b) for a, b in zip(intervals, intervals[1:]) if a[1] > b[0]]
    expect("no spool: --exec-concurrency 1 holds across 3 workers (%d runs, %d overlaps)" % (len(intervals), len(overlapping)),
           len(intervals) == 3 and not overlapping)
    server.stop()
    expect("no spool: the hooks' slot directories are removed at the stop", slot_directories() == slots_before,
           slot_directories() - slots_before)


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-deliveries-") as work:
        for test in (test_spool, test_fork_failure, test_backoff, test_parent_death, test_silent_peers,
                     test_sigterm_with_a_silent_connection, test_sigusr1_mid_body, test_cgi_sigterm, test_undelivered,
                     test_bounded_runners, test_retry_and_failed_moves, test_hook_without_spool,
                     test_hook_dies_with_its_runner):
            try:
                test(work)
            except Exception as error:  # a test that cannot even run is a failure, not a crash of the suite
                expect("%s ran" % test.__name__, False, repr(error))
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
