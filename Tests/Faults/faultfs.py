#!/usr/bin/env python3
"""faultfs: a FUSE file system for the tests that can lose power and fail like a disk.

It passes every operation through to a backing directory at once, so that reads are simply the backing files, and
keeps what a power cut would undo: for every file, the bytes (and size) its writes replaced since its last
fsync/fdatasync; for every directory, what each name it changed meant at its last fsync. On `cut` it undoes all of
that — unsynced data rolls back, and files created, linked, renamed or unlinked since the last sync of their
directory vanish or come back — then answers EIO to everything until it is unmounted: the machine is off. A file
whose name survived but whose data was never synced comes back short or empty, as on ext4 after a crash.

It speaks the kernel's FUSE protocol on /dev/fuse itself (no libfuse): libfuse 3.14 has no O_TMPFILE operation,
and the spool creates every file with O_TMPFILE. Every file is opened with direct I/O, so every read and write is
a request it sees. `syncfs` never reaches a FUSE server (Linux forwards it to virtiofs only): on this file system it
makes nothing durable, which the journal has to know (docs/spool.md).

Faults, armed through the control socket (one line in, one line out):
  cut                      power loss, as above
  settle                   everything so far is durable (what the test set up)
  fail fsync NAME [N]      the next N fsync/fdatasync of a file whose path contains NAME fail with EIO; its unsynced
                           writes are lost for good (the kernel marks such pages clean), and each other open file
                           description of it reports the error once, as Linux's errseq does; one opened later never
  fail fsyncdir NAME [N]   the same for fsync of a directory (its unsynced names stay unsynced)
  fail read NAME [N [FROM TO]]  the next N reads of a file whose path contains NAME (and of bytes FROM-TO of it)
                           fail with EIO
  count                    how many fsync, fsyncdir and read requests it has answered: "fsync=.. fsyncdir=.. read=.."

Usage: faultfs.py BACKING MOUNTPOINT CONTROL_SOCKET   (root; runs in the foreground until unmounted)
"""
import ctypes, errno, os, select, socket, stat, struct, sys

FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR, FUSE_SETATTR = 1, 2, 3, 4
FUSE_MKNOD, FUSE_MKDIR, FUSE_UNLINK, FUSE_RMDIR, FUSE_RENAME, FUSE_LINK = 8, 9, 10, 11, 12, 13
FUSE_OPEN, FUSE_READ, FUSE_WRITE, FUSE_STATFS, FUSE_RELEASE, FUSE_FSYNC = 14, 15, 16, 17, 18, 20
FUSE_FLUSH, FUSE_INIT, FUSE_OPENDIR, FUSE_READDIR, FUSE_RELEASEDIR, FUSE_FSYNCDIR = 25, 26, 27, 28, 29, 30
FUSE_CREATE, FUSE_INTERRUPT, FUSE_DESTROY, FUSE_BATCH_FORGET, FUSE_RENAME2, FUSE_TMPFILE = 35, 36, 38, 42, 45, 51
NO_REPLY = (FUSE_FORGET, FUSE_BATCH_FORGET, FUSE_INTERRUPT)
FOPEN_DIRECT_IO = 1
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
IN_HEADER = struct.Struct("<IIQQIIIHH")
DEBUG = bool(os.environ.get("FAULTFS_DEBUG"))
KEEP = ".faultfs-keep"  # beside the exposed root: hard links that keep unlinked inodes for a cut to bring back


class Node:
    def __init__(self, fd, path):
        self.fd, self.path, self.lookups = fd, path, 0


