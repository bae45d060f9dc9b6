import Testing

@testable import WebhookCore

/// The other signing schemes, with their published answers, tampering, replay and clock skew (an injected clock).
@Suite struct SchemeTests {
    func run(_ scheme: SignatureScheme, _ headers: [String: String], body: [UInt8], keys: [Secret],
             now: Int64 = 0, tolerance: Int64 = 300) -> Outcome {
        let head = RequestHead(method: "POST", contentLength: String(body.count), headers: headers)
        let verifier = Verifier(scheme: scheme, toleranceSeconds: tolerance)
        switch verifier.admit(head, keys: .success(Keyring(keys)), now: now) {
        case .answer(let outcome): return outcome
        case .readBody(let pending): return pending.verify(body)
        }
    }

    // MARK: GitHub

    let github = try! Secret("It's a Secret to Everybody")
    let hello = Array("Hello, World!".utf8)
    let helloSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    @Test func gitHubDocumentedVector() {
        let outcome = run(.github, ["HTTP_X_HUB_SIGNATURE_256": helloSignature, "HTTP_X_GITHUB_DELIVERY": "72d3162e"],
                          body: hello, keys: [github])
        #expect(outcome.isVerified)
        #expect(outcome.verification?.deliveryID == "72d3162e")
        #expect(SignatureScheme.github.headers(for: hello, secret: github, id: "", timestamp: 0).first?.1 == helloSignature)
    }

