/// The webhook contract, decided in two steps so that nothing is read that the answer does not need:
/// ``admit(_:secret:)`` judges the head (method, secret, length, signature) before a byte of the body is read,
/// and ``PendingBody/verify(_:)`` judges the body once exactly `CONTENT_LENGTH` bytes have been read.
public struct Verifier: Sendable {
    public static let defaultMaxBodyBytes = 1 << 20

    /// Bodies longer than this are refused with 413 from `CONTENT_LENGTH` alone.
    public let maxBodyBytes: Int

    public init(maxBodyBytes: Int = Verifier.defaultMaxBodyBytes) {
        precondition(maxBodyBytes >= 0, "the body limit cannot be negative")
        self.maxBodyBytes = maxBodyBytes
    }

    /// What to do after the head: read a body of known length, or answer at once.
    public enum Admission: Sendable {
        case readBody(PendingBody)
        case answer(Outcome)
    }

    /// Judges the head. `secret` is the configured secret, or the 500 that explains why there is none.
    public func admit(_ head: RequestHead, secret: Result<Secret, Outcome>) -> Admission {
        guard head.method == "POST" else { return .answer(.methodNotAllowed(head.method)) }
        do throws(Outcome) {
            let secret = try secret.get()
            let expected: BodyLength =
                head.isChunkedWithoutLength ? .toEnd(limit: maxBodyBytes) : .exactly(try bodyLength(head.contentLength))
            let signature = try Signature(parsing: head.signature)
            return .readBody(PendingBody(expected: expected, signature: signature, secret: secret))
        } catch {
            return .answer(error)
        }
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
    let signature: Signature
    let secret: Secret

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
        guard secret.authenticates(signed, signature: signature) else {
            return .badRequest("x-signature does not match the body")
        }
        return .verified
    }
}