class FaultFS:
    def __init__(self, backing, mountpoint):
        self.root = os.path.join(backing, "root")
        self.keep = os.path.join(backing, KEEP)
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.keep, exist_ok=True)
        self.mountpoint = mountpoint
        root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY)
        self.nodes = {1: Node(root_fd, "")}
        self.by_inode = {os.fstat(root_fd).st_ino: 1}
        self.next_node = 2
        self.handles, self.next_handle = {}, 1
        self.undo = {}      # inode -> [fd, size at the last sync, [(offset, old bytes)]]
        self.lost = {}      # inode -> [fd, [(offset, old bytes)]]: writes a failed fsync lost
        self.names = {}     # directory inode -> {name: inode at the directory's last sync, or None}
        self.errseq = {}    # inode -> write-back errors so far
        self.faults = {"fsync": [], "fsyncdir": [], "read": []}
        self.counts = {"fsync": 0, "fsyncdir": 0, "read": 0}
        self.off = False

    # -- the backing inodes ------------------------------------------------------------------------------------
    def proc(self, fd):
        return "/proc/self/fd/%d" % fd

    def entry(self, parent, name):
        """LOOKUP's answer for `name` in node `parent`, counting the lookup."""
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=self.nodes[parent].fd)
        return self.remember(fd, os.path.join(self.nodes[parent].path, name))

    def remember(self, fd, path):
        st = os.fstat(fd)
        node = self.by_inode.get(st.st_ino)
        if node is None:
            node, self.next_node = self.next_node, self.next_node + 1
            self.nodes[node] = Node(fd, path)
            self.by_inode[st.st_ino] = node
        else:
            os.close(fd)
            self.nodes[node].path = path
        self.nodes[node].lookups += 1
        return self.entry_out(node, st)

    def entry_out(self, node, st):
        return struct.pack("<QQQQII", node, 0, 1, 1, 0, 0) + self.attr(st)

    def attr(self, st):
        return ATTR.pack(st.st_ino, st.st_size, st.st_blocks, int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
                         st.st_atime_ns % 10**9, st.st_mtime_ns % 10**9, st.st_ctime_ns % 10**9, st.st_mode,
                         st.st_nlink, st.st_uid, st.st_gid, st.st_rdev, 4096, 0)

    def forget(self, node, count):
        entry = self.nodes.get(node)
        if entry is None or node == 1:
            return
        entry.lookups -= count
        if entry.lookups <= 0:
            ino = os.fstat(entry.fd).st_ino
            if self.by_inode.get(ino) == node:
                del self.by_inode[ino]
            os.close(entry.fd)
            del self.nodes[node]

    # -- what a cut undoes --------------------------------------------------------------------------------------
    def before_write(self, fd, offset, length, size=None):
        """Saves what a write of `length` bytes at `offset` (or a truncation to `size`) is about to replace."""
        st = os.fstat(fd)
        record = self.undo.get(st.st_ino)
        if record is None:
            record = self.undo[st.st_ino] = [os.open(self.proc(fd), os.O_RDWR), st.st_size, []]
        if size is not None:
            offset, length = size, max(0, st.st_size - size)
        end = min(offset + length, st.st_size)
        if end > offset:
            record[2].append((offset, os.pread(record[0], end - offset, offset)))

    def synced(self, ino):
        """A successful fsync: its writes are durable, and so are the ranges they rewrote of lost ones."""
        record = self.undo.pop(ino, None)
        if record is None:
            return
        os.close(record[0])
        if ino in self.lost:
            written = [(offset, len(old)) for offset, old in record[2]]
            self.lost[ino][1] = [piece for offset, old in self.lost[ino][1]
                                 for piece in subtract(offset, old, written)]

    def fsync_failed(self, ino):
        record = self.undo.pop(ino, None)
        if record is not None:
            lost = self.lost.setdefault(ino, [record[0], []])
            if lost[0] != record[0]:
                os.close(record[0])
            lost[1].extend(record[2])
        self.errseq[ino] = self.errseq.get(ino, 0) + 1

    def name_changes(self, dir_node, name):
        """Before `name` in `dir_node` changes: what it meant at the directory's last sync, kept for a cut."""
        dfd = self.nodes[dir_node].fd
        changes = self.names.setdefault(os.fstat(dfd).st_ino, {"fd": os.open(self.proc(dfd), os.O_PATH)})
        if name in changes:
            return
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            changes[name] = None
            return
        changes[name] = ("dir", st.st_ino) if stat.S_ISDIR(st.st_mode) else ("file", st.st_ino)
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.link(name, os.path.join(self.keep, str(st.st_ino)), src_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                pass

    def dir_synced(self, dir_node):
        changes = self.names.pop(os.fstat(self.nodes[dir_node].fd).st_ino, None)
        if changes:
            os.close(changes.pop("fd"))

    def settle(self):
        for ino in list(self.undo):
            self.synced(ino)
        for record in self.lost.values():
            os.close(record[0])
        self.lost.clear()
        for changes in self.names.values():
            os.close(changes.pop("fd"))
        self.names.clear()

    def cut(self):
        """Power loss: every unsynced write and name undone, newest first."""
        for ino, (fd, size, pieces) in list(self.undo.items()):
            for offset, old in reversed(pieces):
                os.pwrite(fd, old, offset)
            os.ftruncate(fd, size)
        for ino, (fd, pieces) in self.lost.items():
            for offset, old in reversed(pieces):
                os.pwrite(fd, old, offset)
        for changes in self.names.values():
            dfd = changes.pop("fd")
            for name, was in changes.items():
                try:
                    now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if was is not None and now is not None and now.st_ino == was[1]:
                    continue
                if now is not None:
                    if stat.S_ISDIR(now.st_mode):
                        remove_tree(dfd, name)
                    else:
                        os.unlink(name, dir_fd=dfd)
                if was is not None and was[0] == "dir":
                    os.mkdir(name, 0o700, dir_fd=dfd)
                elif was is not None:
                    os.link(os.path.join(self.keep, str(was[1])), name, dst_dir_fd=dfd)
        self.undo.clear()
        self.lost.clear()
        self.names.clear()
        for name in os.listdir(self.keep):
            os.unlink(os.path.join(self.keep, name))
        self.off = True

    def armed(self, kind, path, offset=0, size=0):
        for fault in self.faults[kind]:
            name, left, low, high = fault
            if name in path and left > 0 and (low is None or (offset < high and offset + size > low)):
                fault[1] -= 1
                return True
        return False

    # -- requests ------------------------------------------------------------------------------------------------
    def handle(self, opcode, node, body):
        """The reply's payload for one request (bytes), or raises OSError."""
        if self.off and opcode not in (FUSE_INIT, FUSE_RELEASE, FUSE_RELEASEDIR, FUSE_FLUSH, FUSE_DESTROY):
            raise OSError(errno.EIO, "powered off")
        n = self.nodes.get(node)
        if opcode == FUSE_INIT:
            major, minor, readahead, flags = struct.unpack_from("<IIII", body)
            wanted = (1 << 5) | (1 << 22)  # big writes, max pages
            return struct.pack("<IIIIHHIIHHII", 7, min(minor, 31), readahead, flags & wanted, 16, 12, 1 << 20, 1,
                               256, 0, 0, 0) + b"\0" * 24
        if opcode == FUSE_LOOKUP:
            return self.entry(node, cstring(body))
        if opcode == FUSE_GETATTR:
            return struct.pack("<QII", 1, 0, 0) + self.attr(os.fstat(n.fd))
        if opcode == FUSE_SETATTR:
            valid, _, fh, size = struct.unpack_from("<IIQQ", body)
            mode, uid, gid = struct.unpack_from("<I4xII", body, 68)
            path = self.proc(n.fd)
            if valid & 8:
                fd = self.handles[fh][0] if valid & 64 and fh in self.handles else os.open(path, os.O_WRONLY)
                self.before_write(fd, 0, 0, size=size)
                os.ftruncate(fd, size)
                if not (valid & 64 and fh in self.handles):
                    os.close(fd)
            if valid & 1:
                os.chmod(path, stat.S_IMODE(mode))
            if valid & 6:
                os.chown(path, uid if valid & 2 else -1, gid if valid & 4 else -1)
            return struct.pack("<QII", 1, 0, 0) + self.attr(os.fstat(n.fd))
        if opcode in (FUSE_MKNOD, FUSE_MKDIR, FUSE_CREATE):
            fmt = {FUSE_MKNOD: "<IIII", FUSE_MKDIR: "<II", FUSE_CREATE: "<IIII"}[opcode]
            args = struct.unpack_from(fmt, body)
            name = cstring(body[struct.calcsize(fmt):])
            self.name_changes(node, name)
            if opcode == FUSE_MKDIR:
                os.mkdir(name, stat.S_IMODE(args[0]), dir_fd=n.fd)
                return self.entry(node, name)
            if opcode == FUSE_MKNOD:
                os.mknod(name, args[0], args[1], dir_fd=n.fd)
                return self.entry(node, name)
            flags, mode = args[0], args[1]
            fd = os.open(name, (flags & ~(os.O_NOFOLLOW | os.O_APPEND)) | os.O_CREAT, stat.S_IMODE(mode), dir_fd=n.fd)
            out = self.entry(node, name)
            return out + self.open_handle(fd, os.fstat(fd).st_ino)
        if opcode == FUSE_TMPFILE:
            flags, mode = struct.unpack_from("<II", body)
            fd = os.open(self.proc(n.fd), (flags & os.O_ACCMODE) | os.O_TMPFILE, stat.S_IMODE(mode))
            ino = os.fstat(fd).st_ino
            out = self.remember(os.dup(fd), os.path.join(n.path, "#%d" % ino))
            return out + self.open_handle(fd, ino)
        if opcode in (FUSE_UNLINK, FUSE_RMDIR):
            name = cstring(body)
            self.name_changes(node, name)
            if opcode == FUSE_RMDIR:
                os.rmdir(name, dir_fd=n.fd)
            else:
                os.unlink(name, dir_fd=n.fd)
            return b""
        if opcode in (FUSE_RENAME, FUSE_RENAME2):
            size = 8 if opcode == FUSE_RENAME else 16
            new_dir, flags = struct.unpack_from("<QI", body + b"\0" * 4)[0], (
                struct.unpack_from("<I", body, 8)[0] if opcode == FUSE_RENAME2 else 0)
            old, new = body[size:].split(b"\0")[:2]
            old, new = os.fsdecode(old), os.fsdecode(new)
            if flags:
                raise OSError(errno.EINVAL, "rename flags")
            self.name_changes(node, old)
            self.name_changes(new_dir, new)
            os.rename(old, new, src_dir_fd=n.fd, dst_dir_fd=self.nodes[new_dir].fd)
            return b""
        if opcode == FUSE_LINK:
            (old_node,) = struct.unpack_from("<Q", body)
            name = cstring(body[8:])
            self.name_changes(node, name)
            os.link(self.proc(self.nodes[old_node].fd), name, dst_dir_fd=n.fd, follow_symlinks=True)
            return self.entry(node, name)
        if opcode in (FUSE_OPEN, FUSE_OPENDIR):
            (flags,) = struct.unpack_from("<I", body)
            if opcode == FUSE_OPENDIR:
                return self.open_handle(os.open(self.proc(n.fd), os.O_RDONLY | os.O_DIRECTORY), None)
            flags &= ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW)
            fd = os.open(self.proc(n.fd), flags)
            return self.open_handle(fd, os.fstat(fd).st_ino)
        if opcode == FUSE_READ:
            fh, offset, size = struct.unpack_from("<QQI", body)
            self.counts["read"] += 1
            if self.armed("read", n.path, offset, size):
                raise OSError(errno.EIO, "injected read error")
            return os.pread(self.handles[fh][0], size, offset)
        if opcode == FUSE_WRITE:
            fh, offset, size = struct.unpack_from("<QQI", body)
            data = body[40:40 + size]
            fd = self.handles[fh][0]
            self.before_write(fd, offset, len(data))
            return struct.pack("<II", os.pwrite(fd, data, offset), 0)
        if opcode == FUSE_FSYNC:
            (fh,) = struct.unpack_from("<Q", body)
            fd, ino, seen = self.handles[fh]
            self.counts["fsync"] += 1
            if self.armed("fsync", n.path):
                self.fsync_failed(ino)
                self.handles[fh][2] = self.errseq[ino]
                raise OSError(errno.EIO, "injected write-back error")
            self.synced(ino)
            if self.errseq.get(ino, 0) > seen:
                self.handles[fh][2] = self.errseq[ino]
                raise OSError(errno.EIO, "a write-back error not yet reported to this file")
            return b""
        if opcode == FUSE_FSYNCDIR:
            self.counts["fsyncdir"] += 1
            if self.armed("fsyncdir", n.path):
                raise OSError(errno.EIO, "injected directory write-back error")
            self.dir_synced(node)
            return b""
        if opcode == FUSE_READDIR:
            fh, offset, size = struct.unpack_from("<QQI", body)
            handle = self.handles[fh]
            if offset == 0 or len(handle) < 4:  # listed once per pass, not once per buffer
                entries = [(".", 1, stat.S_IFDIR), ("..", 1, stat.S_IFDIR)]
                with os.scandir(self.proc(handle[0])) as scan:
                    for entry in scan:
                        kind = stat.S_IFDIR if entry.is_dir(follow_symlinks=False) else \
                            stat.S_IFLNK if entry.is_symlink() else stat.S_IFREG
                        entries.append((entry.name, entry.inode(), kind))
                handle[3:] = [entries]
            out = b""
            for index, (name, ino, kind) in enumerate(handle[3][offset:], start=offset + 1):
                raw = os.fsencode(name)
                record = struct.pack("<QQII", ino, index, len(raw), kind >> 12) + raw
                record += b"\0" * (-len(record) % 8)
                if len(out) + len(record) > size:
                    break
                out += record
            return out
        if opcode in (FUSE_RELEASE, FUSE_RELEASEDIR):
            (fh,) = struct.unpack_from("<Q", body)
            handle = self.handles.pop(fh, None)
            if handle:
                os.close(handle[0])
            return b""
        if opcode == FUSE_FLUSH:
            return b""
        if opcode == FUSE_STATFS:
            st = os.statvfs(self.root)
            return struct.pack("<QQQQQIIII", st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree,
                               st.f_bsize, 255, st.f_frsize, 0) + b"\0" * 24
        if opcode == FUSE_DESTROY:
            return b""
        raise OSError(errno.ENOSYS, "not implemented")

    def open_handle(self, fd, ino):
        handle, self.next_handle = self.next_handle, self.next_handle + 1
        self.handles[handle] = [fd, ino, self.errseq.get(ino, 0)]
        return struct.pack("<QII", handle, FOPEN_DIRECT_IO if ino is not None else 0, 0)

    def control(self, line):
        words = line.split()
        if words == ["cut"]:
            self.cut()
        elif words == ["settle"]:
            self.settle()
        elif words == ["count"]:
            return " ".join("%s=%d" % item for item in sorted(self.counts.items()))
        elif len(words) in (3, 4, 6) and words[0] == "fail" and words[1] in self.faults:
            span = (int(words[4]), int(words[5])) if len(words) == 6 else (None, None)
            self.faults[words[1]].append([words[2], int(words[3]) if len(words) >= 4 else 1, *span])
        else:
            return "error: " + line
        return "ok"


