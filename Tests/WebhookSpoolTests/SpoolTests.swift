import Foundation
import Testing
import WebhookCore

@testable import WebhookSpool

/// The spool on a real file system (a private temporary directory per test).
@Suite struct SpoolTests {
    let root = NSTemporaryDirectory() + "webhook-spool-\(UUID().uuidString.prefix(8))"
    var spool: Spool { Spool(directory: root + "/spool") }
    let body = Array(#"{"reference":"test","n":1}"#.utf8)

    init() throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func envelope(_ body: [UInt8]) -> Envelope {
        Envelope(body: body, received: "2026-11-29T10:00:00.000Z", remoteAddress: "192.0.2.7",
                 contentType: "application/json")
    }

    func contents(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func mode(_ path: String) throws -> Int {
        try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! Int
    }

    @Test func storesOneFileNamedByTheBodysSHA256() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try spool.prepare()
        let outcome = spool.store(body, envelope: envelope(body))
        let id = Receipt.id(of: body)
        #expect(outcome == .stored(Receipt(id: id, duplicate: false)))
        #expect(outcome.jsonBody == #"{"verified":true,"id":"\#(id)","duplicate":false}"#)
        #expect(try spool.names(in: "new") == [id])
        #expect(try spool.names(in: "tmp").isEmpty)

        let file = try contents(spool.path("new", id))
        let newline = try #require(file.firstIndex(of: UInt8(ascii: "\n")))
        let meta = try JSONSerialization.jsonObject(with: Data(file[..<newline])) as! [String: Any]
        #expect(meta["id"] as? String == id)
        #expect(meta["received"] as? String == "2026-11-29T10:00:00.000Z")
        #expect(meta["remote_addr"] as? String == "192.0.2.7")
        #expect(meta["content_type"] as? String == "application/json")
        #expect(meta["length"] as? Int == body.count)
        #expect(Array(file[(newline + 1)...]) == body)
    }

    @Test func theSameBytesAreStoredOnce() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try spool.prepare()
        _ = spool.store(body, envelope: envelope(body))
        let again = spool.store(body, envelope: envelope(body))
        #expect(again.receipt?.duplicate == true)
        #expect(again.jsonBody.hasSuffix(#","duplicate":true}"#))
        #expect(try spool.names(in: "new").count == 1)
        // Still a duplicate once a consumer has moved it to cur/ (keeping its name).
        let id = Receipt.id(of: body)
        try FileManager.default.moveItem(atPath: spool.path("new", id), toPath: spool.path("cur", id))
        #expect(spool.store(body, envelope: envelope(body)).receipt?.duplicate == true)
        #expect(try spool.names(in: "new").isEmpty)
        // Different bytes are a different payload.
        #expect(spool.store(body + [0x20], envelope: envelope(body + [0x20])).receipt?.duplicate == false)
    }

    @Test func privateByDefaultGroupReadableOnRequest() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let saved = umask(0o077)
        defer { umask(saved) }
        for (spool, directoryMode, fileMode) in [(spool, 0o700, 0o600),
                                                 (Spool(directory: root + "/shared", groupReadable: true), 0o750, 0o640)] {
            try spool.prepare()
            let id = try #require(spool.store(body, envelope: envelope(body)).receipt?.id)
            for subdirectory in ["", "/tmp", "/new", "/cur"] {
                #expect(try mode(spool.directory + subdirectory) == directoryMode)
            }
            #expect(try mode(spool.path("new", id)) == fileMode)
        }
    }

    @Test func aFailureToStoreIs503AndLeavesNothingBehind() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try spool.prepare()
        try FileManager.default.removeItem(atPath: spool.path("new"))
        let outcome = spool.store(body, envelope: envelope(body))
        #expect(outcome.status == .serviceUnavailable)
        #expect(outcome.headers.contains { $0 == ("Retry-After", "30") })
        #expect(outcome.jsonBody == #"{"reason":"the payload could not be stored; retry later"}"#)
        #expect(outcome.detail?.contains("No such file or directory") == true)
        #expect(try spool.names(in: "tmp").isEmpty)
    }

    @Test func aMissingSpoolIs503() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let outcome = Spool(directory: root + "/never/made").store(body, envelope: envelope(body))
        #expect(outcome.status == .serviceUnavailable)
    }

    /// Nothing is ever half-written under a name: the file is unnamed until complete, so tmp/ is never used.
    @Test func storingLeavesNothingInTmp() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try spool.prepare()
        try spool.checkUnnamedFiles()
        for index in 0..<5 { _ = spool.store(body + [UInt8(index)], envelope: envelope(body + [UInt8(index)])) }
        #expect(try spool.names(in: "new").count == 5)
        #expect(try spool.names(in: "tmp").isEmpty)
    }

    /// A Content-Type of control characters escapes to six bytes each: the envelope line is read back whole, by
    /// the hook's reader and by `spool list`, however long.
    @Test func aLongEnvelopeLineIsReadBackWhole() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try spool.prepare()
        let contentType = String(repeating: "\u{1}", count: 8000)
        let envelope = Envelope(body: body, received: "t", remoteAddress: nil, contentType: contentType,
                                sender: "github", scheme: "github")
        #expect(envelope.line.utf8.count > 48_000)
        let id = try #require(spool.store(body, envelope: envelope).receipt?.id)
        let fd = open(spool.path("new", id), O_RDONLY)
        defer { close(fd) }
        #expect(Envelope.read(from: fd) == envelope)
        #expect(readAll(fd) == body)
        let listed = try #require(try spool.waiting().first)
        let object = try JSONSerialization.jsonObject(with: Data(listed.utf8)) as! [String: Any]
        #expect(object["content_type"] as? String == contentType)
        #expect(object["sender"] as? String == "github")
    }

    @Test func waitingAndStatistics() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try spool.prepare()
        _ = spool.store(body, envelope: envelope(body))
        let waiting = try spool.waiting()
        #expect(waiting.count == 1)
        #expect(waiting.first?.hasPrefix(#"{"id":"\#(Receipt.id(of: body))""#) == true)
        #expect(try spool.statistics().contains("new: 1 files"))
    }

    @Test func envelopeEscapesWhatClientsControl() throws {
        let line = Envelope(body: [], received: "t", remoteAddress: nil, contentType: "a\"b\n").line
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        #expect(object["content_type"] as? String == "a\"b\n")
        #expect(object["remote_addr"] is NSNull)
        #expect(line.hasSuffix("}\n"))
    }

    /// A file a power cut left short (its name synced, not all its bytes) waits for the journal's recovery: the
    /// hook never runs on it, and it is not marked failed.
    @Test func aHookLeavesAShortFileForRecovery() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try spool.prepare()
        let id = Receipt.id(of: body)
        let whole = Array(envelope(body).line.utf8) + body
        _ = FileManager.default.createFile(atPath: spool.path("new", id), contents: Data(whole.dropLast(5)))
        let ran = root + "/ran"
        let hook = Hook(command: "cat > \(ran)")
        #expect(hook.deliver(id, from: spool) == .busy)
        #expect(!FileManager.default.fileExists(atPath: ran))
        #expect(spool.hookAttempts(id).failures == 0)
        _ = FileManager.default.createFile(atPath: spool.path("new", id), contents: Data(whole))
        #expect(hook.deliver(id, from: spool) == .ran(succeeded: true))
        #expect(try contents(ran) == body)
    }
}
