#!/usr/bin/env python3
"""The spool under faults, with the real binary (needs root: it mounts a small tmpfs).

  full disk   a 512 KiB tmpfs as the spool, filled up: 503 + Retry-After, nothing half-written; 200 once space is freed
  read-only   the same tmpfs remounted read-only: 503; 200 again once writable
  crash       SIGKILL the whole FastCGI server (supervisor and workers) at random moments during bursts of signed
              requests, restart it, repeat; then every request that got a 200 has its complete file in new/, no file
              in new/ is partial, and nothing was left anywhere else (files are unnamed until complete: tmp/ stays
              empty, and there is nothing to clean).
  journal     the FastCGI workers' journal (Sources/WebhookSpool/Journal.swift): SIGKILL mid-checkpoint; a
              machine restart (another boot id in the slot's header) after files were lost, emptied or consumed; a
              corrupted record never delivered; a failed fdatasync never answered 200 (strace inject); a full disk;
              the namer killed or starved; a slot filled and checkpointed; concurrent duplicates; a payload deleted
              after a checkpoint stays deleted across a crash.

Usage: spool_faults.py PATH/TO/webhook-handler [--rounds N]
"""
import hashlib, json, os, random, signal, subprocess, sys, tempfile, threading, time

from checks import Checks, x_signature, children, parse_cgi, signed_cgi_environment, wait_until

HANDLER = os.path.realpath(sys.argv[1])
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 12
SECRET = "spool-fault-secret-%d" % os.getpid()
checks = Checks()
expect = checks.expect


def sign(body):
    return x_signature(SECRET, body)


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