def subtract(offset, old, written):
    """The parts of the lost range (`offset`, `old`) that none of the `written` (offset, length) ranges cover."""
    pieces = [(offset, old)]
    for start, length in written:
        end, kept = start + length, []
        for o, data in pieces:
            if start >= o + len(data) or end <= o:
                kept.append((o, data))
                continue
            if start > o:
                kept.append((o, data[:start - o]))
            if end < o + len(data):
                kept.append((end, data[end - o:]))
        pieces = kept
    return pieces


def remove_tree(dir_fd, name):
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        for entry in os.listdir(fd):
            if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                remove_tree(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def cstring(data):
    return os.fsdecode(data.split(b"\0", 1)[0])


def mount(device, mountpoint):
    libc = ctypes.CDLL(None, use_errno=True)
    options = "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions" % device
    if libc.mount(b"faultfs", os.fsencode(mountpoint), b"fuse.faultfs", 0, options.encode()) != 0:
        raise OSError(ctypes.get_errno(), "mount " + mountpoint)


def serve(backing, mountpoint, control_path):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fs = FaultFS(backing, mountpoint)
    device = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(control_path):
        os.unlink(control_path)
    listener.bind(control_path)
    listener.listen(4)
    mount(device, mountpoint)
    clients = []
    while True:
        ready, _, _ = select.select([device, listener] + clients, [], [])
        if listener in ready:
            clients.append(listener.accept()[0])
        for client in [c for c in clients if c in ready]:
            data = client.recv(4096)
            if not data:
                clients.remove(client)
                client.close()
                continue
            for line in data.decode().splitlines():
                try:
                    answer = fs.control(line)
                except OSError as error:
                    answer = "error: %s" % error
                client.sendall((answer + "\n").encode())
        if device not in ready:
            continue
        try:
            request = os.read(device, (1 << 20) + 65536)
        except OSError as error:
            if error.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                continue
            if error.errno == errno.ENODEV:  # unmounted
                return
            raise
        length, opcode, unique, node, _, _, _, _, _ = IN_HEADER.unpack_from(request)
        if DEBUG:
            print("faultfs: request %d node %d" % (opcode, node), file=sys.stderr, flush=True)
        body = request[IN_HEADER.size:length]
        if opcode == FUSE_FORGET:
            fs.forget(node, struct.unpack_from("<Q", body)[0])
            continue
        if opcode == FUSE_BATCH_FORGET:
            (count,) = struct.unpack_from("<I", body)
            for index in range(count):
                fs.forget(*struct.unpack_from("<QQ", body, 8 + 16 * index))
            continue
        if opcode in NO_REPLY:
            continue
        try:
            payload, error = fs.handle(opcode, node, body), 0
        except OSError as failure:
            payload, error = b"", -(failure.errno or errno.EIO)
            if DEBUG:
                print("faultfs: opcode %d: %s" % (opcode, failure), file=sys.stderr, flush=True)
        except Exception as failure:  # a bug here must not hang the mount
            print("faultfs: opcode %d: %r" % (opcode, failure), file=sys.stderr, flush=True)
            payload, error = b"", -errno.EIO
        try:
            os.write(device, struct.pack("<IiQ", 16 + len(payload), error, unique) + payload)
        except OSError as failure:
            if failure.errno != errno.ENOENT:  # the request was interrupted meanwhile
                raise
        if opcode == FUSE_DESTROY:
            return


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    serve(*sys.argv[1:])
