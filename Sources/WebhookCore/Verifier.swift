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
            let length = try bodyLength(head.contentLength)
            let signature = try Signature(parsing: head.signature)
            return .readBody(PendingBody(length: length, signature: signature, secret: secret))
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

/// A request whose head passed: it waits for exactly ``length`` body bytes.
public struct PendingBody: Sendable {
    /// How many bytes to read: `CONTENT_LENGTH`, already checked against the limit.
    public let length: Int
    let signature: Signature
    let secret: Secret

    /// Judges the body read. Fewer bytes than ``length`` means the body ended early.
    public func verify(_ body: [UInt8]) -> Outcome {
        guard body.count >= length else {
            return .badRequest("request body ended after \(body.count) of \(length) bytes")
        }
        let signed = body.count == length ? body : Array(body.prefix(length))
        guard secret.authenticates(signed, signature: signature) else {
            return .badRequest("x-signature does not match the body")
        }
        return .verified
    }
}
