public import WebhookCore
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// The durable hand-off: each verified payload becomes one file in a maildir-style directory, and only once the
/// file is safely on disk does the sender get its 200.
///
///     DIR/tmp/  files being written (a crashed writer's leftovers are removed on start-up)
///     DIR/new/  complete payloads waiting for a consumer, named by the hex SHA-256 of the body
///     DIR/cur/  where a consumer may move a payload it has taken (or it deletes it)
///
/// A file is written into `tmp/`, fsynced, hard-linked into `new/` (which refuses to replace an existing name, so
/// two deliveries of the same bytes store one file), and `new/` is fsynced. A crash at any point leaves either
/// nothing in `new/` or a complete file there.
///
/// Each file is one envelope line of JSON (id, receive time, remote address, content type, body length), a newline,
/// then the body's bytes exactly as received. It never holds the signature or the secret.
public struct Spool: Sendable {
    public static let subdirectories = ["tmp", "new", "cur"]

    public let directory: String
    /// Directories 0750 and files 0640 (for a consumer in the handler's group) instead of 0700 and 0600.
    public let groupReadable: Bool

    public init(directory: String, groupReadable: Bool = false) {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.groupReadable = groupReadable
    }

    var directoryMode: mode_t { groupReadable ? 0o750 : 0o700 }
    var fileMode: mode_t { groupReadable ? 0o640 : 0o600 }

    func path(_ subdirectory: String, _ name: String = "") -> String {
        name.isEmpty ? "\(directory)/\(subdirectory)" : "\(directory)/\(subdirectory)/\(name)"
    }

    /// Creates the directories as needed and removes the files in `tmp/` whose writer is gone.
    /// Returns how many it removed.
    @discardableResult
    public func prepare() throws(SystemError) -> Int {
        for path in [directory] + Self.subdirectories.map({ path($0) }) {
            if mkdir(path, directoryMode) == 0 {
                try check("chmod \(path)", chmod(path, directoryMode))
            } else if errno != EEXIST {
                throw SystemError(operation: "create spool directory \(path)", code: errno)
            }
        }
        return try names(in: "tmp").filter { removeIfAbandoned(path("tmp", $0)) }.count
    }

    /// A writer holds an exclusive `flock` on its `tmp/` file until the file is linked into `new/`, and the kernel
    /// drops it when the writer dies, however it dies. A file whose lock can be taken is abandoned.
    private func removeIfAbandoned(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return false }
        return unlink(path) == 0
    }

    /// Stores a verified body: `.stored` once it is durable (or was already there), `.storageFailed` otherwise.
    public func store(_ body: [UInt8], envelope: Envelope) -> Outcome {
        let id = envelope.id
        if exists(path("new", id)) || exists(path("cur", id)) { return .stored(Receipt(id: id, duplicate: true)) }
        do {
            let temporary = try write(Array(envelope.line.utf8), body, named: id)
            defer { unlink(temporary) }
            if link(temporary, path("new", id)) != 0 {
                if errno == EEXIST { return .stored(Receipt(id: id, duplicate: true)) }
                throw SystemError(operation: "link into \(path("new"))", code: errno)
            }
            try syncDirectory(path("new"))
            return .stored(Receipt(id: id, duplicate: false))
        } catch {
            return .storageFailed("spool \(directory): \(error)")
        }
    }

    /// Writes `header` then `body` to a new file in `tmp/`, fsynced, and returns its path. The file is locked
    /// while written (see ``removeIfAbandoned(_:)``); should a cleaner have removed it before the lock was taken,
    /// a fresh file is made.
    private func write(_ header: [UInt8], _ body: [UInt8], named id: String) throws(SystemError) -> String {
        var attempt = 0
        while true {
            attempt += 1
            let path = path("tmp", "\(id).\(getpid()).\(Clock.nanosecondsSinceEpoch())")
            let flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC
            let fd = try check("create \(path)", retryingOnInterrupt { open(path, flags, fileMode) })
            var closed = false
            defer { if !closed { close(fd) } }
            try check("lock \(path)", retryingOnInterrupt { flock(fd, LOCK_EX) })
            var status = stat()
            try check("stat \(path)", fstat(fd, &status))
            if status.st_nlink == 0 && attempt < 3 { continue }
            do throws(SystemError) {
                try check("chmod \(path)", fchmod(fd, fileMode))  // exact, whatever the umask
                for part in [header, body] {
                    if let failure = writeAll(fd, part) { throw SystemError(operation: "write \(path)", code: failure) }
                }
                try check("fsync \(path)", fsync(fd))
                closed = true
                try check("close \(path)", close(fd))
                return path
            } catch {
                unlink(path)
                throw error
            }
        }
    }

    private func syncDirectory(_ path: String) throws(SystemError) {
        let fd = try check("open \(path)", open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        defer { close(fd) }
        try check("fsync \(path)", fsync(fd))
    }

    private func exists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }

    /// The names of the regular entries in a subdirectory, sorted.
    func names(in subdirectory: String) throws(SystemError) -> [String] {
        guard let stream = opendir(path(subdirectory)) else {
            throw SystemError(operation: "read \(path(subdirectory))", code: errno)
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted()
    }

}

