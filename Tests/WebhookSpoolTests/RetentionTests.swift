import Foundation
import Testing

@testable import WebhookSpool

/// `cur/`'s retention on a real file system: what a setting may be, what a prune removes and leaves, and how often
/// the services prune.
@Suite struct RetentionTests {
    let root = NSTemporaryDirectory() + "webhook-retention-\(UUID().uuidString.prefix(8))"
    var spool: Spool { Spool(directory: root + "/spool") }

    @Test(arguments: [
        ("7", 7.0 * 86400), ("0.5", 43200), ("0.042", 0.042 * 86400), ("0", nil), ("off", nil), ("OFF", nil),
    ] as [(String, Double?)])
    func readsDaysOrForever(text: String, seconds: Double?) {
        #expect(CurRetention(days: text) == CurRetention(seconds: seconds))
    }

    @Test(arguments: ["", "abc", "-1", "0.01", "nan", "inf", "7d", " 7"])
    func refusesAnythingElseOrUnderAnHour(text: String) {
        #expect(CurRetention(days: text) == nil)
    }

    @Test func describesItselfForTheLog() {
        #expect(CurRetention.default.description == "7 days")
        #expect(CurRetention(days: "1")?.description == "1 day")
        #expect(CurRetention(days: "2.5")?.description == "2.5 days")
        #expect(CurRetention(days: "0.5")?.description == "12 hours")
        #expect(CurRetention(days: "0.042")?.description == "1 hour")
        #expect(CurRetention.forever.description == "forever")
    }

    /// A file `SUBDIRECTORY/NAME` last modified `days` ago.
    func file(_ path: String, daysOld days: Double) throws {
        let name = spool.directory + "/" + path
        try Data("x".utf8).write(to: URL(fileURLWithPath: name))
        let then = Date(timeIntervalSinceNow: -days * 86400)
        try FileManager.default.setAttributes([.modificationDate: then], ofItemAtPath: name)
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: spool.directory + "/" + path) }

    @Test func prunesOnlyOldRegularFilesInCur() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try spool.prepare()
        for path in ["cur/a", "cur/b", "cur/.a.recovered", "new/c", "tmp/d"] { try file(path, daysOld: 10) }
        try file("cur/fresh", daysOld: 0.5)
        try FileManager.default.createDirectory(atPath: spool.path("cur", "folder"), withIntermediateDirectories: false)
        let pruned = try spool.pruneTaken(olderThan: 86400, limit: 1)
        #expect(pruned.removed == 1 && pruned.more)  // it stops at its limit: what it kept depends on the order
        let rest = try spool.pruneTaken(olderThan: 86400)
        #expect(rest.removed == 1 && !rest.more && rest.kept == 1 && rest.bytes > 0)
        #expect(!exists("cur/a") && !exists("cur/b"))
        #expect(["cur/.a.recovered", "cur/fresh", "cur/folder", "new/c", "tmp/d"].allSatisfy(exists))
    }

    @Test func theServicesPruneAtMostOnceEveryFiveMinutes() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var spool = spool
        spool.takenRetention = CurRetention(days: "1")!
        try spool.prepare()
        try file("cur/a", daysOld: 2)
        #expect(!spool.pruneTakenIfDue())
        #expect(!exists("cur/a"))
        try file("cur/b", daysOld: 2)
        spool.pruneTakenIfDue()
        #expect(exists("cur/b"))  // the last prune was just now
        let stamp = spool.directory + "/.cur-pruned"
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -301)], ofItemAtPath: stamp)
        spool.pruneTakenIfDue()
        #expect(!exists("cur/b"))
        spool.takenRetention = .forever
        try file("cur/c", daysOld: 2)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -301)], ofItemAtPath: stamp)
        spool.pruneTakenIfDue()
        #expect(exists("cur/c"))
    }
}
