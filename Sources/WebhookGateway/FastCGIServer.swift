import CFastCGI
import CLinux
import WebhookCore
public import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// A FastCGI application server: a supervising process and `workers` forked processes, each serving one
/// connection at a time on the shared listening socket.
///
/// Processes rather than threads: a worker that dies takes only its own request with it and is replaced, and a
/// signal can stop every worker between requests without touching a request in flight.
///
/// Stopping and restarting never cost a request:
/// - `SIGTERM`/`SIGINT`: workers stop taking new connections; each finishes its request, and one holding a
///   connection the web server keeps open goes on serving it until the web server closes it (nginx does after
///   `keepalive_timeout`, or `keepalive_requests`). A handler that closed it instead could race with nginx sending
///   the next request on it, which nginx answers 502. After `graceSeconds`, what is left is killed.
/// - `SIGHUP`: the supervisor checks the configuration with its binary (a new build, new secrets) in a process of
///   its own, then executes the binary again in the same process, on the same listening socket; the new workers
///   serve at once while the old ones finish as on SIGTERM. If the check fails, nothing changes (``Reload``).
public struct FastCGIServer: Sendable {
    /// Where requests come from.
    public enum Listener: Sendable, Equatable {
        /// The listening socket handed over on fd 0 (spawn-fcgi, systemd socket units, mod_fcgid).
        case inherited
        /// A unix socket path, created with `mode`.
        case unixSocket(path: String, mode: UInt32)
        /// `HOST:PORT` (e.g. `127.0.0.1:9000`); only the addresses in `FCGI_WEB_SERVER_ADDRS` may connect, if set.
        case tcp(String)

        public var description: String {
            switch self {
            case .inherited: "the socket on fd 0"
            case .unixSocket(let path, let mode): "unix:\(path) (mode 0\(String(mode, radix: 8)))"
            case .tcp(let address): "tcp:\(address)"
            }
        }
    }

    public let listener: Listener
    public let workers: Int
    /// How long in-flight requests get to finish after SIGTERM before their workers are killed.
    public let graceSeconds: Double
    /// How long a connection may stay silent (before its first record, mid-body, or idle between kept-alive
    /// requests).
    public let readTimeoutSeconds: Double
    public var responder: Responder
    /// The journal's shared numbers (with a journaled spool), made before the workers are forked.
    var journalBoard: JournalBoard?
    /// The spool, if its payloads go through the workers' ``Journal``.
    var journaledSpool: Spool? { responder.spool.flatMap { $0.journaled ? $0 : nil } }

    public init(listener: Listener, workers: Int, graceSeconds: Double, readTimeoutSeconds: Double = 30,
                responder: Responder) {
        self.listener = listener
        self.workers = max(1, workers)
        self.graceSeconds = graceSeconds
        self.readTimeoutSeconds = readTimeoutSeconds
        self.responder = responder
    }

    /// True when fd 0 is a listening socket, i.e. a FastCGI process manager started us. Asked of the kernel
    /// directly: libfcgi's own test (`FCGX_IsCGI`) installs signal handlers, which a CGI must not have.
    public static var isHandedListener: Bool { isListening(0) }

    static func isListening(_ fd: Int32) -> Bool {
        var listening: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0 && listening == 1
    }

    /// How long a worker waits in `accept` before it looks at its journal (a checkpoint when idle, as
    /// ``JournalHold/idleTimeout`` says); without a journaled spool it waits for ever.
    static let acceptTimeoutSeconds = 5

