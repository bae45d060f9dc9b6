import Foundation
import Testing

/// WEBHOOK_EXEC: the command a verified payload is handed to, with and without a spool.
@Suite struct HookTests {
    let directory = NSTemporaryDirectory() + "webhook-hook-\(UUID().uuidString.prefix(8))"
    let row = ContractRow(name: "signed", signature: Contract.seedSignature, body: Contract.seedPayload, status: 200)
    var spool: String { directory + "/spool" }

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func post(_ extra: [String: String]) throws -> (CGIResponse, Programs.Finished) {
        let finished = try Programs.run(
            Programs.handler, environment: row.params(["API_SECRET_KEY": Contract.secret].merging(extra) { $1 }), stdin: row.body)
        return (try CGIResponse(finished.stdout), finished)
    }

    func files(_ subdirectory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(spool)/\(subdirectory)")) ?? []).sorted()
    }

    @Test func withASpoolTheCommandGetsTheBodyAfterThe200AndTheFileMovesToCur() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let out = directory + "/out"
        let started = Date()
        let (response, _) = try post([
            "WEBHOOK_SPOOL_DIR": spool, "PATH": "/usr/bin:/bin",
            "WEBHOOK_EXEC": "sleep 3; cat > \(out).body; env > \(out).env",
        ])
        #expect(Date().timeIntervalSince(started) < 2.5, "the 200 waited for the command")  // margin for sanitizers
        #expect(response.status == 200)
        let id = try #require(try response.json()["id"] as? String)
        #expect(files("new") == [id])
        try waitFor("the command to finish", seconds: 10) { files("cur") == [id] }
        try waitFor("the runner's log line") {
            (try? String(contentsOfFile: spool + "/hook.log", encoding: .utf8))?.contains("moved to cur/") == true
        }
        #expect(files("new").isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + ".body")) == Data(Contract.seedPayload))
        let environment = try String(contentsOfFile: out + ".env", encoding: .utf8)
        #expect(environment.contains("WEBHOOK_ID=\(id)\n"))
        #expect(environment.contains("WEBHOOK_FILE=\(spool)/new/\(id)\n"))
        #expect(environment.contains("WEBHOOK_LENGTH=\(Contract.seedPayload.count)\n"))
        #expect(environment.contains("WEBHOOK_REMOTE_ADDR=127.0.0.1\n"))
        for secret in ["API_SECRET_KEY", "HTTP_X_SIGNATURE", Contract.secret, Contract.seedSignature] {
            #expect(!environment.contains(secret))
        }
    }

    @Test func aFailedCommandLeavesTheFileInNewForSpoolRetry() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (response, _) = try post(["WEBHOOK_SPOOL_DIR": spool, "WEBHOOK_EXEC": "echo cannot >&2; exit 7"])
        #expect(response.status == 200)
        let id = try #require(try response.json()["id"] as? String)
        try waitFor("the hook's verdict") {
            (try? String(contentsOfFile: spool + "/hook.log", encoding: .utf8))?.contains("left in new/") == true
        }
        #expect(try String(contentsOfFile: spool + "/hook.log", encoding: .utf8).contains("exited with status 7"))
        #expect(files("new") == [id])
        #expect(files("cur").isEmpty)
        #expect(try String(contentsOfFile: spool + "/.hook-failed/" + id, encoding: .utf8).contains("status 7"))

        let retry = try Programs.run(Programs.handler, ["spool", "retry", "--spool-dir", spool,
                                                        "--exec", "cat > \(directory)/retried"], environment: [:])
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(String(decoding: retry.stdout, as: UTF8.self)
            == "1 delivered, 0 failed (left in new/), 0 being run by a hook runner already\n")
        #expect(files("cur") == [id])
        #expect(!FileManager.default.fileExists(atPath: spool + "/.hook-failed/" + id))
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/retried")) == Data(Contract.seedPayload))
    }

    @Test func withoutASpoolTheCommandRunsFirstAndItsFailureIs502() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (ok, _) = try post(["WEBHOOK_EXEC": "cat > \(directory)/got"])
        #expect(ok.status == 200)
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/got")) == Data(Contract.seedPayload))

        let (failed, finished) = try post(["WEBHOOK_EXEC": "echo broken >&2; exit 3"])
        #expect(failed.status == 502)
        #expect(failed.body == #"{"reason":"the payload could not be handed on"}"#)
        #expect(finished.stderr.contains("exited with status 3"))
        #expect(finished.stderr.contains("output: broken"))

        let started = Date()
        let (slow, late) = try post(["WEBHOOK_EXEC": "sleep 30", "WEBHOOK_EXEC_TIMEOUT": "0.5"])
        #expect(slow.status == 502)
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(late.stderr.contains("timed out after 0.5s and was killed"))
    }

    /// Hooks of several workers run one at a time with a concurrency of 1.
    @Test func concurrencyIsLimitedAcrossWorkers() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/intervals"
        let server = try FastCGIServerProcess(
            .ownSocket, workers: 3, environment: ["API_SECRET_KEY": Contract.secret, "PATH": "/usr/bin:/bin"],
            arguments: ["--spool-dir", spool, "--exec-concurrency", "1",
                        "--exec", "s=$(date +%s%N); sleep 0.2; echo \"$s $(date +%s%N)\" >> \(log)"])
        DispatchQueue.concurrentPerform(iterations: 3) { index in
            let body = Array(#"{"n":\#(index)}"#.utf8)
            let signed = ContractRow(name: "n", signature: Programs.sign(body), body: body, status: 200)
            _ = try? server.send(signed)
        }
        try waitFor("three hooks", seconds: 15) { files("cur").count == 3 }
        let intervals = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: " ").compactMap { Int($0) } }.sorted { $0[0] < $1[0] }
        #expect(intervals.count == 3)
        for (earlier, later) in zip(intervals, intervals.dropFirst()) { #expect(earlier[1] <= later[0]) }
        #expect(server.stop() == 0)
    }
}
