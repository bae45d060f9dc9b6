import Foundation
import Testing
import WebhookCore

@testable import WebhookSpool

/// The journal on a real file system, without a server: no board (each record syncs on its own) and no namer, so
/// what names a payload is a checkpoint or a recovery.
@Suite struct JournalTests {
    let root = NSTemporaryDirectory() + "webhook-journal-\(UUID().uuidString.prefix(8))"
    var spool: Spool { Spool(directory: root + "/spool") }

    init() throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try spool.prepare()
    }

    func body(_ n: Int) -> [UInt8] { Array(#"{"n":\#(n),"pad":"\#(String(repeating: "x", count: 100 * n))"}"#.utf8) }

    func store(_ bodies: [[UInt8]], through journal: Journal) -> [String] {
        bodies.map { body in
            let envelope = Envelope(body: body, received: "2026-11-30T10:00:00.000Z", remoteAddress: nil, contentType: nil)
            #expect(spool.store(body, envelope: envelope, journal: journal).receipt?.id == envelope.id)
            return envelope.id
        }
    }

    func named(_ id: String, _ body: [UInt8]) -> Bool {
        guard let file = spool.contents(of: id), let newline = file.firstIndex(of: UInt8(ascii: "\n")) else { return false }
        return Array(file[(newline + 1)...]) == body
    }

    @Test func aRecordIsDurableBeforeItIsNamedAndACheckpointNamesIt() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let journal = try Journal.acquire(for: spool, board: nil)
        let bodies = (1...3).map(body)
        let ids = store(bodies, through: journal)
        #expect(try spool.names(in: "new").isEmpty)  // no namer here: only recorded
        #expect(journal.pendingSince != nil)
        try journal.checkpoint()
        #expect(zip(ids, bodies).allSatisfy(named))
        #expect(journal.pendingSince == nil)
    }

    @Test func whatADeadWorkerLeftIsRecoveredOnce() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        var journal: Journal? = try Journal.acquire(for: spool, board: nil)
        let bodies = (1...3).map(body)
        let ids = store(bodies, through: journal!)
        journal = nil  // the worker dies: its slot's lock goes with its descriptor
        #expect(try spool.recoverJournal() == 3)
        #expect(zip(ids, bodies).allSatisfy(named))
        #expect(try spool.recoverJournal() == 0)  // checkpointed: nothing left to name
    }

    @Test func aCorruptedRecordEndsTheLogAndIsNeverNamed() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        var journal: Journal? = try Journal.acquire(for: spool, board: nil)
        let bodies = (1...3).map(body)
        let ids = store(bodies, through: journal!)
        journal = nil
        // One bit of the second record's body, as a torn or decayed write would leave it.
        let log = try FileHandle(forUpdating: URL(fileURLWithPath: Journal.path(of: spool)))
        let envelope = Envelope(body: bodies[0], received: "2026-11-30T10:00:00.000Z", remoteAddress: nil, contentType: nil)
        let first = JournalSlot.record(id: ids[0], content: Array(envelope.line.utf8) + bodies[0], generation: 0).count
        try log.seek(toOffset: UInt64(JournalSlot.headerSize + first + 200))
        let byte = try #require(log.readData(ofLength: 1).first)
        try log.seek(toOffset: UInt64(JournalSlot.headerSize + first + 200))
        log.write(Data([byte ^ 0x01]))
        try log.close()
        #expect(try spool.recoverJournal() == 1)
        #expect(named(ids[0], bodies[0]))
        #expect(spool.contents(of: ids[1]) == nil && spool.contents(of: ids[2]) == nil)
    }

    @Test func twoWorkersTakeTwoSlots() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try Journal.acquire(for: spool, board: nil)
        let second = try Journal.acquire(for: spool, board: nil)
        #expect(first.description != second.description)
        #expect(try spool.recoverJournal() == 0)  // both held: nothing to recover
    }

    @Test func recordsAndHeadersReadBackAsWritten() throws {
        let record = JournalSlot.record(id: String(repeating: "a", count: 64), content: Array("{}\nbody".utf8), generation: 7)
        let path = root + "/slot"
        _ = FileManager.default.createFile(atPath: path, contents: Data(JournalSlot.header(generation: 7, boot: Array("boot".utf8))
            + [UInt8](repeating: 0, count: JournalSlot.headerSize - 56) + record))
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let slot = JournalSlot(fd: fd, index: 0)
        let header = try #require(try slot.header())
        #expect(header.generation == 7 && header.boot == Array("boot".utf8))
        let read = try #require(try slot.record(at: JournalSlot.headerSize, generation: 7))
        #expect(read.id == String(repeating: "a", count: 64) && read.content == Array("{}\nbody".utf8) && read.size == record.count)
        #expect(try slot.record(at: JournalSlot.headerSize, generation: 8) == nil)  // another generation: not this log's
        #expect(try slot.record(at: JournalSlot.headerSize + record.count, generation: 7) == nil)  // zeros: the end
    }
}
