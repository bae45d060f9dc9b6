import CLinux
package import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// The optional command a verified payload is handed to (`WEBHOOK_EXEC`), run by `/bin/sh -c` with the body on
/// stdin and what a consumer needs in `WEBHOOK_*` variables — never the secret, the signature or other headers.
///
/// With a spool the command runs after the 200 has been sent, in runner processes of its own, at most
/// `concurrency` at a time across all workers; success moves the file from `new/` to `cur/`, failure leaves it in
/// `new/` for a later attempt (HookAttempts.swift: backoff, `maxAttempts`, the failed state). Without a spool it
/// runs before the answer (again at most `concurrency` at a time), and its failure answers 502. docs/hooks.md has
/// the guarantees.
public struct Hook: Sendable {
    public let command: String
    /// The whole run, output and exit; then SIGTERM, and SIGKILL `graceSeconds` later.
    public let timeoutSeconds: Double
    public var graceSeconds: Double = 2
    public let concurrency: Int
    /// Runs of one payload (on the spool) before it is failed and left for `spool retry`.
    public var maxAttempts: Int
    /// The wait after the first failed attempt; it doubles with each further one (with jitter), up to an hour.
    public var backoffSeconds: Double
    /// Where a FastCGI server counts the runs for its status page.
    package var counters: (any SpoolCounters)?
    /// Without a spool, the directory of the slots that bound how many commands run at once (a FastCGI server
    /// makes a private one); nil leaves them unbounded — a CGI without a spool, bounded by the web server's CGI limit.
    public var privateSlotsDirectory: String?
    package var privateSlots: HookSlots? { privateSlotsDirectory.map { HookSlots(directory: $0, count: concurrency) } }

    /// 20 attempts, 30 s doubling to an hour: ~13 hours, an application down overnight still gets its payloads,
    /// and one that can never take them is failed within a working day, where an operator sees it.
    public static let defaultMaxAttempts = 20
    public static let defaultBackoffSeconds = 30.0
    /// EX_DATAERR (sysexits.h, 65): "the input data was incorrect". The command exits with it when this payload can
    /// never succeed, so it is failed at once instead of retried; mail transfer agents read it the same way from
    /// the programs they pipe mail to. Any other failure (and EX_TEMPFAIL, 75) is retried.
    public static let giveUpStatus: Int32 = 65

    public init(command: String, timeoutSeconds: Double = 30, concurrency: Int = 2,
                maxAttempts: Int = Hook.defaultMaxAttempts, backoffSeconds: Double = Hook.defaultBackoffSeconds) {
        self.command = command
        self.timeoutSeconds = timeoutSeconds
        self.concurrency = max(1, concurrency)
        self.maxAttempts = max(1, maxAttempts)
        self.backoffSeconds = max(0, backoffSeconds)
    }

    /// How a run ended, in words for the log.
    public struct Result: Sendable {
        public let succeeded: Bool
        public let summary: String
        /// It ran out of time and was killed.
        public var timedOut = false
        /// The command's exit status, if it exited (rather than being killed, or never started).
        public var exitStatus: Int32?

        /// It exited with ``Hook/giveUpStatus``: no later attempt can succeed.
        public var givesUp: Bool { exitStatus == Hook.giveUpStatus }
    }

