import Foundation
import Testing

/// The built binary run as a classic CGI program: environment and stdin in, one response out.
@Suite struct CGITests {
    func serve(_ row: ContractRow, secret: String? = Contract.secret, arguments: [String] = [],
               extra: [String: String] = [:]) throws -> (CGIResponse, Programs.Finished) {
        let finished = try Programs.run(
            Programs.handler, arguments,
            environment: row.params((secret.map { ["API_SECRET_KEY": $0] } ?? [:]).merging(extra) { $1 }), stdin: row.body)
        #expect(finished.status == 0, "exit status, stderr: \(finished.stderr)")
        return (try CGIResponse(finished.stdout), finished)
    }

    @Test(arguments: Contract.rows)
    func contractRow(_ row: ContractRow) throws {
        let (response, finished) = try serve(row)
        try row.check(response)
        // One access line on stderr, never the secret or the signature.
        let lines = finished.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.contains(" status=\(row.status) ") == true, "\(finished.stderr)")
        #expect(!finished.stderr.contains(Contract.secret))
        if let signature = row.signature, signature.count > 8 { #expect(!finished.stderr.contains(signature)) }
        #expect(!finished.stderr.contains(Contract.seedSignature))
    }

    /// `WEBHOOK_ACCESS_LOG=failures`: nothing on stderr (Apache's error log) for a 200, a line for a refusal; an
    /// unknown value logs everything and says so.
    @Test func accessLogOfFailuresOnly() throws {
        let verified = Contract.rows.first { $0.status == 200 }!
        let refused = Contract.rows.first { $0.status == 400 }!
        let failures = ["WEBHOOK_ACCESS_LOG": "failures"]
        let (ok, quiet) = try serve(verified, extra: failures)
        #expect(ok.status == 200 && quiet.stderr.isEmpty, "\(quiet.stderr)")
        let (bad, logged) = try serve(refused, extra: failures)
        #expect(bad.status == 400 && logged.stderr.contains(" method=POST status=400 "), "\(logged.stderr)")
        let (_, unknown) = try serve(verified, extra: ["WEBHOOK_ACCESS_LOG": "some"])
        #expect(unknown.stderr.contains("WEBHOOK_ACCESS_LOG must be all or failures"), "\(unknown.stderr)")
        #expect(unknown.stderr.contains(" method=POST status=200 "), "\(unknown.stderr)")
    }

    @Test func noSecretFailsClosedWith500AndSaysWhyOnStderr() throws {
        let row = Contract.rows.first { $0.status == 200 }!
        let (response, finished) = try serve(row, secret: nil)
        #expect(response.status == 500)
        #expect(response.body == #"{"reason":"server is not configured"}"#)
        #expect(finished.stderr.contains("neither API_SECRET_KEY nor API_SECRET_KEY_FILE is set"))
    }

    @Test func shortSecretFailsClosed() throws {
        let row = Contract.rows.first { $0.status == 200 }!
        let (response, finished) = try serve(row, secret: "123456789")
        #expect(response.status == 500)
        #expect(finished.stderr.contains("shorter than 10 characters"))
        #expect(!finished.stderr.contains("123456789"))
    }

    @Test func secretFromAFileWithATrailingNewline() throws {
        let file = try TemporaryFile(contents: Contract.secret + "\n")
        let row = Contract.rows.first { $0.status == 200 }!
        let (response, _) = try serve(row, secret: nil, extra: ["API_SECRET_KEY_FILE": file.path])
        #expect(response.status == 200)
    }

    @Test func unreadableSecretFileFailsClosed() throws {
        let row = Contract.rows.first { $0.status == 200 }!
        let (response, finished) = try serve(row, secret: nil, extra: ["API_SECRET_KEY_FILE": "/nonexistent/secret"])
        #expect(response.status == 500)
        #expect(finished.stderr.contains("cannot read API_SECRET_KEY_FILE /nonexistent/secret"))
    }

    @Test func bodyLimitFromTheEnvironment() throws {
        let row = Contract.rows.first { $0.status == 200 }!
        let (response, _) = try serve(row, extra: ["WEBHOOK_MAX_BODY_BYTES": "10"])
        #expect(response.status == 413)
        #expect(response.body.contains("limit of 10 bytes"))
    }

