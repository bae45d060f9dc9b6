#!/usr/bin/env python3
"""The spool on a disk that loses power and fails, through faultfs (Tests/Faults/faultfs.py): every write not yet
synced is dropped at a cut, with the names made since their directory's last sync; chosen syncs and reads fail
with EIO. Needs root (it mounts a FUSE file system).

  journal power loss    the FastCGI server under load, and a consumer moving payloads new/ -> cur/ (syncing cur/),
                        cut at random moments; after each cut the machine "reboots" (another boot id in every slot's
                        header) and the server starts again: every 200 is in new/ or cur/ byte for byte, nothing in
                        either is torn
  per-file power loss   the same for the CGI's per-file protocol (no journal)
  failed checkpoint     a checkpoint whose sync of a named file fails (a write-back error): the slot is marked, and
                        after a power cut every acknowledged payload is whole
  unreadable read       the journal's first read fails with EIO during recovery: nothing is retired unread, and
                        the next recovery names every payload
  unknown boot          the boot id cannot be read (a bind mount of /dev/null over it): after a cut, recovery
                        compares every file all the same
  shared sync failure   worker X's fdatasync of the log fails while Y waits on it (strace holds Y); Z, started after
                        the failure, syncs on a fresh descriptor (which the kernel answers 0): Y is not answered from
                        the journal, and after a cut every 200 is whole
  failed syncfs         (no FUSE: strace) a checkpoint's syncfs fails: the slot's header is marked, and the next
                        recovery writes and syncs every file again instead of trusting a later syncfs
  restart backlog       (no FUSE) a crash leaves 20,000 unnamed records (the namer stopped): the restarted server
                        answers 200 within 1.5 s while a background process names them; then every 200 is there
  namer other slots     every read of slot 0's records fails: the namer still names slot 1's payloads
  checkpoint interval   (no FUSE) a payload every 3 s for 66 s (never five idle seconds): a checkpoint all the same
  namer hold            (no FUSE: strace) a namer slowed down mid-backlog keeps a checkpoint waiting for 64 names
                        at most, not for its whole backlog

Usage: power_loss.py PATH/TO/webhook-handler [--rounds N] [--backlog RECORDS] [--only NAME]
"""
import json, os, random, signal, socket, subprocess, sys, tempfile, threading, time, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Integration"))
import spool_faults as sf  # noqa: E402  (the server, requests and journal readers of the fault tests)
from checks import Checks, signed_cgi_environment, parse_cgi  # noqa: E402

FAULTFS = os.path.join(HERE, "faultfs.py")
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 6
MARK = b"checkpoint failed"
checks = Checks()
expect = checks.expect


