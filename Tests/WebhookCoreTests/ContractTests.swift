import Foundation
import Testing

@testable import WebhookCore

/// Every row of the contract, decided by the core alone.
@Suite struct ContractTests {
    static let secretText = "hedera-dev-secret"
    static let secret = try! Secret(secretText)
    static let body = Array(TestData.seedPayload.utf8)
    static let signature = secret.signature(of: body)

    /// Runs a request through both steps, as the adapters do.
    func outcome(
        method: String = "POST",
        signature: String? = ContractTests.signature,
        contentLength: String? = String(ContractTests.body.count),
        transferEncoding: String? = nil,
        body: [UInt8] = ContractTests.body,
        secret: Result<Secret, Outcome> = .success(ContractTests.secret),
        limit: Int = Verifier.defaultMaxBodyBytes
    ) -> Outcome {
        let head = RequestHead(
            method: method, signature: signature, contentLength: contentLength, transferEncoding: transferEncoding)
        switch Verifier(maxBodyBytes: limit).admit(head, secret: secret) {
        case .answer(let outcome): return outcome
        case .readBody(let pending):
            #expect(pending.expected.readLimit <= limit + 1)
            return pending.verify(Array(body.prefix(pending.expected.readLimit)))
        }
    }

    /// Apache's mod_cgi passes a chunked upload without CONTENT_LENGTH: it is read to its end, within the limit.
    @Test func chunkedBodyWithoutLengthIsReadToItsEnd() {
        #expect(outcome(contentLength: nil, transferEncoding: "chunked") == .verifiedByCurrentKey)
        #expect(outcome(contentLength: "", transferEncoding: "gzip, Chunked") == .verifiedByCurrentKey)
        let tooLong = outcome(contentLength: nil, transferEncoding: "chunked", limit: Self.body.count - 1)
        #expect(tooLong.status == .payloadTooLarge)
        #expect(outcome(contentLength: nil, transferEncoding: "chunked", limit: Self.body.count) == .verifiedByCurrentKey)
        // Without the chunked marker, no length still means no body.
        #expect(outcome(contentLength: nil).status == .badRequest)
        // A length, when given, wins.
        #expect(outcome(transferEncoding: "chunked") == .verifiedByCurrentKey)
    }

    @Test func validSignatureIsVerified() {
        let result = outcome()
        #expect(result == .verifiedByCurrentKey)
        #expect(result.jsonBody == #"{"verified":true}"#)
        #expect(String(decoding: result.cgiResponse, as: UTF8.self).hasPrefix("Status: 200 OK\r\n"))
    }

