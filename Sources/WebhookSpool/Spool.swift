public import WebhookCore
import CLinux
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// The durable hand-off: each verified payload becomes one file in a maildir-style directory, and only once the
/// file is safely on disk does the sender get its 200.
///
///     DIR/new/  complete payloads waiting for a consumer, named by their id (below)
///     DIR/cur/  where a consumer moves a payload it has handled (or it deletes it); kept ``takenRetention``
///     DIR/tmp/  kept empty, for maildir readers that expect it
///     DIR/.hook-failed/ID  the last failure of the hook on new/ID (`spool retry` runs it again)
///     DIR/.journal/log  FastCGI workers' write-ahead log (``Journal``): their payloads are durable there before
///                       the 200 and named in `new/` just after; what follows is a CGI's way, and theirs when the
///                       journal is off or has failed
///
/// The protocol, in the order the code follows it (each step names what covers it against a crash):
///  1. open an unnamed file in `new/` (`O_TMPFILE`): until step 3 it has no name, so a crash leaves nothing
///     behind and nobody else can see, take or delete it;
///  2. write the envelope line and the body, `fsync` the file: its bytes are on disk;
///  3. give it its name with `linkat` — which refuses an existing name, so the same payload stored twice (a
///     retry, or two deliveries at once) keeps exactly one file;
///  4. `fsync` the directory `new/`: the name is on disk. Only now is the answer 200.
///     If the sync fails, the name is removed again: nothing a later duplicate could trust is left.
/// A duplicate (step 3 found the name, or it is already in `cur/`) is answered 200 only after it has synced that
/// file and its directory itself: the first writer may not have finished step 4, or may have failed it.
///
/// Each file is one envelope line of JSON (id, receive time, remote address, content type, sender, scheme, body
/// length), a newline, then the body's bytes exactly as received. It never holds the signature or the secret.
public struct Spool: Sendable {
    public static let subdirectories = ["tmp", "new", "cur"]

    public let directory: String
    /// Directories 0750 and files 0640 (for a consumer in the handler's group) instead of 0700 and 0600.
    public let groupReadable: Bool

    /// FastCGI workers store through a ``Journal`` (on by default); off, each payload is synced on its own.
    public let journaled: Bool

    /// How long `cur/` keeps what consumers moved there (``CurRetention``; pruned by the services that fill it).
    public var takenRetention = CurRetention.default

    public init(directory: String, groupReadable: Bool = false, journaled: Bool = true) {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.groupReadable = groupReadable
        self.journaled = journaled
    }

    var directoryMode: mode_t { groupReadable ? 0o750 : 0o700 }
    package var fileMode: UInt32 { groupReadable ? 0o640 : 0o600 }

    /// `DIR/SUBDIRECTORY`, or the file NAME in it.
    public func path(_ subdirectory: String, _ name: String = "") -> String {
        name.isEmpty ? "\(directory)/\(subdirectory)" : "\(directory)/\(subdirectory)/\(name)"
    }

    /// Creates the directories as needed. Nothing is ever left half-written (step 1), so there is nothing to clean.
    public func prepare() throws(SystemError) {
        for path in [directory] + Self.subdirectories.map({ path($0) }) {
            if mkdir(path, directoryMode) == 0 {
                try check("chmod \(path)", chmod(path, directoryMode))
            } else if errno != EEXIST {
                throw SystemError(operation: "create spool directory \(path)", code: errno)
            }
        }
    }

    /// Checks that the file system can do step 1 (NFS and some FUSE file systems cannot); `serve` calls it once at
    /// start-up so that such a spool is refused then, not at the first delivery.
    public func checkUnnamedFiles() throws(SystemError) {
        let fd = open(path("new"), clinux_o_tmpfile() | O_WRONLY | O_CLOEXEC, fileMode)
        guard fd >= 0 else {
            throw SystemError(operation: "create an unnamed file (O_TMPFILE) in \(path("new")); the spool needs a local "
                + "file system such as ext4, xfs, btrfs or tmpfs", code: errno)
        }
        close(fd)
    }

    /// Stores a verified body: `.stored` once it is durable (or was already there and is now synced),
    /// `.storageFailed` otherwise.
    public func store(_ body: [UInt8], envelope: Envelope) -> Outcome {
        store(body, envelope: envelope, journal: nil)
    }

