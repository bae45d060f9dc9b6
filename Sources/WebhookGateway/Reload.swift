import CLinux
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// `systemctl reload` that says whether it worked. systemd's `ExecReload=` runs `webhook-handler reload --pid
/// $MAINPID`, which asks the running server and waits for its answer; a plain SIGHUP gets the same checks, with
/// nobody to answer.
///
/// The protocol:
///  1. the requester queues SIGHUP with ``requestValue`` (sigqueue), so the server knows someone waits;
///  2. the server runs its binary once with ``checkVariable`` set: the configuration is read as on a start
///     (arguments, secrets, senders, spool, hook) and the check exits without serving. If it fails, the server
///     goes on with the binary it runs and answers SIGUSR2;
///  3. otherwise it executes the binary again (``Handover``), handing on a pidfd of the requester; the new start
///     serves at once and answers SIGUSR1 once every old worker has finished: from then on only the new
///     configuration (a rotated secret) answers requests.
public enum Reload {
    /// The value queued with SIGHUP by a requester that waits for the answer.
    static let requestValue: Int32 = 0x52454C44
    /// Set for the configuration check: the server returns as soon as it would start serving.
    static let checkVariable = "WEBHOOK_RELOAD_CHECK"
    /// The requester's pidfd, across the re-execution.
    static let requesterVariable = "WEBHOOK_RELOAD_REQUESTER"
    static let done = SIGUSR1
    static let refused = SIGUSR2

    /// True in the configuration check's process.
    public static var isCheck: Bool { Environment.value(checkVariable) == "1" }

    /// Asks the server `pid` to reload and waits up to `timeoutSeconds`: nil once it has, else why not.
    public static func request(pid: Int32, timeoutSeconds: Double) -> String? {
        var answers = Signals.set([done, refused])
        sigprocmask(SIG_BLOCK, &answers, nil)
        guard clinux_queue_signal(pid, SIGHUP, requestValue) == 0 else {
            return "cannot signal the server \(pid): \(String(cString: strerror(errno)))"
        }
        let deadline = Clock.now() + timeoutSeconds
        while Clock.now() < deadline {
            var tick = timespec(tv_sec: 0, tv_nsec: 200_000_000)
            switch sigtimedwait(&answers, nil, &tick) {
            case done: return nil
            case refused: return "the server refused the new configuration and goes on with the running binary (its log says why)"
            default: if kill(pid, 0) != 0 && errno == ESRCH { return "the server \(pid) exited" }
            }
        }
        return "no answer from the server \(pid) in \(Int(timeoutSeconds)) s (old workers may still be finishing)"
    }

    /// The requester of a SIGHUP described by `info`, as a pidfd, if it waits for an answer; else -1.
    static func requester(of info: siginfo_t) -> Int32 {
        var info = info
        guard clinux_signal_value(&info) == requestValue else { return -1 }
        return clinux_pidfd_open(clinux_signal_sender(&info))
    }

    /// Sends `answer` to the requester behind `pidfd` and lets it go.
    static func answer(_ pidfd: Int32, _ answer: Int32) {
        guard pidfd >= 0 else { return }
        _ = clinux_pidfd_send_signal(pidfd, answer)
        close(pidfd)
    }

    /// Runs `executable` as this process was run, with ``checkVariable`` set, and waits up to `timeoutSeconds`:
    /// nil if it accepts its configuration, else why not. The listening socket `socket` is left open in it when it
    /// is fd 0 (where the check looks for a handed-over listener). The check's standard error comes back through a
    /// pipe and is written on by this process: a log (journald) then has its lines under the server's own name,
    /// which it cannot always give to a process that exits at once; its last line also ends the answer.
    static func check(_ executable: String, socket: Int32, timeoutSeconds: Double = 30) -> String? {
        var pipe: [Int32] = [-1, -1]
        guard Glibc.pipe(&pipe) == 0, fcntl(pipe[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(pipe[1], F_SETFD, FD_CLOEXEC) == 0
        else {
            return "cannot check the configuration: pipe: \(String(cString: strerror(errno)))"
        }
        let pid = fork()
        if pid == 0 {
            _ = dup2(pipe[1], 2)
            setenv(checkVariable, "1", 1)
            unsetenv("WEBHOOK_HOOK_SLOTS_DIR")  // the check makes (and removes) slots of its own
            if socket == 0 { _ = fcntl(0, F_SETFD, 0) }
            var all = Signals.set([SIGTERM, SIGINT, SIGCHLD, SIGHUP])
            sigprocmask(SIG_UNBLOCK, &all, nil)
            let failure = withCStrings(CommandLine.arguments) { argv in execv(executable, argv) == 0 ? 0 : errno }
            Log.write(.error, "cannot execute \(executable): \(String(cString: strerror(failure)))")
            _exit(127)
        }
        close(pipe[1])
        defer { close(pipe[0]) }
        guard pid > 0 else { return "cannot check the configuration: fork: \(String(cString: strerror(errno)))" }
        var said: [UInt8] = [], status: Int32 = 0
        let deadline = Clock.now() + timeoutSeconds
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Clock.now() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return "the configuration check of \(executable) took over \(Int(timeoutSeconds)) s"
            }
            relay(from: pipe[0], into: &said, waitingMilliseconds: 20, chunks: 1)
        }
        relay(from: pipe[0], into: &said, waitingMilliseconds: 0, chunks: 16)
        guard status != 0 else { return nil }
        let lastLine = String(decoding: said, as: UTF8.self).split(separator: "\n").last.map { ": \(message(of: $0))" }
        return "the configuration check of \(executable) \(Signals.describe(waitStatus: status))\(lastLine ?? "")"
    }

