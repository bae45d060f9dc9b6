import CLinux
import FoundationEssentials
public import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// Moves the payloads a handler stored in its spool's `new/` into PostgreSQL: insert (a payload already there is
/// left as it is), commit (synchronously: the session sets `synchronous_commit = on`), and only then move the file
/// to `cur/`. A crash between the commit and the move is harmless: the next run inserts nothing and moves it. The
/// handler's answers never depend on PostgreSQL.
public struct Forwarder: Sendable {
    public let spool: Spool
    public let databaseURL: String
    /// The handler host the payloads came through (recorded in each row).
    public let host: String
    public let batchSize: Int
    /// A batch holds at most `batchSize` payloads and, unless one body alone is larger, at most this many bytes
    /// of bodies (PostgreSQL refuses a message over 1 GiB).
    public let batchBytes: Int
    /// Where its numbers go (node_exporter's textfile collector), if anywhere.
    public var metrics: ForwarderMetrics?

    public init(spool: Spool, databaseURL: String, host: String, batchSize: Int = 500, batchBytes: Int = 32 << 20) {
        self.spool = spool
        self.databaseURL = databaseURL
        self.host = host
        self.batchSize = max(1, batchSize)
        self.batchBytes = max(1, batchBytes)
    }

    /// What one pass did.
    public struct Pass: Sendable {
        public var forwarded = 0
        /// Files in `new/` that could not be read whole (torn, unreadable): left there, each one logged.
        public var unreadable = 0
        /// Payloads PostgreSQL refused even alone: moved to `unforwardable/`, each one logged.
        public var setAside = 0
    }

    /// A payload read from the spool.
    typealias Item = (id: String, envelope: Envelope, body: [UInt8])

    /// Connects, checks the schema, and says where it is connected.
    func connect(stop: Int32 = -1) throws(PostgresError) -> PostgresConnection {
        if access("\(spool.directory)/.hook-slots", F_OK) == 0 {
            Log.write(.warning, "the handler of \(spool.directory) also runs an --exec hook: each payload goes either to "
                + "the hook or to PostgreSQL; run the command with webhook-forwarder consume --exec instead")
        }
        return try Schema.connect(databaseURL, stop: stop)
    }

    /// The names in `new/`, or an error an operator must see (a wrong, missing or unreadable spool).
    public func waiting() throws(PostgresError) -> [String] {
        do { return try spool.waitingIDs() } catch { throw PostgresError("cannot read the spool: \(error)") }
    }

    /// Forwards everything now in `new/` (listed once: a pass reads each name once), in batches of at most
    /// `batchSize` payloads and `batchBytes` bytes. `reported` holds the unreadable files already logged.
    ///
    /// Pipelined, so that the server's work overlaps this process's: batch N's statement is sent and runs (insert,
    /// then its own transaction's synchronous commit) while batch N+1 is read from the spool; then N's result is
    /// read to its end (the commit returned), N+1 is sent, and only then are N's files moved to `cur/` (by a
    /// ``Mover`` thread, while this one reads N+2).
    func forwardWaiting(over connection: PostgresConnection, reported: inout Set<String>) throws(PostgresError) -> Pass {
        var pass = Pass()
        var batch: [Item] = [], bytes = 0
        var underWay: [Item]?  // sent, its result not yet read
        let mover = Mover(spool: spool)
        defer { mover.finish() }
        func flush() throws(PostgresError) {
            var committed: [Item] = []
            if let sent = underWay {
                underWay = nil
                do throws(PostgresError) {
                    try connection.receive()
                    committed = sent
                } catch {
                    metrics?.batchFailed()
                    guard error.isAboutTheData else { throw error }
                    let (inserted, refused) = try split(sent, refused: error, over: connection)
                    committed = inserted
                    pass.setAside += refused
                }
            }
            defer {  // even if the next batch cannot be sent: these are committed
                if !committed.isEmpty { mover.move(committed.map(\.id)) }
                pass.forwarded += committed.count
            }
            if !batch.isEmpty {
                try connection.send(Schema.insertBatch, parameters(batch))
                underWay = batch
                batch = []
                bytes = 0
            }
        }
        let decoder = JSONDecoder()
        for id in try waiting() {
            switch Self.item(at: spool.path("new", id), decoder: decoder) {
            case .some(let item):
                if !batch.isEmpty && bytes + item.body.count > batchBytes { try flush() }
                batch.append(item)
                bytes += item.body.count
                if batch.count >= batchSize { try flush() }
            case .none where access(spool.path("new", id), F_OK) == 0:
                pass.unreadable += 1
                if reported.insert(id).inserted {
                    Log.write(.error, "\(spool.path("new", id)) cannot be read whole (torn or unreadable): left in new/")
                }
            case .none: break  // gone: another forwarder moved it
            }
        }
        while underWay != nil || !batch.isEmpty { try flush() }
        return pass
    }

