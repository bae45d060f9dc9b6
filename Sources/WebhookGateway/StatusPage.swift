import CLinux
import WebhookCore
public import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// What an operator asks of a running handler, on locations the web server marks with `fastcgi_param
/// WEBHOOK_ENDPOINT status` or `ping` (on a loopback-only listener of their own in the recipes): the status as
/// JSON, OpenMetrics or the Prometheus text format (negotiated, see ``Exposition``); for health checks, `pong`, or
/// 503 with the reason when a delivery could not be accepted right now. A CGI has no process between requests, so
/// `webhook-handler status --spool-dir DIR` prints the spool's part instead.
public struct StatusPage: Sendable {
    public static let endpointVariable = "WEBHOOK_ENDPOINT"

    let scoreboard: Scoreboard?
    let spool: Spool?
    /// The FastCGI server's journal positions (with a journaled spool).
    var board: JournalBoard?
    /// The secrets the handler started with (for the health check).
    var secrets: Secrets?
    /// Free bytes the spool's file system needs for a delivery to be accepted (the largest body, and some).
    var roomNeeded = 1 << 20
    var version = "unknown"

    public init(spool: Spool?) {
        self.init(scoreboard: nil, spool: spool)
    }

    init(scoreboard: Scoreboard?, spool: Spool?) {
        self.scoreboard = scoreboard
        self.spool = spool
    }

    /// `journal`: the serving worker's (nil for a CGI, or when this worker's journal has failed).
    func respond(to endpoint: String, over channel: some RequestChannel, journal: Journal?, started: Double) -> AccessRecord {
        let method = channel.param("REQUEST_METHOD") ?? ""
        channel.discardBody(declared: channel.param("CONTENT_LENGTH").flatMap { Int($0) }, bound: 64 << 10)
        let response: [UInt8]
        var outcome = Outcome.verified
        switch (endpoint, method) {
        case ("ping", "GET"), ("ping", "HEAD"):
            if let problem = unhealthy(journal: journal) {
                response = Self.response("503 Service Unavailable", "text/plain; charset=utf-8", problem + "\n")
            } else {
                response = Self.response("200 OK", "text/plain; charset=utf-8", "pong\n")
            }
        case ("status", "GET"), ("status", "HEAD"):
            let format = Exposition.negotiate(query: channel.param("QUERY_STRING"), accept: channel.param("HTTP_ACCEPT"))
            response = Self.response("200 OK", format.contentType, format == .json ? json() : format.text(families()))
        case ("ping", _), ("status", _):
            outcome = .methodNotAllowed(method)
            response = outcome.cgiResponse
        default:
            outcome = .notConfigured("\(Self.endpointVariable) \(Log.printable(endpoint)) is not status or ping")
            response = outcome.cgiResponse
        }
        var record = AccessRecord(remoteAddress: channel.param("REMOTE_ADDR"), method: method, outcome: outcome,
                                  bodyBytes: 0, seconds: Clock.now() - started, delivered: channel.write(response))
        record.isEndpoint = true
        return record
    }

