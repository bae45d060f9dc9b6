import Crypto
import FoundationEssentials

/// The MACs a scheme may name. SHA-1 exists for the senders that still sign with it (Twilio, GitHub's legacy header)
/// and is never a default: a scheme uses it only when its configuration names it.
public enum MACAlgorithm: String, Sendable, CaseIterable {
    case sha256 = "sha256"
    case sha512 = "sha512"
    case sha1 = "sha1"
    /// No MAC: the header carries the shared secret itself (GitLab's `X-Gitlab-Token`). Both sides are hashed with
    /// SHA-256 before the comparison, so that it takes the same time whatever the lengths.
    case token = "token"

    /// Bytes of a MAC; nil for ``token``, whose length is the secret's.
    public var byteCount: Int? {
        switch self {
        case .sha256: 32
        case .sha512: 64
        case .sha1: 20
        case .token: nil
        }
    }

    /// As people write it: `HMAC-SHA256`.
    public var displayName: String {
        self == .token ? "shared token" : "HMAC-" + rawValue.uppercased()
    }

    /// The MAC of `parts` (not joined) under `key`.
    func mac(_ key: SymmetricKey, _ parts: [[UInt8]]) -> [UInt8] {
        switch self {
        case .sha256: Self.mac(HMAC<SHA256>(key: key), parts)
        case .sha512: Self.mac(HMAC<SHA512>(key: key), parts)
        case .sha1: Self.mac(HMAC<Insecure.SHA1>(key: key), parts)
        case .token: Array(SHA256.hash(data: key.withUnsafeBytes { Array($0) }))
        }
    }

    static func mac<H: HashFunction>(_ keyed: HMAC<H>, _ parts: [[UInt8]]) -> [UInt8] {
        var hmac = keyed
        for part in parts { part.withUnsafeBytes { hmac.update(data: $0) } }
        return Array(hmac.finalize())
    }
}

/// How a signature is written in its header.
public enum SignatureEncoding: String, Sendable, CaseIterable {
    case hex
    case base64
    /// The header's bytes as sent (a shared token).
    case plain

    /// The bytes `text` encodes, or nil. Hex in either case, of even length; base64 exactly as senders write it
    /// (RFC 4648 §4: standard alphabet, padded, zero pad bits), since Foundation's decoder also takes extra padding
    /// and non-zero pad bits, spellings no sender writes.
    public func decode(_ text: Substring) -> [UInt8]? {
        switch self {
        case .hex: Self.hex(text.utf8)
        case .base64: Data(base64Encoded: String(text)).flatMap { $0.base64EncodedString() == text ? Array($0) : nil }
        case .plain: Array(text.utf8)
        }
    }

    public func encode(_ bytes: [UInt8]) -> String {
        switch self {
        case .hex: Signature.hex(bytes)
        case .base64: Data(bytes).base64EncodedString()
        case .plain: String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Hex digits (either case) as bytes, or nil.
    static func hex<Digits: Collection<UInt8>>(_ text: Digits) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(text.count / 2)
        var index = text.startIndex
        while index != text.endIndex {
            let next = text.index(after: index)
            guard let high = nibble(text[index]), let low = nibble(text[next]) else { return nil }
            bytes.append(high << 4 | low)
            index = text.index(after: next)
        }
        return bytes
    }

    static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Equal in a time that depends only on the lengths (which are public: the algorithm fixes them), never on where
/// the bytes differ.
func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
    guard left.count == right.count else { return false }
    var difference: UInt8 = 0
    for index in left.indices { difference |= left[index] ^ right[index] }
    return difference == 0
}
