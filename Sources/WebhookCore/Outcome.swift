/// How a request ends: the status, the `reason` a client may read, and a `detail` meant only for the log.
///
/// Neither text ever holds the secret, the expected MAC or the signature a client sent.
public struct Outcome: Sendable, Equatable, Error {
    public let status: HTTPStatus
    /// For the JSON body; `nil` for a verified request.
    public let reason: String?
    /// For the operator's log only (e.g. why the server is not configured); never sent to the client.
    public let detail: String?
    /// What the spool kept of a verified payload, when there is a spool.
    public let receipt: Receipt?
    /// How a verified payload was verified (which key, the sender's delivery id), for the log and the spool.
    public let verification: Verification?

    public var isVerified: Bool { status == .ok }

    init(_ status: HTTPStatus, reason: String?, detail: String? = nil, receipt: Receipt? = nil,
         verification: Verification? = nil) {
        self.status = status
        self.reason = reason
        self.detail = detail
        self.receipt = receipt
        self.verification = verification
    }

    /// Verified; nothing was asked to keep it.
    public static let verified = Outcome(.ok, reason: nil)

    /// Verified, saying how.
    public static func accepted(_ verification: Verification) -> Outcome {
        Outcome(.ok, reason: nil, verification: verification)
    }

    /// This verified outcome, now on disk: the 200 means "I have it".
    public func stored(_ receipt: Receipt) -> Outcome {
        Outcome(.ok, reason: nil, receipt: receipt, verification: verification)
    }

    /// Verified and on disk.
    public static func stored(_ receipt: Receipt) -> Outcome {
        Outcome(.ok, reason: nil, receipt: receipt)
    }

    /// Verified but not stored: the sender should come back later; never a 200.
    public static func storageFailed(_ detail: String) -> Outcome {
        Outcome(.serviceUnavailable, reason: "the payload could not be stored; retry later", detail: detail)
    }

    /// Verified, but the command it was to be handed to (with no spool to keep it) failed.
    public static func handOffFailed(_ detail: String) -> Outcome {
        Outcome(.badGateway, reason: "the payload could not be handed on", detail: detail)
    }

    /// Seconds a 503 or 502 asks the sender to wait.
    public static let retryAfterSeconds = 30

    public static func methodNotAllowed(_ method: String) -> Outcome {
        Outcome(.methodNotAllowed, reason: "Method \(method.prefix(Self.methodEchoLimit)) is not allowed on this route")
    }

    public static func badRequest(_ reason: String) -> Outcome {
        Outcome(.badRequest, reason: reason)
    }

    public static func payloadTooLarge(length: String, limit: Int) -> Outcome {
        Outcome(.payloadTooLarge, reason: "request body of \(length) bytes exceeds the limit of \(limit) bytes")
    }

    /// Fail closed: the client learns only that the server is misconfigured; the operator learns why.
    public static func notConfigured(_ detail: String) -> Outcome {
        Outcome(.internalServerError, reason: "server is not configured", detail: detail)
    }

    /// A client-chosen method is echoed back, but never at any length.
    static let methodEchoLimit = 32
}

extension Outcome {
    /// Headers beyond `Status`, in the order they are written.
    public var headers: [(name: String, value: String)] {
        var headers: [(name: String, value: String)] =
            [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if status == .methodNotAllowed { headers.append(("Allow", "POST")) }
        // Both are "come back later": a verified payload we could not keep or hand on. Standard Webhooks senders
        // read 502 (like 429 and 504) as a request to slow down, honouring Retry-After (docs/schemes.md).
        if status == .serviceUnavailable || status == .badGateway {
            headers.append(("Retry-After", String(Self.retryAfterSeconds)))
        }
        return headers
    }

    /// The JSON body: `{"reason":"…"}`, `{"verified":true}`, or with a spool
    /// `{"verified":true,"id":"…","duplicate":false}`.
    public var jsonBody: String {
        if let reason { return #"{"reason":"# + JSON.quoted(reason) + "}" }
        guard let receipt else { return #"{"verified":true}"# }
        return #"{"verified":true,"id":"\#(receipt.id)","duplicate":\#(receipt.duplicate)}"#
    }

    /// The complete CGI response (RFC 3875 §6): `Status:` line, headers, blank line, body.
    ///
    /// Both CGI and FastCGI write exactly these bytes; the web server turns them into HTTP.
    public var cgiResponse: [UInt8] {
        let body = jsonBody
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + body.utf8.count)
        func line(_ name: String, _ value: String) {
            bytes += name.utf8; bytes += ": ".utf8; bytes += value.utf8; bytes += "\r\n".utf8
        }
        bytes += "Status: ".utf8; bytes += String(status.code).utf8; bytes.append(UInt8(ascii: " "))
        bytes += status.reasonPhrase.utf8; bytes += "\r\n".utf8
        for (name, value) in headers { line(name, value) }
        line("Content-Length", String(body.utf8.count))
        bytes += "\r\n".utf8
        bytes += body.utf8
        return bytes
    }
}
