import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built binary as a FastCGI server, driven by libfcgi's real client `cgi-fcgi`.
@Suite(.serialized) struct FastCGITests {
    @Test(arguments: [FastCGIServerProcess.Mode.ownSocket, .spawnFCGI])
    func everyContractRow(_ mode: FastCGIServerProcess.Mode) throws {
        let server = try FastCGIServerProcess(mode)
        for row in Contract.rows { try row.check(try server.send(row)) }
        #expect(server.stop() == 0)
        let log = server.log
        #expect(!log.contains(Contract.secret))
        #expect(!log.contains(Contract.seedSignature))
        #expect(log.split(separator: "\n").filter { $0.contains(" method=POST ") || $0.contains(" method=GET ") }.count
            >= Contract.rows.count - 2)
    }

    /// `--access-log failures`: a line for every refusal, none for a request answered 200.
    @Test func accessLogOfFailuresOnly() throws {
        let server = try FastCGIServerProcess(.ownSocket, arguments: ["--access-log", "failures"])
        var refused = 0
        for row in Contract.rows {
            try row.check(try server.send(row))
            if row.status != 200 { refused += 1 }
        }
        #expect(server.stop() == 0)
        let lines = server.log.split(separator: "\n").filter { $0.contains(" msg=request ") }  // access lines
        #expect(refused > 0 && lines.count == refused, "\(server.log)")
        #expect(!lines.contains { $0.contains(" status=200 ") })
    }

    @Test func anUnknownAccessLogPolicyIsRefusedAtStartUp() throws {
        let finished = try Programs.run(
            Programs.handler, ["--listen", NSTemporaryDirectory() + "unused.sock", "--access-log", "some"],
            environment: ["API_SECRET_KEY": Contract.secret])
        #expect(finished.status != 0)
        #expect(finished.stderr.contains("access-log"), "\(finished.stderr)")
    }

    @Test func ownSocketHasTheRequestedModeAndIsRemovedOnStop() throws {
        let server = try FastCGIServerProcess(.ownSocket, arguments: ["--socket-mode", "0600"])
        let attributes = try FileManager.default.attributesOfItem(atPath: server.socket)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(server.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: server.socket))
    }

    @Test func concurrentRequestsAreServedByEveryWorker() throws {
        let server = try FastCGIServerProcess(.ownSocket, workers: 3)
        let row = Contract.rows.first { $0.status == 200 }!
        let statuses = Statuses()
        DispatchQueue.concurrentPerform(iterations: 48) { _ in
            statuses.record((try? server.send(row))?.status ?? -1)
        }
        #expect(statuses.all == Array(repeating: 200, count: 48))
        #expect(server.stop() == 0)
        let servingPIDs = Set(server.log.split(separator: "\n").filter { $0.contains(" status=200 ") }
            .compactMap { $0.split(separator: " ").first { $0.hasPrefix("pid=") } })
        #expect(servingPIDs.count >= 2, "requests were not spread over workers:\n\(server.log)")
    }

    /// Anyone who can reach the socket can send any param: a request may choose a sender configured at start-up
    /// (`WEBHOOK_SENDER`), never bring a key or a key file of its own — even the right one.
    @Test func requestsChooseAmongConfiguredSecretsNeverBringTheirOwn() throws {
        let directory = NSTemporaryDirectory() + "webhook-senders-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "\(Contract.secret)\n".write(toFile: directory + "/hedera.secret", atomically: true, encoding: .utf8)
        try "another-secret-0123\n".write(toFile: directory + "/other.secret", atomically: true, encoding: .utf8)
        let server = try FastCGIServerProcess(.ownSocket, environment: [:], arguments: ["--secrets-dir", directory])
        let row = Contract.rows.first { $0.status == 200 }!
        #expect(try server.send(row).status == 500)  // no standard secret configured
        #expect(try server.send(row, params: ["WEBHOOK_SENDER": "hedera"]).status == 200)
        #expect(try server.send(row, params: ["WEBHOOK_SENDER": "other"]).status == 400)
        #expect(try server.send(row, params: ["WEBHOOK_SENDER": "nobody"]).status == 500)
        #expect(try server.send(row, params: ["WEBHOOK_SENDER": "../hedera"]).status == 500)
        for param in ["API_SECRET_KEY", "API_SECRET_KEY_PREVIOUS"] {
            #expect(try server.send(row, params: ["WEBHOOK_SENDER": "hedera", param: Contract.secret]).status == 500)
        }
        #expect(try server.send(row, params: ["API_SECRET_KEY_FILE": directory + "/hedera.secret"]).status == 500)
        #expect(server.stop() == 0)
        #expect(server.log.contains("senders from \(directory): hedera, other"))
        #expect(server.log.contains("secrets cannot come with a request"))
        #expect(!server.log.contains(Contract.secret))
    }

    /// SIGTERM while a body is still arriving: that request is answered correctly, then the server exits 0.
    @Test func sigtermLetsTheRequestInFlightFinish() throws {
        let server = try FastCGIServerProcess(.ownSocket, workers: 1)
        let body = Array(Contract.seedPayload)
        let row = ContractRow(name: "in flight", signature: Contract.seedSignature, body: body, status: 200)
        let pid = server.process.processIdentifier
        let response = try server.send(row) {
            usleep(200_000)
            kill(pid, SIGTERM)
            usleep(300_000)
        }
        try row.check(response)
        server.process.waitUntilExit()
        #expect(server.process.terminationStatus == 0)
        #expect(server.log.contains("SIGTERM: stopping"))
    }

    /// A client that stops half-way through its body holds one worker, never the others.
    @Test func aStalledUploadDoesNotBlockOtherRequests() throws {
        let server = try FastCGIServerProcess(.ownSocket, workers: 2)
        let row = Contract.rows.first { $0.status == 200 }!
        do {
            let stalled = try RawFastCGIClient(socket: server.socket)
            stalled.start(params: row.params(), body: Array(row.body.prefix(10)))
            let started = Date()
            for _ in 0..<3 { #expect(try server.send(row).status == 200) }
            #expect(Date().timeIntervalSince(started) < 2)
        }  // the stalled client hangs up here, so its worker can stop
        #expect(server.stop() == 0)
    }

    /// ...and is dropped after --read-timeout-seconds with a 400, freeing its worker.
    @Test func aStalledUploadTimesOut() throws {
        let server = try FastCGIServerProcess(.ownSocket, workers: 1, arguments: ["--read-timeout-seconds", "1"])
        let row = Contract.rows.first { $0.status == 200 }!
        let stalled = try RawFastCGIClient(socket: server.socket)
        stalled.start(params: row.params(), body: Array(row.body.prefix(10)))
        let started = Date()
        #expect(try server.send(row).status == 200)   // served by the same, only worker, once it is free
        let waited = Date().timeIntervalSince(started)
        #expect(waited > 0.5 && waited < 5, "waited \(waited) s")
        let answer = try CGIResponse(stalled.response())
        #expect(answer.status == 400)
        #expect(answer.body.contains("request body ended after 10 of \(row.body.count) bytes"))
        #expect(server.stop() == 0)
    }

    /// A worker that dies is replaced; the server keeps answering.
    @Test func aKilledWorkerIsReplaced() throws {
        let server = try FastCGIServerProcess(.ownSocket, workers: 2)
        let victim = try #require(server.workerPIDs.first)
        kill(victim, SIGKILL)
        try waitFor("a replacement worker") { server.workerPIDs.count == 2 && !server.workerPIDs.contains(victim) }
        let row = Contract.rows.first { $0.status == 200 }!
        for _ in 0..<4 { #expect(try server.send(row).status == 200) }
        #expect(server.log.contains("worker \(victim) was killed by signal 9; starting another"))
        #expect(server.stop() == 0)
    }

    /// A secret that is named but unusable stops a FastCGI server at start-up, with the reason.
    @Test(arguments: [
        (["API_SECRET_KEY": "123456789"], "API_SECRET_KEY is shorter than 10 characters"),
        (["API_SECRET_KEY_FILE": "/nonexistent/secret"], "cannot read API_SECRET_KEY_FILE /nonexistent/secret"),
    ])
    func unusableSecretAtStartUpExits1(_ environment: [String: String], message: String) throws {
        let socket = NSTemporaryDirectory() + "webhook-never-\(UUID().uuidString.prefix(8)).sock"
        let finished = try Programs.run(Programs.handler, ["--listen", socket], environment: environment)
        #expect(finished.status == 1)
        #expect(finished.stderr.contains("cannot serve: \(message)"))
        #expect(!finished.stderr.contains("123456789\""))
        #expect(!FileManager.default.fileExists(atPath: socket))
    }

    @Test func aSecretFileOthersCanReadIsWarnedAbout() throws {
        let file = try TemporaryFile(contents: Contract.secret, mode: 0o644)
        let server = try FastCGIServerProcess(.ownSocket, workers: 1, environment: ["API_SECRET_KEY_FILE": file.path])
        #expect(server.stop() == 0)
        #expect(server.log.contains("level=warning pid="))
        #expect(server.log.contains("\(file.path) is readable by group or others (mode 0644); chmod 600 it"))
    }

    @Test func refusesToReplaceAFileThatIsNotASocket() throws {
        let file = try TemporaryFile(contents: "precious")
        let finished = try Programs.run(Programs.handler, ["--listen", file.path],
                                        environment: ["API_SECRET_KEY": Contract.secret])
        #expect(finished.status == 1)
        #expect(finished.stderr.contains("refusing to replace"))
        #expect(try String(contentsOfFile: file.path, encoding: .utf8) == "precious")
    }
}

final class Statuses: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int] = []
    func record(_ status: Int) { lock.withLock { values.append(status) } }
    var all: [Int] { lock.withLock { values } }
}
