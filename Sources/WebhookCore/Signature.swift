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
        var text = header ?? ""
        switch text.withUTF8({ Self.decode($0[...]) }) {
        case .missing: throw .badRequest(Self.missingReason)
        case .malformed: throw .badRequest(Self.malformedReason)
        case .decoded(let bytes): self.bytes = bytes
        }
    }

    private enum Decoded { case missing, malformed, decoded([UInt8]) }

    private static func decode(_ text: Slice<UnsafeBufferPointer<UInt8>>) -> Decoded {
        var text = text
        let blanks: [UInt8] = [UInt8(ascii: " "), UInt8(ascii: "\t")]
        while let first = text.first, blanks.contains(first) { text.removeFirst() }
        while let last = text.last, blanks.contains(last) { text.removeLast() }
        guard !text.isEmpty else { return .missing }
        let lowercased = { (byte: UInt8) in
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
        }
        if text.count > 7, zip(text, "sha256=".utf8).allSatisfy({ lowercased($0) == $1 }) { text.removeFirst(7) }

        guard text.count == 2 * byteCount, let bytes = SignatureEncoding.hex(text)
        else { return .malformed }
        return .decoded(bytes)
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
