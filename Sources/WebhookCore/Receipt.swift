import Crypto

/// What the spool says about a stored payload: its content-derived id, and whether those exact bytes were
/// already there (a retry or a replay), in which case nothing new was written.
public struct Receipt: Sendable, Equatable {
    public let id: String
    public let duplicate: Bool

    public init(id: String, duplicate: Bool) {
        self.id = id
        self.duplicate = duplicate
    }

    /// The id of a payload: the hex SHA-256 of its bytes, so the same bytes always get the same name.
    public static func id(of body: [UInt8]) -> String {
        Signature.hex(Array(SHA256.hash(data: body)))
    }
}
