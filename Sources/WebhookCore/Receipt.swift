import Crypto

/// What the spool says about a stored payload: its content-derived id, and whether those exact bytes were
/// already there (a retry or a replay), in which case nothing new was written.
public struct Receipt: Sendable, Equatable {
    public let id: String
    public let duplicate: Bool

    public init(id: String, duplicate: Bool) {
        self.id = id
        self.duplicate = duplicate
    }

    /// The id of a payload: the hex SHA-256 of its bytes, so the same bytes always get the same name.
    public static func id(of body: [UInt8]) -> String {
        Signature.hex(Array(SHA256.hash(data: body)))
    }

    /// Whether `id` has the form every id has (64 lowercase hex digits), the only form that may become a file name.
    public static func isWellFormed(_ id: String) -> Bool {
        id.utf8.count == 64 && id.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}

/// How a payload was verified: for the access log (which key of a rotation matched; the sender's delivery id) and
/// for the spool (a sender's message id, when the scheme has one, names the payload instead of its bytes).
public struct Verification: Sendable, Equatable {
    /// Which secret matched: 0 is the current one.
    public let keyIndex: Int
    public let keyCount: Int
    public let deliveryID: String?
    public let deduplicationKey: String?

    /// The spool's name for `body`: the SHA-256 of the sender's message id when it gives one (so a re-signed
    /// retry of the same message is a duplicate), else of the body's bytes. A message id is only unique within its
    /// sender, so it is named together with the sender (the web server's `WEBHOOK_SENDER`, if any) and the scheme:
    /// two senders that both use `msg_1` store two payloads. The same bytes are the same payload whoever sent them.
    public func payloadID(of body: [UInt8], sender: String?, scheme: SignatureScheme) -> String {
        guard let deduplicationKey else { return Receipt.id(of: body) }
        return Receipt.id(of: Array("message-id:\(scheme.rawValue):\(sender ?? ""):\(deduplicationKey)".utf8))
    }
}
