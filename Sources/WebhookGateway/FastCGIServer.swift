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
                for (slot, named) in try Journal.recoverAbandoned(in: spool, board: server.journalBoard) where named > 0 {
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
