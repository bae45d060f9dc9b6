import FuzzDriver
import WebhookCore

let secretText = "fuzz-secret-0123456789"
let keyring = Keyring(try! Secret(secretText))

/// Arbitrary CGI params and body through the whole core, for every scheme: the first byte picks the scheme and the
/// limit, the rest is split at NUL bytes into method, CONTENT_LENGTH, HTTP_TRANSFER_ENCODING, the scheme's headers
/// and the body. Whatever comes in, the answer is a well-formed CGI response with a JSON body that never holds the
/// secret, and a 200 only with a signature.
@_cdecl("FuzzRequestHead_main")
func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { data, size in
        let input = bytes(data, size)
        guard let selector = input.first else { return 0 }
        let scheme = SignatureScheme.presets[Int(selector) % SignatureScheme.presets.count]
        var fields = input.dropFirst().split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        func next() -> String? { fields.isEmpty ? nil : fields.removeFirst() }
        let method = next() ?? "POST", length = next(), encoding = next()
        var headers: [String: String] = [:]
        for name in scheme.params { headers[name] = next() }
        let body = Array((next() ?? "").utf8)
        let head = RequestHead(method: method, contentLength: length, transferEncoding: encoding, headers: headers)
        let verifier = Verifier(maxBodyBytes: Int(selector >> 2) * 16, scheme: scheme)
        let outcome: Outcome
        switch verifier.admit(head, keys: .success(keyring), now: 1_700_000_000) {
        case .answer(let early): outcome = early
        case .readBody(let pending): outcome = pending.verify(Array(body.prefix(pending.expected.readLimit)))
        }
        check(outcome, method: method, headers: headers)
        return 0
    }
}

func check(_ outcome: Outcome, method: String, headers: [String: String]) {
    let response = String(decoding: outcome.cgiResponse, as: UTF8.self)
    require(response.hasPrefix("Status: \(outcome.status.code) "), "status line")
    let parts = response.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
    require(parts.count == 2, "no blank line after the headers")
    require(parts[0].contains("Content-Length: \(parts[1].utf8.count)"), "Content-Length")
    require(parts[1].hasPrefix("{") && parts[1].hasSuffix("}"), "JSON object")
    require(!parts[1].utf8.contains(where: { $0 < 0x20 }), "raw control character in the JSON body")
    require(!response.contains(secretText), "the secret leaked")
    if outcome.isVerified { require(method == "POST" && !headers.isEmpty, "200 without a signature") }
}
