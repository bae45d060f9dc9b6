import FoundationEssentials

/// How a sender signs, as data: which header carries the signature and how it is laid out, the MAC and its encoding,
/// the signed content as a ``SignedTemplate``, and the timestamp with its tolerance. Every preset (GitHub, Slack,
/// Stripe, …; see SchemePresets.swift) and the operator's `generic` scheme are values of this one type, verified by
/// the one path below: there is no code per sender.
public struct SignatureScheme: Sendable, Hashable, CustomStringConvertible {
    /// How the signature header holds its signatures.
    public enum Layout: Sendable, Hashable {
        /// The whole value is one signature, after `prefix` (compared without regard to case); `required` says
        /// whether the prefix must be there.
        case single(prefix: String, required: Bool)
        /// Space-separated `version,signature` entries (Standard Webhooks): `v1` are MACs, `v1a` Ed25519 signatures
        /// checked against the configured public keys; other versions are skipped.
        case versioned
        /// `key=value` pairs split at `separator`: the timestamp under `timestampKey`, signatures under
        /// `signatureKey`, any number of them (Stripe's `t=…,v1=…`, Paddle's `ts=…;h1=…`); other keys are skipped.
        case pairs(separator: Character, timestampKey: String, signatureKey: String)
    }

    /// How a secret becomes a MAC key.
    public enum Keying: Sendable, Hashable {
        /// The secret's bytes as written.
        case raw
        /// Standard Webhooks: the base64 after an optional `whsec_`, decoded.
        case standardWebhooks
    }

    /// The value of `WEBHOOK_SCHEME` that selects it.
    public let name: String
    /// The signature header's names as sent, the first one named in messages; later ones are aliases.
    public var signatureHeaders: [String]
    public var layout: Layout
    public var algorithm: MACAlgorithm
    public var encoding: SignatureEncoding
    public var keying: Keying = .raw
    public var template: SignedTemplate
    /// The header with the Unix time the sender signed (with aliases); none for ``Layout/pairs(separator:timestampKey:signatureKey:)``,
    /// which carries its own, or for undated schemes.
    public var timestampHeaders: [String] = []
    /// The sender's tolerance for the timestamp, either way, unless the operator sets one.
    public var toleranceSeconds: Int64 = Verifier.defaultToleranceSeconds
    /// Headers with the sender's id for a delivery, for the log (aliases in order).
    public var deliveryHeaders: [String] = []
    /// Whether the delivery id is a message id that names the payload in the spool (a re-signed retry is a duplicate).
    public var deduplicates = false

    public var description: String { name }
    public var rawValue: String { name }

    /// Dated schemes refuse stale and future signatures.
    public var isTimed: Bool {
        if case .pairs = layout { return true }
        return !timestampHeaders.isEmpty
    }

    /// Whether `v1a` signatures (public keys) can verify it.
    public var acceptsPublicKeys: Bool { layout == .versioned }