    @Test(arguments: ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "post", "Post", ""])
    func otherMethodsAre405(_ method: String) throws {
        let result = outcome(method: method)
        #expect(result.status == .methodNotAllowed)
        #expect(result.headers.contains { $0 == ("Allow", "POST") })
        #expect(result.jsonBody == #"{"reason":"Method \#(method) is not allowed on this route"}"#)
    }

    @Test func theSeedsExact405Body() {
        #expect(outcome(method: "GET").jsonBody == #"{"reason":"Method GET is not allowed on this route"}"#)
    }

    @Test func methodIsCheckedBeforeEverythingElse() {
        let result = outcome(method: "GET", signature: nil, contentLength: "x", secret: .failure(.notConfigured("none")))
        #expect(result.status == .methodNotAllowed)
    }

    @Test(arguments: [
        (nil, Signature.missingReason),
        ("", Signature.missingReason),
        ("123", Signature.malformedReason),
        (String(repeating: "z", count: 64), Signature.malformedReason),
    ] as [(String?, String)])
    func missingOrMalformedSignatureIs400(_ header: String?, reason: String) {
        #expect(outcome(signature: header) == .badRequest(reason))
    }

    @Test func seedCheckEmptyObjectWithSignature123() {
        #expect(outcome(signature: "123", contentLength: "2", body: Array("{}".utf8)).status == .badRequest)
    }

    @Test func wrongSignatureIs400WithoutTheExpectedMAC() {
        let wrong = String(Self.signature.reversed())
        let result = outcome(signature: wrong)
        #expect(result == .badRequest("x-signature does not match the body"))
        for text in [result.jsonBody, result.reason ?? "", result.detail ?? ""] {
            #expect(!text.contains(Self.signature))
            #expect(!text.contains(Self.secretText))
        }
    }

    @Test func tamperedBodyIs400() {
        var body = Self.body
        body[body.count / 2] ^= 1
        #expect(outcome(body: body).status == .badRequest)
    }

    /// A signature that differs from the right one in its first or in its last byte gets the same answer.
    @Test(arguments: [0, 31])
    func oneByteOffIsJustWrong(_ index: Int) throws {
        var bytes = try Signature(parsing: Self.signature).bytes
        bytes[index] ^= 0x80
        #expect(outcome(signature: Signature.hex(bytes)) == .badRequest("x-signature does not match the body"))
    }

    @Test(arguments: [
        ("abc", "CONTENT_LENGTH is not a decimal number"),
        ("+5", "CONTENT_LENGTH is not a decimal number"),
        ("1.5", "CONTENT_LENGTH is not a decimal number"),
        (" 5", "CONTENT_LENGTH is not a decimal number"),
        ("0x10", "CONTENT_LENGTH is not a decimal number"),
        ("５", "CONTENT_LENGTH is not a decimal number"),
        ("-1", "CONTENT_LENGTH must not be negative"),
        ("-0", "CONTENT_LENGTH must not be negative"),
    ])
    func badContentLengthIs400(_ field: String, reason: String) {
        #expect(outcome(contentLength: field) == .badRequest(reason))
    }

    @Test func bodyShorterThanContentLengthIs400() {
        let result = outcome(contentLength: String(Self.body.count + 10))
        #expect(result == .badRequest("request body ended after \(Self.body.count) of \(Self.body.count + 10) bytes"))
    }

    @Test(arguments: ["1048577", "99999999999999999999999999999999", "000000000000000000000000001048577"])
    func overTheLimitIs413(_ field: String) {
        let result = outcome(contentLength: field)
        #expect(result.status == .payloadTooLarge)
        #expect(result.reason?.contains("exceeds the limit of 1048576 bytes") == true)
    }

    @Test func exactlyAtTheLimitIsRead() {
        let body = [UInt8](repeating: 0x61, count: 64)
        let result = outcome(signature: Self.secret.signature(of: body), contentLength: "64", body: body, limit: 64)
        #expect(result == .verifiedByCurrentKey)
        #expect(outcome(contentLength: "65", limit: 64).status == .payloadTooLarge)
    }

    @Test func leadingZerosAreStillDecimal() {
        #expect(outcome(contentLength: "000" + String(Self.body.count)) == .verifiedByCurrentKey)
    }

    @Test func missingSecretFailsClosed() {
        let result = outcome(secret: .failure(.notConfigured("neither API_SECRET_KEY nor API_SECRET_KEY_FILE is set")))
        #expect(result.status == .internalServerError)
        #expect(result.jsonBody == #"{"reason":"server is not configured"}"#)
        #expect(result.detail == "neither API_SECRET_KEY nor API_SECRET_KEY_FILE is set")
    }

    @Test(arguments: ["", "Qz", "Qz9!x", "123456789", "ééééééééé"])
    func secretsShorterThanTenCharactersAreRefused(_ text: String) {
        #expect(throws: Outcome.notConfigured("API_SECRET_KEY is shorter than 10 characters")) { try Secret(text) }
        let result = outcome(secret: Result { () throws(Outcome) in try Secret(text) })
        #expect(result.status == .internalServerError)
        if !text.isEmpty { #expect(!(result.detail ?? "").contains(text)) }
    }

    @Test func tenCharactersIsEnough() throws {
        let secret = try Secret("0123456789")
        #expect(outcome(signature: secret.signature(of: Self.body), secret: .success(secret)) == .verifiedByCurrentKey)
    }

    @Test func secretNeverPrints() {
        #expect("\(Self.secret)" == "Secret(redacted)")
        #expect(String(reflecting: Self.secret).contains(Self.secretText) == false)
    }

    /// Every answer is one JSON object with the declared length, whatever the client sent.
    @Test(arguments: ["GET", "P\"O\\ST", "BREW\u{0}\n\t\u{7F}", String(repeating: "X", count: 5000), "ÜNÏCØDÉ"])
    func everyBodyIsValidJSON(_ method: String) throws {
        let result = outcome(method: method)
        let object = try JSONSerialization.jsonObject(with: Data(result.jsonBody.utf8)) as? [String: String]
        let reason = try #require(object?["reason"])
        #expect(reason.hasPrefix("Method \(method.prefix(Outcome.methodEchoLimit)) is not allowed"))
        #expect(reason.count < 80)
    }

    @Test(arguments: HTTPStatus.allCases)
    func cgiResponseDeclaresItsLength(_ status: HTTPStatus) throws {
        let results: [HTTPStatus: Outcome] = [
            .ok: .verified, .badRequest: .badRequest("x"), .methodNotAllowed: .methodNotAllowed("GET"),
            .payloadTooLarge: .payloadTooLarge(length: "9", limit: 1), .internalServerError: .notConfigured("operator-only"),
            .badGateway: .handOffFailed("operator-only"), .serviceUnavailable: .storageFailed("operator-only"),
        ]
        let result = try #require(results[status])
        let text = String(decoding: result.cgiResponse, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        #expect(parts.count == 2)
        #expect(parts[0].hasPrefix("Status: \(status.code) \(status.reasonPhrase)"))
        #expect(parts[0].contains("Content-Type: application/json"))
        #expect(parts[0].contains("Content-Length: \(parts[1].utf8.count)"))
        #expect(parts[1] == result.jsonBody)
        // Standard Webhooks senders throttle on 502 (as on 429 and 504) by Retry-After; 503 has always said it.
        #expect(parts[0].contains("Retry-After: 30") == (status == .serviceUnavailable || status == .badGateway))
        #expect(!parts[1].contains("operator-only"), "the log-only detail leaked into the body")
    }

    @Test func storedReceiptIsInTheBody() {
        let id = Receipt.id(of: Self.body)
        // SHA-256 of the seed payload, computed independently (Python's hashlib).
        #expect(id == "356eab5831d66a761185cd4fe39917264c134a3621bb429faf49d591afb58e86")
        let stored = Outcome.stored(Receipt(id: id, duplicate: false))
        #expect(stored.jsonBody == #"{"verified":true,"id":"\#(id)","duplicate":false}"#)
        #expect(Outcome.stored(Receipt(id: id, duplicate: true)).jsonBody.hasSuffix(#""duplicate":true}"#))
    }
}
