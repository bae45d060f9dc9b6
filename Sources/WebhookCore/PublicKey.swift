import Crypto
import FoundationEssentials

/// A Standard Webhooks `v1a` public key: `whpk_` and the base64 of the 32 bytes of an Ed25519 public key.
///
/// Keys are configured when the handler starts (a trust list), never taken from a request: whoever holds the
/// matching private key (`whsk_…`) is the sender.
public struct PublicKey: Sendable, CustomStringConvertible {
    static let prefix = "whpk_"
    let key: Curve25519.Signing.PublicKey
    /// Where it came from, for messages.
    public let source: String

    public init(parsing text: some StringProtocol, source: String) throws(Outcome) {
        guard text.hasPrefix(Self.prefix), let bytes = Data(base64Encoded: String(text.dropFirst(Self.prefix.count))),
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: bytes)
        else {
            throw .notConfigured("\(source) is not a Standard Webhooks public key: whpk_ and the base64 of 32 bytes")
        }
        self.key = key
        self.source = source
    }

    /// The whitespace-separated keys in `text` (a variable or a file).
    public static func list(_ text: String, source: String) throws(Outcome) -> [PublicKey] {
        var keys: [PublicKey] = []
        for (index, word) in text.split(whereSeparator: \.isWhitespace).enumerated() {
            keys.append(try PublicKey(parsing: word, source: "key \(index + 1) of \(source)"))
        }
        return keys
    }

    /// Whether `signature` (64 bytes) signs the joined `parts`. Public data only: its time leaks nothing secret.
    func verifies(_ signature: [UInt8], _ parts: [[UInt8]]) -> Bool {
        key.isValidSignature(signature, for: parts.flatMap { $0 })
    }

    public var description: String { "whpk_" + key.rawRepresentation.base64EncodedString() }
}
