/// What the web server tells us about a request before its body: the CGI meta-variables (RFC 3875) that matter.
///
/// Values are kept exactly as received; judging them is the ``Verifier``'s job.
public struct RequestHead: Sendable, Equatable {
    /// `REQUEST_METHOD`; methods are case-sensitive.
    public var method: String
    /// `HTTP_X_SIGNATURE`, the sender's `x-signature` header, if any.
    public var signature: String?
    /// `CONTENT_LENGTH` as sent; absent or empty means no body.
    public var contentLength: String?

    public init(method: String, signature: String?, contentLength: String?) {
        self.method = method
        self.signature = signature
        self.contentLength = contentLength
    }
}
