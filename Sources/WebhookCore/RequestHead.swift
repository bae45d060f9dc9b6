/// What the web server tells us about a request before its body: the CGI meta-variables (RFC 3875) that matter.
///
/// Values are kept exactly as received; judging them is the ``Verifier``'s job.
public struct RequestHead: Sendable, Equatable {
    /// `REQUEST_METHOD`; methods are case-sensitive.
    public var method: String
    /// `CONTENT_LENGTH` as sent; absent or empty means no body, unless the body is chunked.
    public var contentLength: String?
    /// `HTTP_TRANSFER_ENCODING`: Apache's mod_cgi passes a chunked body through as it arrives, without a
    /// `CONTENT_LENGTH`, to be read to its end.
    public var transferEncoding: String?
    /// The signature scheme's headers, by CGI name (`HTTP_X_SIGNATURE`, …; see ``SignatureScheme/params``).
    public var headers: [String: String]

    public init(method: String, signature: String? = nil, contentLength: String?, transferEncoding: String? = nil,
                headers: [String: String] = [:]) {
        self.method = method
        self.contentLength = contentLength
        self.transferEncoding = transferEncoding
        self.headers = headers
        if let signature { self.headers["HTTP_X_SIGNATURE"] = signature }
    }

    /// A body with no length given, that only its end delimits.
    var isChunkedWithoutLength: Bool {
        (contentLength ?? "").isEmpty && transferEncoding?.lowercased().contains("chunked") == true
    }
}