    /// Every CGI param the scheme reads: its headers and, for a URL, where the web server says it.
    public var params: [String] {
        var names = (template.headers + timestampHeaders + signatureHeaders + deliveryHeaders).map(HeaderName.param)
        if template.parts.contains(.url) { names += Self.urlParams }
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    static let urlParams = ["WEBHOOK_URL", "REQUEST_SCHEME", "HTTPS", "HTTP_HOST", "REQUEST_URI"]

    /// Reads the signature headers: the signatures to accept, and the signed content around the body.
    func parse(_ headers: [String: String], now: Int64, tolerance: Int64?) throws(Outcome) -> SignedContent {
        func value(_ names: [String]) -> String? {
            names.lazy.compactMap { headers[HeaderName.param($0)] }.first { !$0.trimmingBlanks.isEmpty }
        }
        let required = template.headers.map(aliases(of:)) + [timestampHeaders, signatureHeaders].filter { !$0.isEmpty }
        guard let list = value(signatureHeaders), required.allSatisfy({ value($0) != nil }) else {
            let names = required.map { $0[0] }
            let listed = names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " or " + names.last!
            throw .badRequest("missing \(listed) header")
        }
        let header = signatureHeaders[0]
        var stamp = value(timestampHeaders)
        var macs: [[UInt8]] = []
        var signatures: [[UInt8]] = []
        switch layout {
        case .single(let prefix, let required):
            var text = list.trimmingBlanks
            let hasPrefix = !prefix.isEmpty && text.count > prefix.count && text.lowercased().hasPrefix(prefix.lowercased())
            if hasPrefix { text = text.dropFirst(prefix.count) }
            guard hasPrefix || !required, let mac = candidate(text) else { throw .badRequest(malformedReason) }
            macs = [mac]
        case .versioned:
            for entry in list.split(separator: " ") {
                let parts = entry.split(separator: ",", maxSplits: 1)
                guard parts.count == 2 else { continue }
                if parts[0] == "v1", let mac = candidate(parts[1]) { macs.append(mac) }
                if parts[0] == "v1a", let signature = SignatureEncoding.base64.decode(parts[1]), signature.count == 64 {
                    signatures.append(signature)
                }
            }
            guard !macs.isEmpty || !signatures.isEmpty else { throw .badRequest("\(header) has no v1 or v1a signature") }
        case .pairs(let separator, let timestampKey, let signatureKey):
            for item in list.split(separator: separator) {
                let pair = item.trimmingBlanks.split(separator: "=", maxSplits: 1)
                guard pair.count == 2 else { continue }
                if pair[0] == timestampKey { stamp = String(pair[1]) }
                if pair[0] == signatureKey, let mac = candidate(pair[1]) { macs.append(mac) }
            }
            guard let found = stamp else { throw .badRequest("\(header) has no \(timestampKey)= timestamp") }
            stamp = found
            guard !macs.isEmpty else { throw .badRequest("\(header) has no \(signatureKey) signature") }
        }
        var timestamp: Int64?
        if let stamp, isTimed {
            let named = timestampHeaders.first ?? "\(header) \(layout.timestampKey ?? "")"
            timestamp = try Self.timestamp(stamp, header: named, now: now, tolerance: tolerance ?? toleranceSeconds)
        }
        let pieces = template.parts.reduce(into: [SignedTemplate.Piece]()) { pieces, part in
            let bytes: [UInt8]
            switch part {
            case .body: pieces.append(.body); return
            case .form: pieces.append(.form); return
            case .literal(let text): bytes = Array(text.utf8)
            case .timestamp: bytes = Array(String(timestamp ?? 0).utf8)
            case .header(let name): bytes = Array((value(aliases(of: name)) ?? "").utf8)
            case .url: bytes = Array(Self.url(headers).utf8)
            }
            if case .bytes(let before) = pieces.last { pieces[pieces.count - 1] = .bytes(before + bytes) }
            else { pieces.append(.bytes(bytes)) }
        }
        let id = value(deliveryHeaders)
        return SignedContent(header: header, macs: macs, signatures: signatures, pieces: pieces, deliveryID: id,
                             deduplicationKey: deduplicates ? id : nil)
    }

    /// `name` and the names that stand for it (Svix's `svix-id` for `webhook-id`).
    func aliases(of name: String) -> [String] {
        [signatureHeaders, timestampHeaders, deliveryHeaders].first { $0.contains(name) } ?? [name]
    }

    /// A signature's bytes if it decodes to the algorithm's length; a token is hashed like the secret it must equal.
    func candidate(_ text: Substring) -> [UInt8]? {
        guard let bytes = encoding.decode(text.trimmingBlanks) else { return nil }
        guard let length = algorithm.byteCount else { return MACAlgorithm.token.mac(.init(data: bytes), []) }
        return bytes.count == length ? bytes : nil
    }

    /// Why a single signature was refused, saying what it should be (never what it should have been).
    var malformedReason: String {
        let header = signatureHeaders[0]
        let what = switch (encoding, algorithm.byteCount) {
        case (.hex, let count?): "\(2 * count) hex digits of an \(algorithm.displayName)"
        case (.base64, _): "base64 of an \(algorithm.displayName)"
        default: "shared token"
        }
        guard case .single(let prefix, let required) = layout, !prefix.isEmpty else { return "\(header) must be the \(what)" }
        return required ? "\(header) must be \(prefix) followed by the \(what)"
            : "\(header) must be the \(what) of the body, optionally prefixed with \(prefix)"
    }

    /// The URL the sender requested: `WEBHOOK_URL` if the web server sets it, else rebuilt from the request.
    static func url(_ headers: [String: String]) -> String {
        if let url = headers["WEBHOOK_URL"], !url.isEmpty { return url }
        let scheme = headers["REQUEST_SCHEME"] ?? (headers["HTTPS"].map { $0.isEmpty || $0 == "off" } == false ? "https" : "http")
        return "\(scheme)://\(headers["HTTP_HOST"] ?? "")\(headers["REQUEST_URI"] ?? "")"
    }

    /// A Unix time in seconds within `tolerance` of `now`, either way.
    static func timestamp(_ text: String, header: String, now: Int64, tolerance: Int64) throws(Outcome) -> Int64 {
        let text = text.trimmingBlanks
        guard !text.isEmpty, text.utf8.allSatisfy({ (48...57).contains($0) }), let value = Int64(text) else {
            throw .badRequest("\(header) is not a Unix time in seconds")
        }
        // A negative tolerance admits nothing but `now` (never its magnitude: Int64.min's would admit every time).
        guard value.subtractingReportingOverflow(now).partialValue.magnitude <= UInt64(clamping: tolerance) else {
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

    /// The headers a sender using this scheme would send for `body` (for `webhook-handler sign`); `url` is signed
    /// where the template names it.
    public func headers(for body: [UInt8], secret: Secret, id: String, timestamp: Int64, url: String = "")
        -> [(String, String)]
    {
        // A template may sign the timestamp header itself: its value is then the timestamp, else the id.
        let stamps = Set(timestampHeaders.map(HeaderName.param))
        func value(_ name: String) -> String { stamps.contains(HeaderName.param(name)) ? String(timestamp) : id }
        let parts = template.parts.map { part -> [UInt8] in
            switch part {
            case .literal(let text): Array(text.utf8)
            case .body: body
            case .form: FormParameters.signed(body)
            case .timestamp: Array(String(timestamp).utf8)
            case .header(let name): Array(value(name).utf8)
            case .url: Array(url.utf8)
            }
        }
        let mac = algorithm == .token ? secret.bytes : secret.mac(algorithm, keying: keying, parts) ?? []
        let signature = encoding.encode(mac)
        var headers = template.headers.filter { !stamps.contains(HeaderName.param($0)) }.map { ($0, id) }
        if let stampHeader = timestampHeaders.first { headers.append((stampHeader, String(timestamp))) }
        let header = signatureHeaders[0]
        switch layout {
        case .single(let prefix, let required): headers.append((header, (required ? prefix : "") + signature))
        case .versioned: headers.append((header, "v1," + signature))
        case .pairs(let separator, let timestampKey, let signatureKey):
            headers.append((header, "\(timestampKey)=\(timestamp)\(separator)\(signatureKey)=\(signature)"))
        }
        return headers
    }
}

extension SignatureScheme.Layout {
    var timestampKey: String? {
        if case .pairs(_, let key, _) = self { return key }
        return nil
    }
}

/// What a scheme found in the head: the signatures to accept and the signed content around the body.
struct SignedContent: Sendable {
    /// Named in messages: "… does not match the body".
    let header: String
    /// MACs (or hashed tokens) to compare with the secrets'.
    let macs: [[UInt8]]
    /// Ed25519 signatures (`v1a`) to check with the public keys.
    var signatures: [[UInt8]] = []
    var pieces: [SignedTemplate.Piece] = [.body]
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
