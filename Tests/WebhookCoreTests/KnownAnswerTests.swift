import Crypto
import Testing

@testable import WebhookCore

/// Published HMAC-SHA256 answers, checked through the same path the handler signs and verifies with.
@Suite struct KnownAnswerTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let key: [UInt8]
        let message: [UInt8]
        let mac: String
        var testDescription: String { name }
    }

    static let rfc4231: [Vector] = [
        Vector(name: "RFC 4231 case 1", key: .init(repeating: 0x0B, count: 20), message: Array("Hi There".utf8),
               mac: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        Vector(name: "RFC 4231 case 2", key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8),
               mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        Vector(name: "RFC 4231 case 3", key: .init(repeating: 0xAA, count: 20), message: .init(repeating: 0xDD, count: 50),
               mac: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        Vector(name: "RFC 4231 case 4", key: Array(1...25), message: .init(repeating: 0xCD, count: 50),
               mac: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        Vector(name: "RFC 4231 case 6", key: .init(repeating: 0xAA, count: 131),
               message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
               mac: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        Vector(name: "RFC 4231 case 7", key: .init(repeating: 0xAA, count: 131),
               message: Array(("This is a test using a larger than block-size key and a larger than block-size data."
                   + " The key needs to be hashed before being used by the HMAC algorithm.").utf8),
               mac: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ]

    @Test(arguments: rfc4231)
    func rfc4231Vector(_ vector: Vector) throws {
        let secret = Secret(key: SymmetricKey(data: vector.key))
        #expect(secret.signature(of: vector.message) == vector.mac)
        let signature = try Signature(parsing: vector.mac)
        // Through the comparison verification uses.
        let keyring = Keyring(secret)
        func matches(_ message: [UInt8]) -> Bool {
            keyring.matchingKey(.xSignature, parts: [message], content: SignedContent(header: "", macs: [signature.bytes])) == 0
        }
        #expect(matches(vector.message))
        #expect(!matches(vector.message + [0]))
    }

    /// GitHub's documented example for X-Hub-Signature-256.
    @Test func gitHubDocumentedVector() throws {
        let secret = try Secret("It's a Secret to Everybody")
        let body = Array("Hello, World!".utf8)
        #expect(secret.signature(of: body) == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        let pending = try #require(admitted(
            signature: "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            length: body.count, secret: secret))
        #expect(pending.verify(body) == .verifiedByCurrentKey)
    }

    /// The seed's payload, signed as the sender does: HMAC-SHA256 of `JSON.stringify(body)` with API_SECRET_KEY,
    /// as hex (value computed independently with Python's hmac module).
    @Test func senderSignedSeedPayload() throws {
        let body = Array(TestData.seedPayload.utf8)
        let secret = try Secret("hedera-dev-secret")
        let expected = "3804140b9f0c37a7ca3e2c46b0f8abcbfbaa9afbcb04eeccd271419d9630fc80"
        #expect(secret.signature(of: body) == expected)
        let pending = try #require(admitted(signature: expected, length: body.count, secret: secret))
        #expect(pending.verify(body) == .verifiedByCurrentKey)
    }

    @Test func emptyBodyIsSignedLikeAnyOther() throws {
        let secret = try Secret("hedera-dev-secret")
        let expected = "aedca1594421aecada5c14ae7f951c177fbe19448c04b3e128b75c2f27849378"
        #expect(secret.signature(of: []) == expected)
        let pending = try #require(admitted(signature: expected, length: nil, secret: secret))
        #expect(pending.expected == .exactly(0))
        #expect(pending.verify([]) == .verifiedByCurrentKey)
    }

    private func admitted(signature: String, length: Int?, secret: Secret) -> PendingBody? {
        let head = RequestHead(method: "POST", signature: signature, contentLength: length.map(String.init))
        guard case .readBody(let pending) = Verifier().admit(head, secret: .success(secret)) else { return nil }
        return pending
    }
}

enum TestData {
    static let seedPayload = #"{"reference":"test","topic_id":"0.0.134383","consensus_timestamp":{"seconds":1598306688,"nanos":750728007},"transaction_id":"0.0.116507@1598338540.979000000"}"#
}

extension Outcome {
    /// A 200 from the only (current) secret, with no delivery id.
    static let verifiedByCurrentKey = Outcome.accepted(
        Verification(keyIndex: 0, keyCount: 1, deliveryID: nil, deduplicationKey: nil))
}
