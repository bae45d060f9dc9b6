import WebhookSpool
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// webhook-forwarder's own numbers, written after each pass as a file for node_exporter's textfile collector
/// (`--metrics-file /var/lib/prometheus/node-exporter/webhook-forwarder.prom`): the forwarder and the consumers are
/// services without a listener, and the collector is what postgres_exporter's and cron jobs' users already run.
/// Written to `PATH.tmp` and renamed over PATH, so the collector never reads half a file; in the Prometheus text
/// format 0.0.4 (the collector reads no other).
public final class ForwarderMetrics: Sendable {
    public static let variable = "WEBHOOK_METRICS_FILE"

    public let path: String
    private let state = Mutex(State())

    struct State {
        var forwarded = 0, setAside = 0, batchesFailed = 0, lagSeconds = 0.0, lastForward = 0
        var runs: [String: Int] = ["ok": 0, "failed": 0, "lost": 0]
        /// Rows not yet done, by state (`pending`, `retrying`: pending after a failed attempt, or any other state
        /// that is not `done`), and the oldest pending one's age; nil until the consumer has counted them.
        var rows: [String: Int]?
        var oldestPendingSeconds = 0.0
        var lastCount = 0.0
    }

    public init(path: String) {
        self.path = path
    }

    /// `--metrics-file`, else `$WEBHOOK_METRICS_FILE`; nil (no metrics) when neither is set.
    public static func from(option: String?) -> ForwarderMetrics? {
        let path = option ?? getenv(variable).map { String(cString: $0) } ?? ""
        return path.isEmpty ? nil : ForwarderMetrics(path: path)
    }

    /// A forwarding pass ended; `lag`: the age of the oldest payload still in `new/`.
    func forwarded(_ pass: Forwarder.Pass, lagSeconds: Double) {
        state.withLock {
            $0.forwarded += pass.forwarded
            $0.setAside += pass.setAside
            $0.lagSeconds = lagSeconds
            $0.lastForward = time(nil)
        }
        write()
    }

    /// A batch's transaction failed: its payloads stay in `new/` (or, refused for what they carry, are tried in
    /// halves).
    func batchFailed() {
        state.withLock { $0.batchesFailed += 1 }
        write()
    }

    /// The consumer's command ran: `ok`, `failed` (tried again later), or `lost` (its lease had run out).
    func ran(_ result: String) {
        state.withLock { $0.runs[result, default: 0] += 1 }
        write()
    }

    /// Counts the rows not yet done (at most every 10 s: on a large table it is a scan of the pending index).
    func countRows(_ connection: PostgresConnection) throws(PostgresError) {
        let now = Clock.now()
        guard state.withLock({ now - $0.lastCount >= 10 }) else { return }
        let rows = try connection.execute("""
            SELECT CASE WHEN state = 'pending' AND attempts > 0 THEN 'retrying' ELSE state END, count(*)::text,
                   coalesce(extract(epoch FROM now() - min(received) FILTER (WHERE state = 'pending')), 0)::text
            FROM webhook_payloads WHERE state <> 'done' GROUP BY 1
            """)
        state.withLock {
            var counts = ["pending": 0, "retrying": 0]
            var oldest = 0.0
            for row in rows.rows {
                guard let name = row.text(0), let count = row.int(1) else { continue }
                counts[name] = count
                oldest = max(oldest, row.text(2).flatMap { Double($0) } ?? 0)
            }
            $0.rows = counts
            $0.oldestPendingSeconds = oldest
            $0.lastCount = now
        }
        write()
    }

    func families() -> [MetricFamily] {
        let now = state.withLock { $0 }
        var families = [
            MetricFamily("webhook_forwarder_rows_forwarded", .counter, "Payloads forwarded from the spool into PostgreSQL.",
                         value: now.forwarded),
            MetricFamily("webhook_forwarder_rows_set_aside", .counter,
                         "Payloads PostgreSQL refused even alone, moved to the spool's unforwardable/ (the log says why).",
                         value: now.setAside),
            MetricFamily("webhook_forwarder_batches_failed", .counter,
                         "Forwarding transactions that failed (their payloads stay in new/, or are tried in halves).",
                         value: now.batchesFailed),
            MetricFamily("webhook_forwarder_lag_seconds", .gauge, unit: "seconds",
                         "Age of the oldest payload left in new/ after the last forwarding pass (0 when caught up).",
                         value: now.lagSeconds),
            MetricFamily("webhook_forwarder_last_pass_timestamp_seconds", .gauge, unit: "seconds",
                         "When the last forwarding pass ended, in Unix seconds (0 if none).", value: now.lastForward),
            MetricFamily("webhook_consumer_runs", .counter,
                         "Runs of the consumer's command, by result (lost: its lease had run out, another consumer has it).",
                         now.runs.sorted { $0.key < $1.key }.map { ("_total", [("result", $0.key)], String($0.value)) }),
        ]
        if let rows = now.rows {
            families.append(MetricFamily("webhook_payload_rows", .gauge,
                                         "Rows of webhook_payloads not yet done, by state (retrying: pending after a failed attempt).",
                                         rows.sorted { $0.key < $1.key }.map { ("", [("state", $0.key)], String($0.value)) }))
            families.append(MetricFamily("webhook_payload_oldest_pending_age_seconds", .gauge, unit: "seconds",
                                         "Age of the oldest pending row (0 if none).", value: now.oldestPendingSeconds))
        }
        return families
    }

    /// The file, replaced whole; a failure is logged (the metrics are not worth stopping for).
    func write() {
        let text = Array(Exposition.prometheusText.text(families()).utf8)
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            Log.write(.error, "cannot write metrics to \(temporary): \(String(cString: strerror(errno)))")
            return
        }
        var (written, failure) = (0, Int32?.none)
        while written < text.count && failure == nil {
            let count = text[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count > 0 { written += count } else if errno != EINTR { failure = errno }
        }
        close(fd)
        if let failure {
            Log.write(.error, "cannot write metrics to \(temporary): \(String(cString: strerror(failure)))")
        } else if rename(temporary, path) != 0 {
            Log.write(.error, "cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
