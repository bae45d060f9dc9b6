"""faultfs's model of what a power cut undoes (Tests/Faults/faultfs.py passes every operation through to the
backing directory at once and tells this what it is about to change)."""
import os, stat


def proc(fd):
    return "/proc/self/fd/%d" % fd


class Power:
    """Per file, the bytes (and size) its writes replaced since its last fsync/fdatasync; per directory, what each
    name it changed meant at its last fsync; per file, the write-back errors so far (Linux's errseq)."""

    def __init__(self, keep):
        self.keep = keep    # hard links that keep unlinked inodes for a cut to bring back
        self.undo = {}      # inode -> [fd, size at the last sync, [(offset, old bytes)]]
        self.lost = {}      # inode -> [fd, [(offset, old bytes)]]: writes a failed fsync lost
        self.names = {}     # directory inode -> {name: inode at the directory's last sync, or None}
        self.errseq = {}    # inode -> write-back errors so far

    # -- what a cut undoes --------------------------------------------------------------------------------------
    def before_write(self, fd, offset, length, size=None):
        """Saves what a write of `length` bytes at `offset` (or a truncation to `size`) is about to replace."""
        st = os.fstat(fd)
        record = self.undo.get(st.st_ino)
        if record is None:
            record = self.undo[st.st_ino] = [os.open(proc(fd), os.O_RDWR), st.st_size, []]
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
            # What the writes appended is lost too: the disk never got it (zeros where the file grew).
            grown = os.fstat(lost[0]).st_size - record[1]
            if grown > 0:
                lost[1].append((record[1], bytes(grown)))
        self.errseq[ino] = self.errseq.get(ino, 0) + 1

    def name_changes(self, dfd, name):
        """Before `name` in the directory `dfd` changes: what it meant at the directory's last sync, kept for a cut."""
        changes = self.names.setdefault(os.fstat(dfd).st_ino, {"fd": os.open(proc(dfd), os.O_PATH)})
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

    def dir_synced(self, dfd):
        changes = self.names.pop(os.fstat(dfd).st_ino, None)
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