    /// Inserts `items` in one statement (its own transaction); if PostgreSQL refuses them for what they carry, in
    /// halves, down to a single payload, which is then set aside. Returns what is now in the table, and how many
    /// were set aside.
    func insert(_ items: [Item], over connection: PostgresConnection) throws(PostgresError) -> ([Item], Int) {
        guard !items.isEmpty else { return ([], 0) }
        do throws(PostgresError) {
            try connection.execute(Schema.insertBatch, parameters(items))
            return (items, 0)
        } catch {
            metrics?.batchFailed()
            guard error.isAboutTheData else { throw error }
            return try split(items, refused: error, over: connection)
        }
    }

    /// `items` refused for their data: each half inserted on its own; a single payload is set aside.
    func split(_ items: [Item], refused error: PostgresError, over connection: PostgresConnection)
        throws(PostgresError) -> ([Item], Int)
    {
        guard items.count > 1 else {
            setAside(items[0].id, because: error)
            return ([], 1)
        }
        let half = items.count / 2
        let (first, a) = try insert(Array(items[..<half]), over: connection)
        let (second, b) = try insert(Array(items[half...]), over: connection)
        return (first + second, a + b)
    }

    /// Moves a payload PostgreSQL will never take out of the way (`DIR/unforwardable/`), saying why.
    func setAside(_ id: String, because error: PostgresError) {
        let aside = "\(spool.directory)/unforwardable"
        _ = mkdir(aside, 0o700)
        let moved = rename(spool.path("new", id), "\(aside)/\(id)") == 0
        Log.write(.error, "PostgreSQL refuses \(id) even alone (\(error)); "
            + (moved ? "set aside in \(aside)/" : "cannot set it aside: \(String(cString: strerror(errno)))"))
    }

    /// The bound values of `Schema.insertBatch` for `items`: a column each (binary arrays), then the host.
    private func parameters(_ items: [Item]) -> [PostgresValue] {
        func column(_ value: (Envelope) -> String?) -> PostgresValue {
            .array(items.map { value($0.envelope).map { Array($0.utf8) } }, of: .text)
        }
        return [.array(items.map { Array($0.id.utf8) }, of: .text), .array(items.map(\.body), of: .bytea),
                column(\.received), column(\.remoteAddress), column(\.contentType), column(\.sender),
                column(\.scheme), .text(host), .text(Schema.channel)]
    }