/// The first line of a spool file: what a consumer needs besides the body, as one JSON object.
public struct Envelope: Sendable, Equatable {
    public let id: String
    /// UTC, ISO 8601 with milliseconds.
    public let received: String
    public let remoteAddress: String?
    public let contentType: String?
    public let length: Int

    /// `id` defaults to the SHA-256 of the body.
    public init(body: [UInt8], id: String? = nil, received: String = Clock.utcTimestamp(milliseconds: true),
                remoteAddress: String?, contentType: String?) {
        self.id = id ?? Receipt.id(of: body)
        self.received = received
        self.remoteAddress = remoteAddress
        self.contentType = contentType
        self.length = body.count
    }

    /// `{"id":"…","received":"…","remote_addr":"…","content_type":"…","length":N}` and a newline.
    public var line: String {
        var fields = [#""id":"\#(id)""#, #""received":"\#(received)""#]
        fields.append(#""remote_addr":"# + (remoteAddress.map { JSON.quoted($0) } ?? "null"))
        fields.append(#""content_type":"# + (contentType.map { JSON.quoted($0) } ?? "null"))
        fields.append(#""length":\#(length)"#)
        return "{" + fields.joined(separator: ",") + "}\n"
    }
}

extension Spool {
    /// The envelope lines of the payloads in `new/`, oldest name first.
    public func waiting() throws(SystemError) -> [String] {
        try names(in: "new").map { name in
            let line = SecretSource.readSmallFile(path("new", name), limit: 4096).map { bytes in
                String(decoding: bytes.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            }
            return line ?? #"{"id":"\#(name)","unreadable":true}"#
        }
    }

    /// The ids of the payloads in `new/`.
    public func waitingIDs() throws(SystemError) -> [String] {
        try names(in: "new")
    }

    /// `new: N (B bytes)`, `cur: N`, `tmp: N` — one line each.
    public func statistics() throws(SystemError) -> String {
        var lines: [String] = []
        for subdirectory in ["new", "cur", "tmp"] {
            let names = try names(in: subdirectory)
            var bytes = 0
            for name in names {
                var status = stat()
                if stat(path(subdirectory, name), &status) == 0 { bytes += Int(status.st_size) }
            }
            lines.append("\(subdirectory): \(names.count) files, \(bytes) bytes")
        }
        return "spool \(directory)\n" + lines.joined(separator: "\n")
    }
}

extension Spool {
    /// Waits for one of `count` hook slots (`DIR/.hook-slots/N`, held with `flock`) and returns its descriptor,
    /// which holds the slot until closed; -1 if slots cannot be used (then the hook runs unthrottled).
    func acquireHookSlot(of count: Int) -> Int32 {
        let slots = "\(directory)/.hook-slots"
        if mkdir(slots, directoryMode) != 0 && errno != EEXIST { return -1 }
        let descriptors = (0..<count).map { open("\(slots)/\($0)", O_RDONLY | O_CREAT | O_CLOEXEC, fileMode) }
        defer { for fd in descriptors where fd >= 0 { close(fd) } }
        let free = descriptors.firstIndex { $0 >= 0 && flock($0, LOCK_EX | LOCK_NB) == 0 }
            ?? descriptors.indices.randomElement().flatMap { index in
                retryingOnInterrupt { flock(descriptors[index], LOCK_EX) } == 0 ? index : nil
            }
        return free.map { dup(descriptors[$0]) } ?? -1
    }
}

extension Envelope: Decodable {
    enum CodingKeys: String, CodingKey {
        case id, received, length
        case remoteAddress = "remote_addr"
        case contentType = "content_type"
    }

    /// Reads the envelope line of a spool file, leaving `fd` positioned at the body.
    static func read(from fd: Int32) -> Envelope? {
        var head = [UInt8](repeating: 0, count: 8192)
        let count = head.withUnsafeMutableBytes { buffer in retryingOnInterrupt { Glibc.read(fd, buffer.baseAddress, buffer.count) } }
        guard count > 0, let newline = head[..<count].firstIndex(of: UInt8(ascii: "\n")),
              lseek(fd, off_t(newline + 1), SEEK_SET) == newline + 1
        else { return nil }
        return try? JSONDecoder().decode(Envelope.self, from: Data(head[..<newline]))
    }
}
