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