def fill(mount):
    """Fills the file system at `mount` with one file, whose path it returns."""
    filler = os.path.join(mount, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_full_and_read_only(work):
    mount = os.path.join(work, "small")
    os.makedirs(mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", mount], check=True)
    try:
        spool = os.path.join(mount, "spool")
        status, _, _ = cgi(body_of(100, "first"), spool)
        expect("tmpfs spool: a first payload is stored", status == 200)
        filler = fill(mount)
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
    def __init__(self, socket_path, spool, log, workers=3, strace=(), arguments=(), prefix=(), recovered=True,
                 wrap=()):
        env = {"API_SECRET_KEY": SECRET, "WEBHOOK_SPOOL_DIR": spool, "PATH": os.environ["PATH"]}
        self.log = open(log, "ab")
        self.traced = bool(strace)
        command = list(wrap) + [HANDLER, "--listen", socket_path, "--workers", str(workers)] + list(arguments)
        if strace:
            command = ["strace", "-f", "-qq", "-o", "/dev/null"] + list(strace) + command
        command = list(prefix) + command  # a command that ends by exec'ing the handler (same pid)
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        # the workers and the journal's namer (a spool is journaled by default)
        while not os.path.exists(socket_path) or len(self.workers()) < workers + 1:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        if recovered:  # the supervisor serves at once and recovers what a crash left in the background
            wait_until(lambda: not recovering(), 120)

    def supervisor(self):
        """The handler's supervisor: under strace, strace's child running the handler."""
        if not self.traced:
            return self.process.pid
        for pid in children(self.process.pid):
            if os.path.realpath("/proc/%d/exe" % pid) == HANDLER:
                return pid
        return -1

    def workers(self):
        """The supervisor's children: its workers and the journal's namer."""
        return children(self.supervisor())

    def namer(self):
        for pid in self.workers():
            try:
                if open("/proc/%d/comm" % pid).read().strip() == "webhook-namer":
                    return pid
            except OSError:
                pass
        return None

    def kill_all(self):
        """SIGKILL the supervisor and every worker, as a power cut would."""
        victims = [self.supervisor()] + self.workers() + ([self.process.pid] if self.traced else [])
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        for pid in victims[1:]:
            if pid == self.process.pid:
                continue
            while os.path.exists("/proc/%d" % pid) and open("/proc/%d/stat" % pid).read().split()[2] != "Z":
                time.sleep(0.005)
        self.log.close()

    def stop(self):
        os.kill(self.supervisor(), signal.SIGTERM)
        code = self.process.wait(timeout=40)
        self.log.close()
        return code


def recovering():
    """The journal's background recoveries (webhook-recover processes of this handler) still running."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open("/proc/%s/comm" % pid).read().strip() == "webhook-recover" and \
                    os.path.realpath("/proc/%s/exe" % pid) == HANDLER:
                found.append(int(pid))
        except OSError:
            pass
    return found


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


SLOT = 64 << 20  # Journal: each worker's slot of .journal/log; records from 4096 bytes in
CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    CRC32C_TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def journal_records(spool, slot=0):
    """The valid records of a slot, read as recovery reads them: [(offset, id, content)]."""
    with open(os.path.join(spool, ".journal", "log"), "rb") as f:
        f.seek(slot * SLOT)
        generation = f.read(56)[8:16]
        records, offset = [], 4096
        while True:
            f.seek(slot * SLOT + offset)
            head = f.read(16)
            length = int.from_bytes(head[0:4], "little")
            if len(head) < 16 or length < 2 or head[8:16] != generation:
                return records
            rest = f.read(length)
            if crc32c(rest, crc32c(head[8:16])) != int.from_bytes(head[4:8], "little"):
                return records
            id_length = int.from_bytes(rest[0:2], "little")
            records.append((offset, rest[2:2 + id_length].decode(), rest[2 + id_length:]))
            offset += 16 + length


def set_boot_id(spool, boot, slot=0):
    """Rewrites the slot header's boot id (and its checksum): what recovery sees after the machine restarted."""
    with open(os.path.join(spool, ".journal", "log"), "r+b") as f:
        f.seek(slot * SLOT)
        header = bytearray(f.read(56))
        header[16:52] = boot.encode().ljust(36, b"\0")
        header[52:56] = crc32c(bytes(header[:52])).to_bytes(4, "little")
        f.seek(slot * SLOT)
        f.write(header)


def stored(spool, id_, body):
    path = os.path.join(spool, "new", id_)
    return os.path.exists(path) and check_complete(spool, id_) and open(path, "rb").read().partition(b"\n")[2] == body


def post_all(socket_path, bodies):
    ids = []
    for body in bodies:
        status, _, answer = fastcgi(socket_path, body)
        ids.append(json.loads(answer)["id"] if status == 200 else None)
    return ids


def test_journal_restart(work):
    """Acknowledged, named, then the machine 'restarts' before a checkpoint: files lost, emptied, consumed, and a
    corrupted record. Recovery restores what the records hold and never delivers the corrupted one."""
    spool, socket_path, log = os.path.join(work, "j-restart"), os.path.join(work, "j.sock"), os.path.join(work, "j.log")
    server = Server(socket_path, spool, log, workers=1)
    bodies = [body_of(500 + 100 * i, "restart-%d" % i) for i in range(7)]
    ids = post_all(socket_path, bodies)
    expect("journal: seven payloads acknowledged", None not in ids, ids)
    expect("journal: the namer names them in new/ without a request waiting",
           wait_until(lambda: all(stored(spool, i, b) for i, b in zip(ids, bodies)), 5))
    server.kill_all()  # well within the five idle seconds before a checkpoint
    records = journal_records(spool)
    expect("journal: the slot holds the seven records (no checkpoint yet)", [r[1] for r in records] == ids, len(records))
    new = lambda i: os.path.join(spool, "new", ids[i])
    cur = lambda i: os.path.join(spool, "cur", ids[i])
    os.truncate(new(0), 0)                                   # an unsynced file left empty
    os.remove(new(1))                                        # an unsynced name lost
    os.rename(new(2), cur(2))                                # consumed before the crash
    os.rename(new(5), cur(5))                                # consumed, then left empty by the restart
    os.truncate(cur(5), 0)
    os.remove(new(4))
    os.remove(new(6))
    with open(os.path.join(spool, ".journal", "log"), "r+b") as f:  # the last record torn: one byte of its body
        f.seek(records[6][0] + 16 + 2 + 64 + 40)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x20]))
    set_boot_id(spool, "00000000-0000-0000-0000-000000000000")
    done = subprocess.run([HANDLER, "spool", "recover", "--spool-dir", spool], capture_output=True, text=True, timeout=30)
    expect("journal restart: spool recover says what it named", done.returncode == 0 and
           done.stdout.strip() == "recovered 4 payloads into new/", (done.returncode, done.stdout, done.stderr))
    expect("journal restart: an emptied file is written again", stored(spool, ids[0], bodies[0]))
    expect("journal restart: a lost name is restored", stored(spool, ids[1], bodies[1]))
    expect("journal restart: a consumed payload stays in cur/ only",
           not os.path.exists(new(2)) and open(cur(2), "rb").read().partition(b"\n")[2] == bodies[2])
    expect("journal restart: an intact file is left as it is", stored(spool, ids[3], bodies[3]))
    expect("journal restart: a record before the torn one is restored", stored(spool, ids[4], bodies[4]))
    expect("journal restart: a consumed payload the restart left empty is written again in cur/, not new/",
           not os.path.exists(new(5)) and open(cur(5), "rb").read().partition(b"\n")[2] == bodies[5])
    expect("journal restart: the torn record is never delivered", not os.path.exists(new(6)), files(spool, "new"))
    expect("journal restart: the slot was checkpointed (no record left)", journal_records(spool) == [])
    server = Server(socket_path, spool, log, workers=1)
    status, _, _ = fastcgi(socket_path, body_of(100, "after-recovery"))
    expect("journal restart: serving again", status == 200)
    expect("journal restart: clean stop", server.stop() == 0)


