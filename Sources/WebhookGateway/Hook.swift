import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// The optional command a verified payload is handed to (`WEBHOOK_EXEC`), run by `/bin/sh -c` with the body on
/// stdin and what a consumer needs in `WEBHOOK_*` variables — never the secret, the signature or other headers.
///
/// With a spool the command runs after the 200 has been sent, in runner processes of its own, at most
/// `concurrency` at a time across all workers; success moves the file from `new/` to `cur/`, failure leaves it in
/// `new/` for `webhook-handler spool retry`. Without a spool it runs before the answer (again at most `concurrency`
/// at a time), and its failure answers 502.
public struct Hook: Sendable {
    public let command: String
    public let timeoutSeconds: Double
    public let concurrency: Int
    /// Where a FastCGI server counts the runs for its status page.
    public var scoreboard: Scoreboard?
    /// Without a spool, the directory of the slots that bound how many commands run at once (a FastCGI server
    /// makes a private one); nil leaves them unbounded — a CGI without a spool, bounded by the web server's CGI limit.
    public var privateSlotsDirectory: String?
    var privateSlots: HookSlots? { privateSlotsDirectory.map { HookSlots(directory: $0, count: concurrency) } }

    public init(command: String, timeoutSeconds: Double = 30, concurrency: Int = 2) {
        self.command = command
        self.timeoutSeconds = timeoutSeconds
        self.concurrency = max(1, concurrency)
    }

    /// How a run ended, in words for the log.
    public struct Result: Sendable {
        public let succeeded: Bool
        public let summary: String
        /// It ran out of time and was killed.
        public var timedOut = false
    }

    /// Runs the command with `input` (a readable descriptor, positioned at the body) as stdin; waits for it, up to
    /// the timeout, after which its whole process group is killed.
    public func run(input: Int32, envelope: Envelope, file: String?) -> Result {
        let started = Clock.now()
        var output: [Int32] = [-1, -1]
        guard pipe(&output) == 0 else { return Result(succeeded: false, summary: "pipe: \(String(cString: strerror(errno)))") }
        defer { close(output[0]) }
        // Close-on-exec: the command gets the write end as its stdout and stderr only, so that a background process
        // it starts (with its own output elsewhere) does not keep the pipe open and the run waiting.
        for fd in output { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, output[1], 2)
        posix_spawn_file_actions_addclose(&actions, output[0])
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group (to kill it whole on time-out), no blocked signals, default dispositions (the
        // handler ignores SIGPIPE and blocks SIGTERM while serving; a command should not inherit either).
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var none = Signals.set([])
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = Signals.set([SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1])
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let arguments = ["/bin/sh", "-c", command]
        let environment = Self.environment(envelope: envelope, file: file)
        var pid: pid_t = 0
        let spawned = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp) }
        }
        close(output[1])
        guard spawned == 0 else { return Result(succeeded: false, summary: "cannot start: \(String(cString: strerror(spawned)))") }

        let (text, timedOut) = collect(output[0], until: started + timeoutSeconds)
        if timedOut { kill(-pid, SIGKILL) }
        var status: Int32 = 0
        _ = retryingOnInterrupt { waitpid(pid, &status, 0) }
        let took = AccessRecord.milliseconds(Clock.now() - started)
        let lines = text.split(whereSeparator: \.isNewline).joined(separator: " | ")
        let said = lines.isEmpty ? "" : "; output: \(Log.printable(lines, limit: 500))"
        if timedOut {
            return Result(succeeded: false, summary: "timed out after \(timeoutSeconds)s and was killed\(said)", timedOut: true)
        }
        return Result(succeeded: status == 0, summary: "\(Signals.describe(waitStatus: status)) in \(took)ms\(said)")
    }

    /// Reads the command's output until it closes (or the deadline passes), keeping the first 2 KiB.
    private func collect(_ fd: Int32, until deadline: Double) -> (String, timedOut: Bool) {
        var kept = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - Clock.now()
            if left <= 0 { return (String(decoding: kept, as: UTF8.self), true) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if retryingOnInterrupt({ poll(&poller, 1, Int32(min(left * 1000, 1000))) }) <= 0 { continue }
            let count = chunk.withUnsafeMutableBytes { buffer in retryingOnInterrupt { read(fd, buffer.baseAddress, buffer.count) } }
            if count <= 0 { return (String(decoding: kept, as: UTF8.self), false) }
            kept += chunk[..<min(count, max(0, 2048 - kept.count))]
        }
    }

    /// `PATH` and the payload's facts; nothing else of the handler's environment (which, as a CGI, holds the
    /// request's headers, and may hold the secret).
    static func environment(envelope: Envelope, file: String?) -> [String] {
        var variables = [
            "PATH=\(Environment.value("PATH") ?? "/usr/local/bin:/usr/bin:/bin")",
            "WEBHOOK_ID=\(envelope.id)",
            "WEBHOOK_RECEIVED=\(envelope.received)",
            "WEBHOOK_LENGTH=\(envelope.length)",
            "WEBHOOK_REMOTE_ADDR=\(envelope.remoteAddress ?? "")",
            "WEBHOOK_CONTENT_TYPE=\(envelope.contentType ?? "")",
            "WEBHOOK_SENDER=\(envelope.sender ?? "")",
            "WEBHOOK_SCHEME=\(envelope.scheme ?? "")",
            "WEBHOOK_REQUEST_ID=\(envelope.requestID ?? "")",
        ]
        if let file { variables.append("WEBHOOK_FILE=\(file)") }
        return variables
    }
}

