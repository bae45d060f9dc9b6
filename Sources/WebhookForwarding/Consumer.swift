public import WebhookGateway

#if canImport(Glibc)
import Glibc
#endif

/// Runs a command for each payload in PostgreSQL, each payload taken by exactly one of any number of consumers on
/// any hosts: a consumer takes a row with `FOR UPDATE SKIP LOCKED` and leases it for `leaseSeconds`; success marks
/// it done, failure makes it available again after a growing pause; a consumer that dies leaves its lease to
/// expire, and the payload is taken again. `LISTEN`/`NOTIFY` wakes consumers promptly, and they also look every
/// few seconds, since a notification can be missed.
public struct Consumer: Sendable {
    public let databaseURL: String
    /// The command, run like the handler's `--exec` (body on stdin, `WEBHOOK_*` variables).
    public let hook: Hook
    /// How long a payload stays with the consumer that took it: longer than the command may run.
    public let leaseSeconds: Double
    /// Where its numbers go (node_exporter's textfile collector), if anywhere.
    public var metrics: ForwarderMetrics?

    public init(databaseURL: String, hook: Hook, leaseSeconds: Double? = nil) {
        self.databaseURL = databaseURL
        self.hook = hook
        self.leaseSeconds = leaseSeconds ?? hook.timeoutSeconds + 30
    }

    /// One leased payload.
    struct Taken {
        let envelope: Envelope
        let body: [UInt8]
        let attempt: Int
    }

    static let take = """
        UPDATE webhook_payloads SET lease_until = now() + make_interval(secs => $1::float8), attempts = attempts + 1
        WHERE id = (SELECT id FROM webhook_payloads
                    WHERE state = 'pending' AND available_at <= now() AND (lease_until IS NULL OR lease_until < now())
                    ORDER BY received, id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id, body, to_char(received AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), remote_addr,
                  content_type, sender, scheme, attempts
        """

    func takeOne(_ connection: PostgresConnection) throws(PostgresError) -> Taken? {
        guard let row = try connection.execute(Self.take, [.text(String(leaseSeconds))]).first else { return nil }
        guard let id = row[0], let text = row[1], let body = [UInt8](byteaText: text),
              let attempt = row[7].flatMap({ Int($0) })
        else { throw PostgresError("unexpected row from webhook_payloads") }
        let envelope = Envelope(body: body, id: id, received: row[2] ?? "", remoteAddress: row[3], contentType: row[4],
                                sender: row[5], scheme: row[6])
        return Taken(envelope: envelope, body: body, attempt: attempt)
    }

    /// Runs the command on `taken` and records the outcome, if the lease is still ours (`attempts` unchanged).
    func handle(_ taken: Taken, on connection: PostgresConnection) throws(PostgresError) -> Bool {
        let id = taken.envelope.id
        let result = hook.run(body: taken.body, envelope: taken.envelope)
        let updated: [[String?]]
        if result.succeeded {
            updated = try connection.execute("""
                UPDATE webhook_payloads SET state = 'done', done_at = now(), lease_until = NULL, last_error = NULL
                WHERE id = $1 AND attempts = $2 RETURNING id
                """, [.text(id), .text(String(taken.attempt))])
        } else {
            // 10 s, 20 s, 40 s … an hour at most between tries.
            let pause = min(3600, 10 * Double(1 << min(taken.attempt - 1, 10)))
            updated = try connection.execute("""
                UPDATE webhook_payloads SET lease_until = NULL, last_error = $3,
                    available_at = now() + make_interval(secs => $4::float8)
                WHERE id = $1 AND attempts = $2 RETURNING id
                """, [.text(id), .text(String(taken.attempt)), .text(result.summary), .text(String(pause))])
        }
        let lost = updated.isEmpty ? " (its lease had run out: another consumer has it now)" : ""
        metrics?.ran(updated.isEmpty ? "lost" : result.succeeded ? "ok" : "failed")
        let verdict = result.succeeded ? "; done" : "; will be tried again"
        Log.write(result.succeeded && lost.isEmpty ? .info : .warning, "\(id) attempt \(taken.attempt): \(result.summary)\(verdict)\(lost)")
        return result.succeeded
    }

    /// `--once`: handles every payload available now, then returns how many succeeded and failed; throws if
    /// PostgreSQL cannot be reached or used.
    public func consumeOnce() throws(PostgresError) -> (succeeded: Int, failed: Int) {
        let connection = try Schema.connect(databaseURL)
        var counts = (succeeded: 0, failed: 0)
        while let taken = try takeOne(connection) {
            if try handle(taken, on: connection) { counts.succeeded += 1 } else { counts.failed += 1 }
        }
        try metrics?.countRows(connection)
        return counts
    }

    /// The service: consumes until SIGTERM or SIGINT (between payloads), reconnecting with a growing pause.
    public func serve(pollSeconds: Double = 5) {
        let stop = stopSignals()
        serveReconnecting(stop: stop, failing: "cannot consume", waiting: "the payloads wait in PostgreSQL") {
            () throws(PostgresError) in
            let connection = try Schema.connect(databaseURL)
            try connection.execute("LISTEN \(Schema.channel)")
            Log.write(.info, "connected to \(connection.server); consuming webhook_payloads")
            return connection
        } work: { connection throws(PostgresError) in
            while let taken = try takeOne(connection) {
                _ = try handle(taken, on: connection)
                if Forwarder.wait(for: [stop], seconds: 0) == stop { return false }
            }
            try metrics?.countRows(connection)
            let woken = Forwarder.wait(for: [stop, connection.socket], seconds: min(pollSeconds, leaseSeconds))
            if woken >= 0 && woken != stop { _ = try connection.receiveNotifications() }
            return woken != stop
        }
    }
}

/// Retention: payloads handled more than `days` ago are deleted. A sender's delivery of such a payload after that
/// would be stored and handled again: the table only remembers what it keeps.
public func purgeDone(databaseURL: String, olderThanDays days: Int) throws(PostgresError) -> Int {
    return try Schema.connect(databaseURL).execute("""
        DELETE FROM webhook_payloads WHERE state = 'done' AND done_at < now() - make_interval(days => $1::int)
        RETURNING id
        """, [.text(String(days))]).count
}