    /// Apache passes the words of a query string without `=` as arguments (RFC 3875 §4.4); they are not options.
    @Test func queryWordsAsArgumentsAreIgnored() throws {
        let row = Contract.rows.first { $0.status == 200 }!
        let (response, _) = try serve(row, arguments: ["--help"])
        #expect(response.status == 200)
    }

    /// An early answer still reads the body the server is writing, so the server is not cut off (502).
    @Test(arguments: ["GET", "POST"])
    func earlyAnswersDrainTheBody(_ method: String) throws {
        let body = [UInt8](repeating: 0x7B, count: 300_000)
        let row = ContractRow(name: "drain", method: method, signature: nil, contentLength: String(body.count),
                              body: body, status: method == "GET" ? 405 : 400)
        let (response, finished) = try serve(row)
        try row.check(response)
        #expect(finished.stdinAccepted == body.count)
    }

    /// ...but never reads past CONTENT_LENGTH (RFC 3875 §4.2), and never more than a bound.
    @Test func drainingIsBounded() throws {
        let body = [UInt8](repeating: 0x7B, count: 4 << 20)
        let row = ContractRow(name: "413", signature: Contract.seedSignature, contentLength: String(body.count),
                              body: body, status: 413)
        let (response, finished) = try serve(row)
        try row.check(response)
        #expect(finished.stdinAccepted < body.count)
    }
}

/// The binary's own command line.
@Suite struct CommandLineTests {
    @Test func fromATerminalWithoutCGIItPrintsUsageAndExits2() throws {
        let finished = try Programs.run(Programs.handler, environment: ["PATH": "/usr/bin:/bin"])
        #expect(finished.status == 2)
        #expect(finished.stdout.isEmpty)
        #expect(finished.stderr.contains("USAGE: webhook-handler"))
    }

    @Test func helpAndVersion() throws {
        let help = try Programs.run(Programs.handler, ["--help"], environment: [:])
        #expect(help.status == 0)
        #expect(String(decoding: help.stdout, as: UTF8.self).contains("API_SECRET_KEY_FILE"))
        let serveHelp = try Programs.run(Programs.handler, ["serve", "--help"], environment: [:])
        #expect(String(decoding: serveHelp.stdout, as: UTF8.self).contains("--listen"))
        let version = try Programs.run(Programs.handler, ["--version"], environment: [:])
        #expect(String(decoding: version.stdout, as: UTF8.self).hasPrefix("webhook-handler "))
    }

    @Test func signMatchesGitHubsDocumentedVector() throws {
        let finished = try Programs.run(Programs.handler, ["sign"],
                                        environment: ["API_SECRET_KEY": "It's a Secret to Everybody"],
                                        stdin: Array("Hello, World!".utf8))
        #expect(finished.status == 0)
        #expect(String(decoding: finished.stdout, as: UTF8.self)
            == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\n")
    }

    @Test func signWithASecretFile() throws {
        let file = try TemporaryFile(contents: Contract.secret + "\n")
        let finished = try Programs.run(Programs.handler, ["sign", "--secret-file", file.path], environment: [:],
                                        stdin: Contract.seedPayload)
        #expect(String(decoding: finished.stdout, as: UTF8.self) == Contract.seedSignature + "\n")
    }

    @Test func signWithoutASecretFails() throws {
        let finished = try Programs.run(Programs.handler, ["sign"], environment: [:], stdin: [])
        #expect(finished.status == 1)
        #expect(finished.stderr.contains("neither API_SECRET_KEY nor API_SECRET_KEY_FILE is set"))
    }

    @Test(arguments: [["--workers", "0"], ["--socket-mode", "999"], ["--max-body-bytes", "-1"]])
    func badOptionsAreRefused(_ arguments: [String]) throws {
        let finished = try Programs.run(Programs.handler, ["serve", "--listen", "/tmp/never.sock"] + arguments,
                                        environment: [:])
        #expect(finished.status != 0)
        #expect(finished.stderr.contains("Error:"))
    }
}

/// A file removed when the value goes away.
final class TemporaryFile {
    let path: String
    init(contents: String, mode: Int = 0o600) throws {
        path = NSTemporaryDirectory() + "webhook-test-\(UUID().uuidString)"
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
