/// A parsed `x-signature`: the 32 bytes of an HMAC-SHA256.
///
/// Accepts 64 hex digits in either case, an optional `sha256=` prefix (GitHub's style) and surrounding blanks.
public struct Signature: Sendable, Equatable {
    public static let byteCount = 32
    public let bytes: [UInt8]

    public static let missingReason = "missing x-signature header"
    public static let malformedReason =
        "x-signature must be the 64 hex digits of an HMAC-SHA256 of the body, optionally prefixed with sha256="

    public init(parsing header: String?) throws(Outcome) {
        var text = (header ?? "").trimmingBlanks
        guard !text.isEmpty else { throw .badRequest(Self.missingReason) }
        if text.utf8.count > 7, text.prefix(7).lowercased() == "sha256=" { text = text.dropFirst(7) }

        let digits = Array(text.utf8)
        guard digits.count == 2 * Self.byteCount else { throw .badRequest(Self.malformedReason) }
        var bytes = [UInt8]()
        bytes.reserveCapacity(Self.byteCount)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = Self.nibble(digits[index]), let low = Self.nibble(digits[index + 1]) else {
                throw .badRequest(Self.malformedReason)
            }
            bytes.append(high << 4 | low)
        }
        self.bytes = bytes
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Lower-case hex, the way the sender writes signatures.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
