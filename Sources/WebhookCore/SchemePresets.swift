/// The senders' own rules, each an instance of ``SignatureScheme``: docs/schemes.md says where each rule comes from
/// and which test proves it against the sender's library.
extension SignatureScheme {
    static let bodyOnly = SignedTemplate([.body])

    /// `x-signature: <hex HMAC-SHA256 of the body>` (hedera-serverless-consensus; `sha256=` allowed). The default.
    public static let xSignature = SignatureScheme(
        name: "x-signature", signatureHeaders: ["x-signature"], layout: .single(prefix: "sha256=", required: false),
        algorithm: .sha256, encoding: .hex, template: bodyOnly)

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body; `X-GitHub-Delivery` is logged.
    public static let github = SignatureScheme(
        name: "github", signatureHeaders: ["X-Hub-Signature-256"], layout: .single(prefix: "sha256=", required: true),
        algorithm: .sha256, encoding: .hex, template: bodyOnly, deliveryHeaders: ["X-GitHub-Delivery"])

    /// GitHub's legacy `X-Hub-Signature: sha1=<hex>`, only for a location that names it.
    public static let githubSHA1 = SignatureScheme(
        name: "github-sha1", signatureHeaders: ["X-Hub-Signature"], layout: .single(prefix: "sha1=", required: true),
        algorithm: .sha1, encoding: .hex, template: bodyOnly, deliveryHeaders: ["X-GitHub-Delivery"])

    /// Standard Webhooks: `webhook-signature: v1,<base64> v1a,<base64> …` over `id.timestamp.body`; secret
    /// `whsec_<base64>`, public keys `whpk_<base64>`; Svix's `svix-*` names are accepted as aliases.
    public static let standardWebhooks = standardWebhooks(named: "standard-webhooks", prefixes: "webhook", "svix")

    /// Svix: Standard Webhooks under its own header names (`webhook-*` accepted as aliases).
    public static let svix = standardWebhooks(named: "svix", prefixes: "svix", "webhook")

    /// Standard Webhooks with its headers named `PREFIX-id`, `-timestamp`, `-signature`, the first prefix preferred.
    static func standardWebhooks(named name: String, prefixes first: String, _ alias: String) -> SignatureScheme {
        SignatureScheme(
            name: name, signatureHeaders: [first + "-signature", alias + "-signature"], layout: .versioned,
            algorithm: .sha256, encoding: .base64, keying: .standardWebhooks,
            template: SignedTemplate([.header(first + "-id"), .literal("."), .timestamp, .literal("."), .body]),
            timestampHeaders: [first + "-timestamp", alias + "-timestamp"], deliveryHeaders: [first + "-id", alias + "-id"],
            deduplicates: true)
    }

    /// Stripe: `Stripe-Signature: t=<timestamp>,v1=<hex>,…` over `timestamp.body`.
    public static let stripe = SignatureScheme(
        name: "stripe", signatureHeaders: ["Stripe-Signature"],
        layout: .pairs(separator: ",", timestampKey: "t", signatureKey: "v1"), algorithm: .sha256, encoding: .hex,
        template: SignedTemplate([.timestamp, .literal("."), .body]))

    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:timestamp:body`, `X-Slack-Request-Timestamp` within 5 minutes.
    public static let slack = SignatureScheme(
        name: "slack", signatureHeaders: ["X-Slack-Signature"], layout: .single(prefix: "v0=", required: true),
        algorithm: .sha256, encoding: .hex, template: SignedTemplate([.literal("v0:"), .timestamp, .literal(":"), .body]),
        timestampHeaders: ["X-Slack-Request-Timestamp"])

    /// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`; `X-Shopify-Webhook-Id` is logged.
    public static let shopify = SignatureScheme(
        name: "shopify", signatureHeaders: ["X-Shopify-Hmac-Sha256"], layout: .single(prefix: "", required: false),
        algorithm: .sha256, encoding: .base64, template: bodyOnly, deliveryHeaders: ["X-Shopify-Webhook-Id"])

