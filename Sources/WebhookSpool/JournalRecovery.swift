import CLinux
import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// Recovering what crashed workers left in the journal: at a supervisor's start (in the background) and for
/// `spool recover` (waiting).
extension Journal {
    /// Recovers every slot no process holds (those of workers that are gone): `spool recover` waits for it; a
    /// starting supervisor (`background`) only takes the slots' locks and leaves the naming to a detached process,
    /// `webhook-recover`, so that it serves within moments whatever the backlog (its workers take other slots).
    /// Returns, per slot recovered here, how many payloads it named. `board` (a starting supervisor's) counts a
    /// failed sync of the log the recovery makes, as the workers' group commit does.
    package static func recoverAbandoned(in spool: Spool, board: JournalBoard? = nil, background: Bool = true)
        throws(SystemError) -> [(slot: String, named: Int)]
    {
        var status = stat()
        guard stat(path(of: spool), &status) == 0 else { return [] }
        var abandoned: [Journal] = []
        for index in 0..<min(JournalBoard.slots, (Int(status.st_size) + JournalSlot.size - 1) / JournalSlot.size) {
            guard let journal = try lock(index, of: spool, board: board) else { continue }
            // A slot without a record (a worker that stopped cleanly) has nothing to recover: left free at once,
            // so that the workers starting now take it rather than new space.
            if let header = try journal.slot.header(),
               try journal.slot.record(at: JournalSlot.headerSize, generation: header.generation) != nil {
                abandoned.append(journal)
            }
        }
        if background && !abandoned.isEmpty {
            recoverDetached(abandoned)
            return []
        }
        var recovered: [(String, Int)] = []
        for journal in abandoned { recovered.append((journal.description, try journal.recover())) }
        return recovered
    }

    /// Forks twice and recovers `journals` in the grandchild (its own session, nobody to reap it), which shares
    /// their open file descriptions and so their locks: they are held from before the fork to the end of recovery.
    private static func recoverDetached(_ journals: [Journal]) {
        let child = fork()
        if child == 0 {
            // Named before the second fork: once the supervisor has reaped this child, `ps` shows the recoverer.
            _ = clinux_set_process_name("webhook-recover")
            if fork() != 0 { _exit(0) }
            setsid()
            var none = Signals.set([])
            sigprocmask(SIG_SETMASK, &none, nil)
            for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { Glibc.signal(signal, SIG_DFL) }
            let null = open("/dev/null", O_RDWR)
            dup2(null, 0)  // the listening socket, in a FastCGI server
            dup2(null, 1)
            let kept = Set(journals.map(\.slot.fd) + [null])
            for fd in 3..<Int32(1024) where !kept.contains(fd) { close(fd) }
            for journal in journals {
                do {
                    let named = try journal.recover()
                    if named > 0 { Log.write("journal \(journal.description): recovered \(named) payloads into new/") }
                } catch {
                    Log.write(.error, "journal \(journal.description): cannot recover: \(error); a worker taking the slot will")
                }
            }
            _exit(0)
        }
        if child < 0 {
            Log.write(.error, "journal: cannot fork to recover: \(String(cString: strerror(errno))); workers recover the slots")
        } else {
            _ = retryingOnInterrupt { waitpid(child, nil, 0) }
        }
    }
}

extension Spool {
    /// Names what the journal holds in slots no running FastCGI server holds (`spool recover`); returns how many
    /// payloads it named.
    public func recoverJournal() throws(SystemError) -> Int {
        try Journal.recoverAbandoned(in: self, background: false).reduce(0) { $0 + $1.named }
    }
}
