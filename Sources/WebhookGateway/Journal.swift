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
///     the flush lock syncs for all who wrote meanwhile, as PostgreSQL's `XLogFlush` does). The payload is durable;
///  3. answer 200. The ``Namer`` process then names `new/ID` (an unnamed file, then `linkat`, as the spool always
///     does, but without a sync) within milliseconds, unless `cur/` or `new/` has it already.
/// Checkpoint (the slot is full, the worker has been idle for five seconds, or it stops): name whatever the namer
/// has not, `syncfs` (every file named so far is durable), then a new random generation in the header, synced,
/// retires every record of the slot at once.
/// Recovery (whoever locks a slot next: a starting supervisor, or a worker taking it): records are read up to the
/// first whose length, checksum or generation is wrong — a torn or corrupted record ends the slot's log and is
/// never delivered — and each is named as in step 3. If the machine has restarted since the header was written
/// (another boot id), a named file may have been lost or left empty, so one that differs is written again. Then a
/// checkpoint. A payload a consumer deleted from `new/` after a crash's last checkpoint can come back: consumers
/// are at-least-once anyway (the hook and the forwarder move payloads to `cur/`, which recovery respects).
final class Journal {
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

    let spool: Spool
    private let slot: JournalSlot
    private let board: JournalBoard?
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
    private(set) var failure: SystemError?

    private init(spool: Spool, slot: JournalSlot, board: JournalBoard?) {
        self.spool = spool
        self.slot = slot
        self.board = board
    }

    deinit { close(slot.fd) }

    static func path(of spool: Spool) -> String { spool.path(directoryName, "log") }
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

    /// Recovers every slot no process holds (those of workers that are gone): a supervisor does this as it
    /// starts, and `spool recover`. Returns, per slot recovered, how many payloads it named.
    static func recoverAbandoned(in spool: Spool) throws(SystemError) -> [(slot: String, named: Int)] {
        var status = stat()
        guard stat(path(of: spool), &status) == 0 else { return [] }
        var recovered: [(String, Int)] = []
        for index in 0..<min(JournalBoard.slots, (Int(status.st_size) + JournalSlot.size - 1) / JournalSlot.size) {
            guard let journal = try lock(index, of: spool, board: nil) else { continue }
            recovered.append((journal.description, try journal.recover()))
        }
        return recovered
    }

    private static func lock(_ index: Int, of spool: Spool, board: JournalBoard?) throws(SystemError) -> Journal? {
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
        // A header that is torn or missing was never completed; it is written only after a syncfs, and records
        // only after it: there is nothing to recover.
        if let header = slot.header() {
            generation = header.generation
            let scan = try slot.name(in: spool, from: JournalSlot.headerSize, generation: generation,
                                     compare: Self.bootID.isEmpty || header.boot != Self.bootID)
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
            if let failure = slot.write(record, at: end) {
                throw SystemError(operation: "write \(description)", code: failure)
            }
            do throws(SystemError) {
                try sync()
            } catch {
                // Never answered 200: withdrawn, so that no recovery delivers it.
                _ = slot.write([UInt8](repeating: 0, count: JournalSlot.recordHeaderSize), at: end)
                throw error
            }
            end += size
            if pendingSince == nil { pendingSince = Clock.now() }
            board?.publish(slot.index, durableUpTo: end)
            helpNaming()
            return true
        } catch {
            give(up: error)
            return false
        }
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
        failure = error
        Log.write("journal \(description): \(error); payloads are stored with a sync of their own until the worker "
            + "takes a slot again")
    }

    /// Returns once an `fdatasync` of the log that began after this call has completed: this worker's own, as the
    /// one holding the flush lock, or that of another worker that held it meanwhile (it syncs for everyone). A
    /// worker that finds the lock taken sleeps until the holder's sync completes, then looks again; the lock is a
    /// `flock`, so a holder that dies loses it at once.
    private func sync() throws(SystemError) {
        guard let board else {
            try check("fdatasync \(description)", fdatasync(slot.fd))
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
            defer { flock(slot.fd, LOCK_UN) }
            if board.syncsCompleted > seen { return }
            let number = board.beginSync()
            try check("fdatasync \(description)", fdatasync(slot.fd))
            board.completeSync(number)
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
        try check("syncfs \(spool.directory)", clinux_syncfs(slot.fd))
        var next = generation
        while next == generation || next == 0 { next = UInt64.random(in: 1...UInt64.max) }
        let header = JournalSlot.header(generation: next, boot: Self.bootID)
        if let failure = slot.write(header, at: 0) {
            throw SystemError(operation: "write \(description)", code: failure)
        }
        try check("fdatasync \(description)", fdatasync(slot.fd))
        generation = next
        prepared = max(prepared, header.count)
        (end, named, pendingSince) = (JournalSlot.headerSize, JournalSlot.headerSize, nil)
        board?.reset(slot.index, to: end)
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

extension Spool {
    /// Names what the journal holds in slots no running FastCGI server holds (`spool recover`); returns how many
    /// payloads it named.
    public func recoverJournal() throws(SystemError) -> Int {
        try Journal.recoverAbandoned(in: self).reduce(0) { $0 + $1.named }
    }
}

/// A worker's hold on a journal slot: taken when the worker starts, checkpointed when it idles and given back
/// with a checkpoint when it stops; taken again (at most every ten seconds) after a failure gave it up.
struct JournalHold {
    let spool: Spool?
    let board: JournalBoard?
    private(set) var journal: Journal?
    private var nextAttempt = 0.0

    init(spool: Spool?, board: JournalBoard?) {
        self.spool = spool
        self.board = board
        _ = current()
    }

    /// The journal to store with now, if there is one.
    mutating func current() -> Journal? {
        if let journal, journal.failure == nil { return journal }
        journal = nil  // gives its slot back: the next worker to take it recovers it
        guard let spool, Clock.now() >= nextAttempt else { return nil }
        nextAttempt = Clock.now() + 10
        do {
            journal = try Journal.acquire(for: spool, board: board)
        } catch {
            Log.write("journal: cannot take a slot: \(error); payloads are stored with a sync of their own "
                + "(trying again in 10s)")
        }
        return journal
    }

    /// How long the worker may wait for work before a checkpoint is due: five seconds, when records wait for one.
    var idleTimeout: Double? { journal?.pendingSince == nil ? nil : 5 }

    /// The worker waited `idleTimeout` with nothing to do: a checkpoint. False if none was due.
    func checkpointWhenIdle() -> Bool {
        guard let journal, journal.pendingSince != nil else { return false }
        journal.checkpointOrGiveUp()
        return true
    }

    /// The worker stops: a last checkpoint, and the slot is free for the next worker.
    mutating func release() {
        journal?.checkpointOrGiveUp()
        journal = nil
    }
}