    static func response(_ status: String, _ contentType: String, _ body: String) -> [UInt8] {
        Array("Status: \(status)\r\nContent-Type: \(contentType)\r\nCache-Control: no-store\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }

    /// Why a verified delivery could not be accepted right now, or nil: no secret, a spool that cannot take a
    /// durable file (tried: an unnamed file written and synced, as a delivery's), a full file system, or a failing
    /// journal (this worker's, or the namer's).
    func unhealthy(journal: Journal?) -> String? {
        if let secrets, case .failure(let problem) = secrets.standard, secrets.senders.isEmpty {
            return "no secret: \(problem.detail ?? "none configured")"
        }
        guard let spool else { return nil }
        let fd = open(spool.path("new"), clinux_o_tmpfile() | O_WRONLY | O_CLOEXEC, spool.fileMode)
        guard fd >= 0 else { return "spool \(spool.directory): cannot create a file: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        if let failure = writeAll(fd, Array("ping\n".utf8)) ?? (fsync(fd) == 0 ? nil : errno) {
            return "spool \(spool.directory): cannot write and sync a file: \(String(cString: strerror(failure)))"
        }
        let backlog = spool.backlog(countingNew: false)
        if backlog.freeBytes < roomNeeded || backlog.freeInodes < 16 {
            return "spool \(spool.directory): its file system is full (\(backlog.freeBytes) bytes, "
                + "\(backlog.freeInodes) inodes free)"
        }
        if board != nil && spool.journaled && (journal == nil || journal?.failure != nil) {
            return "journal \(Journal.path(of: spool)): failing in this worker (see the log); payloads are stored "
                + "with a sync of their own"
        }
        if scoreboard?.value(.namerFailing) == 1 {
            return "journal \(Journal.path(of: spool)): the namer cannot name payloads (see the log)"
        }
        return nil
    }

    /// The status as one JSON object.
    public func json() -> String {
        var fields: [String] = []
        if let snapshot = scoreboard?.snapshot() {
            let value = { (counter: Scoreboard.Counter) in snapshot.counters[counter] ?? 0 }
            let workers = snapshot.workers
            fields.append(#""version":\#(JSON.quoted(version))"#)
            fields.append(#""start_time":\#(value(.startTime))"#)
            fields.append(#""requests":{"# + snapshot.requests.map { #""\#($0.status)":\#($0.count)"# }.joined(separator: ",") + "}")
            fields.append(#""payloads":{"stored":\#(value(.stored)),"duplicate":\#(value(.duplicates)),"store_failures":\#(value(.storeFailures)),"last_stored_time":\#(value(.lastStored))}"#)
            fields.append(#""hook_runs":{"ok":\#(value(.hookOK)),"failed":\#(value(.hookFailed)),"timeout":\#(value(.hookTimedOut))}"#)
            let total = workers.values.reduce(0, +)
            fields.append(#""workers":{"total":\#(total),"busy":\#(workers[.busy] ?? 0),"idle":\#(workers[.idle] ?? 0),"kept_alive":\#(workers[.kept] ?? 0),"max_reached":\#(value(.maxWorkersReached))}"#)
            fields.append(#""request_duration_seconds":{"count":\#(value(.durationCount)),"sum":\#(Double(value(.durationMicroseconds)) / 1e6)}"#)
            fields.append(#""journal":{"fallbacks":\#(value(.journalFallbacks)),"namer_errors":\#(value(.namerErrors))"#
                + (journalBacklog.map { #","unnamed":\#($0.unnamed),"oldest_unnamed_seconds":\#($0.oldestSeconds.map { String($0) } ?? "null")"# } ?? "") + "}")
        }
        if let spool {
            let backlog = spool.backlog()
            let oldest = backlog.oldestSeconds.map { String($0) } ?? "null"
            fields.append(#""spool":{"directory":\#(JSON.quoted(spool.directory)),"new":\#(backlog.waiting),"oldest_seconds":\#(oldest),"hook_failures":\#(backlog.hookFailures),"free_bytes":\#(backlog.freeBytes),"free_inodes":\#(backlog.freeInodes)}"#)
        }
        return "{" + fields.joined(separator: ",") + "}\n"
    }

    private var journalBacklog: JournalBacklog? {
        guard let board, let spool, spool.journaled else { return nil }
        return JournalBacklog(spool: spool, board: board)
    }

    /// The status in the OpenMetrics text format (for Prometheus, or node_exporter's textfile collector).
    public func openMetrics() -> String { Exposition.openMetrics.text(families()) }

    /// Every metric, with its type, unit and help (docs/operations.md says what each one means).
    func families() -> [MetricFamily] {
        var families: [MetricFamily] = []
        if let snapshot = scoreboard?.snapshot() {
            let value = { (counter: Scoreboard.Counter) in snapshot.counters[counter] ?? 0 }
            families += [
                MetricFamily("webhook_build", .info, "The handler's version, and the commit it was built from.",
                             [("_info", [("version", version), ("commit", String(cString: clinux_build_commit()))], "1")]),
                MetricFamily("webhook_start_time_seconds", .gauge, unit: "seconds", "When the server started, in Unix seconds.",
                             value: value(.startTime)),
                MetricFamily("webhook_requests", .counter, "Requests answered, by status (not those to the status page or ping).",
                             snapshot.requests.map { ("_total", [("status", $0.status)], String($0.count)) }),
                MetricFamily("webhook_payloads_stored", .counter, "Verified payloads stored in the spool (answered 200).",
                             value: value(.stored)),
                MetricFamily("webhook_payloads_duplicate", .counter, "Verified payloads that were already stored (answered 200).",
                             value: value(.duplicates)),
                MetricFamily("webhook_store_failures", .counter, "Verified payloads that could not be stored (answered 503).",
                             value: value(.storeFailures)),
                MetricFamily("webhook_last_stored_timestamp_seconds", .gauge, unit: "seconds",
                             "When a verified payload was last stored (or found stored), in Unix seconds; 0 if none since the start.",
                             value: value(.lastStored)),
                MetricFamily("webhook_hook_runs", .counter, "Runs of the --exec command, by result.",
                             [("ok", Scoreboard.Counter.hookOK), ("failed", .hookFailed), ("timeout", .hookTimedOut)].map {
                                 ("_total", [("result", $0.0)], String(value($0.1)))
                             }),
                MetricFamily("webhook_workers", .gauge,
                             "Worker processes: busy with a request, holding a connection the web server keeps open between requests (kept_alive), or idle (waiting for a new connection).",
                             Scoreboard.WorkerState.allCases.map { ("", [("state", $0.label)], String(snapshot.workers[$0] ?? 0)) }),
                MetricFamily("webhook_max_workers_reached", .counter,
                             "Requests that, when they began, left no worker waiting for a new connection (every worker busy or holding a kept-alive connection): a new connection then waits in the listen queue.",
                             value: value(.maxWorkersReached)),
                MetricFamily("webhook_request_duration_seconds", .histogram, unit: "seconds",
                             "Time from a request's params to its answer.",
                             snapshot.buckets.map { ("_bucket", [("le", $0.le)], String($0.count)) }
                             + [("_sum", [], String(Double(value(.durationMicroseconds)) / 1e6)),
                                ("_count", [], String(value(.durationCount)))]),
                MetricFamily("webhook_journal_fallbacks", .counter,
                             "Payloads stored with a sync of their own because the worker's journal had failed.",
                             value: value(.journalFallbacks)),
                MetricFamily("webhook_journal_namer_errors", .counter,
                             "Passes of the journal's namer that failed to name a payload into new/ (the log says why).",
                             value: value(.namerErrors)),
            ]
        }
        if let backlog = journalBacklog {
            families += [
                MetricFamily("webhook_journal_unnamed_payloads", .gauge,
                             "Payloads answered 200, durable in the journal, not yet named in new/.", value: backlog.unnamed),
                MetricFamily("webhook_journal_oldest_unnamed_payload_age_seconds", .gauge, unit: "seconds",
                             "Age of the oldest payload not yet named out of the journal (0 if none).",
                             value: backlog.oldestSeconds ?? 0),
            ]
        }
        if let backlog = spool?.backlog() {
            families += [
                MetricFamily("webhook_spool_new_payloads", .gauge, "Payloads waiting in the spool's new/ for a consumer.",
                             value: backlog.waiting),
                MetricFamily("webhook_spool_oldest_new_payload_age_seconds", .gauge, unit: "seconds",
                             "Age of the oldest payload in new/ (0 if none).", value: backlog.oldestSeconds ?? 0),
                MetricFamily("webhook_spool_hook_failures", .gauge, "Payloads in new/ whose hook failed (spool retry runs them).",
                             value: backlog.hookFailures),
                MetricFamily("webhook_spool_filesystem_avail_bytes", .gauge, unit: "bytes",
                             "Bytes the handler may still use on the spool's file system.", value: backlog.freeBytes),
                MetricFamily("webhook_spool_filesystem_size_bytes", .gauge, unit: "bytes",
                             "Size of the spool's file system.", value: backlog.sizeBytes),
                MetricFamily("webhook_spool_filesystem_files_free", .gauge, "Inodes the handler may still use on the spool's file system.",
                             value: backlog.freeInodes),
                MetricFamily("webhook_spool_filesystem_files", .gauge, "Inodes of the spool's file system.", value: backlog.inodes),
            ]
        }
        return families
    }
}