    /// Runs the command with `input` (a readable descriptor, positioned at the body) as stdin, as attempt number
    /// `attempt` (`WEBHOOK_ATTEMPT`). The time-out covers the whole run, output and exit: then its process group
    /// and everything it started get SIGTERM, `graceSeconds` later SIGKILL. A guard process (CLinux's
    /// hook_guard.h) runs it, so that nothing of the run outlives it, nor this process should it be killed. A byte
    /// written to `stop` (a pipe's read end) kills the run at once: its caller may no longer run it.
    public func run(input: Int32, envelope: Envelope, file: String?, attempt: Int = 1, stop: Int32 = -1) -> Result {
        let started = Clock.now()
        var output: [Int32] = [-1, -1], report: [Int32] = [-1, -1]
        guard pipe(&output) == 0 else { return Result(succeeded: false, summary: "pipe: \(String(cString: strerror(errno)))") }
        defer { close(output[0]) }
        guard pipe(&report) == 0 else {
            close(output[1])
            return Result(succeeded: false, summary: "pipe: \(String(cString: strerror(errno)))")
        }
        defer { close(report[0]) }
        // Close-on-exec: the command gets the write end as its stdout and stderr only, and nothing else of ours.
        for fd in output + report { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let environment = Self.environment(envelope: envelope, file: file, attempt: attempt)
        let guardian = withCStrings(["/bin/sh", "-c", command]) { argv in
            withCStrings(environment) { envp in
                clinux_hook_spawn("/bin/sh", argv, envp, input, output[1], report[1], Int64(timeoutSeconds * 1000),
                                  Int64(graceSeconds * 1000), stop)
            }
        }
        close(output[1])
        close(report[1])
        guard guardian > 0 else { return Result(succeeded: false, summary: "cannot start: \(String(cString: strerror(errno)))") }

        let (text, guardStatus) = collect(output[0], until: guardian, deadline: started + timeoutSeconds + graceSeconds + 5)
        var outcome = clinux_hook_report()
        let got = withUnsafeMutableBytes(of: &outcome) { read(report[0], $0.baseAddress, $0.count) }
        let took = Log.milliseconds(Clock.now() - started)
        let lines = text.split(whereSeparator: \.isNewline).joined(separator: " | ")
        let said = lines.isEmpty ? "" : "; output: \(Log.printable(lines, limit: 500))"
        guard got == MemoryLayout<clinux_hook_report>.size else {
            return Result(succeeded: false, summary: "its guard \(Signals.describe(waitStatus: guardStatus)) without a report\(said)")
        }
        if outcome.stopped != 0 {
            return Result(succeeded: false, summary: "stopped by its caller after \(took)ms and killed\(said)")
        }
        if outcome.timed_out != 0 {
            return Result(succeeded: false, summary: "timed out after \(timeoutSeconds)s and was killed\(said)", timedOut: true)
        }
        let exited = outcome.status & 0x7f == 0 ? (outcome.status >> 8) & 0xff : nil
        return Result(succeeded: exited == 0, summary: "\(Signals.describe(waitStatus: outcome.status)) in \(took)ms\(said)",
                      exitStatus: exited)
    }

    /// Reads the command's output (keeping the first 2 KiB) until its guard has exited, and reaps the guard. Past
    /// `deadline` (the guard's own deadline and grace, and a margin) the guard is killed, and the command with it.
    private func collect(_ fd: Int32, until guardian: pid_t, deadline: Double) -> (String, status: Int32) {
        let exited = clinux_pidfd_open(guardian)
        defer { if exited >= 0 { close(exited) } }
        var kept = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        var open = true
        var status: Int32 = 0
        func readOnce() -> Bool {
            let count = chunk.withUnsafeMutableBytes { buffer in retryingOnInterrupt { read(fd, buffer.baseAddress, buffer.count) } }
            if count > 0 { kept += chunk[..<min(count, max(0, 2048 - kept.count))] }
            return count > 0
        }
        while case let reaped = waitpid(guardian, &status, WNOHANG), reaped == 0 || (reaped < 0 && errno == EINTR) {
            if Clock.now() > deadline {
                kill(guardian, SIGKILL)
                _ = retryingOnInterrupt { waitpid(guardian, &status, 0) }
                break
            }
            // Without a pidfd (Linux < 5.3), look again every 20 ms.
            var watched = [pollfd(fd: open ? fd : -1, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: exited, events: Int16(POLLIN), revents: 0)]
            _ = retryingOnInterrupt { poll(&watched, 2, exited >= 0 ? 1000 : 20) }
            if open && watched[0].revents != 0 { open = readOnce() }
        }
        // Everything of the run is gone now: what is left in the pipe can be read without waiting.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        while open && readOnce() {}
        return (String(decoding: kept, as: UTF8.self), status)
    }

    /// `PATH` and the payload's facts; nothing else of the handler's environment (which, as a CGI, holds the
    /// request's headers, and may hold the secret).
    static func environment(envelope: Envelope, file: String?, attempt: Int = 1) -> [String] {
        var variables = [
            "PATH=\(Environment.value("PATH") ?? "/usr/local/bin:/usr/bin:/bin")",
            "WEBHOOK_ID=\(envelope.id)",
            "WEBHOOK_RECEIVED=\(envelope.received)",
            "WEBHOOK_LENGTH=\(envelope.length)",
            "WEBHOOK_REMOTE_ADDR=\(envelope.remoteAddress ?? "")",
            "WEBHOOK_CONTENT_TYPE=\(envelope.contentType ?? "")",
            "WEBHOOK_SENDER=\(envelope.sender ?? "")",
            "WEBHOOK_SCHEME=\(envelope.scheme ?? "")",
            "WEBHOOK_ATTEMPT=\(attempt)",
            "WEBHOOK_REQUEST_ID=\(envelope.requestID ?? "")",
        ]
        if let file { variables.append("WEBHOOK_FILE=\(file)") }
        return variables
    }
}

extension Hook {
    /// Without a spool: hand the body to the command now, before answering, in one of `slots` if given.
    package func handOff(_ body: [UInt8], envelope: Envelope, slots: HookSlots?) -> Outcome {
        let slot = slots?.acquire()
        defer { if let slot, slot >= 0 { close(slot) } }
        let result = run(body: body, envelope: envelope)
        counters?.countHook(result)
        Log.write(.info, "hook \(envelope.id): \(result.summary)")
        return result.succeeded ? .verified : .handOffFailed("the hook \(result.summary)")
    }