extension Hook {
    /// Without a spool: hand the body to the command now, before answering, in one of `slots` if given.
    func handOff(_ body: [UInt8], envelope: Envelope, slots: HookSlots?) -> Outcome {
        let slot = slots?.acquire()
        defer { if let slot, slot >= 0 { close(slot) } }
        let result = run(body: body, envelope: envelope)
        scoreboard?.countHook(result)
        Log.write(.info, "hook \(envelope.id): \(result.summary)")
        return result.succeeded ? .verified : .handOffFailed("the hook \(result.summary)")
    }

    /// Runs the command with `body` on stdin (buffered in an unnamed temporary file, so that the command may read
    /// it at its own pace).
    public func run(body: [UInt8], envelope: Envelope) -> Result {
        var template = Array("\(Environment.value("TMPDIR") ?? "/tmp")/webhook-body.XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { return Result(succeeded: false, summary: "cannot buffer the body: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        guard writeAll(fd, body) == nil, lseek(fd, 0, SEEK_SET) == 0 else {
            return Result(succeeded: false, summary: "cannot buffer the body: \(String(cString: strerror(errno)))")
        }
        return run(input: fd, envelope: envelope, file: nil)
    }

    /// With a spool, after a new payload was stored: if fewer than `concurrency` runners are at work, start one.
    /// `new/` is the queue: a runner takes every payload there, one at a time, until none is left, so a burst of
    /// deliveries makes at most `concurrency` runners, never one process per payload.
    ///
    /// The runner is detached (forked twice, its own session): the 200 is not held up, the worker goes on serving
    /// and has nothing to reap, and the runner holds neither the web server's connection nor the listening socket.
    /// `logFile` replaces stderr in it: a CGI's stderr is a pipe the web server reads to its end before it
    /// finishes the request, so a CGI's runner logs to `DIR/hook.log` instead.
    func startRunner(for spool: Spool, logFile: String?) {
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

    /// A runner's life: deliver every payload in `new/` whose hook has not failed, until a pass finds none; then
    /// give the slot back — and look once more, because a payload stored just before that found every slot taken
    /// and counted on this runner.
    func drain(_ spool: Spool, holding slot: Int32, of slots: HookSlots) {
        var slot = slot
        while true {
            var handled = 0
            for id in (try? spool.waitingIDs()) ?? [] where !spool.hookFailed(id) {
                if case .ran = deliver(id, from: spool) { handled += 1 }
            }
            if handled > 0 { continue }
            close(slot)
            let pending = ((try? spool.waitingIDs()) ?? []).contains { !spool.hookFailed($0) && spool.isFree($0) }
            guard pending, let again = slots.tryAcquire() else { return }
            slot = again
        }
    }

    /// What became of one payload.
    public enum Delivery: Sendable, Equatable {
        /// The command ran: it succeeded (the file is now in `cur/`) or not (it stays in `new/`, marked failed).
        case ran(succeeded: Bool)
        /// Another runner (or `spool retry`) has it right now.
        case busy
        /// It is no longer in `new/`.
        case gone
    }

    /// Runs the command on `new/ID` while holding the file's lock (so no two runners run it at once), and moves
    /// the file to `cur/` on success. A failure, including a failed move, leaves it in `new/` with its reason in
    /// `.hook-failed/ID`, which runners skip and `spool retry` does not.
    @discardableResult
    public func deliver(_ id: String, from spool: Spool) -> Delivery {
        let file = spool.path("new", id)
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .gone }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return .busy }
        // Between our open and our lock another runner may have finished with it and moved it on.
        var opened = stat(), named = stat()
        guard fstat(fd, &opened) == 0, stat(file, &named) == 0, opened.st_ino == named.st_ino else { return .gone }
        func failed(_ reason: String) -> Delivery {
            Log.write(.warning, "hook \(id): \(reason); left in new/ for spool retry")
            spool.markHookFailed(id, reason: reason)
            return .ran(succeeded: false)
        }
        guard let envelope = Envelope.read(from: fd) else { return failed("\(file) has no envelope line") }
        let result = run(input: fd, envelope: envelope, file: file)
        scoreboard?.countHook(result)
        guard result.succeeded else { return failed(result.summary) }
        guard rename(file, spool.path("cur", id)) == 0 else {
            return failed("\(result.summary), but it could not be moved to cur/: \(String(cString: strerror(errno)))")
        }
        spool.clearHookFailure(id)
        Log.write(.info, "hook \(id): \(result.summary); moved to cur/")
        return .ran(succeeded: true)
    }
}