    /// The default worker count: four per online CPU, eight with a journaled spool. A worker serves one connection
    /// at a time, and nginx's kept-alive connections (deploy/nginx/webhook.conf: `keepalive 2` per nginx worker,
    /// one nginx worker per CPU) hold one each even while idle: four leaves as many workers again for new
    /// connections and slow uploads. With the journal a worker also waits for the group commit's sync without using
    /// the CPU, and more writers make each sync cover more records: on 2 CPUs 16 workers stored 9,500-12,300
    /// payloads a second at p99 4-5 ms, 8 workers 7,300-9,800 at 9-14 ms, 32 fewer again (bench/durable.py runs). An
    /// idle worker costs under 1 MiB of its own (the rest of its RSS is shared).
    public static func defaultWorkers(journaled: Bool) -> Int {
        (journaled ? 8 : 4) * max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Serves until SIGTERM or SIGINT, then lets in-flight requests finish; returns the exit status.
    public func run() throws(SystemError) -> Int32 {
        if Reload.isCheck {
            Log.write("reload: the configuration checks out (\(listener.description), \(workers) workers)")
            return 0
        }
        try check("FCGX_Init", FCGX_Init())
        // FCGX_Init installs a SIGUSR1 handler without SA_RESTART, so a stray SIGUSR1 would fail a body read
        // mid-request; nothing here uses SIGUSR1. SIGPIPE: a web server that went away is a failed write.
        signal(SIGUSR1, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        var signals = Signals.set([SIGTERM, SIGINT, SIGCHLD, SIGHUP])
        sigprocmask(SIG_BLOCK, &signals, nil)

        let handover = Handover.take()
        let socket = if let handover { handover.socket } else { try openListener() }
        // Nothing the handler starts may inherit the socket (a hook's background process would keep the port).
        // Blocking: idle workers wait in accept(2) itself, where the kernel wakes one of them per connection
        // (``Worker``), with a time-out when the journal needs idle workers to look at it.
        _ = fcntl(socket, F_SETFD, FD_CLOEXEC)
        _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) & ~O_NONBLOCK)
        var acceptLimit = timeval(tv_sec: journaledSpool == nil ? 0 : Self.acceptTimeoutSeconds, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &acceptLimit, socklen_t(MemoryLayout<timeval>.size))
        var server = self
        server.responder.scoreboard = Scoreboard(workers: workers)
        server.journalBoard = journaledSpool == nil ? nil : JournalBoard()
        server.responder.journalBoard = server.journalBoard
        // Journal slots of workers that are gone (a crash, fewer workers than last time) are recovered before any
        // worker starts; a worker recovers the slot it takes itself.
        if let spool = responder.spool {
            do {
                for (slot, named) in try Journal.recoverAbandoned(in: spool) where named > 0 {
                    Log.write(.info, "journal \(slot): recovered \(named) payloads into new/")
                }
            } catch {
                Log.write(.error, "journal: cannot recover: \(error); its payloads wait until a worker takes the slot")
            }
        }
        var supervisor = Supervisor(server: server, socket: socket, signals: signals)
        if let handover {
            Log.write(.info, "started again on \(listener.description) with \(workers) workers; "
                + "\(handover.workers.count) workers of the last start finish their connections first")
        } else {
            Log.write(.info, "serving FastCGI on \(listener.description) with \(workers) workers")
        }
        for _ in 0..<workers { supervisor.spawn() }
        supervisor.spawnNamer()
        supervisor.retire(handover?.workers ?? [])
        supervisor.requesters = handover?.requesters ?? []
        let status = supervisor.superviseUntilStopped()
        if case .unixSocket(let path, _) = listener { unlink(path) }
        return status
    }

    private func openListener() throws(SystemError) -> Int32 {
        switch listener {
        case .inherited:
            return 0
        case .tcp(let address):
            return try check("listen on \(address)", FCGX_OpenSocket(address, 128))
        case .unixSocket(let path, let mode):
            var status = stat()
            if lstat(path, &status) == 0 && status.st_mode & S_IFMT != S_IFSOCK {
                throw SystemError(operation: "refusing to replace \(path), which is not a socket", code: EEXIST)
            }
            // libfcgi binds with the process umask: create the socket private, then open it up to `mode`.
            let saved = umask(0o177)
            defer { umask(saved) }
            let socket = try check("listen on \(path)", FCGX_OpenSocket(path, 128))
            try check("chmod \(path)", chmod(path, mode))
            return socket
        }
    }
}

/// The supervising process: keeps `workers` processes alive, restarts itself on SIGHUP and stops gracefully.
private struct Supervisor {
    let server: FastCGIServer
    let socket: Int32
    let signals: sigset_t
    /// Live workers of this start, and when each started.
    var started: [pid_t: Double] = [:]
    /// Workers told to finish (of an earlier start, or of this one while stopping): never replaced.
    var retiring: Set<pid_t> = []
    /// When the next workers are due (after a crash or a failed fork), earliest first.
    var replacementsDue: [Double] = []
    /// Workers that died young (or could not be forked) in a row: each waits twice as long, up to 30 s.
    var failuresInARow = 0
    /// The process naming journaled payloads (with a journaled spool), and when it is due again after it died.
    var namer: pid_t?
    var namerDue: Double?
    /// `webhook-handler reload` requests waiting until no worker of an earlier start is left (pidfds).
    var requesters: [Int32] = []

