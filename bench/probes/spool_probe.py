#!/usr/bin/env python3
"""Probes of what this machine's disk allows a spool, for docs/spool.md: N processes at once, each for S seconds,
in a fresh directory under /var/tmp (the disk), 1,100-byte records:

  file+dir sync   what the spool does today: O_TMPFILE in new/, write, fsync, linkat, fsync new/
  link, no sync   the same without any sync, into one directory / into 16 subdirectories
  log, fdatasync  one preallocated, zero-filled file per process; pwrite a record, fdatasync it

Usage: bench/probes/spool_probe.py [--processes N] [--seconds S]
"""
import ctypes, multiprocessing, os, sys, tempfile, time

PROCESSES = int(sys.argv[sys.argv.index("--processes") + 1]) if "--processes" in sys.argv else 8
SECONDS = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 4
RECORD = b"r" * 1100
O_TMPFILE = 0o20000000 | os.O_DIRECTORY
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400
libc = ctypes.CDLL(None, use_errno=True)


def spool_file(directory, name, sync):
    fd = os.open(directory, O_TMPFILE | os.O_WRONLY, 0o600)
    os.write(fd, RECORD)
    if sync:
        os.fsync(fd)
    # as the handler does (Python's os.link would link /proc's symlink itself, not the file)
    if libc.linkat(AT_FDCWD, b"/proc/self/fd/%d" % fd, AT_FDCWD, os.path.join(directory, name).encode(),
                   AT_SYMLINK_FOLLOW) != 0:
        raise OSError(ctypes.get_errno(), "linkat")
    os.close(fd)
    if sync:
        d = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(d)
        os.close(d)


def worker(kind, root, index, results):
    count = 0
    if kind == "log":
        path = os.path.join(root, "log-%d" % index)
        with open(path, "wb") as f:
            f.write(b"\0" * (16 << 20))
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(path, os.O_WRONLY)
        deadline = time.time() + SECONDS  # after the preallocation
        while time.time() < deadline:
            os.pwrite(fd, RECORD, (count * len(RECORD)) % ((16 << 20) - len(RECORD)))
            os.fdatasync(fd)
            count += 1
        os.close(fd)
    else:
        deadline = time.time() + SECONDS
        while time.time() < deadline:
            shard = os.path.join(root, "%02x" % (count % 16)) if kind == "sharded" else root
            spool_file(shard, "%d-%d" % (index, count), sync=(kind == "synced"))
            count += 1
    results.put(count)


def probe(kind):
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="spool-probe-") as root:
        for shard in range(16):
            os.makedirs(os.path.join(root, "%02x" % shard))
        results = multiprocessing.Queue()
        processes = [multiprocessing.Process(target=worker, args=(kind, root, i, results)) for i in range(PROCESSES)]
        for p in processes:
            p.start()
        total = sum(results.get() for _ in processes)
        for p in processes:
            p.join()
        return total / SECONDS


if __name__ == "__main__":
    print("%d processes, %.0f s each, 1,100-byte records, under /var/tmp; load average %.2f" % (
        PROCESSES, SECONDS, os.getloadavg()[0]))
    for kind, what in [("synced", "file+dir sync (today's spool)"), ("plain", "O_TMPFILE+linkat, one directory, no sync"),
                       ("sharded", "O_TMPFILE+linkat, 16 subdirectories, no sync"),
                       ("log", "preallocated log per process, pwrite+fdatasync")]:
        print("| %s | %.0f per second |" % (what, probe(kind)))
