import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// How long `cur/` keeps the payloads consumers moved there. `cur/` is the spool's memory of what was handled: a
/// replayed delivery finds its name there and is not handled twice, `forward --from-cur --since` inserts it again
/// after a database lost commits, and the journal's recovery leaves alone a record whose file is there. So a file
/// goes only when all three are long past: by its modification time (when it was stored; a move keeps it), never
/// sooner than an hour, 7 days by default. docs/spool.md says why.
public struct CurRetention: Sendable, Equatable {
    /// Seconds a file stays after it was stored; nil keeps `cur/` forever.
    public let seconds: Double?

    public static let variable = "WEBHOOK_KEEP_CUR_DAYS"
    public static let defaultDays = 7.0
    public static let `default` = CurRetention(seconds: defaultDays * 86400)
    public static let forever = CurRetention(seconds: nil)
    /// Far beyond the journal's checkpoint bound (60 s): a running server's recovery never names again a payload
    /// retention removed (a server stopped for longer than the retention may: docs/spool.md).
    public static let minimumSeconds = 3600.0
    /// What a value may be, for error messages.
    public static let rule = "a number of days, at least 0.042 (one hour), or 0 or off to keep cur/ forever"

    public init(seconds: Double?) {
        self.seconds = seconds
    }

    /// `7`, `0.5` (days), or `0` / `off` (forever); nil for anything else, or less than an hour.
    public init?(days text: String) {
        if ["0", "off"].contains(text.lowercased()) {
            self = .forever
            return
        }
        guard let days = Double(text), days.isFinite, days * 86400 >= Self.minimumSeconds - 0.5 else { return nil }
        self.seconds = days * 86400
    }

    /// `option` (named `name` in the error) if given, else `WEBHOOK_KEEP_CUR_DAYS`, else 7 days.
    public static func configured(_ option: String?, named name: String) throws(RetentionError) -> CurRetention {
        guard let text = option ?? Environment.value(variable), !text.isEmpty else { return .default }
        guard let retention = CurRetention(days: text) else {
            throw RetentionError(description: "\(option == nil ? variable : name) must be \(rule), not '\(text)'")
        }
        return retention
    }

    /// `7 days`, `1 day`, `12 hours`, or `forever`.
    public var description: String {
        guard let seconds else { return "forever" }
        let (count, unit) = seconds >= 86400 ? (Self.number(seconds / 86400), "day") : (Self.number(seconds / 3600), "hour")
        return "\(count) \(unit)\(count == "1" ? "" : "s")"
    }

    /// Whole, or with one decimal.
    static func number(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
    }
}

/// A retention setting that is not one.
public struct RetentionError: Error, CustomStringConvertible {
    public let description: String
}

extension Spool {
    /// What one prune did.
    public struct Pruned: Sendable, Equatable {
        public var removed = 0
        /// The disk space the removed files took (whole blocks: a 1 KiB payload takes 4 KiB on ext4).
        public var bytes = 0
        /// Files in `cur/` it left, younger than the cut-off (of those it looked at, if it stopped at its limit).
        public var kept = 0
        /// It stopped at its limit with more to remove.
        public var more = false
    }

    /// Files removed between two short pauses, so that a large first prune never holds the disk for long.
    static let pruneBatch = 1000

    /// Removes the files in `cur/` last modified more than `age` seconds ago — at most `limit` of them, 1,000 at a
    /// time with a 10 ms pause between — and nothing else: not `new/` or `tmp/`, not a dot-file (recovery's hidden
    /// names), not a directory or link. A file another process removed meanwhile is skipped.
    public func pruneTaken(olderThan age: Double, limit: Int = .max) throws(SystemError) -> Pruned {
        let directory = path("cur")
        let cutoff = wallClock() - age
        var pruned = Pruned()
        try forEachEntry(in: directory) { fd, name throws(SystemError) in
            var status = stat()
            guard fstatat(fd, name, &status, AT_SYMLINK_NOFOLLOW) == 0, status.st_mode & S_IFMT == S_IFREG else {
                return true
            }
            let modified = Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9
            guard modified < cutoff else {
                pruned.kept += 1
                return true
            }
            guard pruned.removed < limit else {  // the rest is for the next prune: no scan past the limit
                pruned.more = true
                return false
            }
            if unlinkat(fd, name, 0) != 0 {
                if errno == ENOENT { return true }
                throw SystemError(operation: "remove \(directory)/\(name)", code: errno)
            }
            pruned.removed += 1
            pruned.bytes += Int(status.st_blocks) * 512
            if pruned.removed % Self.pruneBatch == 0 { usleep(10_000) }
            return true
        }
        return pruned
    }

    /// The line a prune leaves in the log: what went, how much, why, and what stays.
    public func describe(_ pruned: Pruned, retention: CurRetention) -> String {
        let size = pruned.bytes < 10 << 20 ? "\((pruned.bytes + 1023) / 1024) KiB"
            : "\(CurRetention.number(Double(pruned.bytes) / 1_048_576)) MiB"
        var line = "spool \(directory): removed \(pruned.removed) files from cur/ stored more than "
            + "\(retention.description) ago (\(size) of disk); "
        line += pruned.more ? "more to remove at the next prune" : "\(pruned.kept) kept"
        return line
    }

    /// When the services prune: at most once in this many seconds, across every process on the spool.
    public static let pruneInterval = 300.0
    /// Files one automatic prune removes at most; more makes the next one due at once.
    public static let prunePerRun = 10_000

    /// The services' retention (hook runners, the FastCGI server's namer, `webhook-forwarder forward`): prunes
    /// `cur/` by ``takenRetention`` if no process on this spool has in the last ``pruneInterval`` seconds. The stamp
    /// `DIR/.cur-pruned` says when one last did (its modification time) and, held with `flock`, lets one process
    /// prune at a time. Logs what it removed; true when it stopped at ``prunePerRun`` with more to remove.
    @discardableResult
    public func pruneTakenIfDue() -> Bool {
        guard let age = takenRetention.seconds else { return false }
        let stamp = "\(directory)/.cur-pruned"
        var fd = open(stamp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, fileMode)
        let first = fd >= 0
        if !first { fd = open(stamp, O_RDWR | O_CLOEXEC) }
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var status = stat()
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, fstat(fd, &status) == 0 else { return false }
        // Due after the interval, and at once if the stamp is in the future (the clock was set back since).
        let last = Double(status.st_mtim.tv_sec), now = wallClock()
        guard first || last <= now - Self.pruneInterval || last > now + 60 else { return false }
        do {
            let pruned = try pruneTaken(olderThan: age, limit: Self.prunePerRun)
            if pruned.removed > 0 { Log.write(.info, describe(pruned, retention: takenRetention)) }
            var epoch = [timespec(), timespec()]  // 1970: due again at once
            _ = pruned.more ? futimens(fd, &epoch) : futimens(fd, nil)
            return pruned.more
        } catch {
            Log.write(.error, "spool \(directory): cannot prune cur/: \(error); trying again in \(Int(Self.pruneInterval))s")
            futimens(fd, nil)
            return false
        }
    }
}
