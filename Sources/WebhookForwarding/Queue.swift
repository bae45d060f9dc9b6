/// What an operator does with the table by hand: look at payloads by state, send failed ones back, delete old
/// done ones (the consumers also do that by themselves).
public enum Queue {
    public static let states = ["pending", "done", "failed"]

    /// One line per payload in `state`, oldest first: id, attempts, when received, and for failed ones every
    /// attempt's error (JSON).
    public static func list(_ url: String, state: String, limit: Int) throws(PostgresError) -> [String] {
        let connection = try Schema.connect(url)
        return try connection.execute("""
            SELECT id, attempts::text, to_char(received AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                   CASE WHEN state = 'failed' THEN errors::text ELSE coalesce(last_error, '') END
            FROM webhook_payloads WHERE state = $1
            ORDER BY CASE WHEN state = 'failed' THEN failed_at WHEN state = 'done' THEN done_at ELSE available_at END, id
            LIMIT $2::int
            """, [.text(state), .text(String(limit))]).rows.map { row in
            "\(row.text(0) ?? "")\tattempts=\(row.text(1) ?? "")\treceived=\(row.text(2) ?? "")\t\(row.text(3) ?? "")"
        }
    }

    /// Sends failed payloads back to the consumers (all of them, or those in `ids`): pending, available now, the
    /// attempt count reset; their errors are kept. Returns how many.
    public static func retry(_ url: String, ids: [String]?) throws(PostgresError) -> Int {
        let connection = try Schema.connect(url)
        return try connection.transaction { () throws(PostgresError) in
            let count = try connection.execute("""
                UPDATE webhook_payloads SET state = 'pending', attempts = 0, available_at = now(), lease_until = NULL,
                    lease = NULL, failed_at = NULL
                WHERE state = 'failed' AND ($1::text IS NULL OR id = ANY (string_to_array($1::text, ',')))
                """, [ids.map { .text($0.joined(separator: ",")) } ?? .null]).affected
            try connection.execute("SELECT pg_notify($1, '')", [.text(Schema.channel)])
            return count
        }
    }

    /// Deletes payloads done more than `days` days ago, in small batches by index; returns how many.
    public static func purge(_ url: String, olderThanDays days: Double) throws(PostgresError) -> Int {
        try Consumer.prune(over: try Schema.connect(url), olderThan: days * 86400)
    }
}