    /// Runs the command with `body` on stdin (buffered in an unnamed temporary file, so that the command may read
    /// it at its own pace), as attempt `attempt`.
    public func run(body: [UInt8], envelope: Envelope, attempt: Int = 1, stop: Int32 = -1) -> Result {
        var template = Array("\(Environment.value("TMPDIR") ?? "/tmp")/webhook-body.XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { return Result(succeeded: false, summary: "cannot buffer the body: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        guard writeAll(fd, body) == nil, lseek(fd, 0, SEEK_SET) == 0 else {
            return Result(succeeded: false, summary: "cannot buffer the body: \(String(cString: strerror(errno)))")
        }
        return run(input: fd, envelope: envelope, file: nil, attempt: attempt, stop: stop)
    }

    /// With a spool, after a new payload was stored: if fewer than `concurrency` runners are at work, start one.
    /// `new/` is the queue: a runner takes every payload there, one at a time, until none is left, so a burst of
    /// deliveries makes at most `concurrency` runners, never one process per payload.
    ///
    /// The runner is detached (forked twice, its own session): the 200 is not held up, the worker goes on serving
    /// and has nothing to reap, and the runner holds neither the web server's connection nor the listening socket.
    /// `logFile` replaces stderr in it: a CGI's stderr is a pipe the web server reads to its end before it
    /// finishes the request, so a CGI's runner logs to `DIR/hook.log` instead.
    public func startRunner(for spool: Spool, logFile: String?) {
        let slots = HookSlots(spool: spool, count: concurrency)
        guard let slot = slots.tryAcquire() else { return }  // every runner is busy; one of them will take it
        let child = fork()
        if child == 0 {
            if fork() != 0 { _exit(0) }
            setsid()
            // A worker blocks SIGTERM and ignores SIGUSR1 and SIGHUP; a runner is stopped like any process.
            for signal in [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGPIPE] { Glibc.signal(signal, SIG_DFL) }
            var none = Signals.set([])
            sigprocmask(SIG_SETMASK, &none, nil)
            let null = open("/dev/null", O_RDWR)
            dup2(null, 0)
            dup2(null, 1)
            if let logFile {
                let log = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, spool.fileMode)
                dup2(log >= 0 ? log : null, 2)
            }
            for fd in 3..<Int32(1024) where fd != null && fd != slot { close(fd) }
            drain(spool, holding: slot, of: slots)
            _exit(0)
        }
        close(slot)
        if child < 0 {
            Log.write(.error, "hook: cannot start a runner: \(String(cString: strerror(errno))); the payload waits in new/")
        } else {
            _ = retryingOnInterrupt { waitpid(child, nil, 0) }
        }
    }

    /// A runner's life: deliver every payload in `new/` that is due (not failed, its backoff passed), until a pass
    /// finds none. While some wait for a later attempt, one runner (the holder of `.hook-slots/timer`) stays,
    /// sleeping until the earliest is due or a payload arrives in `new/`: retries need no cron. Then it gives the
    /// slot back — and looks once more, because a payload stored just before that found every slot taken and
    /// counted on this runner. In between it prunes `cur/` if that is due (``Spool/pruneTakenIfDue()``). A runner
    /// ends when `new/` is gone too (its spool was removed).
    func drain(_ spool: Spool, holding slot: Int32, of slots: HookSlots) {
        var slot = slot
        var timer: Int32 = -1, arrivals: Int32 = -1
        defer { for fd in [timer, arrivals] where fd >= 0 { close(fd) } }
        while true {
            guard let ids = try? spool.waitingIDs() else { close(slot); return }
            var handled = 0
            var nextDue = Double.infinity
            for id in ids {
                switch deliver(id, from: spool, onlyIfDue: true) {
                case .ran: handled += 1
                case .notDue(let due): nextDue = min(nextDue, due)
                case .busy, .gone: break
                }
            }
            if handled > 0 { continue }
            if nextDue < .infinity {
                if timer < 0 { timer = slots.tryAcquireTimer() ?? -1 }
                if timer >= 0 {
                    if arrivals < 0 { arrivals = clinux_watch_directory(spool.path("new")) }
                    Self.sleep(until: nextDue, orArrivalOn: arrivals)
                    continue
                }
            }
            close(slot)
            spool.pruneTakenIfDue()  // cur/'s retention (one bounded run), holding no slot: no payload waits for it
            let now = wallClock()
            let pending = ids.contains { spool.hookIsDue($0, base: backoffSeconds, now: now) && spool.isFree($0) }
            guard pending, let again = slots.tryAcquire() else { return }
            slot = again
        }
    }