# As under the systemd units' ProcSubset=pid: /proc shows only processes, so /proc/sys/kernel/random/boot_id cannot
# be read (the command keeps its pid: unshare and sh exec in place).
HIDDEN_PROC = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               'mount -t proc -o subset=pid proc /proc && exec "$0" "$@"']


def test_journal_restart_without_boot_id(work):
    """Where the boot id cannot be read (the hardened units), no header can tell a restart from a crash in the same
    boot: recovery must compare every named file, or one a power cut left empty stays empty."""
    spool, socket_path, log = os.path.join(work, "j-noboot"), os.path.join(work, "j.sock"), os.path.join(work, "j.log")
    server = Server(socket_path, spool, log, workers=1, wrap=HIDDEN_PROC)
    bodies = [body_of(400 + 100 * i, "noboot-%d" % i) for i in range(2)]
    ids = post_all(socket_path, bodies)
    expect("no boot id: two payloads acknowledged and named",
           None not in ids and wait_until(lambda: all(stored(spool, i, b) for i, b in zip(ids, bodies)), 5), ids)
    server.kill_all()
    with open(os.path.join(spool, ".journal", "log"), "rb") as f:
        header = f.read(56)
    expect("no boot id: the slot's header records none (as under ProcSubset=pid)", header[16:52] == bytes(36), header[16:52])
    os.truncate(os.path.join(spool, "new", ids[0]), 0)  # the machine restarted: an unsynced file left empty
    done = subprocess.run(HIDDEN_PROC + [HANDLER, "spool", "recover", "--spool-dir", spool], capture_output=True,
                          text=True, timeout=30)
    expect("no boot id: spool recover succeeds", done.returncode == 0, (done.stdout, done.stderr))
    expect("no boot id: the emptied file is written again", stored(spool, ids[0], bodies[0]))
    expect("no boot id: the intact one is left as it is", stored(spool, ids[1], bodies[1]))


def test_journal_crash_and_deletion(work):
    """In the same boot a killed server's records are named on restart; one deleted after a checkpoint stays
    deleted, one deleted before it comes back (at-least-once, as the README says)."""
    spool, socket_path, log = os.path.join(work, "j-delete"), os.path.join(work, "j.sock"), os.path.join(work, "j.log")
    server = Server(socket_path, spool, log, workers=1)
    kept, back = body_of(300, "deleted-after-checkpoint"), body_of(300, "deleted-before-checkpoint")
    [kept_id] = post_all(socket_path, [kept])
    wait_until(lambda: stored(spool, kept_id, kept), 5)
    expect("journal: an idle worker checkpoints (its slot has no record left)",
           wait_until(lambda: journal_records(spool) == [], 12))
    os.remove(os.path.join(spool, "new", kept_id))
    [back_id] = post_all(socket_path, [back])
    wait_until(lambda: stored(spool, back_id, back), 5)
    os.remove(os.path.join(spool, "new", back_id))
    server.kill_all()
    server = Server(socket_path, spool, log, workers=1)
    # the slot is recovered in the background (webhook-recover) while the new workers already serve
    expect("journal crash: the supervisor recovers the slot as it starts",
           wait_until(lambda: "recovered 1 payloads into new/" in open(log, errors="replace").read(), 10))
    expect("journal crash: a payload deleted after a checkpoint stays deleted",
           not os.path.exists(os.path.join(spool, "new", kept_id)))
    expect("journal crash: one deleted before the checkpoint is delivered again",
           wait_until(lambda: stored(spool, back_id, back), 10))
    expect("journal crash: clean stop", server.stop() == 0)


