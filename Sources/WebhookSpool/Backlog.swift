import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// What waits in a spool: payloads in `new/` for a consumer, and how much room the file system has left.
public struct SpoolBacklog: Sendable {
    public let waiting: Int
    public let oldestSeconds: Double?
    public let hookFailures: Int
    /// statvfs of the spool: bytes and inodes an unprivileged process may still use, and the totals.
    public let freeBytes: Int
    public let sizeBytes: Int
    public let freeInodes: Int
    public let inodes: Int
}

extension Spool {
    /// How many payloads wait in `new/`, since when, how many of them the hook failed on, and the room left
    /// (only the room, not `countingNew`).
    public func backlog(countingNew: Bool = true) -> SpoolBacklog {
        let names = countingNew ? (try? names(in: "new")) ?? [] : []
        var oldest: Int?
        for name in names {
            var status = stat()
            if stat(path("new", name), &status) == 0 { oldest = min(oldest ?? Int.max, status.st_mtim.tv_sec) }
        }
        let failures = countingNew ? ((try? self.names(in: ".hook-failed")) ?? []).count : 0
        var fs = statvfs()
        if statvfs(directory, &fs) != 0 { fs = statvfs() }
        let block = Int(fs.f_frsize)
        return SpoolBacklog(waiting: names.count, oldestSeconds: oldest.map { Double(max(0, time(nil) - $0)) },
                            hookFailures: failures, freeBytes: Int(fs.f_bavail) * block,
                            sizeBytes: Int(fs.f_blocks) * block, freeInodes: Int(fs.f_favail), inodes: Int(fs.f_files))
    }
}

/// Payloads answered 200 whose records are durable in the journal but not yet named in `new/` (``Namer``): read
/// from the journal board's positions (named up to, durable up to) and the records between them.
package struct JournalBacklog {
    package let unnamed: Int
    /// Age of the oldest unnamed payload, from its envelope's receive time.
    package let oldestSeconds: Double?

    package init(spool: Spool, board: JournalBoard) {
        var (count, oldest) = (0, Double?.none)
        let fd = open(Journal.path(of: spool), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        defer { if fd >= 0 { close(fd) } }
        for index in 0..<board.slotsInUse where fd >= 0 {
            var offset = board.named(index)
            let end = board.durable(index)
            let slot = JournalSlot(fd: fd, index: index)
            var first = true
            // Hops from record to record by their lengths: between the two positions every record is whole (a
            // checkpoint may reset the slot meanwhile; then this count is a moment old, as any gauge).
            while offset < end, let head = try? slot.read(JournalSlot.recordHeaderSize, at: offset) {
                let length = Int(head.littleEndian(UInt32.self, at: 0))
                guard length >= 2 else { break }
                if first, let received = Self.receiveTime(slot: slot, at: offset, length: length) {
                    oldest = min(oldest ?? .infinity, received)
                }
                (count, first, offset) = (count + 1, false, offset + JournalSlot.recordHeaderSize + length)
            }
        }
        unnamed = count
        oldestSeconds = oldest.map { max(0, Double(time(nil)) - $0) }
    }

    /// The `received` time of the record at `offset` (its envelope line's), in Unix seconds.
    private static func receiveTime(slot: JournalSlot, at offset: Int, length: Int) -> Double? {
        let start = offset + JournalSlot.recordHeaderSize
        guard let idLength = (try? slot.read(2, at: start)).map({ Int($0.littleEndian(UInt16.self, at: 0)) }),
              let line = try? slot.read(min(length - 2 - idLength, 4096), at: start + 2 + idLength)
        else { return nil }
        let marker = Array(#""received":""#.utf8)
        guard let at = line.firstRange(of: marker)?.upperBound, line.count >= at + 19 else { return nil }
        return unixSeconds(iso8601: String(decoding: line[at..<(at + 19)], as: UTF8.self))
    }

    /// `2026-11-29T09:30:00` (UTC) in Unix seconds.
    static func unixSeconds(iso8601 text: String) -> Double? {
        let fields = text.split(whereSeparator: { "-T:".contains($0) }).compactMap { Int32($0) }
        guard fields.count == 6 else { return nil }
        var parts = tm()
        (parts.tm_year, parts.tm_mon, parts.tm_mday) = (fields[0] - 1900, fields[1] - 1, fields[2])
        (parts.tm_hour, parts.tm_min, parts.tm_sec) = (fields[3], fields[4], fields[5])
        return Double(timegm(&parts))
    }
}
