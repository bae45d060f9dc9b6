import CLinux
import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// One slot of the journal's log file, as bytes: its header, its records, and naming the payloads they hold. Both
/// the worker that owns the slot (``Journal``) and the process that names payloads (``Namer``) read it this way.
struct JournalSlot {
    static let size = 64 << 20
    static let headerSize = 4096
    static let recordHeaderSize = 16
    private static let magic = Array("WHJRNL01".utf8)
    /// In place of a boot id: a checkpoint failed, so recovery trusts nothing the files hold (``Trust/nothing``).
    static let checkpointFailed = Array("checkpoint failed".utf8)
    private static let headerLength = magic.count + 8 + 36 + 4

    let fd: Int32
    let index: Int
    var base: Int { index * Self.size }

    /// `count` bytes at `offset` from the slot's start, or nil if the file ends before them. A read that fails
    /// (EIO: the disk) throws: it is never taken for the end of the log, which would retire the records after it.
    func read(_ count: Int, at offset: Int) throws(SystemError) -> [UInt8]? {
        guard count >= 0, offset >= 0, offset + count <= Self.size else { return nil }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                retryingOnInterrupt { pread(fd, buffer.baseAddress! + done, count - done, off_t(base + offset + done)) }
            }
            if got < 0 { throw SystemError(operation: "read journal slot \(index) at \(offset + done)", code: errno) }
            if got == 0 { return nil }
            done += got
        }
        return bytes
    }

    /// Writes `bytes` at `offset` from the slot's start; the `errno` of a failure, or nil.
    func write(_ bytes: [UInt8], at offset: Int) -> Int32? { writeAll(fd, bytes, at: base + offset) }

    /// The header's generation and boot id, if the header is whole.
    func header() throws(SystemError) -> (generation: UInt64, boot: [UInt8])? {
        guard let header = try read(Self.headerLength, at: 0), header.starts(with: Self.magic),
              CRC32C.checksum(header.dropLast(4)) == header.littleEndian(UInt32.self, at: header.count - 4)
        else { return nil }
        return (header.littleEndian(UInt64.self, at: 8), Array(header[16..<52].prefix { $0 != 0 }))
    }

    static func header(generation: UInt64, boot: [UInt8]) -> [UInt8] {
        var header = magic
        header.appendLittleEndian(generation)
        header += boot.prefix(36) + [UInt8](repeating: 0, count: 36 - min(36, boot.count))
        header.appendLittleEndian(CRC32C.checksum(header))
        return header
    }

    static func record(id: String, content: [UInt8], generation: UInt64) -> [UInt8] {
        var record: [UInt8] = []
        record.reserveCapacity(recordHeaderSize + 2 + id.utf8.count + content.count)
        record.appendLittleEndian(UInt32(2 + id.utf8.count + content.count))
        record.appendLittleEndian(UInt32(0))  // the checksum, below
        record.appendLittleEndian(generation)
        record.appendLittleEndian(UInt16(id.utf8.count))
        record += id.utf8
        record += content
        let crc = CRC32C.checksum(record[8...])
        for index in 0..<4 { record[4 + index] = UInt8(truncatingIfNeeded: crc >> (8 * index)) }
        return record
    }

    /// The record at `offset` if it is whole and of `generation`: its id, content and size. A wrong length,
    /// checksum, generation or id ends the log there: a torn or corrupted record is never delivered.
    func record(at offset: Int, generation: UInt64) throws(SystemError) -> (id: String, content: [UInt8], size: Int)? {
        guard let head = try read(Self.recordHeaderSize, at: offset) else { return nil }
        let length = Int(head.littleEndian(UInt32.self, at: 0))
        guard length >= 2, head.littleEndian(UInt64.self, at: 8) == generation,
              let rest = try read(length, at: offset + Self.recordHeaderSize),
              CRC32C.checksum(rest, continuing: CRC32C.checksum(head[8...])) == head.littleEndian(UInt32.self, at: 4)
        else { return nil }
        let idLength = Int(rest.littleEndian(UInt16.self, at: 0))
        guard 2 + idLength <= rest.count else { return nil }
        let id = String(decoding: rest[2..<(2 + idLength)], as: UTF8.self)
        guard Receipt.isWellFormed(id) else { return nil }
        return (id, Array(rest[(2 + idLength)...]), Self.recordHeaderSize + length)
    }

    /// What a recovery may believe of the files already named from a slot's records.
    enum Trust {
        /// The same boot as the slot's last checkpoint: a process crash loses no page cache, so a file that is
        /// there (in `new/`, or `cur/` once a consumer took it) is whole.
        case names
        /// Another boot, or one that could not be told: unsynced files may be empty, short or gone, so each is
        /// compared with its record (in `new/` and in `cur/`) and written again if it differs.
        case contents
        /// A checkpoint failed to make the files durable (its sync reported a write-back error, which the kernel
        /// reports once): the page cache may hold bytes the disk never got, so every file is written again and
        /// synced, whatever it reads like now.
        case nothing
    }

    /// Names `new/ID` for every record from `offset` up to `end` (or to the end of the log; at most `limit`
    /// records), unless `cur/` or `new/` has it, as `trust` allows. Returns where it stopped and how many it
    /// named or wrote again. A read that fails throws: what follows it is not the end of the log.
    func name(in spool: Spool, from offset: Int, to end: Int? = nil, generation: UInt64, trust: Trust = .names,
              limit: Int = .max) throws(SystemError) -> (reached: Int, named: Int)
    {
        var offset = offset
        var (named, read) = (0, 0)
        while read < limit, end.map({ offset < $0 }) ?? true,
              let (id, content, size) = try record(at: offset, generation: generation) {
            offset += size
            read += 1
            let taken = spool.contains(id, in: "cur")
            switch trust {
            case .names:
                if taken { continue }
                if try spool.link(content, as: id, sync: false) { named += 1 }
            case .contents:
                let subdirectory = taken ? "cur" : "new"
                if spool.contents(of: id, in: subdirectory) == content { continue }
                try spool.replace(id, in: subdirectory, with: content, sync: false)
                named += 1
            case .nothing:
                try spool.replace(id, in: taken ? "cur" : "new", with: content, sync: true)
                named += 1
            }
        }
        return (offset, named)
    }

    /// The ids of the records from `offset` up to `end`.
    func ids(from offset: Int, to end: Int, generation: UInt64) throws(SystemError) -> [String] {
        var (offset, ids) = (offset, [String]())
        while offset < end, let (id, _, size) = try record(at: offset, generation: generation) {
            ids.append(id)
            offset += size
        }
        return ids
    }

    /// The lock that keeps the namer and the slot's checkpoint apart (byte 1 of the slot; byte 0 is its owner's).
    func lockNaming(wait: Bool) -> Bool { clinux_lock_range(fd, Int64(base + 1), 1, true, wait) == 0 }
    func unlockNaming() { _ = clinux_lock_range(fd, Int64(base + 1), 1, false, false) }
}

extension [UInt8] {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension Collection<UInt8> where Index == Int {
    func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value = T.zero
        for index in (0..<MemoryLayout<T>.size).reversed() { value = value << 8 | T(self[startIndex + offset + index]) }
        return value
    }
}
