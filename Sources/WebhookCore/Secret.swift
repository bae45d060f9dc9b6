import Crypto

/// The shared secret (`API_SECRET_KEY`), held only as an HMAC key.
///
/// Its text is never kept, printed or compared: `description` is redacted so that no log line can leak it.
public struct Secret: Sendable, CustomStringConvertible {
    /// The sender refuses shorter secrets, and so do we.
    public static let minimumLength = 10

    let key: SymmetricKey

    /// Fails, with a message naming `source` but not the value, when the secret is too short.
    public init(_ text: String, source: String = "API_SECRET_KEY") throws(Outcome) {
        try self.init(bytes: Array(text.utf8), source: source)
    }

    /// The secret as raw bytes (a file's contents), keyed exactly as given.
    public init(bytes: [UInt8], source: String) throws(Outcome) {
        guard String(decoding: bytes, as: UTF8.self).count >= Self.minimumLength else {
            throw Outcome.notConfigured("\(source) is shorter than \(Self.minimumLength) characters")
        }
        self.init(key: SymmetricKey(data: bytes))
    }

    /// Any key at all, for known-answer tests whose keys are shorter than the sender allows.
    init(key: SymmetricKey) {
        self.key = key
    }

    public var description: String { "Secret(redacted)" }

    /// The hex HMAC-SHA256 of `body`, as the sender writes it in `x-signature`.
    public func signature(of body: [UInt8]) -> String {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: body)
        return Signature.hex(Array(mac.finalize()))
    }

    /// Constant-time check of `signature` against the HMAC of `body` (swift-crypto's `safeCompare`).
    func authenticates(_ body: [UInt8], signature: Signature) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(signature.bytes, authenticating: body, using: key)
    }
}
