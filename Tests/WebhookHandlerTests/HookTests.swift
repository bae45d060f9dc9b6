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

    /// The time-out covers the whole run: a command that closes its output at once and then sleeps is stopped at
    /// the time-out (it used to be waited for to its end, and answered 200).
    @Test func theTimeOutCoversTheExitNotJustTheOutput() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let started = Date()
        let (response, finished) = try post(["WEBHOOK_EXEC": "exec >/dev/null 2>&1; sleep 12", "WEBHOOK_EXEC_TIMEOUT": "2"])
        let took = Date().timeIntervalSince(started)
        #expect(response.status == 502)
        #expect(took > 1.9 && took < 5, "answered after \(took) s")
        #expect(finished.stderr.contains("timed out after 2.0s and was killed"), "\(finished.stderr)")

        // A command that ignores SIGTERM gets SIGKILL after the grace (2 s).
        let stubborn = Date()
        let (killed, _) = try post(["WEBHOOK_EXEC": "trap '' TERM; exec >/dev/null 2>&1; sleep 30", "WEBHOOK_EXEC_TIMEOUT": "1"])
        let after = Date().timeIntervalSince(stubborn)
        #expect(killed.status == 502)
        #expect(after > 2.9 && after < 7, "answered after \(after) s")
    }

    /// Nothing the command started outlives its run: its process group, and what left the group with setsid.
    @Test func nothingTheCommandStartedOutlivesTheRun() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pids = directory + "/pids"
        let (response, _) = try post([
            "PATH": "/usr/bin:/bin",
            "WEBHOOK_EXEC": "sleep 31 >/dev/null 2>&1 & echo $! >> \(pids); "
                + "setsid sh -c 'sleep 32 & echo $! >> \(pids); sleep 33' >/dev/null 2>&1 & echo $! >> \(pids); "
                + "sleep 0.3; exit 0",
        ])
        #expect(response.status == 200)
        let started = try String(contentsOfFile: pids, encoding: .utf8).split(separator: "\n").compactMap { pid_t($0) }
        #expect(started.count == 3)
        for pid in started { #expect(!isRunning(pid), "process \(pid) outlived the hook") }
    }

    /// Attempts on the spool: WEBHOOK_ATTEMPT, automatic retries with a growing backoff, failed after the last
    /// attempt with every attempt's error kept; then `spool list --failed` shows it and `spool retry --failed`
    /// replays it.
    @Test func aPayloadIsRetriedWithBackoffThenFailed() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/attempts"
        let (response, _) = try post([
            "WEBHOOK_SPOOL_DIR": spool, "PATH": "/usr/bin:/bin", "WEBHOOK_EXEC_MAX_ATTEMPTS": "3", "WEBHOOK_EXEC_BACKOFF": "0.6",
            "WEBHOOK_EXEC": "echo \"$WEBHOOK_ATTEMPT $(date +%s%N)\" >> \(log); echo no way >&2; exit 7",
        ])
        #expect(response.status == 200)
        let id = try #require(try response.json()["id"] as? String)
        try waitFor("the payload to be failed", seconds: 20) { FileManager.default.fileExists(atPath: "\(spool)/.hook-given-up/\(id)") }
        usleep(1_500_000)  // no fourth attempt comes
        let runs = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ") }
        #expect(runs.map { String($0[0]) } == ["1", "2", "3"])
        let times = runs.map { Double($0[1])! / 1e9 }
        #expect(times[1] - times[0] >= 0.28, "backoff after attempt 1: \(times[1] - times[0]) s")  // 0.6 s, half of it at least
        #expect(times[2] - times[1] >= 0.58, "backoff after attempt 2: \(times[2] - times[1]) s")  // 1.2 s, the same
        let errors = try String(contentsOfFile: "\(spool)/.hook-failed/\(id)", encoding: .utf8).split(separator: "\n")
        #expect(errors.count == 3)
        #expect(errors.allSatisfy { $0.contains("exited with status 7") && $0.contains("output: no way") })
        #expect(errors[2].contains("attempt 3: "))
        #expect(files("new") == [id])

        let listed = try Programs.run(Programs.handler, ["spool", "list", "--failed", "--spool-dir", spool], environment: [:])
        let line = String(decoding: listed.stdout, as: UTF8.self)
        #expect(line.hasPrefix(#"{"id":"\#(id)""#) && line.contains(#""attempts":3,"failed":true,"errors":["#), "\(line)")

        let retry = try Programs.run(Programs.handler, ["spool", "retry", "--failed", "--spool-dir", spool,
                                                        "--exec", "echo \"$WEBHOOK_ATTEMPT\" > \(directory)/replayed"],
                                     environment: ["PATH": "/usr/bin:/bin"])
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(files("cur") == [id])
        #expect(try String(contentsOfFile: directory + "/replayed", encoding: .utf8) == "4\n")
        #expect(!FileManager.default.fileExists(atPath: "\(spool)/.hook-given-up/\(id)"))
        #expect(!FileManager.default.fileExists(atPath: "\(spool)/.hook-failed/\(id)"))
    }

    /// A failed run is retried by the runner itself (no cron, no spool retry); exit 65 gives up at once.
    @Test func aRetrySucceedsByItselfAndExit65GivesUp() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (response, _) = try post([
            "WEBHOOK_SPOOL_DIR": spool, "PATH": "/usr/bin:/bin", "WEBHOOK_EXEC_BACKOFF": "0.2",
            "WEBHOOK_EXEC": "[ \"$WEBHOOK_ATTEMPT\" -ge 2 ] || exit 75; cat > \(directory)/got",
        ])
        let id = try #require(try response.json()["id"] as? String)
        try waitFor("the second attempt", seconds: 10) { files("cur") == [id] }
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/got")) == Data(Contract.seedPayload))

        let other = directory + "/spool65"  // not the spool above, whose runner may still look for work
        let (given, _) = try post(["WEBHOOK_SPOOL_DIR": other, "WEBHOOK_EXEC_BACKOFF": "0.2",
                                   "WEBHOOK_EXEC": "echo malformed >&2; exit 65"])
        let failed = try #require(try given.json()["id"] as? String)
        try waitFor("the give-up", seconds: 10) { FileManager.default.fileExists(atPath: "\(other)/.hook-given-up/\(failed)") }
        usleep(800_000)  // a second attempt would come within 0.2 s
        let errors = try String(contentsOfFile: "\(other)/.hook-failed/\(failed)", encoding: .utf8)
        #expect(errors.split(separator: "\n").count == 1, "\(errors)")
        #expect(try String(contentsOfFile: "\(other)/.hook-given-up/\(failed)", encoding: .utf8).contains("gave up (exit 65)"))
    }

    /// The runner that waits for a retry watches new/: with one slot, a payload arriving meanwhile is handed on at
    /// once, not after the other's backoff.
    @Test func aWaitingRetryDoesNotHoldUpNewPayloads() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = ["WEBHOOK_SPOOL_DIR": spool, "PATH": "/usr/bin:/bin", "WEBHOOK_EXEC_CONCURRENCY": "1",
                        "WEBHOOK_EXEC_BACKOFF": "60", "WEBHOOK_EXEC": "grep -q later"]
        let (first, _) = try post(settings)
        let failing = try #require(try first.json()["id"] as? String)
        try waitFor("the first failure") { FileManager.default.fileExists(atPath: "\(spool)/.hook-failed/\(failing)") }
        let body = Array(#"{"later":true}"#.utf8)
        let signed = ContractRow(name: "later", signature: Programs.sign(body), body: body, status: 200)
        let later = try Programs.run(Programs.handler, environment: signed.params(
            ["API_SECRET_KEY": Contract.secret].merging(settings) { $1 }), stdin: body)
        let id = try #require(try CGIResponse(later.stdout).json()["id"] as? String)
        try waitFor("the later payload", seconds: 5) { files("cur") == [id] }
        #expect(files("new") == [failing])
    }

    /// A FastCGI server resumes the retries a previous one left: it starts a runner when it starts.
    @Test func aServerResumesRetriesWhenItStarts() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (stored, _) = try post(["WEBHOOK_SPOOL_DIR": spool])  // stored, no hook
        let id = try #require(try stored.json()["id"] as? String)
        let server = try FastCGIServerProcess(
            .ownSocket, workers: 1, environment: ["API_SECRET_KEY": Contract.secret, "PATH": "/usr/bin:/bin"],
            arguments: ["--spool-dir", spool, "--exec", "cat > \(directory)/resumed"])
        try waitFor("the waiting payload to be handed on", seconds: 10) { files("cur") == [id] }
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/resumed")) == Data(Contract.seedPayload))
        #expect(server.stop() == 0)
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

/// Whether `pid` exists and is not a zombie (read with read(2): /proc files say they are empty to a stat).
func isRunning(_ pid: pid_t) -> Bool {
    let fd = open("/proc/\(pid)/stat", O_RDONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 512)
    let count = read(fd, &buffer, buffer.count)
    let stat = String(decoding: buffer[..<max(0, count)], as: UTF8.self)
    guard let state = stat.split(separator: ")").last?.split(separator: " ").first else { return false }
    return state != "Z" && state != "X"
}
