import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// Runs a command for each payload in PostgreSQL, each payload taken by exactly one of any number of consumers on
/// any hosts:
///
/// 1. take: the oldest available pending row, `FOR UPDATE SKIP LOCKED`, leased by moving its `available_at` to
///    the lease's end and counting the attempt (the take's `WHERE` and `ORDER BY` are exactly the index
///    `webhook_payloads_take`: a million-row backlog costs each take one index probe, not a sort);
/// 2. run the command (``Hook``'s guard: nothing of it outlives this consumer), renewing the lease every
///    `renewSeconds` while it runs, so a payload is never run twice at once while its consumer lives;
/// 3. record the outcome, if the lease is still ours (its token, drawn at the take, unchanged): done; or failed for now, available
///    again after a backoff with jitter; or **failed** for good after `maxAttempts`, or at once when the command
///    exits with ``Hook/giveUpStatus`` (65, as the handler's hook runners), every attempt's error kept in `errors`.
///
/// A consumer that dies leaves its lease to run out, and the payload is taken again (at least once).
public struct Consumer: Sendable {
    public let databaseURL: String
    /// The command, run like the handler's `--exec` (body on stdin, `WEBHOOK_*` variables, `WEBHOOK_ATTEMPT`).
    public let command: String
    public let timeoutSeconds: Double
    /// How long a taken payload stays with this consumer without a renewal.
    public let leaseSeconds: Double
    /// How often the lease is renewed while the command runs.
    public let renewSeconds: Double
    public let maxAttempts: Int
    /// Done payloads older than this are deleted by the consumers (0 keeps them).
    public let keepDoneSeconds: Double
    /// Where its numbers go (node_exporter's textfile collector), if anywhere.
    public var metrics: ForwarderMetrics?

    /// 25 attempts with the backoff below span about 16 hours: an application down overnight still gets its
    /// payloads; one that refuses a payload for a day needs a person (`list --state failed`, `retry`).
    public static let defaultMaxAttempts = 25

    public init(databaseURL: String, command: String, timeoutSeconds: Double = 30, leaseSeconds: Double = 60,
                renewSeconds: Double = 10, maxAttempts: Int = defaultMaxAttempts, keepDoneDays: Double = 7) {
        self.databaseURL = databaseURL
        self.command = command
        self.timeoutSeconds = timeoutSeconds
        self.leaseSeconds = leaseSeconds
        self.renewSeconds = renewSeconds
        self.maxAttempts = max(1, maxAttempts)
        self.keepDoneSeconds = keepDoneDays * 86400
    }

    /// Why a lease is refused: it must outlive two renewal intervals, so that one late renewal does not lose it.
    public var leaseProblem: String? {
        leaseSeconds >= 2 * renewSeconds && renewSeconds > 0 ? nil
            : "--lease-seconds (\(leaseSeconds)) must be at least twice --renew-seconds (\(renewSeconds))"
    }

    /// The pause before attempt `attempt + 1`: 10 s, 20 s, 40 s … an hour at most, each ±25 % at random so that
    /// payloads failed together are not all retried together.
    static func backoff(after attempt: Int) -> Double {
        min(3600, 10 * Double(1 << min(max(attempt - 1, 0), 12))) * Double.random(in: 0.75...1.25)
    }

    /// One leased payload.
    struct Taken {
        let envelope: Envelope
        let body: [UInt8]
        let attempt: Int
        /// Drawn at the take (a random UUID): renewals and the outcome act only while the row still holds it.
        /// The attempt number alone repeats once `retry` resets it.
        let lease: String
    }

    static let take = """
        UPDATE webhook_payloads SET available_at = now() + make_interval(secs => $1::float8),
            lease_until = now() + make_interval(secs => $1::float8), attempts = attempts + 1, lease = gen_random_uuid()
        WHERE id = (SELECT id FROM webhook_payloads WHERE state = 'pending' AND available_at <= now()
                    ORDER BY available_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id, body, to_char(received AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), remote_addr,
                  content_type, sender, scheme, attempts::text, lease::text
        """

    func takeOne(_ connection: PostgresConnection) throws(PostgresError) -> Taken? {
        guard let row = try connection.execute(Self.take, [.text(String(leaseSeconds))]).first else { return nil }
        guard let id = row.text(0), let body = row[1], let attempt = row.int(7), let lease = row.text(8) else {
            throw PostgresError("unexpected row from webhook_payloads")
        }
        let envelope = Envelope(body: body, id: id, received: row.text(2) ?? "", remoteAddress: row.text(3),
                                contentType: row.text(4), sender: row.text(5), scheme: row.text(6))
        return Taken(envelope: envelope, body: body, attempt: attempt, lease: lease)
    }

