/// The webhook contract, decided in two steps so that nothing is read that the answer does not need:
/// ``admit(_:secret:)`` judges the head (method, secret, length, signature) before a byte of the body is read,
/// and ``PendingBody/verify(_:)`` judges the body once exactly `CONTENT_LENGTH` bytes have been read.
public struct Verifier: Sendable {
    public static let defaultMaxBodyBytes = 1 << 20

    public static let defaultToleranceSeconds: Int64 = 300

    /// Bodies longer than this are refused with 413 from `CONTENT_LENGTH` alone.
    public let maxBodyBytes: Int
    /// How the sender signs.
    public let scheme: SignatureScheme
    /// The operator's tolerance for every dated scheme, when set; else each scheme's own (the sender's).
    public let toleranceSeconds: Int64?
    /// The operator's `generic` scheme, when one is configured, which a location may choose like a preset.
    public let generic: SignatureScheme?

    public init(maxBodyBytes: Int = Verifier.defaultMaxBodyBytes, scheme: SignatureScheme = .xSignature,
                toleranceSeconds: Int64? = nil, generic: SignatureScheme? = nil) {
        precondition(maxBodyBytes >= 0, "the body limit cannot be negative")
        self.maxBodyBytes = maxBodyBytes
        self.scheme = scheme
        self.toleranceSeconds = toleranceSeconds
        self.generic = generic
    }

    /// The same limits with another scheme (a web server may choose one per location).
    public func with(scheme: SignatureScheme) -> Verifier {
        Verifier(maxBodyBytes: maxBodyBytes, scheme: scheme, toleranceSeconds: toleranceSeconds, generic: generic)
    }

    /// A preset, or `generic` when one is configured.
    public func scheme(named name: String) -> SignatureScheme? {
        name == "generic" ? generic : SignatureScheme(rawValue: name)
    }

    /// The tolerance `scheme` gets: the operator's, else the sender's.
    public var effectiveToleranceSeconds: Int64 { toleranceSeconds ?? scheme.toleranceSeconds }

    /// What to do after the head: read a body of known length, or answer at once.
    public enum Admission: Sendable {
        case readBody(PendingBody)
        case answer(Outcome)
    }

    /// Judges the head. `keys` are the configured secrets, or the 500 that explains why there are none; `now` is
    /// the time in Unix seconds (injected, so that the core stays pure), which dated schemes check against.
    public func admit(_ head: RequestHead, keys: Result<Keyring, Outcome>, now: Int64 = 0) -> Admission {
        guard head.method == "POST" else { return .answer(.methodNotAllowed(head.method)) }
        do throws(Outcome) {
            let keyring = try keys.get()
            if let unusable = keyring.unusable(for: scheme) { throw unusable }
            let expected: BodyLength =
                head.isChunkedWithoutLength ? .toEnd(limit: maxBodyBytes) : .exactly(try bodyLength(head.contentLength))
            let content = try scheme.parse(head.headers, now: now, tolerance: toleranceSeconds)
            return .readBody(PendingBody(expected: expected, scheme: scheme, content: content, keyring: keyring))
        } catch {
            return .answer(error)
        }
    }

    /// ``admit(_:keys:now:)`` with a single secret.
    public func admit(_ head: RequestHead, secret: Result<Secret, Outcome>, now: Int64 = 0) -> Admission {
        admit(head, keys: secret.map { Keyring($0) }, now: now)
    }

    /// `CONTENT_LENGTH` as a byte count: absent or empty is 0; only ASCII digits are a number.
    func bodyLength(_ field: String?) throws(Outcome) -> Int {
        guard let field, !field.isEmpty else { return 0 }
        if field.hasPrefix("-") { throw .badRequest("CONTENT_LENGTH must not be negative") }
        var length = 0
        for digit in field.utf8 {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else {
                throw .badRequest("CONTENT_LENGTH is not a decimal number")
            }
            // Saturate instead of overflowing: anything past the limit is refused the same way.
            if length <= maxBodyBytes { length = length * 10 + Int(digit - UInt8(ascii: "0")) }
        }
        guard length <= maxBodyBytes else {
            throw .payloadTooLarge(length: field.count > 20 ? "more than \(maxBodyBytes)" : field, limit: maxBodyBytes)
        }
        return length
    }
}

/// How much body a request that passed its head is waiting for.
public enum BodyLength: Sendable, Equatable {
    /// `CONTENT_LENGTH` bytes, already checked against the limit.
    case exactly(Int)
    /// No length given (a chunked upload passed through as it comes): everything up to the end, which must come
    /// within `limit` bytes.
    case toEnd(limit: Int)

    /// How many bytes to read at most: one past the limit for ``toEnd(limit:)``, so that an over-long body shows.
    public var readLimit: Int {
        switch self {
        case .exactly(let length): length
        case .toEnd(let limit): limit + 1
        }
    }
}

/// A request whose head passed: it waits for its body.
public struct PendingBody: Sendable {
    public let expected: BodyLength
    let scheme: SignatureScheme
    let content: SignedContent
    let keyring: Keyring

    /// Judges the body read (at most ``BodyLength/readLimit`` bytes): short of `CONTENT_LENGTH` means the body
    /// ended early; past the limit of a body without a length is too large.
    public func verify(_ body: [UInt8]) -> Outcome {
        switch expected {
        case .exactly(let length) where body.count < length:
            return .badRequest("request body ended after \(body.count) of \(length) bytes")
        case .toEnd(let limit) where body.count > limit:
            return .payloadTooLarge(length: "more than \(limit)", limit: limit)
        default:
            break
        }
        let signed = body.count > expected.readLimit ? Array(body.prefix(expected.readLimit)) : body
        let parts = SignedTemplate.join(content.pieces, body: signed)
        guard let key = keyring.matchingKey(scheme, parts: parts, content: content) else {
            return .badRequest("\(content.header) does not match the body")
        }
        return .accepted(Verification(
            keyIndex: key, keyCount: keyring.secrets.count + keyring.publicKeys.count, deliveryID: content.deliveryID,
            deduplicationKey: content.deduplicationKey))
    }
}
