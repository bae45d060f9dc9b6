import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The contract table, as rows any adapter (CGI, FastCGI) must answer identically.
struct ContractRow: Sendable, CustomTestStringConvertible {
    let name: String
    var method = "POST"
    var signature: String?
    var contentLength: String?
    var body: [UInt8] = []
    let status: Int
    /// The exact JSON body expected, or nil to check only that it is `{"reason": …}`.
    var exactBody: String?

    var testDescription: String { name }

    /// The CGI meta-variables a web server would set for this row.
    func params(_ extra: [String: String] = [:]) -> [String: String] {
        var params = ["GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "SCRIPT_NAME": "/api/webhook",
                      "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json"]
        params["HTTP_X_SIGNATURE"] = signature
        params["CONTENT_LENGTH"] = contentLength ?? (method == "POST" ? String(body.count) : nil)
        return params.merging(extra) { $1 }
    }

    func check(_ response: CGIResponse) throws {
        #expect(response.status == status, "\(name): \(response.body)")
        #expect(response.headers["content-type"] == "application/json")
        #expect(response.headers["content-length"] == String(response.body.utf8.count))
        #expect((response.headers["allow"] == "POST") == (status == 405))
        let object = try response.json()
        if let exactBody { #expect(response.body == exactBody) }
        if status == 200 {
            #expect(object["verified"] as? Bool == true)
        } else {
            #expect(object["reason"] is String)
        }
        #expect(!response.body.contains(Contract.secret))
        #expect(!response.body.contains(Contract.seedSignature))
    }
}

enum Contract {
    static let secret = "hedera-dev-secret"
    static let seedPayload = Array(#"{"reference":"test","topic_id":"0.0.134383","consensus_timestamp":{"seconds":1598306688,"nanos":750728007},"transaction_id":"0.0.116507@1598338540.979000000"}"#.utf8)
    /// HMAC-SHA256 of the seed payload under `secret`, computed independently (Python's hmac module).
    static let seedSignature = "3804140b9f0c37a7ca3e2c46b0f8abcbfbaa9afbcb04eeccd271419d9630fc80"

    static let rows: [ContractRow] = [
        ContractRow(name: "GET is 405", method: "GET", status: 405,
                    exactBody: #"{"reason":"Method GET is not allowed on this route"}"#),
        ContractRow(name: "lower-case post is 405", method: "post", signature: seedSignature, body: seedPayload,
                    status: 405, exactBody: #"{"reason":"Method post is not allowed on this route"}"#),
        ContractRow(name: "PUT with a body is 405", method: "PUT", contentLength: "2", body: Array("{}".utf8),
                    status: 405),
        ContractRow(name: "no signature is 400", body: seedPayload, status: 400,
                    exactBody: #"{"reason":"missing x-signature header"}"#),
        ContractRow(name: "empty signature is 400", signature: "", body: seedPayload, status: 400),
        ContractRow(name: "{} with x-signature 123 is 400", signature: "123", body: Array("{}".utf8), status: 400),
        ContractRow(name: "63 hex digits is 400", signature: String(seedSignature.dropLast()), body: seedPayload,
                    status: 400),
        ContractRow(name: "wrong signature is 400", signature: String(seedSignature.reversed()), body: seedPayload,
                    status: 400, exactBody: #"{"reason":"x-signature does not match the body"}"#),
        ContractRow(name: "CONTENT_LENGTH not a number is 400", signature: seedSignature, contentLength: "12abc",
                    body: seedPayload, status: 400),
        ContractRow(name: "negative CONTENT_LENGTH is 400", signature: seedSignature, contentLength: "-5",
                    body: seedPayload, status: 400),
        ContractRow(name: "body shorter than CONTENT_LENGTH is 400", signature: seedSignature,
                    contentLength: String(seedPayload.count + 100), body: seedPayload, status: 400),
        ContractRow(name: "CONTENT_LENGTH over the limit is 413", signature: seedSignature, contentLength: "1048577",
                    body: Array("{}".utf8), status: 413),
        ContractRow(name: "seed payload signed by the sender is 200", signature: seedSignature, body: seedPayload,
                    status: 200, exactBody: #"{"verified":true}"#),
        ContractRow(name: "upper-case hex with sha256= prefix is 200", signature: "sha256=" + seedSignature.uppercased(),
                    body: seedPayload, status: 200),
    ]
}
