import CFastCGI
import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// A FastCGI application server: a supervising process and `workers` forked processes, each serving one
/// request at a time with libfcgi's `FCGX_Accept_r` on the shared listening socket.
///
/// Processes rather than threads: a worker that dies takes only its own request with it and is replaced, and
/// `SIGTERM` can interrupt a blocked accept in every worker without touching a request in flight.
public struct FastCGIServer: Sendable {
    /// Where requests come from.
    public enum Listener: Sendable, Equatable {
        /// The listening socket handed over on fd 0 (spawn-fcgi, systemd socket units, mod_fcgid).
        case inherited
        /// A unix socket path, created with `mode`.
        case unixSocket(path: String, mode: UInt32)
        /// `HOST:PORT` (e.g. `127.0.0.1:9000`); libfcgi honours `FCGI_WEB_SERVER_ADDRS` for it.
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
    /// How long a connection may stay silent (mid-body, or idle between kept-alive requests).
    public let readTimeoutSeconds: Double
    public let responder: Responder

    public init(listener: Listener, workers: Int, graceSeconds: Double, readTimeoutSeconds: Double = 30,
                responder: Responder) {
        self.listener = listener
        self.workers = max(1, workers)
        self.graceSeconds = graceSeconds
        self.readTimeoutSeconds = readTimeoutSeconds
        self.responder = responder
    }

    /// True when fd 0 is a listening socket, i.e. a FastCGI process manager started us.
    public static var isHandedListener: Bool { FCGX_IsCGI() == 0 }

    /// The default worker count: four per online CPU. A worker serves one connection at a time, and nginx's
    /// kept-alive connections (deploy/nginx/webhook.conf: `keepalive 2` per nginx worker, one nginx worker per
    /// CPU) hold one each even while idle: this leaves as many workers again for new connections and slow
    /// uploads. An idle worker costs under 1 MiB of its own (the rest of its RSS is shared).
    public static var defaultWorkers: Int { 4 * max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// Serves until SIGTERM or SIGINT, then lets in-flight requests finish; returns the exit status.
    public func run() throws(SystemError) -> Int32 {
        try check("FCGX_Init", FCGX_Init())
        let socket = try openListener()
        defer {
            if case .unixSocket(let path, _) = listener { unlink(path) }
        }
        var stopSignals = Signals.set([SIGTERM, SIGINT, SIGCHLD, SIGHUP])
        sigprocmask(SIG_BLOCK, &stopSignals, nil)
        Log.write("serving FastCGI on \(listener.description) with \(workers) workers")

        var supervisor = Supervisor(socket: socket, responder: responder, readTimeoutSeconds: readTimeoutSeconds)
        for _ in 0..<workers { try supervisor.spawn() }
        return try supervisor.superviseUntilStopped(signals: stopSignals, graceSeconds: graceSeconds)
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

/// The supervising process: keeps `workers` processes alive and stops them gracefully.
private struct Supervisor {
    let socket: Int32
    let responder: Responder
    let readTimeoutSeconds: Double
    /// Live workers and when each started.
    var started: [pid_t: Double] = [:]
    /// When replacements for crashed workers are due (a worker that dies young is replaced after a pause).
    var replacementsDue: [Double] = []

    init(socket: Int32, responder: Responder, readTimeoutSeconds: Double) {
        self.socket = socket
        self.responder = responder
        self.readTimeoutSeconds = readTimeoutSeconds
    }

    mutating func spawn() throws(SystemError) {
        let pid = try check("fork", fork())
        if pid == 0 {
            _exit(Worker(socket: socket, responder: responder, readTimeoutSeconds: readTimeoutSeconds).serve())
        }
        started[pid] = Clock.now()
    }

    mutating func superviseUntilStopped(signals: sigset_t, graceSeconds: Double) throws(SystemError) -> Int32 {
        var signals = signals
        var deadline: Double?
        while true {
            var tick = timespec(tv_sec: 0, tv_nsec: 200_000_000)
            let signal = sigtimedwait(&signals, nil, &tick)
            if (signal == SIGTERM || signal == SIGINT) && deadline == nil {
                deadline = Clock.now() + graceSeconds
                Log.write("\(signal == SIGTERM ? "SIGTERM" : "SIGINT"): stopping; \(started.count) workers finish their requests first")
            }
            reap(replacing: deadline == nil)
            if let deadline {
                if started.isEmpty { break }
                // Repeat the signal: a worker blocks it while serving, and one that was between two calls when
                // it first came may be waiting on a kept-alive connection; the repeat wakes it.
                let signal = Clock.now() < deadline ? SIGTERM : SIGKILL
                if signal == SIGKILL { Log.write("grace period over: killing \(started.count) workers") }
                for pid in started.keys { kill(pid, signal) }
            } else {
                let now = Clock.now()
                while let due = replacementsDue.first, due <= now {
                    replacementsDue.removeFirst()
                    try spawn()
                }
            }
        }
        Log.write("stopped")
        return 0
    }

    private mutating func reap(replacing: Bool) {
        var status: Int32 = 0
        while case let pid = waitpid(-1, &status, WNOHANG), pid > 0 {
            guard let began = started.removeValue(forKey: pid) else { continue }
            guard replacing else { continue }
            Log.write("worker \(pid) \(Signals.describe(waitStatus: status)); starting another")
            let now = Clock.now()
            replacementsDue.append(now - began < 1 ? now + 1 : now)
            replacementsDue.sort()
        }
    }
}

/// One worker process: accepts and serves requests one at a time until told to stop.
private struct Worker {
    let socket: Int32
    let responder: Responder
    let readTimeoutSeconds: Double

    /// Returns the worker's exit status.
    func serve() -> Int32 {
        // SIGTERM/SIGINT stay blocked except while waiting for a request, so a request in flight is never
        // interrupted; the handler, without SA_RESTART, makes a waiting accept give up.
        var stop = Signals.set([SIGTERM, SIGINT])
        Signals.install([SIGTERM, SIGINT]) { _ in FCGX_ShutdownPending() }
        do {
            let request = try FastCGIRequest(socket: socket)
            while !Signals.arePending(stop) {
                sigprocmask(SIG_UNBLOCK, &stop, nil)
                let accepted = request.accept(timeoutSeconds: readTimeoutSeconds)
                sigprocmask(SIG_BLOCK, &stop, nil)
                guard accepted else { break }
                let record = responder.respond(over: request)
                request.finish()
                responder.complete(record)
                if responder.hook != nil { while waitpid(-1, nil, WNOHANG) > 0 {} }  // hook runners that have finished
            }
            return 0
        } catch {
            Log.write("worker cannot serve: \(error)")
            return 1
        }
    }
}

/// Signal sets and handlers, in Swift terms.
enum Signals {
    static func set(_ signals: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        return set
    }

    /// Installs `handler` without `SA_RESTART`, so that a blocking call it interrupts returns `EINTR`.
    static func install(_ signals: [Int32], handler: @convention(c) (Int32) -> Void) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        for signal in signals { sigaction(signal, &action, nil) }
    }

    static func arePending(_ signals: sigset_t) -> Bool {
        var pending = sigset_t()
        sigpending(&pending)
        var wanted = signals
        return (1..<32).contains { sigismember(&wanted, $0) == 1 && sigismember(&pending, $0) == 1 }
    }

    /// `waitpid`'s status in words (the WIFEXITED family are macros Swift does not import).
    static func describe(waitStatus status: Int32) -> String {
        let signal = status & 0x7F
        if signal == 0 { return "exited with status \((status >> 8) & 0xFF)" }
        return "was killed by signal \(signal)"
    }
}