    @Test func gitHubRequiresItsPrefixAndItsHeader() {
        let bare = String(helloSignature.dropFirst(7))
        #expect(run(.github, ["HTTP_X_HUB_SIGNATURE_256": bare], body: hello, keys: [github])
            == .badRequest("X-Hub-Signature-256 must be sha256= followed by the 64 hex digits of an HMAC-SHA256"))
        #expect(run(.github, ["HTTP_X_SIGNATURE": bare], body: hello, keys: [github])
            == .badRequest("missing X-Hub-Signature-256 header"))
        #expect(run(.github, ["HTTP_X_HUB_SIGNATURE_256": helloSignature], body: hello + [0x21], keys: [github])
            == .badRequest("X-Hub-Signature-256 does not match the body"))
    }

    // MARK: Standard Webhooks

    let standard = try! Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    let message = Array(#"{"test": 2432232314}"#.utf8)
    let messageID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    let stamp: Int64 = 1_614_265_330
    let standardSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    func standardHeaders(id: String? = nil, timestamp: Int64? = nil, signature: String? = nil) -> [String: String] {
        ["HTTP_WEBHOOK_ID": id ?? messageID, "HTTP_WEBHOOK_TIMESTAMP": String(timestamp ?? stamp),
         "HTTP_WEBHOOK_SIGNATURE": signature ?? standardSignature]
    }

    @Test func standardWebhooksPublishedVector() {
        let outcome = run(.standardWebhooks, standardHeaders(), body: message, keys: [standard], now: stamp)
        #expect(outcome.isVerified)
        #expect(outcome.verification?.deduplicationKey == messageID)
        let signed = SignatureScheme.standardWebhooks.headers(for: message, secret: standard, id: messageID, timestamp: stamp)
        #expect(signed.map(\.1) == [messageID, String(stamp), standardSignature])
    }

    @Test func standardWebhooksAcceptsAnyOfSeveralSignatures() {
        let list = "v1a,ignored v2,AAAA v1,Zm9vYmFy \(standardSignature)"
        #expect(run(.standardWebhooks, standardHeaders(signature: list), body: message, keys: [standard], now: stamp).isVerified)
        #expect(run(.standardWebhooks, standardHeaders(signature: "v2,AAAA v1a,x"), body: message, keys: [standard], now: stamp)
            == .badRequest("webhook-signature has no v1 or v1a signature"))
    }

    @Test(arguments: [-301, 301, -100_000, 100_000] as [Int64])
    func standardWebhooksRefusesTimestampsOutsideTheTolerance(_ skew: Int64) {
        #expect(run(.standardWebhooks, standardHeaders(), body: message, keys: [standard], now: stamp + skew)
            == .badRequest("webhook-timestamp is more than 300 seconds from now"))
    }

    @Test(arguments: [-300, 0, 300] as [Int64])
    func standardWebhooksAcceptsSkewWithinTheTolerance(_ skew: Int64) {
        #expect(run(.standardWebhooks, standardHeaders(), body: message, keys: [standard], now: stamp + skew).isVerified)
    }

    @Test func standardWebhooksToleranceIsConfigurable() {
        #expect(run(.standardWebhooks, standardHeaders(), body: message, keys: [standard], now: stamp + 60, tolerance: 30)
            .status == .badRequest)
    }

    /// A replay with a fresh timestamp (or another id) does not match: both are signed.
    @Test func standardWebhooksReplayAndTampering() {
        #expect(run(.standardWebhooks, standardHeaders(timestamp: stamp + 10), body: message, keys: [standard], now: stamp)
            == .badRequest("webhook-signature does not match the body"))
        #expect(run(.standardWebhooks, standardHeaders(id: "msg_other"), body: message, keys: [standard], now: stamp)
            .status == .badRequest)
        #expect(run(.standardWebhooks, standardHeaders(), body: message + [0x20], keys: [standard], now: stamp)
            .status == .badRequest)
        #expect(run(.standardWebhooks, standardHeaders(timestamp: nil).merging(["HTTP_WEBHOOK_TIMESTAMP": "16e8"]) { $1 },
                    body: message, keys: [standard], now: stamp)
            == .badRequest("webhook-timestamp is not a Unix time in seconds"))
        #expect(run(.standardWebhooks, ["HTTP_WEBHOOK_ID": messageID], body: message, keys: [standard], now: stamp)
            == .badRequest("missing webhook-id, webhook-timestamp or webhook-signature header"))
    }

    /// With a spool, the message id names the payload: a re-signed retry of the same message is a duplicate. A
    /// message id is unique only within its sender: two senders' `msg_1` are two payloads.
    @Test func standardWebhooksMessageIDNamesThePayloadWithinItsSender() throws {
        let outcome = run(.standardWebhooks, standardHeaders(), body: message, keys: [standard], now: stamp)
        let verification = try #require(outcome.verification)
        let id = verification.payloadID(of: message, sender: nil, scheme: .standardWebhooks)
        #expect(id == Receipt.id(of: Array("message-id:standard-webhooks::\(messageID)".utf8)))
        #expect(id != Receipt.id(of: message))
        #expect(id == verification.payloadID(of: message + [0x20], sender: nil, scheme: .standardWebhooks))
        let fromA = verification.payloadID(of: message, sender: "a", scheme: .standardWebhooks)
        let fromB = verification.payloadID(of: message, sender: "b", scheme: .standardWebhooks)
        #expect(Set([id, fromA, fromB]).count == 3)
        // Without a message id the bytes name the payload, whoever sent them.
        let plain = run(.xSignature, ["HTTP_X_SIGNATURE": try Secret("0123456789abc").signature(of: message)],
                        body: message, keys: [try Secret("0123456789abc")]).verification
        #expect(plain?.payloadID(of: message, sender: "a", scheme: .xSignature) == Receipt.id(of: message))
    }

    /// The reference libraries base64-decode the secret with or without `whsec_`; they refuse what is not base64.
    @Test func standardWebhooksSecretsAreBase64WithOrWithoutPrefix() throws {
        let bare = try Secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        #expect(run(.standardWebhooks, standardHeaders(), body: message, keys: [bare], now: stamp).isVerified)
        for text in ["whsec_not base64 at all!", "not-base64-either!", "whsec_AAAA"] {
            let secret = try Secret(text)
            let outcome = run(.standardWebhooks, standardHeaders(), body: message, keys: [secret], now: stamp)
            #expect(outcome.status == .internalServerError, "\(text)")
            #expect(outcome.detail?.contains("not a Standard Webhooks secret") == true)
            #expect(Keyring(secret).unusable(for: .standardWebhooks) != nil)
            #expect(Keyring(secret).unusable(for: .xSignature) == nil)
        }
    }

    /// A timestamp is a number: the references sign its decimal form, so leading zeros in the header verify.
    @Test func standardWebhooksTimestampWithLeadingZeros() {
        let headers = standardHeaders().merging(["HTTP_WEBHOOK_TIMESTAMP": "000\(stamp)"]) { $1 }
        #expect(run(.standardWebhooks, headers, body: message, keys: [standard], now: stamp).isVerified)
    }

    // MARK: Stripe

    let stripe = try! Secret("whsec_stripe_test_secret_123")
    let event = Array(#"{"id":"evt_1"}"#.utf8)
    /// HMAC-SHA256 of "1700000000.{"id":"evt_1"}" under the secret's bytes, computed with Python's hmac module.
    let eventMAC = "a3a55ea7e612f33f1fc293c4cadf7a5a10b866133d86108a87faf40faa55f404"

    @Test func stripeStyleKnownAnswer() {
        let header = "t=1700000000,v1=\(eventMAC),v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
        #expect(run(.stripe, ["HTTP_STRIPE_SIGNATURE": header], body: event, keys: [stripe], now: 1_700_000_100).isVerified)
        #expect(SignatureScheme.stripe.headers(for: event, secret: stripe, id: "", timestamp: 1_700_000_000).first?.1
            == "t=1700000000,v1=\(eventMAC)")
    }

    @Test func stripeStyleSeveralV1AndFailures() {
        let wrong = String(repeating: "0", count: 64)
        #expect(run(.stripe, ["HTTP_STRIPE_SIGNATURE": "t=1700000000,v1=\(wrong),v1=\(eventMAC)"], body: event,
                    keys: [stripe], now: 1_700_000_000).isVerified)
        #expect(run(.stripe, ["HTTP_STRIPE_SIGNATURE": "t=1700000000,v1=\(wrong)"], body: event, keys: [stripe],
                    now: 1_700_000_000) == .badRequest("Stripe-Signature does not match the body"))
        #expect(run(.stripe, ["HTTP_STRIPE_SIGNATURE": "v1=\(eventMAC)"], body: event, keys: [stripe], now: 1_700_000_000)
            == .badRequest("Stripe-Signature has no t= timestamp"))
        #expect(run(.stripe, ["HTTP_STRIPE_SIGNATURE": "t=1700000000"], body: event, keys: [stripe], now: 1_700_000_000)
            == .badRequest("Stripe-Signature has no v1 signature"))
        #expect(run(.stripe, ["HTTP_STRIPE_SIGNATURE": "t=1700000000,v1=\(eventMAC)"], body: event, keys: [stripe],
                    now: 1_700_000_301) == .badRequest("Stripe-Signature t is more than 300 seconds from now"))
    }

    // MARK: Key rotation

    @Test(arguments: SignatureScheme.presets)
    func eitherKeyOfARotationIsAcceptedAndNamed(_ scheme: SignatureScheme) throws {
        let current = try Secret("whsec_bmV3LWtleS1uZXcta2V5LW5ldy1rZXk=")
        let previous = try Secret("whsec_b2xkLWtleS1vbGQta2V5LW9sZC1rZXk=")
        let stranger = try Secret("whsec_c3RyYW5nZXItc3RyYW5nZXItc3RyYW5n")
        let body = Array(#"{"rotation":true}"#.utf8)
        for (signer, index) in [(current, 0), (previous, 1)] {
            let outcome = run(scheme, headers(scheme, body, signer), body: body, keys: [current, previous], now: 1000)
            #expect(outcome.verification?.keyIndex == index, "\(scheme) signed by key \(index)")
            #expect(outcome.verification?.keyCount == 2)
        }
        let outcome = run(scheme, headers(scheme, body, stranger), body: body, keys: [current, previous], now: 1000)
        #expect(outcome.status == .badRequest)
    }

    /// The request headers `signer` would send, as CGI params.
    func headers(_ scheme: SignatureScheme, _ body: [UInt8], _ signer: Secret) -> [String: String] {
        var params = ["WEBHOOK_URL": "https://example.com/hook"]
        for (name, value) in scheme.headers(for: body, secret: signer, id: "msg_1", timestamp: 1000,
                                            url: "https://example.com/hook") {
            params["HTTP_" + name.uppercased().replacingOccurrences(of: "-", with: "_")] = value
        }
        return params
    }
}