/// At most `count` hooks at once across processes: slot N is the file `DIR/N`, held with `flock` (the kernel
/// lets it go when its holder dies, however it dies).
struct HookSlots: Sendable {
    let directory: String
    let count: Int

    init(directory: String, count: Int) {
        self.directory = directory
        self.count = max(1, count)
    }

    init(spool: Spool, count: Int) {
        self.init(directory: "\(spool.directory)/.hook-slots", count: count)
    }

    /// A free slot's descriptor (close it to give the slot back), or nil when all are taken or cannot be used.
    func tryAcquire() -> Int32? {
        for fd in openSlots() {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return fd }
            close(fd)
        }
        return nil
    }

    /// Waits for a slot; -1 if slots cannot be used at all (then the hook runs unthrottled).
    func acquire() -> Int32 {
        if let free = tryAcquire() { return free }
        let all = openSlots()
        guard let fd = all.randomElement() else { return -1 }
        for other in all where other != fd { close(other) }
        guard retryingOnInterrupt({ flock(fd, LOCK_EX) }) == 0 else { close(fd); return -1 }
        return fd
    }

    private func openSlots() -> [Int32] {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { return [] }
        return (0..<count).map { open("\(directory)/\($0)", O_RDONLY | O_CREAT | O_CLOEXEC, 0o600) }.filter { $0 >= 0 }
    }
}

extension Spool {
    var hookFailures: String { "\(directory)/.hook-failed" }

    func hookFailed(_ id: String) -> Bool { access("\(hookFailures)/\(id)", F_OK) == 0 }

    /// Whether no runner holds `new/ID` right now.
    func isFree(_ id: String) -> Bool {
        let fd = open(path("new", id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) == 0
    }

    func markHookFailed(_ id: String, reason: String) {
        if mkdir(hookFailures, directoryMode) != 0 && errno != EEXIST { return }
        let fd = open("\(hookFailures)/\(id)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, fileMode)
        guard fd >= 0 else { return }
        _ = writeAll(fd, Array("\(Clock.utcTimestamp()) \(reason)\n".utf8))
        close(fd)
    }

    func clearHookFailure(_ id: String) { unlink("\(hookFailures)/\(id)") }
}

/// Runs `body` with a NULL-terminated C array of `strings`.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
