import WebhookCore
import WebhookSpool

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
                                          ("bytes", String(bodyBytes)), ("duration_ms", Log.milliseconds(seconds))]
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