class Disk:
    """A faultfs mount over `work/backing`: the mount point is what the handler sees, the backing what survives."""

    def __init__(self, work, name="disk"):
        self.backing = os.path.join(work, name + "-backing")
        self.mountpoint = os.path.join(work, name)
        self.control_path = os.path.join(work, name + ".control")
        self.log = os.path.join(work, name + ".log")
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mountpoint, exist_ok=True)
        self.start()

    def start(self):
        self.process = subprocess.Popen([sys.executable, FAULTFS, self.backing, self.mountpoint, self.control_path],
                                        stdin=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        deadline = time.time() + 20
        while not (self.mounted() and os.path.exists(self.control_path)):
            if time.time() > deadline or self.process.poll() is not None:
                raise RuntimeError("faultfs did not mount: " + open(self.log, errors="replace").read())
            time.sleep(0.02)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.connect(self.control_path)
        self.replies = self.control.makefile("r")

    def mounted(self):
        return any(line.split()[4] == self.mountpoint for line in open("/proc/self/mountinfo"))

    def command(self, line):
        self.control.sendall((line + "\n").encode())
        return self.replies.readline().strip()

    def unmount(self):
        self.replies.close()
        self.control.close()
        subprocess.run(["umount", "-l", self.mountpoint], check=False)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # something still holds the detached mount: the power is off anyway
            self.process.kill()
            self.process.wait()

    def power_cut(self, *servers, load=None):
        """Every process on the disk dies at once (the load's clients stop, in-flight ones killed), the unsynced
        state is dropped, and the disk comes back."""
        if load:
            load.running = False
        while True:
            for server in servers:
                server.kill_all()
            if not load or not any(thread.is_alive() for thread in load.threads):
                break
            time.sleep(0.01)
        answer = self.command("cut")
        self.unmount()
        self.start()
        return answer


def reboot(spool):
    """What recovery sees after the machine restarted: another boot id in every slot header that has one (a slot
    marked by a failed checkpoint keeps its mark)."""
    path = os.path.join(spool, ".journal", "log")
    if not os.path.exists(path):
        return
    for slot in range(os.path.getsize(path) // sf.SLOT + 1):
        with open(path, "rb") as f:
            f.seek(slot * sf.SLOT)
            header = f.read(56)
        if len(header) == 56 and header.startswith(b"WHJRNL01") and not header[16:52].startswith(MARK) and \
                sf.crc32c(header[:52]) == int.from_bytes(header[52:56], "little"):
            sf.set_boot_id(spool, str(uuid.uuid4()), slot)


def whole(spool, id_, body):
    """`id_` is in new/ or cur/ with exactly its envelope and `body`."""
    for sub in ("new", "cur"):
        path = os.path.join(spool, sub, id_)
        if os.path.exists(path):
            line, _, rest = open(path, "rb").read().partition(b"\n")
            try:
                return rest == body and json.loads(line).get("length") == len(body)
            except ValueError:
                return False
    return False


def torn(spool):
    """Files in new/ or cur/ whose envelope does not match their bytes."""
    bad = []
    for sub in ("new", "cur"):
        for name in sf.files(spool, sub):
            line, sep, body = open(os.path.join(spool, sub, name), "rb").read().partition(b"\n")
            try:
                ok = sep and json.loads(line).get("length") == len(body)
            except ValueError:
                ok = False
            if not ok:
                bad.append(sub + "/" + name)
    return bad


class Load:
    """Clients posting distinct payloads (`post(body) -> id or None`) and, if asked, a consumer that moves what
    it finds in new/ to cur/ and syncs cur/ (a careful maildir reader), until stopped."""

    def __init__(self, post, spool, clients=6, consumer=False, sizes=(200, 1_000, 5_000, 40_000)):
        self.post, self.spool, self.acknowledged, self.moved, self.sizes = post, spool, {}, 0, sizes
        self.running, self.lock = True, threading.Lock()
        self.threads = [threading.Thread(target=self.client) for _ in range(clients)]
        if consumer:
            self.threads.append(threading.Thread(target=self.consume))
        for thread in self.threads:
            thread.start()

    def client(self):
        while self.running:
            body = sf.body_of(random.choice(self.sizes), "power-%s" % uuid.uuid4())
            id_ = self.post(body)
            if id_:
                with self.lock:
                    self.acknowledged[id_] = body

    def consume(self):
        new, cur = os.path.join(self.spool, "new"), os.path.join(self.spool, "cur")
        while self.running:
            try:
                for name in os.listdir(new)[:20]:
                    os.rename(os.path.join(new, name), os.path.join(cur, name))
                    self.moved += 1
                fd = os.open(cur, os.O_RDONLY | os.O_DIRECTORY)
                os.fsync(fd)
                os.close(fd)
            except OSError:
                pass
            time.sleep(0.05)

    def stop(self):
        self.running = False
        for thread in self.threads:
            thread.join()
        return self.acknowledged


def fastcgi_id(socket_path):
    def post(body):
        status, _, answer = sf.fastcgi(socket_path, body)
        return json.loads(answer)["id"] if status == 200 else None
    return post


def check_all(name, spool, acknowledged):
    missing = [i for i, body in acknowledged.items() if not whole(spool, i, body)]
    expect("%s: every one of %d acknowledged payloads in new/ or cur/, byte for byte" % (name, len(acknowledged)),
           not missing, "%d missing or damaged, e.g. %s" % (len(missing), missing[:3]))
    bad = torn(spool)
    expect("%s: nothing torn in new/ or cur/" % name, not bad, bad[:3])


def test_journal_power_loss(work):
    disk = Disk(work, "journal")
    spool, socket_path, log = os.path.join(disk.mountpoint, "spool"), os.path.join(work, "pl.sock"), os.path.join(work, "pl.log")
    server = sf.Server(socket_path, spool, log, workers=3)
    disk.command("settle")  # the spool as installed: its directories and journal on disk
    acknowledged, moved = {}, 0
    try:
        for round_number in range(ROUNDS):
            load = Load(fastcgi_id(socket_path), spool, consumer=round_number % 2 == 1)
            time.sleep(0.4 + random.random() * 1.2)
            disk.power_cut(server, load=load)
            acknowledged.update(load.stop())
            moved += load.moved
            reboot(spool)
            server = sf.Server(socket_path, spool, log, workers=3)
            check_all("journal power loss, cut %d" % (round_number + 1), spool, acknowledged)
        expect("journal power loss: a consumer moved payloads to cur/ between cuts (%d)" % moved, moved > 0)
        expect("journal power loss: clean stop", server.stop() == 0)
    finally:
        server.kill_all() if server.process.poll() is None else None
        disk.unmount()


def test_per_file_power_loss(work):
    disk = Disk(work, "perfile")
    spool = os.path.join(disk.mountpoint, "spool")
    running = {}
    lock = threading.Lock()

    def post(body):
        process = subprocess.Popen([sf.HANDLER], env=signed_cgi_environment(sf.SECRET, body, spool),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        with lock:
            running[process.pid] = process
        out, _ = process.communicate(body)
        with lock:
            running.pop(process.pid, None)
        status, _, answer = parse_cgi(out)
        return json.loads(answer)["id"] if status == 200 else None

    class CGIs:
        def kill_all(self):
            with lock:
                for process in running.values():
                    process.kill()
                    process.wait()

    post(sf.body_of(100, "first"))
    disk.command("settle")
    acknowledged = {}
    try:
        for round_number in range(ROUNDS):
            load = Load(post, spool, clients=4, consumer=round_number % 2 == 1)
            time.sleep(0.4 + random.random() * 1.2)
            disk.power_cut(CGIs(), load=load)
            acknowledged.update(load.stop())
            check_all("per-file power loss, cut %d" % (round_number + 1), spool, acknowledged)
    finally:
        disk.unmount()


def test_failed_checkpoint(work):
    disk = Disk(work, "ckpt")
    spool, socket_path, log = os.path.join(disk.mountpoint, "spool"), os.path.join(work, "ck.sock"), os.path.join(work, "ck.log")
    server = sf.Server(socket_path, spool, log, workers=1)
    disk.command("settle")
    try:
        bodies = [sf.body_of(300 + n, "failed-checkpoint-%d" % n) for n in range(10)]
        ids = sf.post_all(socket_path, bodies)
        expect("failed checkpoint: ten payloads acknowledged", None not in ids)
        sf.wait_until(lambda: all(os.path.exists(os.path.join(spool, "new", i)) for i in ids), 5)
        disk.command("fail fsync new/%s" % ids[3])  # the idle checkpoint's sync of one named file
        expect("failed checkpoint: the worker's checkpoint fails and marks its slot",
               sf.wait_until(lambda: "checkpoint failed" in marks(spool), 12), marks(spool))
        disk.power_cut(server)
        reboot(spool)
        server = sf.Server(socket_path, spool, log, workers=1)
        check_all("failed checkpoint, after a power cut", spool, dict(zip(ids, bodies)))
        expect("failed checkpoint: clean stop", server.stop() == 0)
    finally:
        server.kill_all() if server.process.poll() is None else None
        disk.unmount()


def marks(spool):
    with open(os.path.join(spool, ".journal", "log"), "rb") as f:
        return f.read(56)[16:52].rstrip(b"\0").decode(errors="replace")


def test_unreadable_read(work):
    disk = Disk(work, "eio")
    spool, socket_path, log = os.path.join(disk.mountpoint, "spool"), os.path.join(work, "eio.sock"), os.path.join(work, "eio.log")
    server = sf.Server(socket_path, spool, log, workers=1)
    disk.command("settle")
    try:
        bodies = [sf.body_of(300 + n, "unreadable-%d" % n) for n in range(8)]
        ids = sf.post_all(socket_path, bodies)
        expect("unreadable: eight payloads acknowledged", None not in ids)
        disk.power_cut(server)  # well within the five idle seconds: the records wait in the slot
        reboot(spool)
        disk.command("fail read journal/log 1")
        done = subprocess.run([sf.HANDLER, "spool", "recover", "--spool-dir", spool], capture_output=True, text=True,
                              timeout=60)
        expect("unreadable: a recovery that cannot read the log fails, saying why",
               done.returncode != 0 and "Input/output error" in done.stderr, (done.returncode, done.stdout, done.stderr))
        expect("unreadable: no record was retired unread", len(sf.journal_records(spool)) == len(ids),
               len(sf.journal_records(spool)))
        done = subprocess.run([sf.HANDLER, "spool", "recover", "--spool-dir", spool], capture_output=True, text=True,
                              timeout=60)
        expect("unreadable: once the disk reads, recovery names every payload", done.returncode == 0, done.stderr)
        check_all("unreadable", spool, dict(zip(ids, bodies)))
    finally:
        disk.unmount()


def test_unknown_boot(work):
    disk = Disk(work, "boot")
    spool, socket_path, log = os.path.join(disk.mountpoint, "spool"), os.path.join(work, "boot.sock"), os.path.join(work, "boot.log")
    hidden = ["unshare", "--mount", "sh", "-c", 'mount --bind /dev/null /proc/sys/kernel/random/boot_id && exec "$@"', "sh"]
    server = sf.Server(socket_path, spool, log, workers=1, prefix=hidden)
    disk.command("settle")
    try:
        bodies = [sf.body_of(300 + n, "unknown-boot-%d" % n) for n in range(8)]
        ids = sf.post_all(socket_path, bodies)
        expect("unknown boot: eight payloads acknowledged", None not in ids)
        sf.wait_until(lambda: all(os.path.exists(os.path.join(spool, "new", i)) for i in ids), 5)
        names_synced = os.open(os.path.join(spool, "new"), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(names_synced)  # their names reach the disk, their bytes not: they come back empty
        os.close(names_synced)
        disk.power_cut(server)
        expect("unknown boot: the cut left files empty", any(os.path.getsize(os.path.join(spool, "new", i)) == 0
                                                            for i in ids if os.path.exists(os.path.join(spool, "new", i))))
        server = sf.Server(socket_path, spool, log, workers=1, prefix=hidden)
        check_all("unknown boot", spool, dict(zip(ids, bodies)))
        expect("unknown boot: clean stop", server.stop() == 0)
    finally:
        server.kill_all() if server.process.poll() is None else None
        disk.unmount()


def test_failed_syncfs(work):
    spool, socket_path, log = os.path.join(work, "syncfs"), os.path.join(work, "sfs.sock"), os.path.join(work, "sfs.log")
    # syncfs 1 of the worker is the checkpoint that starts its slot; 2 is the one after five idle seconds
    server = sf.Server(socket_path, spool, log, workers=1, strace=["-e", "inject=syncfs:error=EIO:when=2"])
    bodies = [sf.body_of(300 + n, "syncfs-%d" % n) for n in range(6)]
    ids = sf.post_all(socket_path, bodies)
    expect("failed syncfs: six payloads acknowledged", None not in ids)
    expect("failed syncfs: the failed checkpoint marks the slot",
           sf.wait_until(lambda: "checkpoint failed" in marks(spool), 12), marks(spool))
    server.kill_all()
    server = sf.Server(socket_path, spool, log, workers=1)
    expect("failed syncfs: the next recovery writes and syncs every file again, trusting no later syncfs",
           "recovered %d payloads into new/" % len(ids) in open(log, errors="replace").read())
    check_all("failed syncfs", spool, dict(zip(ids, bodies)))
    expect("failed syncfs: clean stop", server.stop() == 0)


def test_shared_sync_failure(work):
    """A waiter never trusts a sync done after another worker's sync of the log failed: worker X's fdatasync fails
    (its record, and Y's written meanwhile, are dropped by the disk); Y, waiting (strace holds it), wakes only after
    Z, started after the failure on a fresh descriptor, synced successfully. Y must not answer 200 from the
    journal. After a cut every 200 is whole."""
    disk = Disk(work, "shared")
    spool, socket_path, log = os.path.join(disk.mountpoint, "spool"), os.path.join(work, "sh.sock"), os.path.join(work, "sh.log")
    server = sf.Server(socket_path, spool, log, workers=2)
    disk.command("settle")
    tracer = None
    try:
        sf.wait_until(lambda: server.namer() is not None, 5)
        workers = [pid for pid in server.workers() if pid != server.namer()]
        tracer = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-e", "inject=fdatasync:delay_enter=1500000",
                                   "-e", "inject=futex:delay_exit=6000000"] + [a for p in workers for a in ("-p", str(p))],
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        disk.command("fail fsync journal/log 1")
        answers = {}

        def post(name):
            body = sf.body_of(300, "shared-%s" % name)
            status, _, answer = sf.fastcgi(socket_path, body)
            answers[name] = (json.loads(answer)["id"] if status == 200 else None, body)
        x_thread = threading.Thread(target=post, args=("x",))
        x_thread.start()
        sf.wait_until(lambda: any(syscall(p) == "75" for p in workers), 5)  # x86_64 fdatasync: X holds the lock
        x = next(p for p in workers if syscall(p) == "75")
        y_thread = threading.Thread(target=post, args=("y",))
        y_thread.start()
        time.sleep(0.5)  # Y has written its record and waits for X's sync
        x_thread.join()
        os.kill(x, signal.SIGKILL)  # its replacement Z opens the log after the failure
        expect("shared failure: a replacement worker starts",
               sf.wait_until(lambda: len([p for p in server.workers() if p not in workers and p != server.namer()]) == 1, 10))
        time.sleep(0.3)
        post("z")  # Z syncs the log on its fresh descriptor: 0, for the page X's failure dropped too
        y_thread.join()
        acknowledged = {i: b for i, b in answers.values() if i}
        expect("shared failure: all three answered 200 (X and Y the long way)", len(acknowledged) == 3, answers)
        tracer.kill()
        tracer.wait()
        tracer = None
        disk.power_cut(server)
        reboot(spool)
        server = sf.Server(socket_path, spool, log, workers=2)
        check_all("shared failure, after a power cut", spool, acknowledged)
        expect("shared failure: clean stop", server.stop() == 0)
    finally:
        if tracer:
            tracer.kill()
            tracer.wait()
        server.kill_all() if server.process.poll() is None else None
        disk.unmount()


def syscall(pid):
    try:
        return open("/proc/%d/syscall" % pid).read().split()[0]
    except (OSError, IndexError):
        return None


def test_namer_other_slots(work):
    """A slot whose records the namer cannot read (EIO) does not stop it naming the other slots."""
    disk = Disk(work, "slots")
    spool, socket_path, log = os.path.join(disk.mountpoint, "spool"), os.path.join(work, "sl.sock"), os.path.join(work, "sl.log")
    server = sf.Server(socket_path, spool, log, workers=2)
    disk.command("settle")
    try:
        disk.command("fail read journal/log 100000 4096 %d" % sf.SLOT)  # its records, not its header
        load = Load(fastcgi_id(socket_path), spool, clients=4, sizes=(300,))
        sf.wait_until(lambda: len(load.acknowledged) >= 40, 20)
        acknowledged = load.stop()
        later = [i for _, i, _ in sf.journal_records(spool, 1)]
        expect("other slots: some payloads went to slot 1 (%d)" % len(later), len(later) > 0)
        expect("other slots: the namer names slot 1's payloads although slot 0 cannot be read",
               sf.wait_until(lambda: all(whole(spool, i, acknowledged[i]) for i in later), 3))
        disk.command("fail read journal/log 0")
        server.stop()
    finally:
        server.kill_all() if server.process.poll() is None else None
        disk.unmount()


def test_checkpoint_interval(work):
    """Low steady traffic (a payload every 3 s: never five idle seconds) still gets a checkpoint within a minute,
    so that a crash brings back at most a minute of consumed payloads and leaves at most a minute to recover."""
    spool, socket_path, log = os.path.join(work, "interval"), os.path.join(work, "iv.sock"), os.path.join(work, "iv.log")
    server = sf.Server(socket_path, spool, log, workers=1)
    posted, started = 0, time.time()
    while time.time() - started < 66:
        posted += sf.post_all(socket_path, [sf.body_of(200, "interval-%d" % posted)]) != [None]
        time.sleep(3)
    waiting = len(sf.journal_records(spool))
    expect("checkpoint interval: %d payloads over 66 s, %d still waiting in the slot (a checkpoint came within a "
           "minute)" % (posted, waiting), posted >= 18 and waiting < posted - 5)
    expect("checkpoint interval: clean stop", server.stop() == 0)


def test_namer_hold(work):
    """The namer, slowed down (every linkat 40 ms late, as an idle-priority process under load is), never keeps a
    checkpoint waiting for its whole backlog: it gives the slot's naming lock back every 64 names."""
    spool, socket_path, log = os.path.join(work, "hold"), os.path.join(work, "hold.sock"), os.path.join(work, "hold.log")
    server = sf.Server(socket_path, spool, log, workers=1)
    sf.wait_until(lambda: server.namer() is not None, 5)
    namer = server.namer()
    worker = next(pid for pid in server.workers() if pid != namer)
    os.kill(namer, signal.SIGSTOP)
    ids = sf.post_all(socket_path, [sf.body_of(200, "hold-%d" % n) for n in range(300)])
    expect("namer hold: 300 payloads acknowledged while the namer is stopped", None not in ids)
    tracer = subprocess.Popen(["strace", "-p", str(namer), "-qq", "-o", "/dev/null", "-e",
                               "inject=linkat:delay_enter=40000"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    os.kill(namer, signal.SIGCONT)
    waited, longest, deadline = None, 0.0, time.time() + 20
    while time.time() < deadline and len(sf.journal_records(spool)) > 0:
        try:
            in_lock = open("/proc/%d/syscall" % worker).read().split()[0] == "72"  # x86_64 fcntl: F_OFD_SETLKW
        except OSError:
            in_lock = False
        if in_lock and waited is None:
            waited = time.time()
        elif not in_lock and waited is not None:
            longest, waited = max(longest, time.time() - waited), None
        time.sleep(0.01)
    if waited is not None:
        longest = max(longest, time.time() - waited)
    tracer.terminate()
    tracer.wait()
    expect("namer hold: the idle checkpoint ran (the slot has no record left)", sf.journal_records(spool) == [])
    expect("namer hold: the checkpoint waited %.2f s for the naming lock (at most 64 names of 40 ms)" % longest,
           longest < 4.0)
    expect("namer hold: every payload named", all(os.path.exists(os.path.join(spool, "new", i)) for i in ids))
    expect("namer hold: clean stop", server.stop() == 0)


def test_restart_backlog(work):
    """A crash with a large unnamed backlog (the namer stopped): the restarted server answers 200 within seconds,
    while a background process names the backlog; then every acknowledged payload is there."""
    import deliveries  # its raw FastCGI client: a connection per request, no process per request
    spool, socket_path, log = os.path.join(work, "backlog"), os.path.join(work, "bl.sock"), os.path.join(work, "bl.log")
    server = sf.Server(socket_path, spool, log, workers=2)
    sf.wait_until(lambda: server.namer() is not None, 5)
    os.kill(server.namer(), signal.SIGSTOP)

    def post(body):
        status, _, answer = deliveries.fcgi_post(socket_path, body, HTTP_X_SIGNATURE=sf.sign(body))
        return json.loads(answer)["id"] if status == 200 else None
    load = Load(post, spool, clients=8, sizes=(200,))
    sf.wait_until(lambda: len(load.acknowledged) >= BACKLOG, 240)
    load.stop()
    server.kill_all()
    backlog = sum(len(sf.journal_records(spool, slot)) for slot in range(2))
    os.remove(socket_path)
    started = time.time()
    server = sf.Server(socket_path, spool, log, workers=2, recovered=False)
    first = None
    while first is None and time.time() - started < 30:
        first = post(sf.body_of(100, "after-backlog-%f" % time.time()))
    served = time.time() - started
    busy = bool(sf.recovering())
    sf.wait_until(lambda: not sf.recovering(), 300)
    recovered = time.time() - started
    print("     backlog of %d records: first 200 after %.2f s (recovery still running then: %s), all named after "
          "%.2f s" % (backlog, served, busy, recovered), flush=True)
    expect("restart with a backlog of %d unnamed records: the first 200 within 1.5 s (%.2f s)" % (backlog, served),
           first is not None and served < 1.5)
    check_all("restart with a backlog", spool, load.acknowledged)
    expect("restart with a backlog: clean stop", server.stop() == 0)


BACKLOG = int(sys.argv[sys.argv.index("--backlog") + 1]) if "--backlog" in sys.argv else 20000


def main():
    if os.geteuid() != 0:
        expect("power_loss.py runs as root (it mounts a FUSE file system)", False)
        return checks.summary()
    if not os.path.exists("/dev/fuse"):
        subprocess.run(["modprobe", "fuse"], check=False)
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    with tempfile.TemporaryDirectory(prefix="webhook-power-") as work:
        for name in ["journal_power_loss", "per_file_power_loss", "failed_checkpoint", "unreadable_read",
                     "unknown_boot", "shared_sync_failure", "failed_syncfs", "namer_other_slots", "namer_hold", "restart_backlog", "checkpoint_interval"]:
            if only in (None, name):
                globals()["test_" + name](work)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
