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

    /// `2026-11-29T09:30:00Z webhook-handler[812]: 127.0.0.1 POST 400 bytes=2 time=0.21ms reason="…"`
    var line: String {
        var line = ""
        line.reserveCapacity(96)
        line += remoteAddress.map { Log.printable($0) } ?? "-"
        line += " "; line += Log.printable(method)
        line += " "; line += String(outcome.status.code)
        line += " bytes="; line += String(bodyBytes)
        line += " time="; line += Self.milliseconds(seconds); line += "ms"
        if let receipt = outcome.receipt { line += " id=\(receipt.id)\(receipt.duplicate ? " duplicate" : "")" }
        if let verification = outcome.verification {
            if verification.keyCount > 1 { line += " key=\(verification.keyIndex + 1)/\(verification.keyCount)" }
            if let delivery = verification.deliveryID { line += " delivery=\(Log.printable(delivery, limit: 80))" }
        }
        if let reason = outcome.reason { line += " reason=\"\(Log.printable(reason, limit: 200))\"" }
        if let detail = outcome.detail { line += " detail=\"\(Log.printable(detail, limit: 300))\"" }
        if !delivered { line += " response=undelivered" }
        return line
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

/// Lines on stderr for whoever runs the server (journald, nginx's or Apache's error log, a terminal),
/// each written with one `write(2)` so that workers never interleave.
public enum Log {
    public static func write(_ message: String) {
        var line: [UInt8] = []
        line.reserveCapacity(48 + message.utf8.count)
        Clock.appendUTCTimestamp(to: &line)
        line += " webhook-handler[".utf8
        line += String(getpid()).utf8
        line += "]: ".utf8
        line += message.utf8
        line.append(UInt8(ascii: "\n"))
        _ = writeAll(STDERR_FILENO, line)
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
