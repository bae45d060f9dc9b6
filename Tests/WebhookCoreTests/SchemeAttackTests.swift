import FoundationEssentials
import Testing

@testable import WebhookCore

/// What an attacker sends that must not verify: encodings the sender never writes, timestamps that are not plain
/// seconds, empty signature lists, a timestamp that is checked but not signed.
@Suite struct SchemeAttackTests {
    let preset = PresetTests()

    func outcome(_ scheme: SignatureScheme, _ headers: [String: String], body: String, secret: String,
                 now: Int64 = 0) throws -> Outcome {
        preset.run(scheme, headers, body: body, keys: Keyring(try Secret(secret)), now: now)
    }

    // Shopify's vector: base64 as Shopify writes it (standard alphabet, padded, no blanks inside).
    static let shopifyBody = #"{"id":820982911946154508}"#
    static let shopifySecret = "shpss_0123456789abcdef"

    @Test(arguments: [
        "WgzR7rq62vUNCmcicvvYrYZJZaD2hIzKWpcvIVtnpEg",  // padding dropped
        "WgzR7rq62vUNCmcicvvYrYZJZaD2hIzKWpcvIVtnpEg==",  // too much padding
        "WgzR7rq62vUNCmci cvvYrYZJZaD2hIzKWpcvIVtnpEg=",  // a blank inside
        "WgzR7rq62vUNCmci\ncvvYrYZJZaD2hIzKWpcvIVtnpEg=",  // a line break inside
        "WgzR7rq62vUNCmcicvvYrYZJZaD2hIzKWpcvIVtnpEh=",  // non-zero trailing bits: the same bytes, not as written
    ])
    func base64TheSenderNeverWritesIsRefused(_ signature: String) throws {
        let good = ["HTTP_X_SHOPIFY_HMAC_SHA256": "WgzR7rq62vUNCmcicvvYrYZJZaD2hIzKWpcvIVtnpEg="]
        #expect(try outcome(.shopify, good, body: Self.shopifyBody, secret: Self.shopifySecret).isVerified)
        let answer = try outcome(.shopify, ["HTTP_X_SHOPIFY_HMAC_SHA256": signature], body: Self.shopifyBody,
                                 secret: Self.shopifySecret)
        #expect(answer.status == .badRequest, "\(signature)")
    }

    /// The Standard Webhooks vector with `+` and `/` written URL-safe (`-`, `_`): not what the sender writes.
    @Test func urlSafeBase64IsRefused() throws {
        var headers = ["HTTP_SVIX_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek", "HTTP_SVIX_TIMESTAMP": "1614265330",
                       "HTTP_SVIX_SIGNATURE": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        #expect(try outcome(.svix, headers, body: #"{"test": 2432232314}"#, secret: secret, now: 1_614_265_330).isVerified)
        headers["HTTP_SVIX_SIGNATURE"] = "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE="
        #expect(try outcome(.svix, headers, body: #"{"test": 2432232314}"#, secret: secret, now: 1_614_265_330)
            .status == .badRequest)
    }

    @Test(arguments: ["-1614265330", "+1614265330", "1614265330.0", "1.6e9", "0x6036a8f2", "99999999999999999999",
                      "1614265330 1", ""])
    func timestampsThatAreNotPlainSecondsAreRefused(_ stamp: String) throws {
        let headers = ["HTTP_SVIX_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek", "HTTP_SVIX_TIMESTAMP": stamp,
                       "HTTP_SVIX_SIGNATURE": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]
        let answer = try outcome(.svix, headers, body: #"{"test": 2432232314}"#,
                                 secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now: 1_614_265_330)
        #expect(answer.status == .badRequest, "\(stamp)")
    }

