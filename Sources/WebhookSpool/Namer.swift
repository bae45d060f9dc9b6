import CLinux
import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// The FastCGI server's process that gives journaled payloads their names in `new/` (step 3 of ``Journal``), so
/// that no worker touches file-system metadata while a sender waits: it reads each slot's durable records past
/// what it has named, names them, and starts a hook runner when it named any. It sleeps on the journal board until
/// a worker publishes a record. Nothing depends on it for durability: a worker names whatever is left at its
/// checkpoint, and recovery names what a crash left. When idle it also prunes `cur/` (``Spool/pruneTakenIfDue()``),
/// whoever moves payloads there.
package struct Namer {
    /// How `ps` shows it.
    package static let processName = "webhook-namer"
    let spool: Spool
    let board: JournalBoard
    let hook: Hook?
    /// Where its errors are counted, for the status page.
    var counters: (any SpoolCounters)? = nil

    package init(spool: Spool, board: JournalBoard, hook: Hook?, counters: (any SpoolCounters)? = nil) {
        self.spool = spool
        self.board = board
        self.hook = hook
        self.counters = counters
    }

    /// Runs until SIGTERM or SIGINT (pending on `stop`, a signalfd).
    package func run(stop: Int32) -> Int32 {
        var log: Int32 = -1
        defer { if log >= 0 { close(log) } }
        var failing = false
        var nextPrune = 0.0
        while true {
            if log < 0 { log = open(Journal.path(of: spool), O_RDWR | O_CLOEXEC | O_NOFOLLOW) }
            let (named, failure) = log >= 0 ? nameWaiting(in: log) : (0, nil)
            if named > 0 { hook?.startRunner(for: spool, logFile: nil) }
            if let failure, !failing {
                Log.write(.error, "journal: cannot name payloads: \(failure); they are durable in the journal, and named once "
                    + "this is fixed (retrying every second)")
            } else if failure == nil && failing {
                Log.write(.info, "journal: naming payloads again")
            }
            failing = failure != nil
            counters?.namerPass(failed: failing)
            var pending = pollfd(fd: stop, events: Int16(POLLIN), revents: 0)
            if poll(&pending, 1, failing ? 1000 : 0) > 0 { return 0 }
            guard named == 0 && !failing else { continue }
            if Clock.now() >= nextPrune { nextPrune = spool.pruneTakenIfDue() ? 0 : Clock.now() + 60 }  // cur/'s retention
            board.namerSleep(microseconds: 200_000)
        }
    }

    /// At most this many records named per hold of a slot's naming lock: the namer runs on idle CPU time only,
    /// and a checkpoint or recovery waiting for the lock must not wait for its whole backlog.
    static let recordsPerHold = 64

    /// One pass over the slots: how many payloads it named, and what stopped it in a slot, if anything did (the
    /// other slots are named all the same).
    private func nameWaiting(in log: Int32) -> (Int, SystemError?) {
        var total = 0
        var failure: SystemError?
        for index in 0..<board.slotsInUse where board.named(index) < board.durable(index) {
            let slot = JournalSlot(fd: log, index: index)
            guard slot.lockNaming(wait: false) else { continue }  // its worker is checkpointing: it names them
            defer { slot.unlockNaming() }
            // Again, now that no checkpoint can reset them.
            let (from, end) = (board.named(index), board.durable(index))
            do {
                guard from < end, let header = try slot.header() else { continue }
                let (reached, named) = try slot.name(in: spool, from: from, to: end, generation: header.generation,
                                                     limit: Self.recordsPerHold)
                board.setNamed(index, reached)
                total += named
                // Short of a durable record that reads as no record: a stale position (the slot was checkpointed
                // meanwhile) or a disk error; the worker's checkpoint names what is left either way.
                if reached < end, try slot.record(at: reached, generation: header.generation) == nil {
                    let operation = "read the record at \(reached) of journal slot \(index)"
                    failure = failure ?? SystemError(operation: operation, code: EIO)
                }
            } catch {
                failure = failure ?? error
            }
        }
        return (total, failure)
    }
}
