import FoundationEssentials

/// How a sender signs: which headers carry the signature, which bytes are signed, and how the MAC is written.
/// One scheme per deployment; `x-signature` (the seed's) is the default.
public enum SignatureScheme: String, Sendable, CaseIterable {
    /// `x-signature: <hex HMAC-SHA256 of the body>` (hedera-serverless-consensus; `sha256=` allowed).
    case xSignature = "x-signature"
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body; `X-GitHub-Delivery` is logged.
    case github
    /// Standard Webhooks: `webhook-signature: v1,<base64> …` over `id.timestamp.body`, secret `whsec_<base64>`.
    case standardWebhooks = "standard-webhooks"
    /// Stripe: `Stripe-Signature: t=<timestamp>,v1=<hex>,…` over `timestamp.body`.
    case stripe

    /// The CGI params (request headers) the scheme reads.
    public var params: [String] {
        switch self {
        case .xSignature: ["HTTP_X_SIGNATURE"]
        case .github: ["HTTP_X_HUB_SIGNATURE_256", "HTTP_X_GITHUB_DELIVERY"]
        case .standardWebhooks: ["HTTP_WEBHOOK_ID", "HTTP_WEBHOOK_TIMESTAMP", "HTTP_WEBHOOK_SIGNATURE"]
        case .stripe: ["HTTP_STRIPE_SIGNATURE"]
        }
    }

    /// Does this scheme date its signatures (and so refuse stale or future ones)?
    var isTimed: Bool { self == .standardWebhooks || self == .stripe }

    /// Reads the signature headers: the MACs to accept, and what is signed before the body.
    func parse(_ headers: [String: String], now: Int64, tolerance: Int64) throws(Outcome) -> SignedContent {
        switch self {
        case .xSignature:
            let signature = try Signature(parsing: headers["HTTP_X_SIGNATURE"])
            return SignedContent(header: "x-signature", candidates: [signature.bytes])
        case .github:
            guard let value = headers["HTTP_X_HUB_SIGNATURE_256"]?.trimmingBlanks, !value.isEmpty else {
                throw .badRequest("missing X-Hub-Signature-256 header")
            }
            guard value.hasPrefix("sha256="), let signature = try? Signature(parsing: String(value)) else {
                throw .badRequest("X-Hub-Signature-256 must be sha256= followed by the 64 hex digits of an HMAC-SHA256")
            }
            return SignedContent(header: "X-Hub-Signature-256", candidates: [signature.bytes],
                                 deliveryID: headers["HTTP_X_GITHUB_DELIVERY"])
        case .standardWebhooks:
            guard let id = headers["HTTP_WEBHOOK_ID"], !id.isEmpty,
                  let stamp = headers["HTTP_WEBHOOK_TIMESTAMP"], !stamp.isEmpty,
                  let list = headers["HTTP_WEBHOOK_SIGNATURE"], !list.isEmpty
            else { throw .badRequest("missing webhook-id, webhook-timestamp or webhook-signature header") }
            let timestamp = try Self.timestamp(stamp, header: "webhook-timestamp", now: now, tolerance: tolerance)
            let candidates = list.split(separator: " ").compactMap { entry -> [UInt8]? in
                guard entry.hasPrefix("v1,") else { return nil }
                return Data(base64Encoded: String(entry.dropFirst(3))).map(Array.init)
            }
            guard !candidates.isEmpty else { throw .badRequest("webhook-signature has no v1 signature") }
            return SignedContent(header: "webhook-signature", candidates: candidates,
                                 prefix: Array("\(id).\(timestamp).".utf8), deliveryID: id, deduplicationKey: id)
        case .stripe:
            guard let value = headers["HTTP_STRIPE_SIGNATURE"], !value.isEmpty else {
                throw .badRequest("missing Stripe-Signature header")
            }
            var stamp: String?
            var candidates: [[UInt8]] = []
            for item in value.split(separator: ",") {
                let pair = item.trimmingBlanks.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { continue }
                if pair[0] == "t" { stamp = pair[1] }
                if pair[0] == "v1", let signature = try? Signature(parsing: pair[1]) { candidates.append(signature.bytes) }
            }
            guard let stamp else { throw .badRequest("Stripe-Signature has no t= timestamp") }
            let timestamp = try Self.timestamp(stamp, header: "Stripe-Signature t", now: now, tolerance: tolerance)
            guard !candidates.isEmpty else { throw .badRequest("Stripe-Signature has no v1 signature") }
            return SignedContent(header: "Stripe-Signature", candidates: candidates, prefix: Array("\(timestamp).".utf8))
        }
    }

    /// A Unix time in seconds within `tolerance` of `now`, either way.
    static func timestamp(_ text: String, header: String, now: Int64, tolerance: Int64) throws(Outcome) -> Int64 {
        guard !text.isEmpty, text.utf8.allSatisfy({ (48...57).contains($0) }), let value = Int64(text) else {
            throw .badRequest("\(header) is not a Unix time in seconds")
        }
        guard abs(value - now) <= tolerance else {
            throw .badRequest("\(header) is more than \(tolerance) seconds from now")
        }
        return value
    }

    /// A Standard Webhooks key: `whsec_` (optional, as in the reference libraries) then the base64 of the key bytes,
    /// at least ``Secret/minimumLength`` of them; nil for anything else (never the text's own bytes).
    static func standardWebhooksKey(of secret: [UInt8]) -> [UInt8]? {
        let prefix = Array("whsec_".utf8)
        let encoded = secret.starts(with: prefix) ? Array(secret.dropFirst(prefix.count)) : secret
        guard let key = Data(base64Encoded: String(decoding: encoded, as: UTF8.self)), key.count >= Secret.minimumLength
        else { return nil }
        return Array(key)
    }

    /// The headers a sender using this scheme would send for `body` (for `webhook-handler sign`).
    public func headers(for body: [UInt8], secret: Secret, id: String, timestamp: Int64) -> [(String, String)] {
        let keyed = secret.keyed(for: self) ?? secret.keyed
        switch self {
        case .xSignature:
            return [("x-signature", Signature.hex(HMACSHA256.mac(keyed, [body])))]
        case .github:
            return [("X-Hub-Signature-256", "sha256=" + Signature.hex(HMACSHA256.mac(keyed, [body])))]
        case .standardWebhooks:
            let mac = HMACSHA256.mac(keyed, [Array("\(id).\(timestamp).".utf8), body])
            return [("webhook-id", id), ("webhook-timestamp", String(timestamp)),
                    ("webhook-signature", "v1," + Data(mac).base64EncodedString())]
        case .stripe:
            let mac = HMACSHA256.mac(keyed, [Array("\(timestamp).".utf8), body])
            return [("Stripe-Signature", "t=\(timestamp),v1=\(Signature.hex(mac))")]
        }
    }
}

/// What a scheme found in the head: the MACs it accepts and the bytes signed before the body.
struct SignedContent: Sendable {
    /// Named in messages: "… does not match the body".
    let header: String
    let candidates: [[UInt8]]
    var prefix: [UInt8] = []
    /// The sender's id for this delivery, for the log.
    var deliveryID: String?
    /// When set, the spool names the payload by this (the sender's message id) rather than by its bytes.
    var deduplicationKey: String?
}

extension StringProtocol {
    var trimmingBlanks: Substring {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}
