/// How a request ends: the status, the `reason` a client may read, and a `detail` meant only for the log.
///
/// Neither text ever holds the secret, the expected MAC or the signature a client sent.
public struct Outcome: Sendable, Equatable, Error {
    public let status: HTTPStatus
    /// For the JSON body; `nil` for a verified request.
    public let reason: String?
    /// For the operator's log only (e.g. why the server is not configured); never sent to the client.
    public let detail: String?

    public var isVerified: Bool { status == .ok }

    init(_ status: HTTPStatus, reason: String?, detail: String? = nil) {
        self.status = status
        self.reason = reason
        self.detail = detail
    }

    public static let verified = Outcome(.ok, reason: nil)

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
        var headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if status == .methodNotAllowed { headers.append(("Allow", "POST")) }
        return headers
    }

    /// The JSON body: `{"verified":true}` or `{"reason":"…"}`.
    public var jsonBody: String {
        if let reason { return #"{"reason":"# + JSON.quoted(reason) + "}" }
        return #"{"verified":true}"#
    }

    /// The complete CGI response (RFC 3875 §6): `Status:` line, headers, blank line, body.
    ///
    /// Both CGI and FastCGI write exactly these bytes; the web server turns them into HTTP.
    public var cgiResponse: [UInt8] {
        let body = jsonBody
        var text = "Status: \(status.code) \(status.reasonPhrase)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "Content-Length: \(body.utf8.count)\r\n\r\n"
        text += body
        return Array(text.utf8)
    }
}
