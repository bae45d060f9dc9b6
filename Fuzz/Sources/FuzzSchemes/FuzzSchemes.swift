import FuzzDriver
import WebhookCore

let secret = try! Secret("whsec_ZnV6ei1zZWNyZXQtMDEyMzQ1Njc4OQ==")
let keyring = Keyring(secret)
let stranger = Keyring(try! Secret("whsec_c3RyYW5nZXItc3RyYW5nZXItc3RyYW5n"))

/// Every preset, and a generic scheme built from the input, signing an arbitrary body (a form for Twilio, bytes
/// for the rest) with `sign`'s headers and verifying it: the first byte picks the scheme, the second a skew, the
/// rest is the body, or (after a NUL) a template for the generic scheme. A signed body always verifies with its key
/// (within the tolerance) and never with another key; one byte more never verifies, except under GitLab's token,
/// which signs no body, and
/// Twilio's form, whose pairs (not bytes) are signed. Also feeds the input as every signature header value (lists, `t=`/`ts=;h1=` pairs, base64)
/// to every preset: never a crash, never a 200.
@_cdecl("FuzzSchemes_main")
func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { data, size in
        let input = bytes(data, size)
        guard input.count >= 2 else { return 0 }
        let fields = input.dropFirst(2).split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
        let body = Array(fields[0])
        var schemes = SignatureScheme.presets
        // A timestamp header only where the template may sign it (an unsigned one is refused).
        let template = fields.count > 1 ? String(decoding: fields[1], as: UTF8.self) : ""
        if fields.count > 1, let generic = try? SignatureScheme.generic(
            header: "X-Fuzz-Signature", algorithm: [.sha256, .sha512, .sha1][Int(input[1]) % 3],
            encoding: input[1] & 4 == 0 ? .hex : .base64, prefix: input[1] & 8 == 0 ? "" : "v9=",
            template: template, timestampHeader: template.lowercased().contains("timestamp") ? "X-Fuzz-Timestamp" : nil)
        {
            schemes.append(generic)
        }
        let scheme = schemes[Int(input[0]) % schemes.count]
        let now: Int64 = 1_700_000_000
        let skew = Int64(Int8(bitPattern: input[1])) * 5
        let url = "https://example.com/hook?x=1"
        var headers = ["WEBHOOK_URL": url]
        for (name, value) in scheme.headers(for: body, secret: secret, id: "msg_fuzz", timestamp: now + skew, url: url) {
            headers["HTTP_" + String(name.uppercased().map { $0 == "-" ? "_" : $0 })] = value
        }
        let inTolerance = !scheme.isTimed || abs(skew) <= scheme.toleranceSeconds
        require(verify(scheme, headers, body, keyring, now).isVerified == inTolerance, "\(scheme) signed body")
        require(!verify(scheme, headers, body, stranger, now).isVerified, "\(scheme) verified with another key")
        if scheme.template.parts.contains(.form) {
            // Twilio signs the form's distinct pairs, not its bytes ("a&a" is "a"): change the URL instead.
            let moved = headers.merging(["WEBHOOK_URL": url + "&"]) { $1 }
            require(!verify(scheme, moved, body, keyring, now).isVerified, "\(scheme) another URL")
        } else if scheme.algorithm != .token {
            require(!verify(scheme, headers, body + [0x41], keyring, now).isVerified, "\(scheme) tampered body")
        }
        let text = String(decoding: input.dropFirst(2), as: UTF8.self)
        for preset in SignatureScheme.presets {
            var forged = headers
            for name in preset.params { forged[name] = text }
            let outcome = verify(preset, forged, body, keyring, now)
            require(!outcome.isVerified || preset.algorithm == .token && text == "whsec_ZnV6ei1zZWNyZXQtMDEyMzQ1Njc4OQ==",
                    "\(preset) verified the input as its header")
            require(outcome.reason.map { !$0.contains("whsec_") } ?? true, "a reason holds a secret")
        }
        return 0
    }
}

func verify(_ scheme: SignatureScheme, _ headers: [String: String], _ body: [UInt8], _ keys: Keyring, _ now: Int64)
    -> Outcome
{
    let head = RequestHead(method: "POST", contentLength: String(body.count), headers: headers)
    switch Verifier(scheme: scheme).admit(head, keys: .success(keys), now: now) {
    case .answer(let outcome): return outcome
    case .readBody(let pending): return pending.verify(body)
    }
}