def test_journal_checkpoint_crash(work):
    """SIGKILL in the middle of a checkpoint (strace holds its syncfs): the slot's records are all still there, and
    the restart names every acknowledged payload, even ones whose files went missing."""
    spool, socket_path, log = os.path.join(work, "j-ckpt"), os.path.join(work, "j.sock"), os.path.join(work, "j-ckpt.log")
    # syncfs 1 of the worker is the checkpoint that starts its slot; 2 is the one after five idle seconds
    server = Server(socket_path, spool, log, workers=1, strace=["-e", "inject=syncfs:delay_enter=8000000:when=2"])
    bodies = [body_of(300 + n, "checkpoint-%d" % n) for n in range(20)]
    ids = post_all(socket_path, bodies)
    expect("checkpoint crash: twenty payloads acknowledged", None not in ids)
    worker = next(pid for pid in server.workers() if pid != server.namer())

    def in_syncfs():
        try:
            return open("/proc/%d/syscall" % worker).read().split()[0] == "306"  # x86_64 syncfs
        except OSError:
            return False
    expect("checkpoint crash: the worker is held in its checkpoint's syncfs", wait_until(in_syncfs, 10))
    server.kill_all()
    expect("checkpoint crash: the slot still holds every record", [r[1] for r in journal_records(spool)] == ids)
    for id_ in ids[:3]:
        os.remove(os.path.join(spool, "new", id_))
    server = Server(socket_path, spool, log, workers=1)
    expect("checkpoint crash: every acknowledged payload is in new/, whole",
           all(stored(spool, i, b) for i, b in zip(ids, bodies)))
    expect("checkpoint crash: clean stop", server.stop() == 0)


def test_journal_sync_failure(work):
    """A record whose fdatasync fails is never answered 200: the payload is stored the long way (its own fsync),
    and when that fails too the answer is 503 and nothing is named."""
    socket_path, log = os.path.join(work, "j.sock"), os.path.join(work, "j-sync.log")
    spool = os.path.join(work, "j-sync-both")
    expect("a spool with its journal made (so that only the payload's own fsync is left to fail)",
           Server(socket_path, spool, log, workers=1).stop() == 0)
    # fdatasync 1 of the worker writes its slot's header; 2 and later cover records
    server = Server(socket_path, spool, log, workers=1,
                    strace=["-e", "inject=fdatasync:error=EIO:when=2+", "-e", "inject=fsync:error=EIO"])
    status, headers, answer = fastcgi(socket_path, body_of(400, "sync-fails"))
    expect("fdatasync and fsync fail: 503 with Retry-After", status == 503 and headers.get("retry-after") == "30",
           (status, answer))
    time.sleep(0.5)
    expect("fdatasync and fsync fail: nothing in new/", files(spool, "new") == [], files(spool, "new"))
    expect("fdatasync and fsync fail: the unsynced record was withdrawn", journal_records(spool) == [])
    expect("fdatasync and fsync fail: stopped", server.stop() == 0)
    expect("fdatasync fails: the journal says why", "Input/output error" in open(log, errors="replace").read())

    spool = os.path.join(work, "j-sync-record")
    server = Server(socket_path, spool, log, workers=1, strace=["-e", "inject=fdatasync:error=EIO:when=2+"])
    body = body_of(400, "record-sync-fails")
    status, _, answer = fastcgi(socket_path, body)
    id_ = json.loads(answer).get("id") if status == 200 else None
    expect("fdatasync fails, fsync works: 200, through the payload's own fsync", status == 200, (status, answer))
    expect("fdatasync fails, fsync works: named at once (not by the namer)", id_ and stored(spool, id_, body))
    expect("fdatasync fails: stored the long way from then on",
           "payloads are stored with a sync of their own" in open(log, errors="replace").read())
    expect("fdatasync fails, fsync works: stopped", server.stop() == 0)