    init(server: FastCGIServer, socket: Int32, signals: sigset_t) {
        self.server = server
        self.socket = socket
        self.signals = signals
        _ = Handover.executable
    }

    /// Forks a child that runs `body` and exits with its status; the child's pid, or -1.
    private func forkChild(_ body: () -> Int32) -> pid_t {
        let supervisor = getpid()
        let pid = fork()
        if pid == 0 {
            // Die with the supervisor (a worker left behind would serve with nobody to replace or stop it).
            _ = clinux_set_parent_death_signal(SIGTERM)
            if getppid() != supervisor { _exit(0) }
            _exit(body())
        }
        return pid
    }

    /// Forks a worker; if the system cannot (EAGAIN: too many processes), tries again later.
    mutating func spawn() {
        let pid = forkChild { [server, socket] in Worker(server: server, socket: socket).serve() }
        if pid < 0 {
            let delay = backoff()
            Log.write(.error, "cannot start a worker: fork: \(String(cString: strerror(errno))); trying again in \(Int(delay))s")
            schedule(after: delay)
            return
        }
        started[pid] = Clock.now()
        server.responder.scoreboard?.join(pid)
    }

    /// Forks the ``Namer``, if the spool is journaled; if the system cannot, tries again in a second.
    mutating func spawnNamer() {
        guard let board = server.journalBoard, let spool = server.journaledSpool else { return }
        let pid = forkChild { [hook = server.responder.hook, scoreboard = server.responder.scoreboard] in
            let stop = Signals.stopDescriptor()
            // Only on CPU time the workers leave: a sender waits on them, nobody waits on a name (the records are
            // durable). Under load the namer catches up when the workers idle; a worker whose slot fills faster than
            // it is named helps (``Journal``).
            if clinux_schedule_when_idle() != 0 { _ = nice(19) }
            _ = clinux_set_process_name(Namer.processName)
            return Namer(spool: spool, board: board, hook: hook, counters: scoreboard).run(stop: stop)
        }
        (namer, namerDue) = pid > 0 ? (pid, nil) : (nil, Clock.now() + 1)
    }

    /// Tells `workers` to finish what they are serving and exit.
    mutating func retire(_ workers: [pid_t]) {
        for pid in workers { retiring.insert(pid); kill(pid, SIGTERM) }
    }

    mutating func superviseUntilStopped() -> Int32 {
        var signals = signals
        var deadline: Double?
        while true {
            var tick = timespec(tv_sec: 0, tv_nsec: 200_000_000)
            var info = siginfo_t()
            let signal = sigtimedwait(&signals, &info, &tick)
            if (signal == SIGTERM || signal == SIGINT) && deadline == nil {
                deadline = Clock.now() + server.graceSeconds
                Log.write(.info, "\(signal == SIGTERM ? "SIGTERM" : "SIGINT"): stopping; \(started.count + retiring.count) "
                    + "workers finish their requests and kept connections first")
                retire(Array(started.keys) + (namer.map { [$0] } ?? []))
                (started, namer, namerDue) = ([:], nil, nil)
            }
            if signal == SIGHUP && deadline == nil { startAgain(requester: Reload.requester(of: info)) }
            reap()
            if !requesters.isEmpty && retiring.isEmpty {
                Log.write("reload: every worker of the last start has finished")
                for requester in requesters { Reload.answer(requester, Reload.done) }
                requesters = []
            }
            if let deadline {
                if retiring.isEmpty { break }
                // Repeat the signal: a worker that was forking when it first came may have missed it.
                let signal = Clock.now() < deadline ? SIGTERM : SIGKILL
                if signal == SIGKILL { Log.write(.warning, "grace period over: killing \(retiring.count) workers") }
                for pid in retiring { kill(pid, signal) }
            } else {
                let now = Clock.now()
                while let due = replacementsDue.first, due <= now {
                    replacementsDue.removeFirst()
                    spawn()
                }
                if let due = namerDue, due <= now { spawnNamer() }
            }
        }
        Log.write(.info, "stopped")
        return 0
    }

