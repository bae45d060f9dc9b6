#!/usr/bin/env python3
"""Restarts under load lose nothing: distinct signed payloads through real nginx (deploy/nginx/webhook.conf, kept
connections), while the handler is restarted again and again in the two documented ways:

  socket activation   the listening socket is held by this test (as systemd's socket unit holds it) and handed to
                      each handler on fd 0; a restart is SIGTERM to the running one and a new one started at once
  --listen + SIGHUP   the handler owns its socket; a restart is SIGHUP (it executes itself again, same pid)

Then: every request was answered 200, nginx's error log has no dropped upstream connection (and no error at all),
and every acknowledged payload is in the spool, complete.

Usage: restart.py PATH/TO/webhook-handler [--requests N] [--restart-every SECONDS]
"""
import asyncio, json, os, signal, socket, subprocess, sys, tempfile, threading, time

from checks import Checks, wait_until, x_signature
from nginx_server import Nginx, started

HANDLER = os.path.realpath(sys.argv[1])
REQUESTS = int(sys.argv[sys.argv.index("--requests") + 1]) if "--requests" in sys.argv else 100_000
EVERY = float(sys.argv[sys.argv.index("--restart-every") + 1]) if "--restart-every" in sys.argv else 2.0
CONNECTIONS = 16
SECRET = b"restart-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


async def load(port, total, run):
    """`total` distinct signed payloads over CONNECTIONS kept-alive HTTP connections, as fast as they are answered.
    Returns (statuses by code, acknowledged {id: body})."""
    statuses, acknowledged, counter = {}, {}, iter(range(total))

    async def connection():
        reader = writer = None
        for n in counter:
            body = json.dumps({"run": run, "n": n, "pad": "p" * 150}).encode()
            head = ("POST /api/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    "x-signature: %s\r\nContent-Length: %d\r\n\r\n" % (x_signature(SECRET, body), len(body)))
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(head.encode() + body)
                status_line = await reader.readline()
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    if name.lower() == "connection" and "close" in value.lower():
                        close = True
                answer = await reader.readexactly(length)
                status = int(status_line.split()[1])
            except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
                status, close = "socket error", True
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                acknowledged[json.loads(answer)["id"]] = body
            if close and writer is not None:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return statuses, acknowledged


def run_with_restarts(label, work, start, restart, stop, socket_path):
    """Load through nginx while `restart` runs every EVERY seconds; then the checks."""
    spool = os.path.join(work, "spool")
    start()
    nginx = Nginx(work, socket_path)
    restarts, done = [0], threading.Event()

    def restarter():
        while not done.wait(EVERY):
            restart()
            restarts[0] += 1

    thread = threading.Thread(target=restarter)
    thread.start()
    began = time.time()
    try:
        statuses, acknowledged = asyncio.run(load(nginx.port, REQUESTS, label))
    finally:
        done.set()
        thread.join()
    took = time.time() - began
    nginx.stop()
    stop()
    print("     %s: %d requests in %.0f s (%.0f/s), %d restarts, statuses %s" % (
        label, REQUESTS, took, REQUESTS / took, restarts[0], statuses), flush=True)
    expect("%s: restarted at least 3 times under load" % label, restarts[0] >= 3, restarts[0])
    expect("%s: every one of %d distinct signed requests was answered 200" % (label, REQUESTS),
           statuses == {200: REQUESTS}, statuses)
    problems = nginx.problems()
    expect("%s: nginx's error log has no dropped upstream connection and no error" % label, not problems, problems[:3])
    stored = set(os.listdir(os.path.join(spool, "new")))
    missing = [i for i in acknowledged if i not in stored]
    expect("%s: every acknowledged payload is in the spool (%d)" % (label, len(acknowledged)),
           not missing and len(acknowledged) == REQUESTS, missing[:3])
    wrong = [i for i, body in list(acknowledged.items())[:: max(1, len(acknowledged) // 2000)]
             if i in stored and open(os.path.join(spool, "new", i), "rb").read().partition(b"\n")[2] != body]
    expect("%s: acknowledged payloads are stored byte for byte (a sample of 2000)" % label, not wrong, wrong[:3])


def socket_activation(work):
    """The test holds the listening socket, like systemd's webhook-handler.socket, and hands it to each handler."""
    socket_path = os.path.join(work, "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    os.chmod(socket_path, 0o666)
    listener.listen(4096)
    env = {"API_SECRET_KEY": SECRET.decode(), "PATH": "/usr/bin:/bin"}
    log = open(os.path.join(work, "activated.log"), "ab")
    handlers = []

    def start():
        handlers.append(subprocess.Popen([HANDLER, "--spool-dir", os.path.join(work, "spool")], env=env,
                                         stdin=listener.fileno(), stdout=log, stderr=log))

    def restart():
        handlers[-1].send_signal(signal.SIGTERM)  # it finishes what it serves ...
        start()                                  # ... while the next one takes the new connections

    def stop():
        handlers[-1].send_signal(signal.SIGTERM)
        codes = [h.wait(timeout=60) for h in handlers]
        expect("socket activation: every handler exited 0 (%d)" % len(codes), set(codes) == {0}, codes)

    run_with_restarts("socket activation", work, start, restart, stop, socket_path)
    listener.close()


def listen_and_sighup(work):
    socket_path = os.path.join(work, "own.sock")
    env = {"API_SECRET_KEY": SECRET.decode(), "PATH": "/usr/bin:/bin"}
    log_path = os.path.join(work, "own.log")
    log = open(log_path, "ab")
    handler = []

    def start():
        handler.append(subprocess.Popen([HANDLER, "--listen", socket_path, "--socket-mode", "0666", "--spool-dir",
                                         os.path.join(work, "spool")], env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log))
        started(lambda: os.path.exists(socket_path), "the handler's socket")

    def restart():
        handler[0].send_signal(signal.SIGHUP)

    def stop():
        handler[0].send_signal(signal.SIGTERM)
        code = handler[0].wait(timeout=60)
        expect("--listen + SIGHUP: the handler exited 0 and removed its socket", code == 0 and not os.path.exists(socket_path), code)
        with open(log_path) as f:
            text = f.read()
        expect("--listen + SIGHUP: each SIGHUP started the binary again in the same process",
               text.count("started again on unix:%s" % socket_path) >= 3, text[-500:])

    run_with_restarts("--listen + SIGHUP", work, start, restart, stop, socket_path)


def main():
    for mode in (socket_activation, listen_and_sighup):
        with tempfile.TemporaryDirectory(prefix="webhook-restart-") as work:
            os.chmod(work, 0o755)  # nginx's workers (nobody) reach the socket in here
            mode(work)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