    /// Runs the command on `taken`, renewing the lease meanwhile, and records the outcome.
    func handle(_ taken: Taken, on connection: PostgresConnection) throws(PostgresError) -> Bool {
        let id = taken.envelope.id
        // The attempt too: a consumer of schema version 2 takes without drawing a token.
        let key: [PostgresValue] = [.text(id), .text(String(taken.attempt)), .text(taken.lease)]
        let hook = Hook(command: command, timeoutSeconds: timeoutSeconds)
        var confirmed = Clock.now()  // when the lease was last known to be ours for `leaseSeconds` more
        let result = CommandRun(hook: hook, body: taken.body, envelope: taken.envelope, attempt: taken.attempt)
            .wait(every: renewSeconds) { () -> Bool in
            let asked = Clock.now()
            do throws(PostgresError) {
                let renewed = try connection.execute("""
                    UPDATE webhook_payloads SET available_at = now() + make_interval(secs => $4::float8),
                        lease_until = now() + make_interval(secs => $4::float8)
                    WHERE id = $1 AND attempts = $2 AND lease = $3::uuid AND state = 'pending'
                    """, key + [.text(String(leaseSeconds))]).affected
                if renewed > 0 { confirmed = asked; return true }
                Log.write(.warning, "\(id) attempt \(taken.attempt): the lease was lost while the command ran; stopping it")
                return false
            } catch {
                // Held only while the next renewal can still come before the lease runs out.
                let held = Clock.now() + renewSeconds < confirmed + leaseSeconds
                Log.write(.warning, "\(id) attempt \(taken.attempt): cannot renew the lease: \(error)\(held ? "" : "; stopping the command before its lease runs out")")
                return held
            }
        }
        let gaveUp = result.givesUp
        let verdict: String
        let updated: Int
        if result.succeeded {
            verdict = "done"
            updated = try connection.execute("""
                UPDATE webhook_payloads SET state = 'done', done_at = now(), lease_until = NULL, last_error = NULL
                WHERE id = $1 AND attempts = $2 AND lease = $3::uuid AND state = 'pending'
                """, key).affected
        } else {
            let final = gaveUp || taken.attempt >= maxAttempts
            let pause = Self.backoff(after: taken.attempt)
            verdict = gaveUp ? "failed: the command gave up on it (exit \(Hook.giveUpStatus))"
                : final ? "failed after \(taken.attempt) attempts" : "will be tried again in \(Int(pause))s"
            updated = try connection.execute("""
                UPDATE webhook_payloads SET lease_until = NULL, last_error = $4,
                    errors = errors || jsonb_build_array(jsonb_build_object('attempt', $2::int, 'at', now(), 'error', $4::text)),
                    available_at = now() + make_interval(secs => $5::float8),
                    state = CASE WHEN $6::boolean THEN 'failed' ELSE 'pending' END,
                    failed_at = CASE WHEN $6::boolean THEN now() END
                WHERE id = $1 AND attempts = $2 AND lease = $3::uuid AND state = 'pending'
                """, key + [.text(result.summary), .text(String(pause)), .text(String(final))]).affected
        }
        let lost = updated == 0 ? " (its lease had run out: another consumer has it now)" : ""
        metrics?.ran(updated == 0 ? "lost" : result.succeeded ? "ok" : "failed")
        Log.write(result.succeeded && lost.isEmpty ? .info : .warning,
                  "\(id) attempt \(taken.attempt): \(result.summary); \(verdict)\(lost)")
        return result.succeeded
    }

    /// Deletes done payloads older than `keepDoneSeconds`, 1,000 at a time by the `done_at` index, until none is
    /// left or `stop` fires; returns how many.
    static func prune(over connection: PostgresConnection, olderThan seconds: Double, stop: Int32 = -1)
        throws(PostgresError) -> Int
    {
        guard seconds > 0 else { return 0 }
        var deleted = 0
        while true {
            let count = try connection.execute("""
                DELETE FROM webhook_payloads WHERE id IN (
                    SELECT id FROM webhook_payloads WHERE state = 'done' AND done_at < now() - make_interval(secs => $1::float8)
                    ORDER BY done_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
                """, [.text(String(seconds))]).affected
            deleted += count
            if count < 1000 || Forwarder.wait(for: [stop], seconds: 0) == stop { return deleted }
        }
    }

