import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// The optional command a verified payload is handed to (`WEBHOOK_EXEC`), run by `/bin/sh -c` with the body on
/// stdin and what a consumer needs in `WEBHOOK_*` variables — never the secret, the signature or other headers.
///
/// With a spool the command runs after the 200 has been sent, in a process of its own, at most `concurrency` at
/// a time across all workers; success moves the file from `new/` to `cur/`, failure leaves it in `new/` for
/// `webhook-handler spool retry`. Without a spool it runs before the answer, and its failure answers 502.
public struct Hook: Sendable {
    public let command: String
    public let timeoutSeconds: Double
    public let concurrency: Int

    public init(command: String, timeoutSeconds: Double = 30, concurrency: Int = 2) {
        self.command = command
        self.timeoutSeconds = timeoutSeconds
        self.concurrency = max(1, concurrency)
    }

    /// How a run ended, in words for the log.
    public struct Result: Sendable {
        public let succeeded: Bool
        public let summary: String
    }

    /// Runs the command with `input` (a readable descriptor, positioned at the body) as stdin; waits for it, up to
    /// the timeout, after which its whole process group is killed.
    public func run(input: Int32, envelope: Envelope, file: String?) -> Result {
        let started = Clock.now()
        var output: [Int32] = [-1, -1]
        guard pipe(&output) == 0 else { return Result(succeeded: false, summary: "pipe: \(String(cString: strerror(errno)))") }
        defer { close(output[0]) }

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
        if timedOut { return Result(succeeded: false, summary: "timed out after \(timeoutSeconds)s and was killed\(said)") }
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
        ]
        if let file { variables.append("WEBHOOK_FILE=\(file)") }
        return variables
    }
}

extension Hook {
    /// Without a spool: hand the body to the command now, before answering.
    func handOff(_ body: [UInt8], envelope: Envelope) -> Outcome {
        var template = Array("\(Environment.value("TMPDIR") ?? "/tmp")/webhook-body.XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { return .handOffFailed("cannot buffer the body: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        guard writeAll(fd, body) == nil, lseek(fd, 0, SEEK_SET) == 0 else {
            return .handOffFailed("cannot buffer the body: \(String(cString: strerror(errno)))")
        }
        let result = run(input: fd, envelope: envelope, file: nil)
        Log.write("hook \(envelope.id): \(result.summary)")
        return result.succeeded ? .verified : .handOffFailed("the hook \(result.summary)")
    }

    /// With a spool: in a process of its own (so the 200 is not held up and the worker goes on serving), wait for
    /// a free slot, run the command on the stored file, and move the file to `cur/` if it succeeded.
    ///
    /// `logFile` replaces stderr in that process: a CGI's stderr is a pipe the web server reads to its end before
    /// it finishes the request, so a CGI's runner logs to `DIR/hook.log` instead.
    func launchDetached(for id: String, in spool: Spool, logFile: String?) {
        let pid = fork()
        guard pid == 0 else {
            if pid < 0 { Log.write("hook \(id): cannot fork: \(String(cString: strerror(errno))); left in new/") }
            return
        }
        // The runner must not hold the web server's connection, the listening socket or the CGI's stdout.
        setsid()
        let null = open("/dev/null", O_RDWR)
        dup2(null, 0)
        dup2(null, 1)
        if let logFile {
            let log = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, spool.fileMode)
            dup2(log >= 0 ? log : null, 2)
        }
        for fd in 3..<Int32(1024) where fd != null { close(fd) }
        _exit(deliver(id, from: spool) ? 0 : 1)
    }

    /// Runs the command on `new/ID` and moves it to `cur/` on success. Returns whether it succeeded.
    @discardableResult
    public func deliver(_ id: String, from spool: Spool) -> Bool {
        let slot = spool.acquireHookSlot(of: concurrency)
        defer { if slot >= 0 { close(slot) } }
        let file = spool.path("new", id)
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            Log.write("hook \(id): \(file) is gone (taken by another consumer?)")
            return false
        }
        defer { close(fd) }
        guard let envelope = Envelope.read(from: fd) else {
            Log.write("hook \(id): \(file) has no envelope line; left in new/")
            return false
        }
        let result = run(input: fd, envelope: envelope, file: file)
        guard result.succeeded else {
            Log.write("hook \(id): \(result.summary); left in new/ for a retry")
            return false
        }
        let moved = rename(file, spool.path("cur", id)) == 0
        Log.write("hook \(id): \(result.summary); \(moved ? "moved to cur/" : "could not move to cur/")")
        return true
    }
}

/// Runs `body` with a NULL-terminated C array of `strings`.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
