import Crypto

/// One shared secret (`API_SECRET_KEY`), held as keys and keyed HMAC states.
///
/// Its text is never kept as a string, printed or compared with anything a client sent: `description` is redacted so
/// that no log line can leak it. HMAC-SHA256 (the common case) is keyed once, here: each request copies a keyed state
/// instead of deriving the pads again.
public struct Secret: Sendable, CustomStringConvertible {
    /// The sender refuses shorter secrets, and so do we.
    public static let minimumLength = 10

    /// The secret's bytes as a key (x-signature, GitHub, Stripe, Slack, …).
    let key: SymmetricKey
    let keyed: HMAC<SHA256>
    /// Keyed the way Standard Webhooks keys (the base64 after an optional `whsec_`, decoded), or nil when the secret
    /// is not such a key: then that scheme refuses to use it rather than keying with its text.
    let standardWebhooksKey: SymmetricKey?
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
        key = SymmetricKey(data: bytes)
        keyed = HMAC(key: key)
        standardWebhooksKey = SignatureScheme.standardWebhooksKey(of: bytes).map { SymmetricKey(data: $0) }
        standardWebhooksKeyed = standardWebhooksKey.map { HMAC(key: $0) }
        self.source = source
    }

    /// Any key at all, for known-answer tests whose keys are shorter than the sender allows.
    init(key: SymmetricKey) {
        self.key = key
        keyed = HMAC(key: key)
        standardWebhooksKey = key
        standardWebhooksKeyed = keyed
        source = "a test key"
    }

    public var description: String { "Secret(redacted)" }

    /// The MAC of `parts` under this secret keyed as `keying` says (for ``MACAlgorithm/token``, the SHA-256 of the
    /// secret); nil when this secret cannot key it (see ``Keyring/unusable(for:)``).
    func mac(_ algorithm: MACAlgorithm, keying: SignatureScheme.Keying, _ parts: [[UInt8]]) -> [UInt8]? {
        switch (algorithm, keying) {
        case (.sha256, .raw): MACAlgorithm.mac(keyed, parts)
        case (.sha256, .standardWebhooks): standardWebhooksKeyed.map { MACAlgorithm.mac($0, parts) }
        case (_, .raw): algorithm.mac(key, parts)
        case (_, .standardWebhooks): standardWebhooksKey.map { algorithm.mac($0, parts) }
        }
    }

    /// The secret itself, for `sign` under a token scheme (the sender sends it as is).
    var bytes: [UInt8] { key.withUnsafeBytes { Array($0) } }

    /// The hex HMAC-SHA256 of `body`, as the sender writes it in `x-signature`.
    public func signature(of body: [UInt8]) -> String {
        Signature.hex(MACAlgorithm.mac(keyed, [body]))
    }
}

/// The keys valid at once: the shared secrets (the current one first, then older ones still accepted during a
/// rotation) and the Standard Webhooks public keys (`v1a`) trusted for the sender.
public struct Keyring: Sendable, CustomStringConvertible {
    public let secrets: [Secret]
    public let publicKeys: [PublicKey]

    public init(_ secrets: [Secret], publicKeys: [PublicKey] = []) {
        precondition(!secrets.isEmpty || !publicKeys.isEmpty, "a keyring holds at least one key")
        self.secrets = secrets
        self.publicKeys = publicKeys
    }

    public init(_ secret: Secret) {
        self.init([secret])
    }

    /// The secret `sign` uses, if any.
    public var current: Secret? { secrets.first }

    public var description: String { "Keyring(\(secrets.count) redacted, \(publicKeys.count) public)" }

    /// Why `scheme` cannot use these keys (a Standard Webhooks secret that is not base64, or only public keys for a
    /// scheme that has no `v1a`), or nil.
    public func unusable(for scheme: SignatureScheme) -> Outcome? {
        if secrets.isEmpty && !scheme.acceptsPublicKeys {
            return .notConfigured("only public keys are configured, and \(scheme.name) needs a shared secret")
        }
        guard scheme.keying == .standardWebhooks, let secret = secrets.first(where: { $0.standardWebhooksKey == nil })
        else { return nil }
        return .notConfigured("\(secret.source) is not a Standard Webhooks secret: whsec_ and the base64 of at least "
            + "\(Secret.minimumLength) bytes (or that base64 alone)")
    }

    /// Which key signed `parts` with one of `content`'s signatures, or nil: secrets by their index, public keys
    /// after them. Every secret is tried against every MAC, each comparison in constant time, with no early exit:
    /// the time taken does not depend on which key or candidate matched, or where a wrong one differed.
    func matchingKey(_ scheme: SignatureScheme, parts: [[UInt8]], content: SignedContent) -> Int? {
        var matched = -1
        for (index, secret) in secrets.enumerated() {
            guard let code = secret.mac(scheme.algorithm, keying: scheme.keying, parts) else { continue }
            for candidate in content.macs {
                let equal = constantTimeEqual(code, candidate)
                matched = (equal && matched < 0) ? index : matched
            }
        }
        guard matched < 0 else { return matched }
        for (index, key) in publicKeys.enumerated() where content.signatures.contains(where: { key.verifies($0, parts) }) {
            return secrets.count + index
        }
        return nil
    }
}
