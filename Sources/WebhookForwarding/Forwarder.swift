import CLinux
public import WebhookGateway

#if canImport(Glibc)
import Glibc
#endif

/// The table every handler host forwards into and every consumer takes from.
enum Schema {
    static let table = "webhook_payloads"
    /// The channel a forwarder notifies after each commit; consumers `LISTEN` to it as a wake-up only (a
    /// notification can be missed: consumers also look on their own every few seconds).
    static let channel = "webhook_payloads"

    /// Created when absent, under an advisory lock so that forwarders starting together do not race.
    static let create = """
        CREATE TABLE IF NOT EXISTS webhook_payloads (
            id            text PRIMARY KEY,
            body          bytea NOT NULL,
            received      timestamptz NOT NULL,
            remote_addr   text,
            content_type  text,
            sender        text,
            scheme        text,
            host          text NOT NULL,
            forwarded_at  timestamptz NOT NULL DEFAULT now(),
            state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
            attempts      integer NOT NULL DEFAULT 0,
            available_at  timestamptz NOT NULL DEFAULT now(),
            lease_until   timestamptz,
            last_error    text,
            done_at       timestamptz
        );
        CREATE INDEX IF NOT EXISTS webhook_payloads_pending ON webhook_payloads (available_at) WHERE state = 'pending'
        """

    /// A connection to `url`, the table created first if absent.
    static func connect(_ url: String) throws(PostgresError) -> PostgresConnection {
        let connection = try PostgresConnection(url)
        try connection.transaction { () throws(PostgresError) in
            try connection.execute("SELECT pg_advisory_xact_lock(hashtext('webhook_payloads'))")
            for statement in create.split(separator: ";") { try connection.execute(String(statement)) }
        }
        return connection
    }

    static let columns = ["id", "body", "received", "remote_addr", "content_type", "sender", "scheme", "host"]

    /// One statement for `rows` payloads (one round trip a batch), every value a bound parameter: only the
    /// placeholders `($1, … $8), ($9, …)` are written out.
    static func insert(rows: Int) -> String {
        let tuples = (0..<rows).map { row in
            "(" + columns.indices.map { "$\(row * columns.count + $0 + 1)" }.joined(separator: ", ") + ")"
        }
        return "INSERT INTO webhook_payloads (\(columns.joined(separator: ", "))) VALUES "
            + tuples.joined(separator: ", ") + " ON CONFLICT (id) DO NOTHING"
    }
}

/// Moves the payloads a handler stored in its spool's `new/` into PostgreSQL: insert (a payload already there is
/// left as it is), commit, and only then move the file to `cur/`. A crash between the commit and the move is
/// harmless: the next run inserts nothing and moves it. The handler's answers never depend on PostgreSQL.
public struct Forwarder: Sendable {
    public let spool: Spool
    public let databaseURL: String
    /// The handler host the payloads came through (recorded in each row).
    public let host: String
    public let batchSize: Int
    /// Where its numbers go (node_exporter's textfile collector), if anywhere.
    public var metrics: ForwarderMetrics?

    public init(spool: Spool, databaseURL: String, host: String, batchSize: Int = 500) {
        self.spool = spool
        self.databaseURL = databaseURL
        self.host = host
        self.batchSize = min(max(1, batchSize), 8000)  // PostgreSQL binds at most 65,535 parameters, 8 a row
    }

    /// Connects, creates the table if needed, and says where it is connected.
    func connect() throws(PostgresError) -> PostgresConnection {
        if access("\(spool.directory)/.hook-slots", F_OK) == 0 {
            Log.write(.warning, "the handler of \(spool.directory) also runs an --exec hook: each payload goes either to "
                + "the hook or to PostgreSQL; run the command with webhook-forwarder consume --exec instead")
        }
        return try Schema.connect(databaseURL)
    }