    /// What a log line says: its `msg="…"` if it is one of ours (logfmt), else the whole line.
    static func message(of line: Substring) -> String {
        guard let start = line.firstRange(of: "msg=\""), let end = line.lastIndex(of: "\""), end > start.upperBound
        else { return String(line) }
        return String(line[start.upperBound..<end].replacing("\\\"", with: "\""))
    }

    /// Copies what the check wrote so far (waiting up to `waitingMilliseconds` for it, at most `chunks` reads of
    /// 4 KiB: a check that writes without end still meets its deadline) to this process's standard error, keeping
    /// the last 4 KiB in `said`.
    private static func relay(from fd: Int32, into said: inout [UInt8], waitingMilliseconds: Int32, chunks: Int) {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var chunk = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<chunks where poll(&ready, 1, waitingMilliseconds) > 0 {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return }
            _ = chunk.withUnsafeBytes { write(2, $0.baseAddress, count) }
            said = Array((said + chunk[..<count]).suffix(4096))
        }
    }
}

/// What one start hands the next across `SIGHUP`'s re-execution: the listening socket, the workers still
/// finishing and who waits for them to finish (``Reload``). Carried in environment variables, read and removed
/// at once.
struct Handover {
    static let socketVariable = "WEBHOOK_HANDOVER_SOCKET"
    static let workersVariable = "WEBHOOK_HANDOVER_WORKERS"

    let socket: Int32
    let workers: [pid_t]
    /// pidfds of `webhook-handler reload` requests waiting until `workers` are gone.
    let requesters: [Int32]

    static func take() -> Handover? {
        defer { unsetenv(socketVariable); unsetenv(workersVariable); unsetenv(Reload.requesterVariable) }
        guard let text = Environment.value(socketVariable), let socket = Int32(text) else { return nil }
        let workers = (Environment.value(workersVariable) ?? "").split(separator: ",").compactMap { pid_t($0) }
        let requesters = (Environment.value(Reload.requesterVariable) ?? "").split(separator: ",").compactMap { Int32($0) }
        for fd in requesters { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return Handover(socket: socket, workers: workers, requesters: requesters)
    }

    /// Replaces this process with `executable` run as before, handing it `socket` and `requesters`; returns only
    /// if that failed.
    static func reexecute(_ executable: String, socket: Int32, workers: [pid_t], requesters: [Int32]) -> SystemError {
        setenv(socketVariable, String(socket), 1)
        setenv(workersVariable, workers.map(String.init).joined(separator: ","), 1)
        setenv(Reload.requesterVariable, requesters.map(String.init).joined(separator: ","), 1)
        for fd in [socket] + requesters { _ = fcntl(fd, F_SETFD, 0) }
        let failure = withCStrings(CommandLine.arguments) { argv in execv(executable, argv) == 0 ? 0 : errno }
        for fd in [socket] + requesters { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        unsetenv(socketVariable)
        unsetenv(workersVariable)
        unsetenv(Reload.requesterVariable)
        return SystemError(operation: "execute \(executable)", code: failure)
    }

    /// This program's path, read at start-up: after an upgrade has replaced the file, the path names the new one.
    static let executable: String = {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return count > 0 ? String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            : CommandLine.arguments[0]
    }()
}