    /// With a FastCGI worker's `journal`, a durable record stands in for the two syncs (see ``Journal``); without
    /// one, or when it has failed, the steps above.
    package func store(_ body: [UInt8], envelope: Envelope, journal: Journal?) -> Outcome {
        let id = envelope.id
        let content = Array(envelope.line.utf8) + body
        do {
            // Journaled: durable once recorded; the namer names new/ID (unless it is there, or in cur/: consumed).
            if let journal, !contains(id, in: "cur") {
                let duplicate = contains(id, in: "new")
                if journal.record(id: id, content: content) { return .stored(Receipt(id: id, duplicate: duplicate)) }
            }
            if try syncExisting(id) { return .stored(Receipt(id: id, duplicate: true)) }
            let name = path("new", id)
            guard try link(content, as: id, sync: true) else {
                if try syncExisting(id) { return .stored(Receipt(id: id, duplicate: true)) }
                throw SystemError(operation: "link \(name)", code: EEXIST)  // it came and went: a consumer took it
            }
            do throws(SystemError) {
                try Self.syncDirectory(path("new"))
            } catch {
                unlink(name)
                throw error
            }
            return .stored(Receipt(id: id, duplicate: false))
        } catch {
            return .storageFailed("spool \(directory): \(error)")
        }
    }

    /// Steps 1-3: an unnamed file in `new/` holding `content` (synced if `sync`), then named `new/ID` (or
    /// `NAME` in `subdirectory`). False when that name was taken.
    func link(_ content: [UInt8], as id: String, in subdirectory: String = "new", sync: Bool) throws(SystemError)
        -> Bool
    {
        let directory = path(subdirectory)
        let fd = try check("create a file in \(directory)",
                           retryingOnInterrupt { open(directory, clinux_o_tmpfile() | O_WRONLY | O_CLOEXEC, fileMode) })
        defer { close(fd) }
        try check("chmod the new file", fchmod(fd, fileMode))  // exact, whatever the umask
        if let failure = writeAll(fd, content) {
            throw SystemError(operation: "write into \(directory)", code: failure)
        }
        if sync { try countingFailure { () throws(SystemError) in try check("fsync the new file", fsync(fd)) } }
        let name = path(subdirectory, id)
        guard linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0 else {
            if errno == EEXIST { return false }
            throw SystemError(operation: "link \(name)", code: errno)
        }
        return true
    }

    /// Recovery's repair: `SUBDIRECTORY/ID` made to hold exactly `content` (synced if `sync`), replaced at once
    /// (a hidden name, then `rename` over it): a consumer sees the old file or the new one, never none.
    func replace(_ id: String, in subdirectory: String, with content: [UInt8], sync: Bool) throws(SystemError) {
        let hidden = ".\(id).recovered"
        unlink(path(subdirectory, hidden))
        guard try link(content, as: hidden, in: subdirectory, sync: sync) else {
            throw SystemError(operation: "link \(path(subdirectory, hidden))", code: EEXIST)
        }
        try check("rename \(path(subdirectory, hidden))", rename(path(subdirectory, hidden), path(subdirectory, id)))
    }

