import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// What one request did, for the one line the access log gets. Holds nothing secret: no signature, no secret,
/// no body.
struct AccessRecord {
    let remoteAddress: String?
    let method: String
    let outcome: Outcome
    let bodyBytes: Int
    let seconds: Double
    /// False when the web server had gone before the response could be written.
    var delivered: Bool
    /// A request to the status or ping endpoint: neither logged nor counted.
    var isEndpoint = false
    /// The web server's id for the request (nginx's `$request_id`, as `fastcgi_param WEBHOOK_REQUEST_ID`).
    var requestID: String?

    static let requestIDParam = "WEBHOOK_REQUEST_ID"

    /// 5xx are errors (a verified payload may be lost), refusals warnings, the rest information.
    var level: Log.Level {
        let code = outcome.status.code
        return code >= 500 ? .error : code >= 400 ? .warning : .info
    }

    /// `msg=request remote_addr=127.0.0.1 method=POST status=400 bytes=2 duration_ms=0.21 reason="…"`: logfmt.
    var fields: [(String, String)] {
        var fields: [(String, String)] = [("remote_addr", remoteAddress.map { Log.printable($0) } ?? "-"),
                                          ("method", Log.printable(method)), ("status", String(outcome.status.code)),
                                          ("bytes", String(bodyBytes)), ("duration_ms", Self.milliseconds(seconds))]
        if let receipt = outcome.receipt {
            fields.append(("id", receipt.id))
            if receipt.duplicate { fields.append(("duplicate", "true")) }
        }
        if let verification = outcome.verification {
            if verification.keyCount > 1 { fields.append(("key", "\(verification.keyIndex + 1)/\(verification.keyCount)")) }
            if let delivery = verification.deliveryID { fields.append(("delivery", Log.printable(delivery, limit: 80))) }
        }
        if let reason = outcome.reason { fields.append(("reason", Log.printable(reason, limit: 200))) }
        if let detail = outcome.detail { fields.append(("detail", Log.printable(detail, limit: 300))) }
        if !delivered { fields.append(("response", "undelivered")) }
        if let requestID { fields.append(("request_id", Log.printable(requestID, limit: 64))) }
        return fields
    }

    static func milliseconds(_ seconds: Double) -> String {
        let hundredths = Int((seconds * 100_000).rounded())
        let fraction = hundredths % 100
        return String(hundredths / 100) + (fraction < 10 ? ".0" : ".") + String(fraction)
    }
}

/// Which requests get an access line. Refusals and failures are always logged: they are what an operator looks
/// for (a sender with the wrong secret, a probe, a full disk).
public enum AccessLogPolicy: String, Sendable, CaseIterable {
    /// A line per request (the default).
    case all
    /// Only requests not answered 200, and responses that could not be delivered: behind a web server that keeps
    /// its own access log, this saves a `write(2)` per verified request (about 5 % of throughput at saturation).
    case failures

    public static let variable = "WEBHOOK_ACCESS_LOG"

    func records(_ record: AccessRecord) -> Bool {
        self == .all || record.outcome.status != .ok || !record.delivered
    }
}

/// Lines on stderr for whoever runs the server (journald, nginx's or Apache's error log, a terminal), in logfmt:
/// `ts=2026-11-29T09:30:00Z level=info pid=812 msg="…" key=value …`, every value quoted as logfmt quotes it. Under
/// journald (`JOURNAL_STREAM` names stderr) each line starts with its syslog priority, `<6>`, and has no `ts=`
/// (the journal stamps it), so that `journalctl -p err` finds the errors. Each line is one `write(2)`, so that
/// workers never interleave.
public enum Log {
    /// Levels, with their syslog priorities.
    public enum Level: String, Sendable {
        case error, warning, notice, info, debug

        var priority: Int {
            switch self {
            case .error: 3
            case .warning: 4
            case .notice: 5
            case .info: 6
            case .debug: 7
            }
        }
    }

    /// A line of free text, at level info (what code written before levels calls).
    public static func write(_ message: String) {
        write(.info, message)
    }

    /// `level=… pid=… msg="…"` and `fields`, one line.
    public static func write(_ level: Level, _ message: String, _ fields: KeyValuePairs<String, String> = [:]) {
        write(level, message, fields: fields.map { ($0.key, $0.value) })
    }

    static func write(_ level: Level, _ message: String, fields: [(String, String)]) {
        var line: [UInt8] = []
        line.reserveCapacity(64 + message.utf8.count)
        if toJournal {
            line += "<\(level.priority)>".utf8
        } else {
            line += "ts=".utf8
            Clock.appendUTCTimestamp(to: &line)
            line.append(UInt8(ascii: " "))
        }
        line += "level=\(level.rawValue) pid=\(getpid()) msg=".utf8
        line += quoted(message).utf8
        for (key, value) in fields {
            line += " \(key)=".utf8
            line += quoted(value).utf8
        }
        line.append(UInt8(ascii: "\n"))
        _ = writeAll(STDERR_FILENO, line)
    }

    /// True when stderr is a journald stream: `JOURNAL_STREAM` (set by systemd) holds its device and inode.
    static let toJournal: Bool = {
        guard let stream = Environment.value("JOURNAL_STREAM") else { return false }
        var status = stat()
        return fstat(STDERR_FILENO, &status) == 0 && stream == "\(status.st_dev):\(status.st_ino)"
    }()

    /// `value` bare when it can be (no space, quote, `=` or control character), else in double quotes with JSON's
    /// escapes (`\\`, `\"`, `\n`, `\u00XX`), which logfmt parsers read.
    static func quoted(_ value: String) -> String {
        let bare = !value.isEmpty && value.utf8.allSatisfy {
            $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: "\\")
        }
        return bare ? value : JSON.quoted(value)
    }

    /// `text` as is, in one `write(2)`.
    public static func writeStandardError(_ text: String) {
        _ = writeAll(STDERR_FILENO, Array(text.utf8))
    }

    /// `text` as is on stdout, in one `write(2)`.
    public static func writeStandardOutput(_ text: String) {
        _ = writeAll(STDOUT_FILENO, Array(text.utf8))
    }

    /// Client-supplied text made safe for one log line: no control characters, quotes or unbounded length.
    static func printable(_ text: String, limit: Int = 40) -> String {
        let plain = text.utf8.count <= limit
            && text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") }
        if plain { return text }
        var out = ""
        for scalar in text.unicodeScalars.prefix(limit) {
            out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F || scalar == "\"" ? "?" : scalar)
        }
        return text.unicodeScalars.count > limit ? out + "…" : out
    }
}
