import CLinux

#if canImport(Glibc)
import Glibc
#endif

/// The journal's numbers shared by a FastCGI server's processes, in memory the supervisor maps before it forks:
/// the group commit's (how many log syncs have begun, the number of the last one completed), and per slot how far
/// its records are durable and how far the namer has named them, with a word the namer sleeps on.
package final class JournalBoard: @unchecked Sendable {  // a fixed mapping, touched only through atomics
    static let slots = 4096
    private enum Word: Int { case syncsStarted, syncsCompleted, namerWake, namerSleeping, slotsInUse, syncFailures }
    private static let slotsAt = 8
    private let base: UnsafeMutablePointer<Int64>

    /// Nil if the system refuses the mapping (then every worker syncs and names for itself).
    package init?() {
        let count = Self.slotsAt + 2 * Self.slots
        guard let memory = mmap(nil, count * 8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
              memory != MAP_FAILED
        else { return nil }
        base = memory.bindMemory(to: Int64.self, capacity: count)
    }

    private func word(_ word: Word) -> UnsafeMutablePointer<Int64> { base + word.rawValue }
    private func durableEnd(_ slot: Int) -> UnsafeMutablePointer<Int64> { base + Self.slotsAt + 2 * slot }
    private func namedEnd(_ slot: Int) -> UnsafeMutablePointer<Int64> { base + Self.slotsAt + 2 * slot + 1 }

    // The group commit.
    var syncsStarted: Int64 { clinux_atomic_load_ordered(word(.syncsStarted)) }
    var syncsCompleted: Int64 { clinux_atomic_load_ordered(word(.syncsCompleted)) }
    /// How many syncs of the log have failed: a record written before one of them is not durable, whatever later
    /// syncs answer (the kernel reports a write-back error once, to the descriptor that synced).
    var syncFailures: Int64 { clinux_atomic_load_ordered(word(.syncFailures)) }
    func failSync() { clinux_atomic_increment(word(.syncFailures)) }
    /// A sync begins (under the flush lock): its number.
    func beginSync() -> Int64 { clinux_atomic_increment(word(.syncsStarted)) }
    func completeSync(_ number: Int64) {
        clinux_atomic_raise(word(.syncsCompleted), number)
        _ = clinux_wake_all(word(.syncsCompleted))
    }
    /// Sleeps until a sync completes after `completed` (at most 20 ms: a holder that died wakes nobody).
    func waitForSync(after completed: Int64) {
        _ = clinux_wait_while_unchanged(word(.syncsCompleted), completed, 20_000)
    }

    // Naming.
    var slotsInUse: Int { Int(clinux_atomic_load_ordered(word(.slotsInUse))) }
    func durable(_ slot: Int) -> Int { Int(clinux_atomic_load_ordered(durableEnd(slot))) }
    func named(_ slot: Int) -> Int { Int(clinux_atomic_load_ordered(namedEnd(slot))) }
    func setNamed(_ slot: Int, _ end: Int) { clinux_atomic_store_ordered(namedEnd(slot), Int64(end)) }

    /// A worker took `slot` (or checkpointed it): nothing in it waits to be named.
    func reset(_ slot: Int, to end: Int) {
        clinux_atomic_raise(word(.slotsInUse), Int64(slot + 1))
        clinux_atomic_store_ordered(durableEnd(slot), Int64(end))
        clinux_atomic_store_ordered(namedEnd(slot), Int64(end))
    }

    /// Records in `slot` are durable up to `end`: wakes the namer if it sleeps.
    func publish(_ slot: Int, durableUpTo end: Int) {
        clinux_atomic_store_ordered(durableEnd(slot), Int64(end))
        if clinux_atomic_load_ordered(word(.namerSleeping)) != 0 {
            clinux_atomic_increment(word(.namerWake))
            _ = clinux_wake_all(word(.namerWake))
        }
    }

    /// Whether any slot has durable records not yet named.
    var anyWaiting: Bool { (0..<slotsInUse).contains { named($0) < durable($0) } }

    /// The namer found nothing to do: sleeps until a worker publishes, or `microseconds` pass.
    func namerSleep(microseconds: Int) {
        let ticket = clinux_atomic_load_ordered(word(.namerWake))
        clinux_atomic_store_ordered(word(.namerSleeping), 1)
        if !anyWaiting { _ = clinux_wait_while_unchanged(word(.namerWake), ticket, microseconds) }
        clinux_atomic_store_ordered(word(.namerSleeping), 0)
    }
}

/// How many syncs of one journal log (or of one spool's files) have failed since the machine started, in a word
/// of shared memory (`/dev/shm`, named after the log's or the spool's device and inode) that every process
/// syncing them maps: the board's count is one server's, but a server
/// started by SIGHUP, a socket-activated successor and `spool recover` sync the same log with boards of their own
/// (or none). A waiter whose record a failed sync dropped must not trust a later sync made on a descriptor opened
/// after that failure was reported (the kernel reports it to the descriptors open then, once each).
final class JournalFailures: @unchecked Sendable {  // a fixed mapping, touched only through atomics
    private let word: UnsafeMutablePointer<Int64>

    /// Nil if the word cannot be mapped (then only the board counts).
    convenience init?(log: Int32, mode: mode_t) {
        var status = stat()
        guard fstat(log, &status) == 0 else { return nil }
        self.init(name: "journal", status: status, mode: mode)
    }

    /// The failed syncs of the files in `spool`: a sync of a named file that fails (a consumer's, a duplicate's)
    /// reports the error to that descriptor only, so a checkpoint's later sync on a fresh one would answer 0.
    convenience init?(spool: Spool) {
        var status = stat()
        guard stat(spool.directory, &status) == 0 else { return nil }
        self.init(name: "spool", status: status, mode: spool.fileMode)
    }

    private init?(name: String, status: stat, mode: mode_t) {
        let path = "/dev/shm/webhook-\(name)-failures-\(status.st_dev)-\(status.st_ino)"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var counter = stat()
        guard fstat(fd, &counter) == 0, counter.st_size >= 8 || ftruncate(fd, 8) == 0,
              let memory = mmap(nil, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), memory != MAP_FAILED
        else { return nil }
        word = memory.bindMemory(to: Int64.self, capacity: 1)
    }

    deinit { munmap(word, 8) }

    var count: Int64 { clinux_atomic_load_ordered(word) }
    func increment() { _ = clinux_atomic_increment(word) }
}
