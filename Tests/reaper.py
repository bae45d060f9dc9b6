#!/usr/bin/env python3
"""Runs a command as a child subreaper (prctl PR_SET_CHILD_SUBREAPER): every process it starts that outlives its
parent becomes ours instead of init's. When the command has finished, whatever of it is still running was left
behind by a test: each is named, stopped, and the run fails. Used by scripts/test around all its stages.

Usage: reaper.py COMMAND [ARGS...]
"""
import ctypes, os, signal, subprocess, sys, time

PR_SET_CHILD_SUBREAPER = 36


def children():
    pid = os.getpid()
    found = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            found += [int(p) for p in f.read().split()]
    return found


def describe(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return "%d %s" % (pid, f.read().replace(b"\0", b" ").decode(errors="replace").strip())
    except OSError:
        return str(pid)


def main():
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("reaper: cannot become a subreaper: %s" % os.strerror(ctypes.get_errno()), file=sys.stderr)
        return 2
    code = subprocess.call(sys.argv[1:])
    deadline = time.time() + 5  # a server stopped at the very end may still be on its way out
    while time.time() < deadline:
        while True:  # reap what has ended
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not children():
            break
        time.sleep(0.1)
    left = children()
    if left:
        print("FAIL the tests left %d processes running:" % len(left))
        for pid in left:
            print("     " + describe(pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return code or 1
    print("ok   the tests left no process running")
    return code


if __name__ == "__main__":
    sys.exit(main())