    @Test(arguments: [
        (SignatureScheme.standardWebhooks, "HTTP_WEBHOOK_SIGNATURE", "v1,"),
        (SignatureScheme.standardWebhooks, "HTTP_WEBHOOK_SIGNATURE", "v1a, v1,=="),
        (SignatureScheme.stripe, "HTTP_STRIPE_SIGNATURE", "t=0"),
        (SignatureScheme.stripe, "HTTP_STRIPE_SIGNATURE", "t=0,v1="),
        (SignatureScheme.paddle, "HTTP_PADDLE_SIGNATURE", "ts=0;h1="),
        (SignatureScheme.github, "HTTP_X_HUB_SIGNATURE_256", "sha256="),
        (SignatureScheme.gitlab, "HTTP_X_GITLAB_TOKEN", " "),
    ])
    func emptySignatureListsAreRefused(_ scheme: SignatureScheme, _ param: String, _ value: String) throws {
        let headers = [param: value, "HTTP_WEBHOOK_ID": "msg_1", "HTTP_WEBHOOK_TIMESTAMP": "0"]
        let answer = try outcome(scheme, headers, body: "{}", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        #expect(answer.status == .badRequest, "\(scheme) \(value)")
    }

    /// GitHub's SHA-256 header with the SHA-1 prefix, or none: refused even when the hex is right.
    @Test func gitHubPrefixMustBeItsOwn() throws {
        let secret = "It's a Secret to Everybody"
        let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        #expect(try outcome(.github, ["HTTP_X_HUB_SIGNATURE_256": "sha256=" + hex], body: "Hello, World!",
                            secret: secret).isVerified)
        for written in ["sha1=" + hex, hex, "sha256:" + hex, "sha256=sha256=" + hex] {
            #expect(try outcome(.github, ["HTTP_X_HUB_SIGNATURE_256": written], body: "Hello, World!",
                                secret: secret).status == .badRequest, "\(written)")
        }
    }

    /// A refusal never carries the MAC that would have matched, in its reason or its log detail.
    @Test func refusalsNeverHoldTheExpectedMAC() throws {
        let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        let answer = try outcome(.github, ["HTTP_X_HUB_SIGNATURE_256": "sha256=" + String(repeating: "0", count: 64)],
                                 body: "Hello, World!", secret: "It's a Secret to Everybody")
        #expect(answer.status == .badRequest)
        for text in [answer.reason ?? "", answer.detail ?? ""] { #expect(!text.lowercased().contains(hex)) }
    }

    /// A timestamp header the template does not sign proves nothing: an old delivery could be replayed under a fresh
    /// one. The generic scheme refuses that configuration.
    @Test func genericTimestampHeaderMustBeSigned() throws {
        #expect(throws: TemplateError.self) {
            try SignatureScheme.generic(header: "X-Sig", template: "{body}", timestampHeader: "X-Time")
        }
        _ = try SignatureScheme.generic(header: "X-Sig", template: "{timestamp}.{body}", timestampHeader: "X-Time")
        _ = try SignatureScheme.generic(header: "X-Sig", template: "{header:x-time}.{body}", timestampHeader: "X-Time")
    }

    /// The generic scheme with a timestamp header refuses a request without it.
    @Test func genericMissingTimestampHeaderIsRefused() throws {
        let scheme = try SignatureScheme.generic(header: "X-Sig", template: "{timestamp}.{body}", timestampHeader: "X-Time")
        let secret = try Secret("generic-secret-123")
        let signed = scheme.headers(for: Array("{}".utf8), secret: secret, id: "", timestamp: 1_700_000_000)
        var headers = Dictionary(uniqueKeysWithValues: signed.map { (HeaderName.param($0.0), $0.1) })
        #expect(preset.run(scheme, headers, body: "{}", keys: Keyring(secret), now: 1_700_000_000).isVerified)
        headers["HTTP_X_TIME"] = nil
        #expect(preset.run(scheme, headers, body: "{}", keys: Keyring(secret), now: 1_700_000_000)
            == .badRequest("missing X-Time or X-Sig header"))
    }
}

extension SchemeAttackTests {
    /// A negative tolerance (a typo in `--tolerance-seconds`) must not widen the window: `Int64.min`'s magnitude
    /// would accept any timestamp at all.
    @Test(arguments: [Int64.min, -300, -1])
    func negativeToleranceNeverWidensTheWindow(_ tolerance: Int64) throws {
        let headers = ["HTTP_SVIX_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek", "HTTP_SVIX_TIMESTAMP": "1614265330",
                       "HTTP_SVIX_SIGNATURE": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]
        let keys = Keyring(try Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let stale = preset.run(.svix, headers, body: #"{"test": 2432232314}"#, keys: keys, now: 1_614_265_330 + 100,
                               tolerance: tolerance)
        #expect(stale.status == .badRequest)
    }
}
