import Crypto

/// One shared secret (`API_SECRET_KEY`), held only as keyed HMAC states.
///
/// Its text is never kept, printed or compared with anything a client sent: `description` is redacted so that no
/// log line can leak it.
/// Keying happens once, here: each request copies a keyed state instead of deriving the pads again.
public struct Secret: Sendable, CustomStringConvertible {
    /// The sender refuses shorter secrets, and so do we.
    public static let minimumLength = 10

    /// Keyed with the secret's own bytes (x-signature, GitHub, Stripe).
    let keyed: HMAC<SHA256>
    /// Keyed the way Standard Webhooks keys (the base64 after an optional `whsec_`, decoded), or nil when the secret
    /// is not such a key: then that scheme refuses to use it rather than keying with its text.
    let standardWebhooksKeyed: HMAC<SHA256>?
    /// Where it came from, for messages (never its value).
    public let source: String

    /// Fails, with a message naming `source` but not the value, when the secret is too short.
    public init(_ text: String, source: String = "API_SECRET_KEY") throws(Outcome) {
        try self.init(bytes: Array(text.utf8), source: source)
    }

    /// The secret as raw bytes (a file's contents), keyed exactly as given.
    public init(bytes: [UInt8], source: String) throws(Outcome) {
        guard String(decoding: bytes, as: UTF8.self).count >= Self.minimumLength else {
            throw Outcome.notConfigured("\(source) is shorter than \(Self.minimumLength) characters")
        }
        keyed = HMAC(key: SymmetricKey(data: bytes))
        standardWebhooksKeyed = SignatureScheme.standardWebhooksKey(of: bytes).map { HMAC(key: SymmetricKey(data: $0)) }
        self.source = source
    }

    /// Any key at all, for known-answer tests whose keys are shorter than the sender allows.
    init(key: SymmetricKey) {
        keyed = HMAC(key: key)
        standardWebhooksKeyed = keyed
        source = "a test key"
    }

    public var description: String { "Secret(redacted)" }

    /// The keyed state `scheme` uses; nil when this secret cannot key it (see ``Keyring/unusable(for:)``).
    func keyed(for scheme: SignatureScheme) -> HMAC<SHA256>? {
        scheme == .standardWebhooks ? standardWebhooksKeyed : keyed
    }

    /// The hex HMAC-SHA256 of `body`, as the sender writes it in `x-signature`.
    public func signature(of body: [UInt8]) -> String {
        Signature.hex(HMACSHA256.mac(keyed, [body]))
    }
}

/// The secrets valid at once: the current one first, then older ones still accepted during a rotation.
public struct Keyring: Sendable, CustomStringConvertible {
    public let secrets: [Secret]

    public init(_ secrets: [Secret]) {
        precondition(!secrets.isEmpty, "a keyring holds at least one secret")
        self.secrets = secrets
    }

    public init(_ secret: Secret) {
        self.init([secret])
    }

    /// The secret `sign` uses.
    public var current: Secret { secrets[0] }

    public var description: String { "Keyring(\(secrets.count) redacted)" }

    /// Why `scheme` cannot use these secrets (a Standard Webhooks secret that is not base64), or nil.
    public func unusable(for scheme: SignatureScheme) -> Outcome? {
        guard let secret = secrets.first(where: { $0.keyed(for: scheme) == nil }) else { return nil }
        return .notConfigured("\(secret.source) is not a Standard Webhooks secret: whsec_ and the base64 of at least "
            + "\(Secret.minimumLength) bytes (or that base64 alone)")
    }
}

/// HMAC-SHA256 over several parts without joining them, and a comparison that takes the same time whatever it
/// finds.
enum HMACSHA256 {
    static func mac(_ keyed: HMAC<SHA256>, _ parts: [[UInt8]]) -> [UInt8] {
        Array(code(keyed, parts))
    }

    /// `keyed` is copied, never changed: its digest states are copied on the first update.
    static func code(_ keyed: HMAC<SHA256>, _ parts: [[UInt8]]) -> HMAC<SHA256>.MAC {
        var hmac = keyed
        for part in parts { part.withUnsafeBytes { hmac.update(data: $0) } }
        return hmac.finalize()
    }

    /// Which of `keyring`'s secrets signed `parts` with one of `candidates`, or nil. Every secret is tried against
    /// every candidate, each comparison in constant time (swift-crypto's `safeCompare` behind `==`), with no early
    /// exit: the time taken does not depend on which key or candidate matched, or where a wrong one differed.
    static func matchingKey(_ keyring: Keyring, scheme: SignatureScheme, parts: [[UInt8]], candidates: [[UInt8]]) -> Int? {
        var matched = -1
        for (index, secret) in keyring.secrets.enumerated() {
            let code = code(secret.keyed(for: scheme) ?? secret.keyed, parts)
            for candidate in candidates {
                let equal = code == candidate
                matched = (equal && matched < 0) ? index : matched
            }
        }
        return matched < 0 ? nil : matched
    }
}