    /// `fsync` of `SUBDIRECTORY/ID` if it exists; false if it does not.
    func syncFile(_ id: String, in subdirectory: String) throws(SystemError) -> Bool {
        let name = path(subdirectory, id)
        let fd = retryingOnInterrupt { open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return false }
            throw SystemError(operation: "open \(name)", code: errno)
        }
        defer { close(fd) }
        try countingFailure { () throws(SystemError) in try check("fsync \(name)", fsync(fd)) }
        return true
    }

    /// A sync of the spool's files; its failure is counted for every checkpoint (see ``JournalFailures``).
    private func countingFailure(_ sync: () throws(SystemError) -> Void) throws(SystemError) {
        do { try sync() } catch {
            JournalFailures(spool: self)?.increment()
            throw error
        }
    }

    /// Whether SUBDIRECTORY/ID exists.
    func contains(_ id: String, in subdirectory: String) -> Bool {
        access(path(subdirectory, id), F_OK) == 0
    }

    /// The bytes of `new/ID` (or `SUBDIRECTORY/ID`), or nil if it cannot be read.
    func contents(of id: String, in subdirectory: String = "new") -> [UInt8]? {
        let fd = open(path(subdirectory, id), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readAll(fd)
    }

    /// If `id` is already stored (in `new/`, or `cur/` once a consumer has it), syncs that file and its directory
    /// and returns true; false when it is in neither.
    private func syncExisting(_ id: String) throws(SystemError) -> Bool {
        for subdirectory in ["new", "cur"] {
            guard try syncFile(id, in: subdirectory) else { continue }
            try Self.syncDirectory(path(subdirectory))
            return true
        }
        return false
    }

    static func syncDirectory(_ path: String) throws(SystemError) {
        let fd = try check("open \(path)", open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        defer { close(fd) }
        try check("fsync \(path)", fsync(fd))
    }

    /// The names of the regular entries in a subdirectory, sorted.
    func names(in subdirectory: String) throws(SystemError) -> [String] {
        try directoryEntries(path(subdirectory))
    }
}

/// The first line of a spool file: what a consumer needs besides the body, as one JSON object.
public struct Envelope: Sendable, Equatable {
    public let id: String
    /// UTC, ISO 8601 with milliseconds.
    public let received: String
    public let remoteAddress: String?
    public let contentType: String?
    /// The sender the web server named for this location (`WEBHOOK_SENDER`), if any.
    public let sender: String?
    /// How the payload was signed.
    public let scheme: String?
    public let length: Int
    /// The web server's id for the request that brought it (nginx's `$request_id`), if it passed one.
    public var requestID: String?

    /// `id` defaults to the SHA-256 of the body.
    public init(body: [UInt8], id: String? = nil, received: String = Clock.utcTimestamp(milliseconds: true),
                remoteAddress: String?, contentType: String?, sender: String? = nil, scheme: String? = nil) {
        self.id = id ?? Receipt.id(of: body)
        self.received = received
        self.remoteAddress = remoteAddress
        self.contentType = contentType
        self.sender = sender
        self.scheme = scheme
        self.length = body.count
    }

    /// `{"id":"…","received":"…","remote_addr":"…","content_type":"…","sender":…,"scheme":"…","length":N}` (and
    /// `"request_id":"…"` when there is one) and a newline.
    public var line: String {
        func quoted(_ text: String?) -> String { text.map { JSON.quoted($0) } ?? "null" }
        return #"{"id":"\#(id)","received":"\#(received)","remote_addr":\#(quoted(remoteAddress)),"#
            + #""content_type":\#(quoted(contentType)),"sender":\#(quoted(sender)),"scheme":\#(quoted(scheme)),"#
            + #""length":\#(length)"# + (requestID.map { #","request_id":\#(JSON.quoted($0))"# } ?? "") + "}\n"
    }
}

extension Spool {
    /// The envelope lines of the payloads in `new/`, oldest name first.
    public func waiting() throws(SystemError) -> [String] {
        try names(in: "new").map { name in
            let fd = open(path("new", name), O_RDONLY | O_CLOEXEC)
            defer { if fd >= 0 { close(fd) } }
            guard fd >= 0, let line = Envelope.readLine(from: fd) else { return #"{"id":"\#(name)","unreadable":true}"# }
            return String(decoding: line, as: UTF8.self)
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
        let failed = (try? names(in: ".hook-failed").count) ?? 0
        if failed > 0 { lines.append("hook failed for \(failed) of new/ (spool retry runs them again)") }
        return "spool \(directory)\n" + lines.joined(separator: "\n")
    }
}

extension Spool {
    /// The envelope and body of `new/ID`, or nil if it is gone or unreadable.
    public func payload(_ id: String) -> (envelope: Envelope, body: [UInt8])? {
        let fd = open(path("new", id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let envelope = Envelope.read(from: fd), let body = readAll(fd), body.count == envelope.length else {
            return nil
        }
        return (envelope, body)
    }

    /// Moves `new/ID` to `cur/`: a consumer has it. False if it could not be moved.
    public func markTaken(_ id: String) -> Bool {
        rename(path("new", id), path("cur", id)) == 0
    }
}

extension Envelope: Decodable {
    enum CodingKeys: String, CodingKey {
        case id, received, length, sender, scheme
        case requestID = "request_id"
        case remoteAddress = "remote_addr"
        case contentType = "content_type"
    }

    /// The longest envelope line read: far more than any header a web server passes on, escaped.
    static let lineLimit = 1 << 20

    /// The envelope line of a spool file (without its newline), leaving `fd` positioned at the body.
    static func readLine(from fd: Int32) -> [UInt8]? {
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while line.count < lineLimit {
            let count = chunk.withUnsafeMutableBytes { buffer in
                retryingOnInterrupt { Glibc.read(fd, buffer.baseAddress, buffer.count) }
            }
            guard count > 0 else { return nil }
            if let newline = chunk[..<count].firstIndex(of: UInt8(ascii: "\n")) {
                line += chunk[..<newline]
                let body = off_t(line.count + 1)
                return lseek(fd, body, SEEK_SET) == body ? line : nil
            }
            line += chunk[..<count]
        }
        return nil
    }

    /// Reads the envelope line of a spool file, leaving `fd` positioned at the body.
    static func read(from fd: Int32) -> Envelope? {
        guard let line = readLine(from: fd) else { return nil }
        return try? JSONDecoder().decode(Envelope.self, from: Data(line))
    }
}
