import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// What an operator asks of a running handler, on locations the web server marks with `fastcgi_param
/// WEBHOOK_ENDPOINT status` or `ping` (restricted to localhost in the recipes): the status as JSON, or as
/// OpenMetrics text with `?openmetrics`; `pong` for health checks. A CGI has no process between requests, so
/// `webhook-handler status --spool-dir DIR` prints the spool's part instead.
public struct StatusPage: Sendable {
    public static let endpointVariable = "WEBHOOK_ENDPOINT"

    let scoreboard: Scoreboard?
    let spool: Spool?

    public init(spool: Spool?) {
        self.init(scoreboard: nil, spool: spool)
    }

    init(scoreboard: Scoreboard?, spool: Spool?) {
        self.scoreboard = scoreboard
        self.spool = spool
    }

    func respond(to endpoint: String, over channel: some RequestChannel, started: Double) -> AccessRecord {
        let method = channel.param("REQUEST_METHOD") ?? ""
        channel.discardBody(declared: channel.param("CONTENT_LENGTH").flatMap { Int($0) }, bound: 64 << 10)
        let response: [UInt8]
        var outcome = Outcome.verified
        switch (endpoint, method) {
        case ("ping", "GET"), ("ping", "HEAD"):
            response = Self.response("text/plain; charset=utf-8", "pong\n")
        case ("status", "GET"), ("status", "HEAD"):
            let query = channel.param("QUERY_STRING") ?? ""
            response = query.split(separator: "&").contains("openmetrics")
                ? Self.response("application/openmetrics-text; version=1.0.0; charset=utf-8", openMetrics())
                : Self.response("application/json", json())
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

    static func response(_ contentType: String, _ body: String) -> [UInt8] {
        Array("Status: 200 OK\r\nContent-Type: \(contentType)\r\nCache-Control: no-store\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }

    /// The status as one JSON object.
    public func json() -> String {
        var fields: [String] = []
        if let snapshot = scoreboard?.snapshot() {
            let value = { (counter: Scoreboard.Counter) in snapshot.counters[counter] ?? 0 }
            let busy = snapshot.busy
            fields.append(#""start_time":\#(value(.startTime))"#)
            fields.append(#""requests":{"# + snapshot.requests.map { #""\#($0.status)":\#($0.count)"# }.joined(separator: ",") + "}")
            fields.append(#""payloads":{"stored":\#(value(.stored)),"duplicate":\#(value(.duplicates)),"store_failures":\#(value(.storeFailures))}"#)
            fields.append(#""hook_runs":{"ok":\#(value(.hookOK)),"failed":\#(value(.hookFailed)),"timeout":\#(value(.hookTimedOut))}"#)
            fields.append(#""workers":{"total":\#(snapshot.workers),"busy":\#(busy),"idle":\#(snapshot.workers - busy),"max_reached":\#(value(.maxWorkersReached))}"#)
            fields.append(#""request_duration_seconds":{"count":\#(value(.durationCount)),"sum":\#(Double(value(.durationMicroseconds)) / 1e6)}"#)
        }
        if let backlog = spool?.backlog() {
            let oldest = backlog.oldestSeconds.map { String($0) } ?? "null"
            fields.append(#""spool":{"directory":\#(JSON.quoted(spool!.directory)),"new":\#(backlog.waiting),"oldest_seconds":\#(oldest),"hook_failures":\#(backlog.hookFailures)}"#)
        }
        return "{" + fields.joined(separator: ",") + "}\n"
    }

    /// The status in the OpenMetrics text format (for Prometheus, or node_exporter's textfile collector).
    public func openMetrics() -> String {
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, String)]) {
            text += "# TYPE \(name) \(type)\n# HELP \(name) \(help)\n"
            for (suffix, value) in samples { text += "\(name)\(suffix) \(value)\n" }
        }
        if let snapshot = scoreboard?.snapshot() {
            let value = { (counter: Scoreboard.Counter) in String(snapshot.counters[counter] ?? 0) }
            let busy = snapshot.busy, total = snapshot.workers
            family("webhook_requests", "counter", "Requests answered, by status (not those to this page).",
                   snapshot.requests.map { (#"_total{status="\#($0.status)"}"#, String($0.count)) })
            family("webhook_payloads_stored", "counter", "Verified payloads stored in the spool.", [("_total", value(.stored))])
            family("webhook_payloads_duplicate", "counter", "Verified payloads that were already stored.", [("_total", value(.duplicates))])
            family("webhook_store_failures", "counter", "Verified payloads that could not be stored (answered 503).",
                   [("_total", value(.storeFailures))])
            family("webhook_hook_runs", "counter", "Runs of the --exec command, by result.",
                   [(#"_total{result="ok"}"#, value(.hookOK)), (#"_total{result="failed"}"#, value(.hookFailed)),
                    (#"_total{result="timeout"}"#, value(.hookTimedOut))])
            family("webhook_workers", "gauge", "Worker processes, busy with a request or idle.",
                   [(#"{state="busy"}"#, String(busy)), (#"{state="idle"}"#, String(total - busy))])
            family("webhook_max_workers_reached", "counter", "Requests that found every worker busy.",
                   [("_total", value(.maxWorkersReached))])
            family("webhook_request_duration_seconds", "histogram", "Time from a request's params to its answer.",
                   snapshot.buckets.map { (#"_bucket{le="\#($0.le)"}"#, String($0.count)) }
                   + [("_sum", String(Double(snapshot.counters[.durationMicroseconds] ?? 0) / 1e6)),
                      ("_count", value(.durationCount))])
            family("webhook_start_time_seconds", "gauge", "When the server started, in Unix seconds.", [("", value(.startTime))])
        }
        if let backlog = spool?.backlog() {
            family("webhook_spool_new_payloads", "gauge", "Payloads waiting in the spool's new/.", [("", String(backlog.waiting))])
            family("webhook_spool_oldest_new_payload_age_seconds", "gauge", "Age of the oldest payload in new/ (0 if none).",
                   [("", String(backlog.oldestSeconds ?? 0))])
            family("webhook_spool_hook_failures", "gauge", "Payloads in new/ whose hook failed (spool retry runs them).",
                   [("", String(backlog.hookFailures))])
        }
        return text + "# EOF\n"
    }
}

/// What waits in a spool.
public struct SpoolBacklog: Sendable {
    public let waiting: Int
    public let oldestSeconds: Double?
    public let hookFailures: Int
}

extension Spool {
    /// How many payloads wait in `new/`, since when, and how many of them the hook failed on.
    public func backlog() -> SpoolBacklog {
        let names = (try? names(in: "new")) ?? []
        var oldest: Int?
        for name in names {
            var status = stat()
            if stat(path("new", name), &status) == 0 { oldest = min(oldest ?? Int.max, status.st_mtim.tv_sec) }
        }
        let failures = ((try? self.names(in: ".hook-failed")) ?? []).count
        return SpoolBacklog(waiting: names.count, oldestSeconds: oldest.map { Double(max(0, time(nil) - $0)) },
                            hookFailures: failures)
    }
}
