#!/usr/bin/env python3
"""Idle workers wait for new connections so that each connection wakes one of them (a blocking accept, as
libfcgi's workers wait), and a stop signal still ends that wait at once, however it falls:

  wake-one      8 idle workers, 40 connections one after another: the workers' voluntary context switches, summed,
                grow by a few per connection (one worker woken, its reads), not by one per idle worker per
                connection (a poll on the shared socket wakes all of them)
  stop          SIGTERM to the server while every worker waits in accept: all gone within a second
  just before   SIGTERM to a worker held where it lets the stop signals in, just before accept (strace delays that
                call's return): it stops (the handler takes the listening socket away from that worker, so the
                wait that follows cannot begin)
  handover      SIGHUP with idle workers: the old workers leave at once, and every later connection is served by a
                worker of the new start (no old worker still waiting in accept)

Usage: accept.py PATH/TO/webhook-handler
"""
import os, signal, sys, time

from checks import Checks, children, wait_until
from deliveries import Server, fcgi_post, payload

checks = Checks()
expect = checks.expect


def switches(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return int(next(line.split()[1] for line in f if line.startswith("voluntary_ctxt_switches")))
    except (OSError, StopIteration):
        return 0


def answers(server):
    """True once the server answers (its socket file exists a moment before it listens)."""
    try:
        return fcgi_post(server.socket, payload("warm-up"))[0] == 200
    except OSError:
        return False


def test_wake_one(work):
    server = Server(work, "wake", ["--workers", "8"])
    wait_until(lambda: answers(server))
    time.sleep(0.5)
    workers = server.workers()
    before = {pid: switches(pid) for pid in workers}
    requests = 40
    statuses = [fcgi_post(server.socket, payload("wake %d" % n))[0] for n in range(requests)]
    woken = sum(switches(pid) - before[pid] for pid in workers)
    expect("wake-one: %d connections answered 200 by 8 workers" % requests, statuses == [200] * requests, statuses)
    expect("wake-one: the idle workers woke %.1f times per connection (one per idle worker: 8 or more)"
           % (woken / requests), woken / requests < 4)
    expect("wake-one: clean stop", server.stop() == 0)


def test_stop_while_waiting(work):
    server = Server(work, "stop", ["--workers", "8"])
    time.sleep(0.3)
    began = time.time()
    code = server.stop(timeout=20)
    took = time.time() - began
    expect("stop: SIGTERM with every worker waiting in accept ends the server within a second (%.2f s, exit %s)"
           % (took, code), code == 0 and took < 1.0)


def in_unblocking_sigprocmask(pid):
    try:
        with open("/proc/%d/syscall" % pid) as f:
            fields = f.read().split()
        return fields[:2] == ["14", "0x1"]  # x86_64 rt_sigprocmask(SIG_UNBLOCK, ...)
    except OSError:
        return False


def test_signal_just_before_accept(work):
    # Every rt_sigprocmask is held 1 s on its way out: after a request, the worker sits in the call that lets the
    # stop signals in before accept; SIGTERM comes then, and is handled before accept begins.
    server = Server(work, "before", ["--workers", "1"],
                    strace=["-e", "trace=rt_sigprocmask", "-e", "inject=rt_sigprocmask:delay_exit=1000000"])
    wait_until(lambda: len(server.workers()) == 1)
    [worker] = server.workers()
    expect("just before accept: a request first (200)", fcgi_post(server.socket, payload("first"))[0] == 200)
    held = wait_until(lambda: in_unblocking_sigprocmask(worker), 5)
    began = time.time()
    os.kill(worker, signal.SIGTERM)
    gone = wait_until(lambda: worker not in children(server.pid), 6)
    expect("just before accept: a worker told to stop as it lets the signals in, before accept, stops (held: %s, "
           "%.1f s)" % (held, time.time() - began), held and gone)
    server.stop()


def test_handover(work):
    server = Server(work, "handover", ["--workers", "4"])
    time.sleep(0.3)
    old = set(server.workers())
    os.kill(server.pid, signal.SIGHUP)
    expect("handover: the old idle workers leave at once", wait_until(lambda: not old & set(server.workers()), 3),
           sorted(old & set(server.workers())))
    wait_until(lambda: len(server.workers()) == 4)
    statuses = [fcgi_post(server.socket, payload("after handover %d" % n))[0] for n in range(20)]
    expect("handover: 20 connections after SIGHUP all answered 200", statuses == [200] * 20, statuses)
    expect("handover: clean stop", server.stop() == 0)


def main():
    return checks.run("webhook-accept-", (test_wake_one, test_stop_while_waiting, test_signal_just_before_accept,
                                          test_handover))


if __name__ == "__main__":
    sys.exit(main())