    /// SIGHUP: checks the configuration with the binary now at ``Handover/executable``, then executes it in this
    /// process; if either fails, goes on as before and tells `requester` (a pidfd, or -1).
    private mutating func startAgain(requester: Int32) {
        if let problem = Reload.check(Handover.executable, socket: socket) {
            Log.write(.error, "SIGHUP: not started again: \(problem); going on with the running binary")
            Reload.answer(requester, Reload.refused)
            return
        }
        Log.write("SIGHUP: configuration checked; starting \(Handover.executable) again on the same socket")
        let failure = Handover.reexecute(Handover.executable, socket: socket,
                                         workers: Array(started.keys) + Array(retiring) + (namer.map { [$0] } ?? []),
                                         requesters: requesters + (requester >= 0 ? [requester] : []))
        Log.write(.error, "cannot start again: \(failure); going on as before")
        Reload.answer(requester, Reload.refused)
    }

    private mutating func reap() {
        var status: Int32 = 0
        while case let pid = waitpid(-1, &status, WNOHANG), pid > 0 {
            server.responder.scoreboard?.leave(pid)
            if retiring.remove(pid) != nil { continue }
            if pid == namer {
                Log.write(.warning, "the journal's namer \(pid) \(Signals.describe(waitStatus: status)); starting another in 1s")
                (namer, namerDue) = (nil, Clock.now() + 1)
                continue
            }
            guard let began = started.removeValue(forKey: pid) else { continue }
            let lived = Clock.now() - began
            if lived >= 10 { failuresInARow = 0 }
            let delay = lived < 10 ? backoff() : 0
            Log.write(.warning, "worker \(pid) \(Signals.describe(waitStatus: status)); starting another"
                + (delay > 0 ? " in \(Int(delay))s" : ""))
            schedule(after: delay)
        }
    }

    /// 1, 2, 4 … 30 seconds, for the failures in a row so far.
    private mutating func backoff() -> Double {
        failuresInARow += 1
        return min(30, Double(1 << min(failuresInARow - 1, 5)))
    }

    private mutating func schedule(after delay: Double) {
        replacementsDue.append(Clock.now() + delay)
        replacementsDue.sort()
    }
}

/// One worker process: waits for a connection (or the next request on a kept one), serves its requests one at a
/// time, and stops between requests when told to.
private struct Worker {
    let server: FastCGIServer
    let socket: Int32
    /// `FCGI_WEB_SERVER_ADDRS`: for TCP, the IPv4 addresses allowed to connect (libfcgi's rule); nil allows all.
    let allowedAddresses: Set<String>? = Environment.value("FCGI_WEB_SERVER_ADDRS").map { list in
        Set(list.split(separator: ",").map { String($0.filter { $0 != " " }) })
    }

    /// Returns the worker's exit status.
    func serve() -> Int32 {
        // SIGTERM and SIGINT arrive as a readable descriptor between requests, never as an interruption inside one;
        // in accept, they end the wait (``AcceptInterruption``).
        let stop = Signals.stopDescriptor()
        guard stop >= 0, AcceptInterruption.install(listening: socket) else {
            Log.write(.error, "worker cannot serve: \(stop < 0 ? "signalfd" : "sigaction"): \(String(cString: strerror(errno)))")
            return 1
        }
        let request: FastCGIRequest
        do { request = try FastCGIRequest() } catch {
            Log.write(.error, "worker cannot serve: \(error)")
            return 1
        }
        var journal = JournalHold(spool: server.journaledSpool, board: server.journalBoard)
        var stopping = false
        while true {
            if let kept = request.keptConnection {
                // The web server keeps this connection for its next request, even while we stop: it closes it.
                let timeout = min(journal.idleTimeout ?? .infinity, server.readTimeoutSeconds)
                switch wait(for: kept, stop: stopping ? -1 : stop, timeout: timeout) {
                case .stop: stopping = true; continue
                case .timedOut:
                    if !journal.checkpointWhenIdle() { request.closeConnection() }
                    continue
                case .ready: break
                }
                if request.begin(on: nil, timeoutSeconds: server.readTimeoutSeconds) { serveRequest(request, &journal) }
                continue
            }
            if stopping {
                journal.release()
                return 0
            }
            server.responder.scoreboard?.mark(.idle)  // no kept connection (any more)
            let connection: Int32
            switch accept() {
            case .stop: stopping = true; continue
            case .timedOut: _ = journal.checkpointWhenIdle(); continue
            case .again: continue
            case .connection(let accepted): connection = accepted
            }
            if request.begin(on: connection, timeoutSeconds: server.readTimeoutSeconds) { serveRequest(request, &journal) }
        }
    }