    /// Sleeps until `due` (wall-clock), at most a minute (failures of other runners are noticed that late), or until
    /// something is created in the directory `arrivals` watches (or it is removed).
    static func sleep(until due: Double, orArrivalOn arrivals: Int32) {
        let seconds = min(60, max(0.01, due - wallClock()))
        var watched = pollfd(fd: arrivals, events: Int16(POLLIN), revents: 0)
        if arrivals < 0 {
            usleep(UInt32(seconds * 1_000_000))
        } else if retryingOnInterrupt({ poll(&watched, 1, Int32(seconds * 1000)) }) > 0 {
            var events = [UInt8](repeating: 0, count: 4096)
            while events.withUnsafeMutableBytes({ read(arrivals, $0.baseAddress, $0.count) }) > 0 {}
        }
    }

    /// What became of one payload.
    public enum Delivery: Sendable, Equatable {
        /// The command ran: it succeeded (the file is now in `cur/`) or not (it stays in `new/`, its failure
        /// recorded; after the last attempt it is failed).
        case ran(succeeded: Bool)
        /// Another runner (or `spool retry`) has it right now.
        case busy
        /// It is no longer in `new/`.
        case gone
        /// Asked for due payloads only: it is failed, or waits for its backoff until this wall-clock time
        /// (infinity when failed).
        case notDue(Double)
    }

    /// Runs the command on `new/ID` while holding the file's lock (so no two runners run it at once), as its next
    /// attempt, and moves the file to `cur/` on success. A failure, including a failed move, leaves it in `new/`
    /// with its reason appended to `.hook-failed/ID`; the last allowed attempt, or the command's exit with
    /// ``giveUpStatus``, fails it (`.hook-given-up/ID`). `onlyIfDue` (runners) leaves failed payloads and those
    /// whose backoff has not passed; `spool retry` runs them all.
    @discardableResult
    public func deliver(_ id: String, from spool: Spool, onlyIfDue: Bool = false) -> Delivery {
        let file = spool.path("new", id)
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .gone }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return .busy }
        // Between our open and our lock another runner may have finished with it and moved it on.
        var opened = stat(), named = stat()
        guard fstat(fd, &opened) == 0, stat(file, &named) == 0, opened.st_ino == named.st_ino else { return .gone }
        let attempts = spool.hookAttempts(id)
        if onlyIfDue {
            if attempts.givenUp { return .notDue(.infinity) }
            let due = attempts.due(id: id, base: backoffSeconds)
            if due > wallClock() { return .notDue(due) }
        }
        let attempt = attempts.failures + 1
        func failed(_ reason: String, givingUp: Bool = false) -> Delivery {
            spool.recordHookFailure(id, attempt: attempt, reason: reason)
            if givingUp || attempt >= maxAttempts || attempts.givenUp {
                let why = givingUp ? "the command gave up (exit \(Self.giveUpStatus))" : "\(attempt) attempts failed"
                spool.markHookGivenUp(id, reason: "\(why): \(reason)")
                Log.write(.error, "hook \(id): attempt \(attempt) \(reason); \(why), failed: left in new/ for spool retry")
            } else {
                let wait = HookAttempts.backoff(afterFailures: attempt, base: backoffSeconds, id: id)
                Log.write(.warning, "hook \(id): attempt \(attempt) \(reason); left in new/, next attempt in \(Int(wait.rounded(.up)))s")
            }
            return .ran(succeeded: false)
        }
        guard let envelope = Envelope.read(from: fd) else { return failed("found no envelope line in \(file)") }
        // Shorter than its envelope says: a file a crash left before the journal's recovery wrote it again.
        let body = lseek(fd, 0, SEEK_CUR)
        guard fstat(fd, &opened) == 0, Int(opened.st_size - body) == envelope.length else {
            Log.write(.warning, "hook \(id): \(file) holds \(Int(opened.st_size - body)) of \(envelope.length) body bytes; left "
                + "for the journal's recovery")
            return .busy
        }
        let result = run(input: fd, envelope: envelope, file: file, attempt: attempt)
        counters?.countHook(result)
        guard result.succeeded else { return failed(result.summary, givingUp: result.givesUp) }
        guard rename(file, spool.path("cur", id)) == 0 else {
            return failed("\(result.summary), but it could not be moved to cur/: \(String(cString: strerror(errno)))")
        }
        spool.clearHookAttempts(id)
        Log.write("hook \(id): attempt \(attempt) \(result.summary); moved to cur/")
        return .ran(succeeded: true)
    }
}