    /// `--once`: handles every payload available now, prunes, then returns how many succeeded and failed; throws if
    /// PostgreSQL cannot be reached or used.
    public func consumeOnce() throws(PostgresError) -> (succeeded: Int, failed: Int) {
        let connection = try Schema.connect(databaseURL)
        var counts = (succeeded: 0, failed: 0)
        while let taken = try takeOne(connection) {
            if try handle(taken, on: connection) { counts.succeeded += 1 } else { counts.failed += 1 }
        }
        _ = try Self.prune(over: connection, olderThan: keepDoneSeconds)
        try metrics?.countRows(connection)
        return counts
    }

    /// The service: consumes until SIGTERM or SIGINT (between payloads), pruning once a minute, reconnecting with
    /// a growing pause.
    public func serve(pollSeconds: Double = 5) {
        let stop = stopSignals()
        var pruned = 0.0
        serveReconnecting(stop: stop, failing: "cannot consume", waiting: "the payloads wait in PostgreSQL") {
            () throws(PostgresError) in
            let connection = try Schema.connect(databaseURL, stop: stop)
            try connection.execute("LISTEN \(Schema.channel)")
            Log.write("connected to \(connection.server); consuming webhook_payloads")
            return connection
        } work: { connection throws(PostgresError) in
            repeat {
                if Clock.now() - pruned >= 60 {  // busy or idle: a backlog must not stop retention
                    pruned = Clock.now()
                    let count = try Self.prune(over: connection, olderThan: keepDoneSeconds, stop: stop)
                    if count > 0 { Log.write("deleted \(count) payloads done more than \(keepDoneSeconds / 86400) days ago") }
                }
                guard let taken = try takeOne(connection) else { break }
                _ = try handle(taken, on: connection)
            } while Forwarder.wait(for: [stop], seconds: 0) != stop
            if Forwarder.wait(for: [stop], seconds: 0) == stop { return false }
            try metrics?.countRows(connection)
            let woken = Forwarder.wait(for: [stop, connection.socket], seconds: min(pollSeconds, leaseSeconds))
            if woken >= 0 && woken != stop { _ = try connection.receiveNotifications() }
            return woken != stop
        }
    }
}

/// One command run on a thread of its own, so that the consumer's thread can renew the lease meanwhile (the
/// connection is used by that thread only).
final class CommandRun: @unchecked Sendable {
    let hook: Hook
    let body: [UInt8]
    let envelope: Envelope
    let attempt: Int
    /// Written by the run's thread before it ends; read only after `pthread_join`.
    private var result: Hook.Result?
    private var finished: [Int32] = [-1, -1]
    /// A byte written here tells the run's guard to kill the command.
    private var stop: [Int32] = [-1, -1]

    init(hook: Hook, body: [UInt8], envelope: Envelope, attempt: Int) {
        self.hook = hook
        self.body = body
        self.envelope = envelope
        self.attempt = attempt
    }

    /// Starts the run, calls `renew` every `seconds` until it ends, and returns its result. Once `renew` says the
    /// lease is no longer ours, the run is stopped (killed by its guard): another consumer may be running it now.
    func wait(every seconds: Double, renew: () -> Bool) -> Hook.Result {
        guard pipe(&finished) == 0 else { return hook.run(body: body, envelope: envelope, attempt: attempt) }
        defer { close(finished[0]) }
        guard pipe(&stop) == 0 else {
            close(finished[1])
            return hook.run(body: body, envelope: envelope, attempt: attempt)
        }
        defer { close(stop[0]); close(stop[1]) }
        for fd in finished + stop { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { context in
            let run = Unmanaged<CommandRun>.fromOpaque(context!).takeRetainedValue()
            run.result = run.hook.run(body: run.body, envelope: run.envelope, attempt: run.attempt, stop: run.stop[0])
            close(run.finished[1])
            return nil
        }, Unmanaged.passRetained(self).toOpaque())
        guard started == 0 else {
            close(finished[1])
            return hook.run(body: body, envelope: envelope, attempt: attempt)
        }
        var stopping = false
        while Forwarder.wait(for: [finished[0]], seconds: seconds) != finished[0] {
            if !stopping && !renew() {
                stopping = true
                var byte: UInt8 = 1
                _ = write(stop[1], &byte, 1)
            }
        }
        pthread_join(thread, nil)
        return result!  // set by the thread before it ended, and pthread_join orders that before this read
    }
}