    private func serveRequest(_ request: FastCGIRequest, _ journal: inout JournalHold) {
        let scoreboard = server.responder.scoreboard
        scoreboard?.beginRequest()
        let current = journal.current()
        var record = server.responder.respond(over: request, journal: current)
        if !request.finish() { record.delivered = false }
        scoreboard?.endRequest(record, kept: request.keptConnection != nil)
        server.responder.complete(record, journaled: current != nil && current?.failure == nil)
    }

    enum Wake { case ready, stop, timedOut }

    /// Waits until `fd` is readable, a stop signal is pending (`stop` < 0: not watched), or `timeout` passes.
    private func wait(for fd: Int32, stop: Int32, timeout: Double?) -> Wake {
        var polled = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        let milliseconds = timeout.map { Int32(min($0 * 1000, Double(Int32.max))) } ?? -1
        let count = poll(&polled, stop >= 0 ? 2 : 1, milliseconds)
        if count == 0 { return .timedOut }
        if count < 0 { return errno == EINTR ? .timedOut : .stop }
        if stop >= 0 && polled[1].revents != 0 { return .stop }
        return .ready
    }

    enum Accepted { case connection(Int32), stop, timedOut, again }

    /// Waits for a new connection in a blocking accept(2), as libfcgi's own workers do: the kernel queues the
    /// waiting workers and wakes one per connection, which takes it (a poll on the shared socket woke every idle
    /// worker, all but one in vain; epoll's EPOLLEXCLUSIVE left a burst queued behind the one worker it woke).
    /// The stop signals are let in only here, where ``AcceptInterruption`` makes them end the wait.
    private func accept() -> Accepted {
        var stopSignals = Signals.set([SIGTERM, SIGINT])
        sigprocmask(SIG_UNBLOCK, &stopSignals, nil)
        let connection = clinux_accept_cloexec(socket)
        let failure = errno
        sigprocmask(SIG_BLOCK, &stopSignals, nil)
        guard connection >= 0 else {
            // A stop signal came (before or during the wait): the descriptor is now a spare that listens on nothing.
            // One that comes just after a connection was taken is seen at the next accept.
            if !FastCGIServer.isListening(socket) { return .stop }
            switch failure {
            case EAGAIN, EWOULDBLOCK: return .timedOut
            case EINTR, ECONNABORTED, EPROTO: return .again
            default:  // EMFILE, ENFILE, ENOBUFS, ENOMEM: out of something; pause rather than spin on it
                Log.write(.error, "worker cannot accept: \(String(cString: strerror(failure))); pausing 1s")
                sleep(1)
                return .again
            }
        }
        guard isAllowed(connection) else { close(connection); return .again }
        return .connection(connection)
    }

    /// TCP: only `FCGI_WEB_SERVER_ADDRS` may connect, and responses go out without Nagle's delay.
    private func isAllowed(_ connection: Int32) -> Bool {
        var address = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let family = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(connection, $0, &size) == 0 ? Int32($0.pointee.sa_family) : -1 }
        }
        guard family == AF_INET || family == AF_INET6 else { return true }
        var on: Int32 = 1
        setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        guard let allowedAddresses else { return true }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        withUnsafePointer(to: &address) { pointer in
            if family == AF_INET {
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                    var bits = inet.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &bits, &text, socklen_t(text.count))
                }
            }
        }
        let peer = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if allowedAddresses.contains(peer) { return true }
        Log.write(.warning, "refused a connection from \(peer.isEmpty ? "an IPv6 address" : peer): not in FCGI_WEB_SERVER_ADDRS")
        return false
    }
}
