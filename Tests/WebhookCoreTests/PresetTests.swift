import Crypto
import FoundationEssentials
import Testing

@testable import WebhookCore

/// The presets and v1a, each against an answer computed by the sender's own library (slack-sdk 3.48.0,
/// twilio 9.13.0, paddle-python-sdk 1.16.1, svix 2.9.1; Ed25519 from pyca/cryptography, as the Standard Webhooks
/// spec defines v1a) or, where none can run here, the sender's documented algorithm (Shopify, GitHub's SHA-1,
/// GitLab's token). Tests/Integration/senders.py sends the same libraries' signatures through nginx.
@Suite struct PresetTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let scheme: SignatureScheme
        let secret: String
        let body: String
        let headers: [String: String]
        let now: Int64
        var testDescription: String { scheme.name }
    }

    static let vectors: [Vector] = [
        // slack_sdk.signature.SignatureVerifier("8f742231b10e8888abcd99yyyzzz85a5").generate_signature(...)
        Vector(scheme: .slack, secret: "8f742231b10e8888abcd99yyyzzz85a5",
               body: "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&command=%2Fweather&text=94070",
               headers: ["HTTP_X_SLACK_REQUEST_TIMESTAMP": "1531420618",
                         "HTTP_X_SLACK_SIGNATURE": "v0=a45771c0f181b7fb1752e9a26cc1ffb2c428f52ac8ab774ffa4adf8cf2874576"],
               now: 1_531_420_618),
        // base64(HMAC-SHA256(secret, body)), Shopify's documented rule (@shopify/shopify-api is on npm only).
        Vector(scheme: .shopify, secret: "shpss_0123456789abcdef", body: #"{"id":820982911946154508}"#,
               headers: ["HTTP_X_SHOPIFY_HMAC_SHA256": "WgzR7rq62vUNCmcicvvYrYZJZaD2hIzKWpcvIVtnpEg=",
                         "HTTP_X_SHOPIFY_WEBHOOK_ID": "b54557e4"], now: 0),
        // twilio.request_validator.RequestValidator("12345abcdef").compute_signature(url, params)
        Vector(scheme: .twilio, secret: "12345abcdef",
               body: "To=%2B18005551212&From=%2B12349013030&Digits=1234&CallSid=CA1234567890ABCDE&Caller=%2B12349013030",
               headers: ["HTTP_X_TWILIO_SIGNATURE": "+3gmCmHIIyWkT2qX/7XLcKZpv7A=", "REQUEST_SCHEME": "https",
                         "HTTP_HOST": "mycompany.com", "REQUEST_URI": "/myapp.php?foo=1&bar=2"], now: 0),
        // paddle_billing.Notifications.PaddleSignature.calculate_hmac(secret, b"1671552777:" + body)
        Vector(scheme: .paddle, secret: "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_6h3qd3uFSi9YCD3OLYAShQI90XTI5vEI",
               body: #"{"event_id":"evt_01"}"#,
               headers: ["HTTP_PADDLE_SIGNATURE":
                            "ts=1671552777;h1=1adb9452569df756388335e6cd78fa672c3486786ee7438adcfa06145b045a99"],
               now: 1_671_552_777),
        // svix.webhooks.Webhook(secret).sign(id, timestamp, body): the Standard Webhooks vector under svix-* names.
        Vector(scheme: .svix, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: #"{"test": 2432232314}"#,
               headers: ["HTTP_SVIX_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek", "HTTP_SVIX_TIMESTAMP": "1614265330",
                         "HTTP_SVIX_SIGNATURE": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="], now: 1_614_265_330),
        // The same under standard-webhooks: svix-* are aliases of webhook-*.
        Vector(scheme: .standardWebhooks, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: #"{"test": 2432232314}"#,
               headers: ["HTTP_SVIX_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek", "HTTP_SVIX_TIMESTAMP": "1614265330",
                         "HTTP_SVIX_SIGNATURE": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="], now: 1_614_265_330),
        // GitHub's documented secret and body, under the legacy SHA-1 header (Python's hmac, GitHub's rule).
        Vector(scheme: .githubSHA1, secret: "It's a Secret to Everybody", body: "Hello, World!",
               headers: ["HTTP_X_HUB_SIGNATURE": "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"], now: 0),
        Vector(scheme: .gitlab, secret: "glpat-webhook-token-1", body: #"{"object_kind":"push"}"#,
               headers: ["HTTP_X_GITLAB_TOKEN": "glpat-webhook-token-1"], now: 0),
    ]

    func run(_ scheme: SignatureScheme, _ headers: [String: String], body: String, keys: Keyring, now: Int64,
             tolerance: Int64? = nil) -> Outcome {
        let body = Array(body.utf8)
        let head = RequestHead(method: "POST", contentLength: String(body.count), headers: headers)
        switch Verifier(scheme: scheme, toleranceSeconds: tolerance).admit(head, keys: .success(keys), now: now) {
        case .answer(let outcome): return outcome
        case .readBody(let pending): return pending.verify(body)
        }
    }

    @Test(arguments: vectors)
    func sendersOwnSignatureVerifies(_ vector: Vector) throws {
        let keys = Keyring(try Secret(vector.secret))
        #expect(run(vector.scheme, vector.headers, body: vector.body, keys: keys, now: vector.now).isVerified)
        // One byte more, another secret: refused, and the answer never holds the expected MAC.
        // (GitLab's token signs nothing: it proves the sender, not the body.)
        let tampered = run(vector.scheme, vector.headers, body: vector.body + " ", keys: keys, now: vector.now)
        #expect(tampered.status == (vector.scheme.algorithm == .token ? .ok : .badRequest))
        let stranger = Keyring(try Secret("whsec_c3RyYW5nZXItc3RyYW5nZXItc3RyYW5n"))
        #expect(run(vector.scheme, vector.headers, body: vector.body, keys: stranger, now: vector.now).status == .badRequest)
        // Our own `sign` writes what the sender's library wrote.
        let signed = vector.scheme.headers(for: Array(vector.body.utf8), secret: try Secret(vector.secret),
                                           id: "", timestamp: vector.now, url: SignatureScheme.url(vector.headers))
        let header = vector.scheme.signatureHeaders[0]
        let expected = vector.headers[HeaderName.param(header)] ?? vector.headers[HeaderName.param(vector.scheme.signatureHeaders[1])]
        if vector.scheme.layout != .versioned && !vector.scheme.isTimed {
            #expect(signed.first { $0.0 == header }?.1 == expected)
        }
    }

    /// Every signature header is required by name, and the dated presets refuse stale and future timestamps.
    @Test(arguments: vectors)
    func missingHeadersAndSkew(_ vector: Vector) throws {
        let keys = Keyring(try Secret(vector.secret))
        let outcome = run(vector.scheme, [:], body: vector.body, keys: keys, now: vector.now)
        #expect(outcome.status == .badRequest)
        #expect(outcome.reason?.hasPrefix("missing ") == true)
        guard vector.scheme.isTimed else { return }
        let tolerance = vector.scheme.toleranceSeconds
        for skew in [-(tolerance + 1), tolerance + 1] {
            let skewed = run(vector.scheme, vector.headers, body: vector.body, keys: keys, now: vector.now + skew)
            #expect(skewed.reason?.contains("is more than \(tolerance) seconds from now") == true, "\(skew)")
        }
        // The operator's tolerance wins over the sender's.
        #expect(run(vector.scheme, vector.headers, body: vector.body, keys: keys, now: vector.now + 1000,
                    tolerance: 1000).isVerified)
    }

    @Test func paddleAllowsFiveSecondsAsItsSDKDoes() {
        #expect(SignatureScheme.paddle.toleranceSeconds == 5)
        #expect(SignatureScheme.slack.toleranceSeconds == 300)
    }

    /// Twilio signs the URL it requested: `WEBHOOK_URL` (set by the recipe) wins over the request's own parts.
    @Test func twilioURLComesFromTheWebServer() throws {
        let vector = Self.vectors.first { $0.scheme == .twilio }!
        let keys = Keyring(try Secret(vector.secret))
        var headers = vector.headers
        headers["REQUEST_SCHEME"] = "http"
        #expect(run(.twilio, headers, body: vector.body, keys: keys, now: 0).status == .badRequest)
        headers["WEBHOOK_URL"] = "https://mycompany.com/myapp.php?foo=1&bar=2"
        #expect(run(.twilio, headers, body: vector.body, keys: keys, now: 0).isVerified)
    }

    /// Twilio's rule: sorted by name then value, each distinct pair once, `+` and `%XX` decoded.
    @Test func formParametersAreSortedAndDecoded() {
        let signed = FormParameters.signed(Array("b=2&a=z&a=y&c=%41+b&a=y&d&%zz=1".utf8))
        #expect(String(decoding: signed, as: UTF8.self) == "%zz1ayazb2cA bd")
    }

    @Test func gitLabTokenIsComparedWholeAndNotAsAPrefix() throws {
        let keys = Keyring(try Secret("glpat-webhook-token-1"))
        for wrong in ["glpat-webhook-token-", "glpat-webhook-token-12", "GLPAT-WEBHOOK-TOKEN-1"] {
            #expect(run(.gitlab, ["HTTP_X_GITLAB_TOKEN": wrong], body: "{}", keys: keys, now: 0)
                == .badRequest("X-Gitlab-Token does not match the body"))
        }
    }

    @Test func gitHubSHA1IsOnlyUsedWhenNamed() throws {
        #expect(SignatureScheme.github.algorithm == .sha256)
        #expect(SignatureScheme.presets.filter { $0.algorithm == .sha1 }.map(\.name).sorted() == ["github-sha1", "twilio"])
        #expect(try SignatureScheme.generic(header: "X-Sig").algorithm == .sha256)
    }

    // MARK: generic

    /// base64(HMAC-SHA512("generic-secret-123", "1700000000.{}")), from Python's hmac module.
    @Test func genericSchemeFromItsConfiguration() throws {
        let scheme = try SignatureScheme.generic(
            header: "X-Signature-512", algorithm: .sha512, encoding: .base64, prefix: "sha512=",
            template: "{timestamp}.{body}", timestampHeader: "X-Timestamp")
        let mac = "KWheacOOaSTuvnjcvlA79Bsujp6YwiYbfq1jtnhKI+Zilrn0qhtEi8n+hkwr3WrP/Q7xrhgNKssECQUXo1OS9w=="
        let keys = Keyring(try Secret("generic-secret-123"))
        let headers = ["HTTP_X_SIGNATURE_512": "sha512=" + mac, "HTTP_X_TIMESTAMP": "1700000000"]
        #expect(run(scheme, headers, body: "{}", keys: keys, now: 1_700_000_000).isVerified)
        #expect(run(scheme, headers, body: "{} ", keys: keys, now: 1_700_000_000).status == .badRequest)
        #expect(run(scheme, ["HTTP_X_SIGNATURE_512": mac, "HTTP_X_TIMESTAMP": "1700000000"], body: "{}", keys: keys,
                    now: 1_700_000_000)
            == .badRequest("X-Signature-512 must be sha512= followed by the base64 of an HMAC-SHA512"))
        #expect(run(scheme, headers, body: "{}", keys: keys, now: 1_700_000_301).status == .badRequest)
        #expect(scheme.params == ["HTTP_X_TIMESTAMP", "HTTP_X_SIGNATURE_512"])
    }

    @Test(arguments: [
        ("{body}", "{body}"), ("v0:{timestamp}:{body}", "v0:{timestamp}:{body}"),
        ("{header:webhook-id}.{timestamp}.{body}", "{header:webhook-id}.{timestamp}.{body}"),
        ("{{{body}}}", "{{{body}}}"), ("{url}{form}", "{url}{form}"),
    ])
    func templatesRoundTrip(_ text: String, _ written: String) throws {
        #expect(try SignedTemplate(parsing: text).description == written)
    }

    @Test(arguments: ["", "{timestamp}", "{body", "body}", "{bogus}", "{header:}", "{header:a b}", "{header:x_y}"])
    func badTemplatesAreRefused(_ text: String) {
        #expect(throws: TemplateError.self) { try SignedTemplate(parsing: text) }
    }

    @Test func genericConfigurationMistakesAreRefused() {
        #expect(throws: TemplateError.self) { try SignatureScheme.generic(header: "X Sig") }
        #expect(throws: TemplateError.self) { try SignatureScheme.generic(header: "X-Sig", template: "{timestamp}{body}") }
        #expect(throws: TemplateError.self) { try SignatureScheme.generic(header: "X-Sig", algorithm: .token) }
    }

    // MARK: v1a

    /// pyca/cryptography: Ed25519PrivateKey.from_private_bytes(bytes(range(32))).sign(b"msg_….1614265330.{…}")
    static let publicKey = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    static let v1a = "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ=="
    let body = #"{"test": 2432232314}"#
    let stamp: Int64 = 1_614_265_330

    func v1aHeaders(_ signature: String) -> [String: String] {
        ["HTTP_WEBHOOK_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek", "HTTP_WEBHOOK_TIMESTAMP": String(stamp),
         "HTTP_WEBHOOK_SIGNATURE": signature]
    }

    @Test func v1aVerifiesAgainstTheTrustList() throws {
        let trusted = try PublicKey(parsing: Self.publicKey, source: "test")
        let other = try PublicKey(parsing: "whpk_" + Data(Curve25519.Signing.PrivateKey().publicKey.rawRepresentation)
            .base64EncodedString(), source: "other")
        // Rotation: the trusted key second in the list, after an unknown v1 and an unknown version.
        let keys = Keyring([], publicKeys: [other, trusted])
        let list = "v2,AAAA v1,Zm9vYmFy \(Self.v1a)"
        let outcome = run(.standardWebhooks, v1aHeaders(list), body: body, keys: keys, now: stamp)
        #expect(outcome.isVerified)
        #expect(outcome.verification?.keyIndex == 1)
        #expect(run(.standardWebhooks, v1aHeaders(Self.v1a), body: body + " ", keys: keys, now: stamp).status == .badRequest)
        #expect(run(.standardWebhooks, v1aHeaders(Self.v1a), body: body, keys: Keyring([], publicKeys: [other]),
                    now: stamp) == .badRequest("webhook-signature does not match the body"))
        #expect(run(.standardWebhooks, v1aHeaders(Self.v1a), body: body, keys: keys, now: stamp + 301).status == .badRequest)
        // A secret and a public key side by side: either kind of signature verifies.
        let both = Keyring([try Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")], publicKeys: [trusted])
        #expect(run(.standardWebhooks, v1aHeaders(Self.v1a), body: body, keys: both, now: stamp).verification?.keyIndex == 1)
        #expect(run(.standardWebhooks, v1aHeaders("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), body: body,
                    keys: both, now: stamp).verification?.keyIndex == 0)
    }

    @Test func publicKeysOnlyServeSchemesWithV1a() throws {
        let keys = Keyring([], publicKeys: [try PublicKey(parsing: Self.publicKey, source: "test")])
        #expect(keys.unusable(for: .standardWebhooks) == nil)
        #expect(keys.unusable(for: .svix) == nil)
        #expect(keys.unusable(for: .github)?.status == .internalServerError)
    }

    @Test(arguments: ["whsk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=", "whpk_AAAA", "whpk_not base64", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="])
    func malformedPublicKeysAreRefused(_ text: String) {
        #expect(throws: Outcome.self) { try PublicKey(parsing: text, source: "WEBHOOK_PUBLIC_KEYS") }
    }

    @Test func publicKeyListsAreWhitespaceSeparated() throws {
        let keys = try PublicKey.list("  \(Self.publicKey)\n\t\(Self.publicKey)\r\n", source: "file")
        #expect(keys.count == 2)
        #expect(keys[0].description == Self.publicKey)
    }
}