def test_journal_full_disk(work):
    """A full disk: a record still fits the slot's written space, so it is durable and answered 200, and named when
    space comes back; once that space is used up the answer is 503."""
    mount = os.path.join(work, "jsmall")
    os.makedirs(mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", mount], check=True)
    server = None
    try:
        spool, socket_path, log = os.path.join(mount, "spool"), os.path.join(work, "j.sock"), os.path.join(work, "j-full.log")
        server = Server(socket_path, spool, log, workers=1)
        [first] = post_all(socket_path, [body_of(100, "full-first")])
        expect("journal, tmpfs: a first payload", first is not None)
        filler = fill(mount)
        answers = []
        for n in range(8):
            body = body_of(200_000, "full-%d" % n)
            status, headers, _ = fastcgi(socket_path, body)
            answers.append((status, headers.get("retry-after"), body))
        acknowledged = [body for status, _, body in answers if status == 200]
        refused = [status for status, retry, _ in answers if status == 503 and retry == "30"]
        expect("journal, full disk: payloads that fit the written space get 200 (%d)" % len(acknowledged),
               len(acknowledged) >= 1)
        expect("journal, full disk: then 503 with Retry-After", len(refused) >= 1 and len(refused) + len(acknowledged) == 8,
               [a[:2] for a in answers])
        expect("journal, full disk: the acknowledged ones wait, unnamed",
               not any(os.path.exists(os.path.join(spool, "new", hashlib.sha256(b).hexdigest())) for b in acknowledged))
        os.remove(filler)
        expect("journal, space freed: every acknowledged payload is named, whole",
               wait_until(lambda: all(stored(spool, hashlib.sha256(b).hexdigest(), b) for b in acknowledged), 10))
        status, _, _ = fastcgi(socket_path, body_of(300, "after-full"))
        expect("journal, space freed: 200 again", status == 200)
        expect("journal, full disk: stopped", server.stop() == 0)
        server = None
    finally:
        if server:
            server.kill_all()
        subprocess.run(["umount", mount], check=False)


def test_journal_namer_and_slot(work):
    """The namer killed: the supervisor starts another and nothing waits for ever. A slot filled up: the worker
    checkpoints and goes on. Concurrent duplicates: one file."""
    spool, socket_path, log = os.path.join(work, "j-namer"), os.path.join(work, "j.sock"), os.path.join(work, "j-namer.log")
    server = Server(socket_path, spool, log, workers=1, arguments=["--max-body-bytes", str(2 << 20)])
    namer = server.namer()
    os.kill(namer, signal.SIGKILL)
    body = body_of(300, "namer-killed")
    [id_] = post_all(socket_path, [body])
    expect("namer killed: the payload is acknowledged", id_ is not None)
    expect("namer killed: another namer starts", wait_until(lambda: server.namer() not in (None, namer), 5))
    expect("namer killed: the payload is named", wait_until(lambda: stored(spool, id_, body), 5))

    namer = server.namer()
    os.kill(namer, signal.SIGSTOP)  # as if never given CPU time (it runs only on what the workers leave)
    lagging = [body_of(1 << 20, "lagging-%d" % n) for n in range(24)]
    lagging_ids = post_all(socket_path, lagging)
    named = [i for i in lagging_ids if i and os.path.exists(os.path.join(spool, "new", i))]
    expect("namer starved: past a quarter of its slot the worker names payloads itself (%d of 24)" % len(named),
           None not in lagging_ids and len(named) >= 8)
    os.kill(namer, signal.SIGCONT)
    expect("namer back: every payload named, whole",
           wait_until(lambda: all(stored(spool, i, b) for i, b in zip(lagging_ids, lagging)), 10))

    bodies = [body_of(1 << 20, "slot-%d" % n) for n in range(70)]  # 70 MiB through a 64 MiB slot
    ids = post_all(socket_path, bodies)
    expect("slot full: every payload acknowledged", None not in ids)
    expect("slot full: every payload named, whole",
           wait_until(lambda: all(stored(spool, i, b) for i, b in zip(ids, bodies)), 20))
    expect("slot full: the slot was checkpointed and reused", len(journal_records(spool)) < 70)

    same = body_of(700, "duplicate")
    results = []
    threads = [threading.Thread(target=lambda: results.append(fastcgi(socket_path, same))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    same_id = hashlib.sha256(same).hexdigest()
    expect("duplicates at once: all 200", [r[0] for r in results] == [200] * 8, [r[0] for r in results])
    wait_until(lambda: stored(spool, same_id, same), 5)
    expect("duplicates at once: one file", [n for n in files(spool, "new") if n == same_id] == [same_id])
    status, _, answer = fastcgi(socket_path, same)
    expect("a duplicate once named: 200, duplicate true", status == 200 and json.loads(answer)["duplicate"] is True, answer)
    expect("namer and slot: stopped", server.stop() == 0)


def main():
    if os.geteuid() != 0:
        expect("spool_faults.py runs as root (it mounts a tmpfs)", False)
        return checks.summary()
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    with tempfile.TemporaryDirectory(prefix="webhook-spool-") as work:
        if only:
            globals()["test_" + only](work)
            return checks.summary()
        test_full_and_read_only(work)
        test_crash(work)
        test_journal_restart(work)
        test_journal_restart_without_boot_id(work)
        test_journal_crash_and_deletion(work)
        test_journal_checkpoint_crash(work)
        test_journal_sync_failure(work)
        test_journal_full_disk(work)
        test_journal_namer_and_slot(work)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