    /// A spool file's envelope and body, or nil if it is gone, unreadable or shorter than its envelope says.
    static func item(at path: String, decoder: JSONDecoder = JSONDecoder()) -> Item? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()  // read at its size: no 64 KiB scratch buffer to clear per file
        guard fstat(fd, &status) == 0, let content = readAll(fd, limit: Int(status.st_size) + 1),
              let newline = content.firstIndex(of: UInt8(ascii: "\n")),
              let envelope = try? decoder.decode(Envelope.self, from: Data(content[..<newline])),
              content.count - newline - 1 == envelope.length
        else { return nil }
        return (envelope.id, envelope, Array(content[(newline + 1)...]))
    }

    /// `--once`: forwards what is there, or throws if the spool or PostgreSQL cannot be used (then everything
    /// stays in `new/`).
    public func forwardOnce() throws(PostgresError) -> Pass {
        _ = try waiting()
        var reported = Set<String>()
        let pass = try forwardWaiting(over: try connect(), reported: &reported)
        metrics?.forwarded(pass, lagSeconds: spool.backlog().oldestSeconds ?? 0)
        return pass
    }

    /// `--from-cur --since T`: inserts again the payloads in `cur/` stored at or after `since` (seconds since the
    /// epoch), leaving the files where they are; rows already there are left as they are. For a database that lost
    /// recent commits (an asynchronous standby promoted, a restore).
    public func forwardAgain(since: Double) throws(PostgresError) -> Pass {
        let names: [String]
        do { names = try directoryEntries(spool.path("cur")) } catch { throw PostgresError("cannot read the spool: \(error)") }
        let connection = try connect()
        var pass = Pass(), batch: [Item] = [], bytes = 0
        for name in names {
            var status = stat()
            guard stat(spool.path("cur", name), &status) == 0, Double(status.st_mtim.tv_sec) >= since else { continue }
            guard let item = Self.item(at: spool.path("cur", name)) else {
                pass.unreadable += 1
                Log.write(.error, "\(spool.path("cur", name)) cannot be read whole (torn or unreadable)")
                continue
            }
            if batch.count >= batchSize || (!batch.isEmpty && bytes + item.body.count > batchBytes) {
                pass.forwarded += try insertAgain(batch, over: connection)
                batch = []
                bytes = 0
            }
            batch.append(item)
            bytes += item.body.count
        }
        pass.forwarded += try insertAgain(batch, over: connection)
        return pass
    }

    private func insertAgain(_ items: [Item], over connection: PostgresConnection) throws(PostgresError) -> Int {
        guard !items.isEmpty else { return 0 }
        return try connection.execute(Schema.insertBatch, parameters(items)).first?.int(0) ?? 0
    }

    /// The service: forwards as payloads arrive (woken by inotify on `new/`, with a look every `pollSeconds` as
    /// a backup), reconnecting with a growing pause (1 s … 30 s) while PostgreSQL cannot be reached. Returns when
    /// SIGTERM or SIGINT comes; throws at once if the spool cannot be read.
    public func serve(pollSeconds: Double = 5) throws(PostgresError) {
        _ = try waiting()
        let stop = stopSignals()
        let watch = clinux_watch_directory(spool.path("new"))
        if watch < 0 {
            Log.write(.warning, "cannot watch \(spool.path("new")) (\(String(cString: strerror(errno)))); "
                + "looking every \(pollSeconds)s")
        }
        var reported = Set<String>()
        serveReconnecting(stop: stop, failing: "cannot forward", waiting: "the payloads stay in new/") {
            () throws(PostgresError) in
            let connection = try connect(stop: stop)
            Log.write("connected to \(connection.server); forwarding \(spool.path("new"))")
            return connection
        } work: { connection throws(PostgresError) in
            let pass = try forwardWaiting(over: connection, reported: &reported)
            if pass.forwarded > 0 { Log.write("forwarded \(pass.forwarded) payloads") }
            metrics?.forwarded(pass, lagSeconds: spool.backlog().oldestSeconds ?? 0)
            spool.pruneTakenIfDue()  // cur/'s retention (WebhookSpool/Retention.swift)
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

extension Schema {
    /// A whole batch in one statement, which runs in its own transaction (committed, synchronously, before its
    /// result ends): each column one array parameter (`$1` … `$7`, binary), the host `$8`; a payload already in the
    /// table is left as it is; the consumers are notified (`$9`) in the same transaction. Returns how many rows are
    /// new. One short statement and 9 parameters a batch, instead of 8 placeholders a row (a 4,000-placeholder
    /// statement to parse and plan every batch, and a cap of 8,000 rows).
    static let insertBatch = """
        WITH inserted AS (
            INSERT INTO webhook_payloads (id, body, received, remote_addr, content_type, sender, scheme, host)
            SELECT id, body, received::timestamptz, remote_addr, content_type, sender, scheme, $8::text
            FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                AS batch (id, body, received, remote_addr, content_type, sender, scheme)
            ON CONFLICT DO NOTHING RETURNING 1)
        SELECT count(*)::text FROM inserted, pg_notify($9::text, '') AS notified
        """
}

/// SIGTERM and SIGINT, blocked, as a descriptor that becomes readable when one comes: the services stop between
/// two pieces of work, never in the middle of one, and give up any wait for PostgreSQL at once.
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
        } catch where error.state == "stop" {
            break
        } catch {
            Log.write(.error, "\(failing): \(error); \(waiting); trying again in \(Int(pause))s")
            if Forwarder.wait(for: [stop], seconds: pause) == stop { break }
            pause = min(30, pause * 2)
        }
    }
    Log.write("stopped")
}
