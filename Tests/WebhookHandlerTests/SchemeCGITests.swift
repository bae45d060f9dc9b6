import Foundation
import Testing

/// Every scheme and key rotation through the built binary as a CGI, signed by its own `sign`.
@Suite struct SchemeCGITests {
    static let schemes = ["x-signature", "github", "standard-webhooks", "stripe", "slack", "shopify", "paddle", "svix",
                          "github-sha1"]
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    let body = Array(#"{"event":"scheme-test"}"#.utf8)

    /// `sign --scheme` output as CGI params.
    func signedParams(_ scheme: String, secret: String, extra: [String] = []) throws -> [String: String] {
        let signed = try Programs.run(Programs.handler, ["sign", "--scheme", scheme] + extra,
                                      environment: ["API_SECRET_KEY": secret], stdin: body)
        #expect(signed.status == 0, "\(signed.stderr)")
        let output = String(decoding: signed.stdout, as: UTF8.self)
        if scheme == "x-signature" { return ["HTTP_X_SIGNATURE": output.trimmingCharacters(in: .whitespacesAndNewlines)] }
        var params: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            let name = "HTTP_" + parts[0].uppercased().replacingOccurrences(of: "-", with: "_")
            params[name] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        return params
    }

    func post(_ params: [String: String], body: [UInt8], environment: [String: String]) throws -> (CGIResponse, String) {
        var all = ["GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": String(body.count)]
        all.merge(params) { $1 }
        all.merge(environment) { $1 }
        let finished = try Programs.run(Programs.handler, environment: all, stdin: body)
        return (try CGIResponse(finished.stdout), finished.stderr)
    }

    @Test(arguments: schemes)
    func signedByItsOwnSignIsAcceptedAndTamperingIsNot(_ scheme: String) throws {
        let params = try signedParams(scheme, secret: secret)
        let environment = ["API_SECRET_KEY": secret, "WEBHOOK_SCHEME": scheme]
        let (ok, log) = try post(params, body: body, environment: environment)
        #expect(ok.status == 200, "\(ok.body) \(log)")
        let (tampered, _) = try post(params, body: body + [0x20], environment: environment)
        #expect(tampered.status == 400)
        #expect(tampered.body.contains("does not match the body"))
        // Another scheme's headers are not this scheme's.
        let other = Self.schemes.first { $0 != scheme }!
        let (wrongScheme, _) = try post(try signedParams(other, secret: secret), body: body, environment: environment)
        #expect(wrongScheme.status == 400)
    }

    @Test(arguments: ["standard-webhooks", "stripe", "slack", "paddle", "svix"])
    func datedSchemesRefuseAnOldSignature(_ scheme: String) throws {
        let old = String(Int(Date().timeIntervalSince1970) - 1000)
        let params = try signedParams(scheme, secret: secret, extra: ["--timestamp", old])
        let (response, _) = try post(params, body: body, environment: ["API_SECRET_KEY": secret, "WEBHOOK_SCHEME": scheme])
        #expect(response.status == 400)
        #expect(response.body.contains("more than \(scheme == "paddle" ? 5 : 300) seconds from now"))
        let (tolerant, _) = try post(params, body: body, environment: [
            "API_SECRET_KEY": secret, "WEBHOOK_SCHEME": scheme, "WEBHOOK_TOLERANCE_SECONDS": "2000"])
        #expect(tolerant.status == 200)
    }

    @Test func unknownSchemeFailsClosed() throws {
        let (response, log) = try post(try signedParams("x-signature", secret: secret), body: body,
                                       environment: ["API_SECRET_KEY": secret, "WEBHOOK_SCHEME": "md5"])
        #expect(response.status == 500)
        #expect(log.contains("WEBHOOK_SCHEME md5 is not a known scheme"))
    }

    /// A secret file with the new key first and the old one after: both are accepted, and the log says which.
    @Test func rotationWithASecretFile() throws {
        let current = "new-secret-0123456789", previous = "old-secret-0123456789"
        let file = try TemporaryFile(contents: "\(current)\n\(previous)\n")
        for (signer, index) in [(current, 1), (previous, 2)] {
            let (response, log) = try post(try signedParams("x-signature", secret: signer), body: body,
                                           environment: ["API_SECRET_KEY_FILE": file.path])
            #expect(response.status == 200)
            #expect(log.contains(" key=\(index)/2"), "\(log)")
            #expect(!log.contains(signer))
        }
        let (stranger, _) = try post(try signedParams("x-signature", secret: "stranger-0123456789"), body: body,
                                     environment: ["API_SECRET_KEY_FILE": file.path])
        #expect(stranger.status == 400)
        // `sign` uses the first (current) line.
        let signed = try Programs.run(Programs.handler, ["sign", "--secret-file", file.path], environment: [:], stdin: body)
        #expect(String(decoding: signed.stdout, as: UTF8.self) == (try signedParams("x-signature", secret: current))["HTTP_X_SIGNATURE"]! + "\n")
    }

    @Test func rotationWithAPreviousVariable() throws {
        let (response, log) = try post(try signedParams("x-signature", secret: "old-secret-0123456789"), body: body,
                                       environment: ["API_SECRET_KEY": "new-secret-0123456789",
                                                     "API_SECRET_KEY_PREVIOUS": "old-secret-0123456789"])
        #expect(response.status == 200)
        #expect(log.contains(" key=2/2"))
    }

    @Test func aShortLineInTheSecretFileFailsClosed() throws {
        let file = try TemporaryFile(contents: "new-secret-0123456789\nshort\n")
        let (response, log) = try post(try signedParams("x-signature", secret: "new-secret-0123456789"), body: body,
                                       environment: ["API_SECRET_KEY_FILE": file.path])
        #expect(response.status == 500)
        #expect(log.contains("line 2"))
        #expect(!log.contains("short\""))
    }

    @Test func gitHubDeliveryIsLogged() throws {
        var params = try signedParams("github", secret: secret)
        params["HTTP_X_GITHUB_DELIVERY"] = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        let (response, log) = try post(params, body: body, environment: ["API_SECRET_KEY": secret, "WEBHOOK_SCHEME": "github"])
        #expect(response.status == 200)
        #expect(log.contains("delivery=72d3162e-cc78-11e3-81ab-4c9367dc0958"))
    }

    /// Twilio signs the URL it requested: `sign --url` and the web server's `WEBHOOK_URL` must agree.
    @Test func twilioSignsTheURL() throws {
        let form = Array("Body=hello&From=%2B14155550100".utf8)
        let url = "https://example.com/api/twilio?x=1"
        let signed = try Programs.run(Programs.handler, ["sign", "--scheme", "twilio", "--url", url],
                                      environment: ["API_SECRET_KEY": secret], stdin: form)
        let header = String(decoding: signed.stdout, as: UTF8.self).split(separator: ":", maxSplits: 1)[1]
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let environment = ["API_SECRET_KEY": secret, "WEBHOOK_SCHEME": "twilio"]
        let (ok, log) = try post(["HTTP_X_TWILIO_SIGNATURE": header, "WEBHOOK_URL": url], body: form, environment: environment)
        #expect(ok.status == 200, "\(ok.body) \(log)")
        // Without WEBHOOK_URL, the request's own parts make the URL.
        let parts = ["REQUEST_SCHEME": "https", "HTTP_HOST": "example.com", "REQUEST_URI": "/api/twilio?x=1"]
        let (rebuilt, _) = try post(parts.merging(["HTTP_X_TWILIO_SIGNATURE": header]) { $1 }, body: form, environment: environment)
        #expect(rebuilt.status == 200)
        let (moved, _) = try post(["HTTP_X_TWILIO_SIGNATURE": header, "WEBHOOK_URL": url + "&y=2"], body: form,
                                  environment: environment)
        #expect(moved.status == 400)
    }

    @Test func gitLabTokenIsTheSecret() throws {
        let environment = ["API_SECRET_KEY": "gitlab-token-0123456789", "WEBHOOK_SCHEME": "gitlab"]
        let (ok, _) = try post(["HTTP_X_GITLAB_TOKEN": "gitlab-token-0123456789"], body: body, environment: environment)
        #expect(ok.status == 200)
        let (wrong, log) = try post(["HTTP_X_GITLAB_TOKEN": "gitlab-token-012345678"], body: body, environment: environment)
        #expect(wrong.status == 400)
        #expect(!log.contains("gitlab-token-0123456789"))
    }

    /// v1a: the spec's message, signed by a key whose public half is configured (variable, then file).
    @Test func v1aPublicKeysFromTheEnvironmentOrAFile() throws {
        let message = Array(#"{"test": 2432232314}"#.utf8)
        let params = ["HTTP_WEBHOOK_ID": "msg_p5jXN8AQM9LWM0D4loKWxJek", "HTTP_WEBHOOK_TIMESTAMP": "1614265330",
                      "HTTP_WEBHOOK_SIGNATURE": "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ=="]
        let key = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
        let other = "whpk_6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="
        let file = try TemporaryFile(contents: "\(other)\n\(key)\n")
        let since = String(Int(Date().timeIntervalSince1970) - 1_614_265_330 + 100)
        for keys in [["WEBHOOK_PUBLIC_KEYS": "\(other) \(key)"], ["WEBHOOK_PUBLIC_KEYS_FILE": file.path]] {
            let environment = keys.merging(["WEBHOOK_SCHEME": "standard-webhooks", "WEBHOOK_TOLERANCE_SECONDS": since]) { $1 }
            let (ok, log) = try post(params, body: message, environment: environment)
            #expect(ok.status == 200, "\(ok.body) \(log)")
            #expect(log.contains(" key=2/2"), "\(log)")
            let (tampered, _) = try post(params, body: message + [0x20], environment: environment)
            #expect(tampered.status == 400)
        }
        let (untrusted, _) = try post(params, body: message, environment: [
            "WEBHOOK_PUBLIC_KEYS": other, "WEBHOOK_SCHEME": "standard-webhooks", "WEBHOOK_TOLERANCE_SECONDS": since])
        #expect(untrusted.status == 400)
        let (malformed, log) = try post(params, body: message, environment: [
            "WEBHOOK_PUBLIC_KEYS": "whpk_AAAA", "WEBHOOK_SCHEME": "standard-webhooks"])
        #expect(malformed.status == 500)
        #expect(log.contains("not a Standard Webhooks public key"))
        let (onlyKeys, why) = try post(try signedParams("github", secret: secret), body: body, environment: [
            "WEBHOOK_PUBLIC_KEYS": key, "WEBHOOK_SCHEME": "github"])
        #expect(onlyKeys.status == 500)
        #expect(why.contains("needs a shared secret"))
    }

    /// The generic scheme, configured by the environment, signed by `sign` and verified.
    @Test func genericSchemeFromTheEnvironment() throws {
        let environment = ["API_SECRET_KEY": secret, "WEBHOOK_SCHEME": "generic",
                           "WEBHOOK_GENERIC_HEADER": "X-Acme-Signature", "WEBHOOK_GENERIC_ALGORITHM": "sha512",
                           "WEBHOOK_GENERIC_ENCODING": "base64", "WEBHOOK_GENERIC_PREFIX": "sha512=",
                           "WEBHOOK_GENERIC_TEMPLATE": "{timestamp}.{body}", "WEBHOOK_GENERIC_TIMESTAMP_HEADER": "X-Acme-Time"]
        let signed = try Programs.run(Programs.handler, ["sign"], environment: environment, stdin: body)
        #expect(signed.status == 0, "\(signed.stderr)")
        var params: [String: String] = [:]
        for line in String(decoding: signed.stdout, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            params["HTTP_" + parts[0].uppercased().replacingOccurrences(of: "-", with: "_")] =
                parts[1].trimmingCharacters(in: .whitespaces)
        }
        #expect(params["HTTP_X_ACME_SIGNATURE"]?.hasPrefix("sha512=") == true)
        let (ok, log) = try post(params, body: body, environment: environment)
        #expect(ok.status == 200, "\(ok.body) \(log)")
        let (tampered, _) = try post(params, body: body + [0x20], environment: environment)
        #expect(tampered.status == 400)
        let bad = environment.merging(["WEBHOOK_GENERIC_TEMPLATE": "{timestamp}"]) { $1 }
        let refused = try Programs.run(Programs.handler, ["sign"], environment: bad, stdin: body)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("signs no {body}"))
    }
}
