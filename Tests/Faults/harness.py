"""What the fault tests share: a faultfs disk (mounted, cut, remounted), a server on it, load with an optional
consumer, and the checks that every acknowledged payload is whole and nothing is torn."""
import json, os, socket, subprocess, sys, threading, time, random, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Integration"))
import spool_faults as sf  # noqa: E402  (the server, requests and journal readers of the fault tests)
from checks import Checks  # noqa: E402

FAULTFS = os.path.join(HERE, "faultfs.py")
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


class OnDisk:
    """A FastCGI server whose spool is on a faultfs disk, installed (its directories and journal settled on the
    disk); at the end the server, if still running, is killed and the disk unmounted."""

    def __init__(self, work, name, workers, **options):
        self.disk = Disk(work, name)
        self.spool = os.path.join(self.disk.mountpoint, "spool")
        self.socket_path, self.log = os.path.join(work, name + ".sock"), os.path.join(work, name + "-server.log")
        self.workers, self.options = workers, options
        self.start()
        self.disk.command("settle")

    def start(self):
        self.server = sf.Server(self.socket_path, self.spool, self.log, workers=self.workers, **self.options)
        return self.server

    def power_cut(self, load=None, reboot_after=True):
        """A cut (see Disk), then the machine's restart as recovery sees it (another boot id), if asked."""
        self.disk.power_cut(self.server, load=load)
        if reboot_after:
            reboot(self.spool)

    def __enter__(self):
        return self

    def __exit__(self, *failure):
        if self.server.process.poll() is None:
            self.server.kill_all()
        self.disk.unmount()


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
            try:
                id_ = self.post(body)
            except OSError:  # a connection refused, reset or timed out: not acknowledged
                id_ = None
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


def acknowledged_payloads(setup, count, tag):
    """`count` distinct payloads posted one by one: {id: body}, each expected to be answered 200."""
    bodies = [sf.body_of(300 + n, "%s-%d" % (tag, n)) for n in range(count)]
    ids = sf.post_all(setup.socket_path, bodies)
    expect("%s: %d payloads acknowledged" % (tag, count), None not in ids)
    return dict(zip(ids, bodies))


def marks(spool):
    with open(os.path.join(spool, ".journal", "log"), "rb") as f:
        return f.read(56)[16:52].rstrip(b"\0").decode(errors="replace")


def syscall(pid):
    try:
        return open("/proc/%d/syscall" % pid).read().split()[0]
    except (OSError, IndexError):
        return None
