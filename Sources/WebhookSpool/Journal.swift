import CLinux
import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// The FastCGI workers' write-ahead log in front of the spool: a durable 200 costs a share of one `fdatasync` of
/// space that is already allocated, and no file-system metadata at all on the request's path. (docs/spool.md has
/// the measurements behind it.)
///
///     DIR/.journal/log   one file; worker slot N owns bytes [N × 64 MiB, (N + 1) × 64 MiB) while it lives (an
///                        open-file-description lock on the slot's first byte: the kernel drops it when the worker
///                        dies) and reuses them after each checkpoint
///
/// A slot starts with a header (magic, generation, the boot id of the checkpoint that wrote it, CRC-32C); records
/// follow from 4096 bytes in: length, CRC-32C, generation, then the payload's id and its spool file's exact bytes.
///
/// Storing a payload (``Spool/store(_:envelope:journal:)``):
///  1. write the record into the slot, in space that is already written (zero-filled) so that no metadata changes;
///  2. make sure an `fdatasync` of the log that *began after that write* has completed (group commit: every worker
///     writes into the same file, so one `fdatasync` covers every record written before it began; whoever holds
///     the flush lock syncs for all who wrote meanwhile, as PostgreSQL's `XLogFlush` does), and that no sync of
///     the log failed since the write (the kernel reports a write-back error once, to one descriptor). The
///     payload is durable;
///  3. answer 200. The ``Namer`` process then names `new/ID` (an unnamed file, then `linkat`, as the spool always
///     does, but without a sync) within milliseconds, unless `cur/` or `new/` has it already.
/// Checkpoint (the slot is full, the worker has been idle for five seconds or has recorded for a minute, or it
/// stops): name whatever the namer has not, make every named file durable (`syncfs`; on FUSE an `fsync` per file
/// and directory), then a new random generation in the header, synced, retires every record of the slot at once.
/// If that sync fails, the header says "checkpoint failed" instead of a boot id.
/// Recovery (whoever locks a slot next: a starting supervisor, or a worker taking it): records are read up to the
/// first whose length, checksum or generation is wrong — a torn or corrupted record ends the slot's log and is
/// never delivered; a read error stops recovery, retiring nothing — and each is named as in step 3. If the
/// machine may have restarted since the header was written (another boot id, or one unknown), a named file may
/// have been lost or left short, so one that differs from its record, in `new/` or `cur/`, is written again; after
/// a failed checkpoint every file is written again and synced. Then a checkpoint. A payload a consumer deleted
/// from `new/` since the last checkpoint comes back after a crash: consumers are at-least-once anyway (the hook and
/// the forwarder move payloads to `cur/`, which recovery respects). docs/spool.md has the protocol in one place.
package final class Journal {
    static let directoryName = ".journal"
    /// How much zero-filled space is added at a time; the first `fdatasync` after it also commits the new blocks.
    static let preparationStep = 1 << 20
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot, so a checkpoint can tell whether the page cache of
    /// the files named after it may have been lost. Empty when unreadable (systemd's `ProcSubset=pid` hides
    /// /proc/sys): no header can then tell a restart, so every recovery compares.
    static let bootID: [UInt8] = {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        return Array((readAll(fd, limit: 64) ?? []).prefix(36))
    }()

    /// At most this long between checkpoints while records keep coming (otherwise five idle seconds or a full
    /// slot start one).
    static let checkpointInterval = 60.0

    let spool: Spool
    let slot: JournalSlot
    /// Whether the log is on FUSE, where `syncfs` makes nothing durable (see ``makeNamedFilesDurable()``).
    private let onFUSE: Bool
    private let board: JournalBoard?
    /// Failed syncs of the log by any process (see ``JournalFailures``).
    private let failures: JournalFailures?
    /// Failed syncs of the spool's files by any process, and their number when this generation began: a
    /// checkpoint whose own sync succeeds but after which that number changed may be retiring dropped pages.
    private let fileFailures: JournalFailures?
    private var fileFailuresAtStart: Int64 = 0
    private var generation: UInt64 = 0
    /// Where the next record goes, from the slot's start.
    private var end = JournalSlot.headerSize
    /// Up to where this process knows the records are named (the namer may be further).
    private var named = JournalSlot.headerSize
    /// How much of the slot is written space.
    private var prepared = 0
    /// When the first record since the last checkpoint was written (monotonic seconds), if any was.
    private(set) var pendingSince: Double?
    /// What made the journal unusable: a write or sync that failed leaves the slot's state unknown, so it is
    /// given up (the worker takes a slot again later) and payloads are stored the long way meanwhile.
    package private(set) var failure: SystemError?

    private init(spool: Spool, slot: JournalSlot, board: JournalBoard?) {
        self.spool = spool
        self.slot = slot
        self.board = board
        onFUSE = clinux_is_fuse(slot.fd) != 0
        failures = JournalFailures(log: slot.fd, mode: spool.fileMode)
        fileFailures = JournalFailures(spool: spool)
        if failures == nil { Log.write(.warning, "journal \(description): no shared count of failed syncs; only this server's") }
    }

    deinit { close(slot.fd) }

    package static func path(of spool: Spool) -> String { spool.path(directoryName, "log") }
    var description: String { "\(Self.path(of: spool)) slot \(slot.index)" }

    /// Takes the first slot no other process holds, recovers it and checkpoints.
    static func acquire(for spool: Spool, board: JournalBoard?) throws(SystemError) -> Journal {
        let directory = spool.path(directoryName)
        if mkdir(directory, spool.directoryMode) == 0 {
            try Spool.syncDirectory(spool.directory)
        } else if errno != EEXIST {
            throw SystemError(operation: "create \(directory)", code: errno)
        }
        let created = access(path(of: spool), F_OK) != 0
        for index in 0..<JournalBoard.slots {
            guard let journal = try lock(index, of: spool, board: board) else { continue }
            try journal.recover()
            if created { try Spool.syncDirectory(directory) }
            return journal
        }
        throw SystemError(operation: "find a slot no process holds in \(path(of: spool))", code: EBUSY)
    }

    static func lock(_ index: Int, of spool: Spool, board: JournalBoard?) throws(SystemError) -> Journal? {
        let path = path(of: spool)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, spool.fileMode)
        guard fd >= 0 else { throw SystemError(operation: "open \(path)", code: errno) }
        guard clinux_lock_range(fd, Int64(index * JournalSlot.size), 1, true, false) == 0 else {
            let failure = errno
            close(fd)
            if failure == EAGAIN || failure == EACCES { return nil }
            throw SystemError(operation: "lock slot \(index) of \(path)", code: failure)
        }
        return Journal(spool: spool, slot: JournalSlot(fd: fd, index: index), board: board)
    }

    /// Recovery, then a checkpoint; returns how many payloads it named.
    @discardableResult
    func recover() throws(SystemError) -> Int {
        let hole = clinux_next_hole(slot.fd, Int64(slot.base))
        prepared = hole < 0 ? 0 : max(0, min(JournalSlot.size, Int(hole) - slot.base))
        guard slot.lockNaming(wait: true) else {
            throw SystemError(operation: "lock \(description) to recover it", code: errno)
        }
        defer { slot.unlockNaming() }
        var recovered = 0
        // Before anything is named again: a file sync that fails from now on is this checkpoint's concern.
        let fileFailuresBefore = fileFailures?.count ?? 0
        fileFailuresAtStart = fileFailuresBefore
        // A header that is torn or missing was never completed; it is written only after the files are durable,
        // and records only after it: there is nothing to recover.
        if let header = try slot.header() {
            generation = header.generation
            // The slot's files were synced, if ever, by descriptors that are gone: a write-back error this boot
            // that another process was told of would not be reported to the checkpoint's fresh one.
            let trust: JournalSlot.Trust =
                header.boot == JournalSlot.checkpointFailed || (header.boot == Self.bootID && fileFailuresBefore > 0)
                ? .nothing
                : header.boot.isEmpty || Self.bootID.isEmpty || header.boot != Self.bootID ? .contents : .names
            let scan = try slot.name(in: spool, from: JournalSlot.headerSize, generation: generation, trust: trust)
            (end, named, recovered) = (scan.reached, scan.reached, scan.named)
        }
        try checkpointHoldingNamingLock()
        return recovered
    }

    /// Steps 1 and 2: true once the payload's record is durable; false when the payload is to be stored the long
    /// way: it could never fit in a slot, or the journal has failed (logged once, here).
    func record(id: String, content: [UInt8]) -> Bool {
        guard failure == nil else { return false }
        do throws(SystemError) {
            let size = JournalSlot.recordHeaderSize + 2 + id.utf8.count + content.count
            guard JournalSlot.headerSize + size <= JournalSlot.size else { return false }
            if end + size > JournalSlot.size { try checkpoint() }
            if end + size > prepared { try prepare(upTo: end + size) }
            let record = JournalSlot.record(id: id, content: content, generation: generation)
            let failuresBefore = syncFailures
            if let failure = slot.write(record, at: end) {
                throw SystemError(operation: "write \(description)", code: failure)
            }
            do throws(SystemError) {
                try sync()
                // A sync of the log failed after this write: its page may have been dropped (the kernel marks it
                // clean and tells only the descriptor that synced), whoever synced since.
                if syncFailures != failuresBefore {
                    throw SystemError(operation: "fdatasync \(description) (another worker's failed)", code: EIO)
                }
            } catch {
                // Never answered 200: withdrawn, so that no recovery delivers it.
                _ = slot.write([UInt8](repeating: 0, count: JournalSlot.recordHeaderSize), at: end)
                throw error
            }
            end += size
            if pendingSince == nil { pendingSince = Clock.now() }
            board?.publish(slot.index, durableUpTo: end)
            helpNaming()
        } catch {
            give(up: error)
            return false
        }
        // However busy the worker, a crash never brings back more than this long of consumed payloads, nor leaves
        // more than this long to recover. The record is durable whatever the checkpoint does.
        if let since = pendingSince, Clock.now() - since >= Self.checkpointInterval { checkpointOrGiveUp() }
        return true
    }

    /// A checkpoint whose failure gives the journal up; true if it succeeded.
    @discardableResult
    func checkpointOrGiveUp() -> Bool {
        guard failure == nil else { return false }
        do {
            try checkpoint()
            return true
        } catch {
            give(up: error)
            return false
        }
    }

    private func give(up error: SystemError) {
        guard failure == nil else { return }
        failure = error
        Log.write(.error, "journal \(description): \(error); payloads are stored with a sync of their own until the worker "
            + "takes a slot again")
    }

    /// Returns once an `fdatasync` of the log that began after this call has completed: this worker's own, as the
    /// one holding the flush lock, or that of another worker that held it meanwhile (it syncs for everyone). A
    /// worker that finds the lock taken sleeps until the holder's sync completes, then looks again; the lock is a
    /// `flock`, so a holder that dies loses it at once.
    private func sync() throws(SystemError) {
        guard let board else {
            try syncCounted("fdatasync \(description)")
            return
        }
        let seen = board.syncsStarted
        while true {
            let completed = board.syncsCompleted
            if completed > seen { return }  // a sync that began after our write has completed
            guard flock(slot.fd, LOCK_EX | LOCK_NB) == 0 else {
                guard errno == EWOULDBLOCK || errno == EINTR else {
                    throw SystemError(operation: "lock \(description) to sync it", code: errno)
                }
                board.waitForSync(after: completed)
                continue
            }
            if board.syncsCompleted > seen {
                flock(slot.fd, LOCK_UN)
                return
            }
            let number = board.beginSync()
            let synced = fdatasync(slot.fd)
            let failure = errno
            if synced != 0 { countSyncFailure() }
            flock(slot.fd, LOCK_UN)  // before the waiters wake, so that none finds it still held
            board.completeSync(number)
            if synced != 0 { throw SystemError(operation: "fdatasync \(description)", code: failure) }
            return
        }
    }

    /// When the namer lags more than a quarter of the slot behind (it only runs on idle CPU time), names a few of
    /// this slot's records itself, so that a sustained load slows down gradually instead of the slot filling up
    /// and its checkpoint naming thousands at once. The record is durable already: a failure here is the namer's
    /// to report.
    private func helpNaming() {
        guard let board, end - board.named(slot.index) > JournalSlot.size / 4, slot.lockNaming(wait: false) else {
            return
        }
        defer { slot.unlockNaming() }
        if let (reached, _) = try? slot.name(in: spool, from: board.named(slot.index), to: end, generation: generation,
                                             limit: 4) {
            board.setNamed(slot.index, reached)
        }
    }

    /// Names what the namer has not, makes every named file durable, then retires every record in the slot.
    func checkpoint() throws(SystemError) {
        guard slot.lockNaming(wait: true) else {
            throw SystemError(operation: "lock \(description) to name", code: errno)
        }
        defer { slot.unlockNaming() }
        let from = max(named, board?.named(slot.index) ?? named)
        if from < end { _ = try slot.name(in: spool, from: from, to: end, generation: generation) }
        try checkpointHoldingNamingLock()
    }

    private func checkpointHoldingNamingLock() throws(SystemError) {
        do throws(SystemError) {
            try makeNamedFilesDurable()
            if let fileFailures, fileFailures.count != fileFailuresAtStart {
                throw SystemError(operation: "sync the files of \(description) (another process's failed)", code: EIO)
            }
        } catch {
            fileFailures?.increment()
            markCheckpointFailed()
            throw error
        }
        var next = generation
        while next == generation || next == 0 { next = UInt64.random(in: 1...UInt64.max) }
        let header = JournalSlot.header(generation: next, boot: Self.bootID)
        if let failure = slot.write(header, at: 0) {
            throw SystemError(operation: "write \(description)", code: failure)
        }
        try syncCounted("fdatasync \(description)")
        generation = next
        prepared = max(prepared, header.count)
        (end, named, pendingSince) = (JournalSlot.headerSize, JournalSlot.headerSize, nil)
        fileFailuresAtStart = fileFailures?.count ?? 0
        board?.reset(slot.index, to: end)
    }

    /// Every file named from the slot's records, and its name, on disk: one `syncfs` where the file system honours
    /// it; on FUSE, whose servers never see a `syncfs` (Linux forwards it to virtiofs only), each file and both
    /// directories are synced instead.
    private func makeNamedFilesDurable() throws(SystemError) {
        guard !onFUSE else {
            for id in try slot.ids(from: JournalSlot.headerSize, to: end, generation: generation) {
                _ = try spool.syncFile(id, in: "new")
                _ = try spool.syncFile(id, in: "cur")
            }
            for subdirectory in ["new", "cur"] { try Spool.syncDirectory(spool.path(subdirectory)) }
            return
        }
        try check("syncfs \(spool.directory)", clinux_syncfs(slot.fd))
    }

    /// A checkpoint's sync failed: the kernel has reported the write-back error to this descriptor only, and a
    /// later sync (another process's, on a fresh descriptor) would answer 0 for pages it dropped. So the header
    /// says so, and whoever recovers the slot writes and syncs every file again (``JournalSlot/Trust/nothing``).
    private func markCheckpointFailed() {
        let mark = JournalSlot.header(generation: generation, boot: JournalSlot.checkpointFailed)
        do throws(SystemError) {
            if let failure = slot.write(mark, at: 0) { throw SystemError(operation: "write", code: failure) }
            try syncCounted("fdatasync")
        } catch {
            Log.write(.error, "journal \(description): cannot mark the failed checkpoint: \(error)")
        }
    }

    /// Failed syncs of the log, this server's and any process's: a change means a record may have been dropped.
    private var syncFailures: Int64 { (board?.syncFailures ?? 0) + (failures?.count ?? 0) }
    private func countSyncFailure() {
        board?.failSync()
        failures?.increment()
    }

    /// An `fdatasync` of the log outside the group commit (a checkpoint's header). It writes back every slot's
    /// pages, not only this one's, so its failure is counted like the group commit's: a waiter whose record it
    /// dropped must not trust a later sync on a descriptor opened after the error was reported here.
    private func syncCounted(_ operation: String) throws(SystemError) {
        guard fdatasync(slot.fd) == 0 else {
            let failure = errno
            countSyncFailure()
            throw SystemError(operation: operation, code: failure)
        }
    }

    /// Zero-fills the slot from its written part up to `needed` (rounded up to a step): written space, so that a
    /// record written there later changes no metadata.
    private func prepare(upTo needed: Int) throws(SystemError) {
        let step = Self.preparationStep
        let target = min(JournalSlot.size, (needed + step - 1) / step * step)
        let zeros = [UInt8](repeating: 0, count: 64 << 10)
        while prepared < target {
            let count = min(zeros.count, target - prepared)
            if let failure = slot.write(Array(zeros.prefix(count)), at: prepared) {
                throw SystemError(operation: "write \(description)", code: failure)
            }
            prepared += count
        }
    }
}
