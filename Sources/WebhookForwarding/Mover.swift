import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// Moves committed payloads' files from `new/` to `cur/` on a thread of its own, so that the renames (a third of
/// the forwarder's own time: each one looks its name up in two large directories) overlap reading and sending
/// the next batch. Only files whose batch's commit has returned are ever handed over; one batch at a time.
final class Mover: @unchecked Sendable {
    let spool: Spool
    /// Set before the thread starts, read by it; the failures are written by it and read after `pthread_join`.
    private var ids: [String] = []
    private var failures: [(id: String, code: Int32)] = []
    private var thread: pthread_t?

    init(spool: Spool) { self.spool = spool }

    deinit { finish() }

    /// Starts moving `ids` once the previous batch's moves are done (or moves them here if no thread starts).
    func move(_ ids: [String]) {
        finish()
        self.ids = ids
        var started = pthread_t()
        let result = pthread_create(&started, nil, { context in
            let mover = Unmanaged<Mover>.fromOpaque(context!).takeRetainedValue()
            mover.moveAll()
            return nil
        }, Unmanaged.passRetained(self).toOpaque())
        if result == 0 {
            thread = started
        } else {
            Unmanaged.passUnretained(self).release()  // the thread that would have taken it never ran
            moveAll()
            report()
        }
    }

    /// Waits for the batch being moved, and logs the files that could not be moved.
    func finish() {
        guard let running = thread else { return }
        pthread_join(running, nil)
        thread = nil
        report()
    }

    private func moveAll() {
        for id in ids where !spool.markTaken(id) { failures.append((id, errno)) }
    }

    private func report() {
        for (id, code) in failures {
            Log.write(.warning, "forwarded \(id) but could not move it to cur/: \(String(cString: strerror(code)))")
        }
        failures = []
    }
}
