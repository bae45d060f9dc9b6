#if canImport(Glibc)
import Glibc
#endif

/// A worker's hold on a journal slot: taken when the worker starts, checkpointed when it idles and given back
/// with a checkpoint when it stops; taken again (at most every ten seconds) after a failure gave it up.
package struct JournalHold {
    let spool: Spool?
    let board: JournalBoard?
    private(set) var journal: Journal?
    private var nextAttempt = 0.0

    package init(spool: Spool?, board: JournalBoard?) {
        self.spool = spool
        self.board = board
        _ = current()
    }

    /// The journal to store with now, if there is one.
    package mutating func current() -> Journal? {
        if let journal, journal.failure == nil { return journal }
        journal = nil  // gives its slot back: the next worker to take it recovers it
        guard let spool, Clock.now() >= nextAttempt else { return nil }
        nextAttempt = Clock.now() + 10
        do {
            journal = try Journal.acquire(for: spool, board: board)
        } catch {
            Log.write(.error, "journal: cannot take a slot: \(error); payloads are stored with a sync of their own "
                + "(trying again in 10s)")
        }
        return journal
    }

    /// How long the worker may wait for work before a checkpoint is due: five seconds, when records wait for one.
    package var idleTimeout: Double? { journal?.pendingSince == nil ? nil : 5 }

    /// The worker waited `idleTimeout` with nothing to do: a checkpoint. False if none was due.
    package func checkpointWhenIdle() -> Bool {
        guard let journal, journal.pendingSince != nil else { return false }
        journal.checkpointOrGiveUp()
        return true
    }

    /// The worker stops: a last checkpoint, and the slot is free for the next worker.
    package mutating func release() {
        journal?.checkpointOrGiveUp()
        journal = nil
    }
}