    /// Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1>` of the URL it requested followed by the sorted POST
    /// parameters; undated (Twilio sends no timestamp).
    public static let twilio = SignatureScheme(
        name: "twilio", signatureHeaders: ["X-Twilio-Signature"], layout: .single(prefix: "", required: false),
        algorithm: .sha1, encoding: .base64, template: SignedTemplate([.url, .form]))

    /// Paddle Billing: `Paddle-Signature: ts=<timestamp>;h1=<hex>` over `timestamp:body`; its SDK allows 5 seconds.
    public static let paddle = SignatureScheme(
        name: "paddle", signatureHeaders: ["Paddle-Signature"],
        layout: .pairs(separator: ";", timestampKey: "ts", signatureKey: "h1"), algorithm: .sha256, encoding: .hex,
        template: SignedTemplate([.timestamp, .literal(":"), .body]), toleranceSeconds: 5)

    /// GitLab: `X-Gitlab-Token: <the secret itself>`, compared in constant time; `X-Gitlab-Event-UUID` is logged.
    public static let gitlab = SignatureScheme(
        name: "gitlab", signatureHeaders: ["X-Gitlab-Token"], layout: .single(prefix: "", required: false),
        algorithm: .token, encoding: .plain, template: bodyOnly, deliveryHeaders: ["X-Gitlab-Event-UUID"])

    /// Every preset, by the name `WEBHOOK_SCHEME` gives.
    public static let presets: [SignatureScheme] = [
        xSignature, github, standardWebhooks, stripe, slack, shopify, twilio, paddle, svix, gitlab, githubSHA1,
    ]

    /// The preset called `name`, or nil.
    public init?(rawValue name: String) {
        guard let preset = Self.presets.first(where: { $0.name == name }) else { return nil }
        self = preset
    }

    /// The operator's own scheme (`WEBHOOK_SCHEME=generic`), configured when the handler starts. SHA-1 only when
    /// `algorithm` names it; a `prefix` given must be there.
    public static func generic(header: String, algorithm: MACAlgorithm = .sha256, encoding: SignatureEncoding = .hex,
                               prefix: String = "", template: String = "{body}", timestampHeader: String? = nil,
                               toleranceSeconds: Int64 = Verifier.defaultToleranceSeconds) throws(TemplateError)
        -> SignatureScheme
    {
        guard let header = HeaderName(header) else { throw TemplateError("the header \(header.prefix(64)) is not a header name") }
        guard algorithm != .token, encoding != .plain else { throw TemplateError("the generic scheme signs with a MAC") }
        let template = try SignedTemplate(parsing: template)
        if template.headers.contains(where: { HeaderName.param($0) == HeaderName.param(header.name) }) {
            throw TemplateError("the template cannot sign the signature header itself")
        }
        var timestamps: [String] = []
        if let timestampHeader {
            guard let name = HeaderName(timestampHeader) else { throw TemplateError("the timestamp header is not a header name") }
            timestamps = [name.name]
        }
        if template.parts.contains(.timestamp) && timestamps.isEmpty {
            throw TemplateError("the template signs {timestamp} but no timestamp header is set")
        }
        // An unsigned timestamp proves nothing: an old delivery would pass again under a fresh one.
        let signsTimestamp = template.parts.contains(.timestamp)
            || template.headers.contains { HeaderName.param($0) == timestamps.first.map(HeaderName.param) }
        if !timestamps.isEmpty && !signsTimestamp {
            throw TemplateError("the timestamp header \(timestamps[0]) is checked but not signed: "
                + "the template must sign {timestamp} (or {header:\(timestamps[0])})")
        }
        return SignatureScheme(
            name: "generic", signatureHeaders: [header.name], layout: .single(prefix: prefix, required: !prefix.isEmpty),
            algorithm: algorithm, encoding: encoding, template: template, timestampHeaders: timestamps,
            toleranceSeconds: toleranceSeconds)
    }
}
