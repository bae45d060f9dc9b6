import WebhookSpool

/// The table every handler host forwards into and every consumer takes from, and its versioned migrations.
///
/// DDL runs only in `webhook-forwarder migrate`, or on first use when the catalog says the table is absent: a
/// connection never takes a lock stronger than a row's on a table that exists, so inserts never queue behind an
/// index build, and the forwarder and consumers need no more than the grants docs/forwarder.md lists.
public enum Schema {
    static let table = "webhook_payloads"
    /// The channel a forwarder notifies after each commit; consumers `LISTEN` to it as a wake-up only (a
    /// notification can be missed: consumers also look on their own every few seconds).
    static let channel = "webhook_payloads"

    /// Each migration once, in order; never edit one that has shipped: add the next.
    static let migrations: [(version: Int, description: String, statements: [String])] = [
        (1, "the table as 0.1 created it (adopted if it exists)", [
            """
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
            )
            """,
        ]),
        (2, "failed state, per-attempt errors, leases in available_at, indexes for the take and retention", [
            "ALTER TABLE webhook_payloads DROP CONSTRAINT IF EXISTS webhook_payloads_state_check",
            "ALTER TABLE webhook_payloads ADD CONSTRAINT webhook_payloads_state_check "
                + "CHECK (state IN ('pending', 'done', 'failed'))",
            "ALTER TABLE webhook_payloads ADD COLUMN errors jsonb NOT NULL DEFAULT '[]'",
            "ALTER TABLE webhook_payloads ADD COLUMN failed_at timestamptz",
            // A lease is now "not available before it ends": the take needs one range condition, one order.
            "UPDATE webhook_payloads SET available_at = lease_until WHERE state = 'pending' AND lease_until > available_at",
            "DROP INDEX IF EXISTS webhook_payloads_pending",
            "CREATE INDEX webhook_payloads_take ON webhook_payloads (available_at, id) WHERE state = 'pending'",
            "CREATE INDEX webhook_payloads_done ON webhook_payloads (done_at) WHERE state = 'done'",
            "CREATE INDEX webhook_payloads_failed ON webhook_payloads (failed_at) WHERE state = 'failed'",
        ]),
        // (id, attempts) repeats once `retry` resets attempts: a consumer that lost its lease could renew or
        // complete a later one. Each take now draws a token that never repeats, and only its holder acts.
        (3, "a lease token drawn at each take", [
            "ALTER TABLE webhook_payloads ADD COLUMN lease uuid",
        ]),
    ]
    static var latest: Int { migrations.last!.version }

    /// Applies the migrations not yet applied, in one transaction under an advisory lock (so that two at once do
    /// not race); returns the versions applied.
    public static func migrate(_ url: String) throws(PostgresError) -> [Int] {
        try migrate(over: PostgresConnection(url))
    }

    static func migrate(over connection: PostgresConnection) throws(PostgresError) -> [Int] {
        try connection.transaction { () throws(PostgresError) in
            try connection.execute("SELECT pg_advisory_xact_lock(hashtext('webhook_payloads'))")
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS webhook_forwarder_migrations (
                    version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let applied = Set(try connection.execute("SELECT version::text FROM webhook_forwarder_migrations").rows
                .compactMap { $0.int(0) })
            var done: [Int] = []
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements { try connection.execute(statement) }
                try connection.execute("INSERT INTO webhook_forwarder_migrations (version, description) VALUES ($1, $2)",
                                       [.text(String(migration.version)), .text(migration.description)])
                done.append(migration.version)
            }
            return done
        }
    }

    /// A connection to `url` whose schema is the one this program knows: created when the catalog says the table
    /// is absent; an older one is refused with the command that upgrades it.
    static func connect(_ url: String, stop: Int32 = -1) throws(PostgresError) -> PostgresConnection {
        let connection = try PostgresConnection(url, stop: stop)
        let found = try connection.execute("""
            SELECT (to_regclass('webhook_payloads') IS NOT NULL)::text,
                   (to_regclass('webhook_forwarder_migrations') IS NOT NULL)::text
            """).first
        if found?.text(0) == "false" {
            do throws(PostgresError) {
                let applied = try migrate(over: connection)
                if !applied.isEmpty { Log.write("created webhook_payloads (schema version \(latest))") }
                return connection
            } catch {
                throw PostgresError("webhook_payloads does not exist and cannot be created here (\(error)): run "
                    + "`webhook-forwarder migrate` as the role that should own it", state: error.state)
            }
        }
        guard found?.text(1) == "true" else {
            throw PostgresError("webhook_payloads predates versioned migrations: run `webhook-forwarder migrate` once, "
                + "as its owner")
        }
        let version = try connection.execute("SELECT max(version)::text FROM webhook_forwarder_migrations").first?.int(0)
        guard let version, version >= latest else {
            throw PostgresError("webhook_payloads is at schema version \(version ?? 0), this program needs \(latest): "
                + "run `webhook-forwarder migrate` as its owner")
        }
        return connection
    }
}