    /// Forwards everything now in `new/`, in transactions of `batchSize`; returns how many were forwarded.
    func forwardWaiting(over connection: PostgresConnection) throws(PostgresError) -> Int {
        var forwarded = 0
        var tried: Set<String> = []  // a file that cannot be read or moved is not tried again in this pass
        while true {
            let ids = ((try? spool.waitingIDs()) ?? []).filter { !tried.contains($0) }.prefix(batchSize)
            if ids.isEmpty { return forwarded }
            tried.formUnion(ids)
            let batch = ids.compactMap { id in spool.payload(id).map { (id, $0.envelope, $0.body) } }
            if !batch.isEmpty {
                do throws(PostgresError) { try connection.transaction { () throws(PostgresError) in
                    try connection.execute(Schema.insert(rows: batch.count), batch.flatMap { id, envelope, body in
                        [.text(id), .bytes(body), .text(envelope.received), text(envelope.remoteAddress),
                         text(envelope.contentType), text(envelope.sender), text(envelope.scheme), .text(host)]
                    })
                    try connection.execute("SELECT pg_notify($1, '')", [.text(Schema.channel)])
                } } catch {
                    metrics?.batchFailed()
                    throw error
                }
            }
            for (id, _, _) in batch where !spool.markTaken(id) {
                Log.write(.error, "forwarded \(id) but could not move it to cur/: \(String(cString: strerror(errno)))")
            }
            forwarded += batch.count
        }
    }

    private func text(_ value: String?) -> PostgresValue { value.map { .text($0) } ?? .null }

    /// `--once`: forwards what is there and returns how many, or throws if PostgreSQL cannot be reached or used
    /// (then everything stays in `new/`).
    public func forwardOnce() throws(PostgresError) -> Int {
        let count = try forwardWaiting(over: try connect())
        metrics?.forwarded(count, lagSeconds: spool.backlog().oldestSeconds ?? 0)
        return count
    }

    /// The service: forwards as payloads arrive (woken by inotify on `new/`, with a look every `pollSeconds` as
    /// a backup), reconnecting with a growing pause (1 s … 30 s) while PostgreSQL cannot be reached. Returns when
    /// SIGTERM or SIGINT comes.
    public func serve(pollSeconds: Double = 5) {
        let stop = stopSignals()
        let watch = clinux_watch_directory(spool.path("new"))
        if watch < 0 {
            Log.write(.warning, "cannot watch \(spool.path("new")) (\(String(cString: strerror(errno)))); "
                + "looking every \(pollSeconds)s")
        }
        serveReconnecting(stop: stop, failing: "cannot forward", waiting: "the payloads stay in new/") {
            () throws(PostgresError) in
            let connection = try connect()
            Log.write(.info, "connected to \(connection.server); forwarding \(spool.path("new"))")
            return connection
        } work: { connection throws(PostgresError) in
            let count = try forwardWaiting(over: connection)
            if count > 0 { Log.write(.info, "forwarded \(count) payloads") }
            metrics?.forwarded(count, lagSeconds: spool.backlog().oldestSeconds ?? 0)
            let woken = Self.wait(for: [stop, watch], seconds: pollSeconds)
            if woken == watch { Self.drain(watch) }
            return woken != stop
        }
    }

    /// Waits until one of `fds` is readable or `seconds` pass; returns the first readable descriptor, or -1.
    static func wait(for fds: [Int32], seconds: Double) -> Int32 {
        var polled = fds.filter { $0 >= 0 }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        guard poll(&polled, nfds_t(polled.count), Int32(seconds * 1000)) > 0 else { return -1 }
        return polled.first(where: { $0.revents != 0 })?.fd ?? -1
    }

    /// Reads a non-blocking descriptor's pending events (inotify's) to their end.
    static func drain(_ fd: Int32) {
        var scratch = [UInt8](repeating: 0, count: 4096)
        while scratch.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }
}

/// SIGTERM and SIGINT, blocked, as a descriptor that becomes readable when one comes: the services stop between
/// two pieces of work, never in the middle of one.
func stopSignals() -> Int32 {
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGTERM)
    sigaddset(&signals, SIGINT)
    sigprocmask(SIG_BLOCK, &signals, nil)
    return clinux_signal_fd(&signals)
}

/// The services' shape: connect, then work (`work` returns false once a stop signal has come) until PostgreSQL
/// fails; then say why and connect again after 1, 2, 4 … 30 s, until a stop signal comes.
func serveReconnecting(stop: Int32, failing: String, waiting: String,
                       connect: () throws(PostgresError) -> PostgresConnection,
                       work: (PostgresConnection) throws(PostgresError) -> Bool) {
    var pause = 1.0
    while true {
        do throws(PostgresError) {
            let connection = try connect()
            pause = 1
            while try work(connection) {}
            break
        } catch {
            Log.write(.error, "\(failing): \(error); \(waiting); trying again in \(Int(pause))s")
            if Forwarder.wait(for: [stop], seconds: pause) == stop { break }
            pause = min(30, pause * 2)
        }
    }
    Log.write(.info, "stopped")
}
