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
    let delivered: Bool

    /// `2026-11-29T09:30:00Z webhook-handler[812]: 127.0.0.1 POST 400 bytes=2 time=0.21ms reason="…"`
    var line: String {
        var line = "\(remoteAddress.map { Log.printable($0) } ?? "-") \(Log.printable(method)) \(outcome.status.code)"
        line += " bytes=\(bodyBytes) time=\(Self.milliseconds(seconds))ms"
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
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}

/// Lines on stderr for whoever runs the server (journald, nginx's or Apache's error log, a terminal),
/// each written with one `write(2)` so that workers never interleave.
public enum Log {
    public static func write(_ message: String) {
        writeStandardError("\(Clock.utcTimestamp()) webhook-handler[\(getpid())]: \(message)\n")
    }

    /// `text` as is, in one `write(2)`.
    public static func writeStandardError(_ text: String) {
        _ = writeAll(STDERR_FILENO, Array(text.utf8))
    }

    /// Client-supplied text made safe for one log line: no control characters, quotes or unbounded length.
    static func printable(_ text: String, limit: Int = 40) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(limit) {
            out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F || scalar == "\"" ? "?" : scalar)
        }
        return text.unicodeScalars.count > limit ? out + "…" : out
    }
}
