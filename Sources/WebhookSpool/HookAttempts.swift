import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// What the spool knows of a payload's hook runs, kept next to it so that any runner, `spool retry` or an operator
/// reads the same state:
///
///     DIR/.hook-failed/ID    one line per failed attempt, `TIME attempt N: REASON`, appended and never rewritten
///                            (the per-attempt errors); its modification time is when the last attempt failed
///     DIR/.hook-given-up/ID  the payload is failed (the dead-letter state): it failed `maxAttempts` times, or its
///                            command exited with ``Hook/giveUpStatus``; runners leave it, `spool retry` replays it
///
/// A payload with failures and no give-up is retried by the runners once its backoff has passed. Nothing else is
/// stored: the next attempt's time is computed from the last failure, and its jitter from the id and the attempt,
/// so every runner computes the same time.
public struct HookAttempts: Sendable, Equatable {
    /// Attempts that failed so far (the next one is number `failures + 1`).
    public var failures = 0
    /// Wall-clock seconds since 1970 of the last failure.
    public var lastFailure = 0.0
    public var givenUp = false
    /// The per-attempt errors, oldest first.
    public var errors: [String] = []

    /// The wait after `failures` failed attempts: `base` doubled for each one after the first, at most an hour,
    /// then between half and all of that (jitter: payloads that failed together are not retried together).
    public static func backoff(afterFailures failures: Int, base: Double, id: String) -> Double {
        guard failures > 0 else { return 0 }
        let full = min(3600, base * Double(1 << min(failures - 1, 20)))
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a of the id and the attempt
        for byte in Array(id.utf8) + [UInt8(truncatingIfNeeded: failures)] { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return full * (0.5 + 0.5 * Double(hash % 1_000_000) / 1_000_000)
    }

    /// When (wall-clock seconds) the next attempt may run.
    public func due(id: String, base: Double) -> Double {
        lastFailure + Self.backoff(afterFailures: failures, base: base, id: id)
    }
}

/// Wall-clock seconds since 1970.
func wallClock() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

extension Spool {
    var hookFailures: String { "\(directory)/.hook-failed" }
    var hookGivenUp: String { "\(directory)/.hook-given-up" }

    /// The hook's record of `new/ID` (no failures if it has none).
    public func hookAttempts(_ id: String) -> HookAttempts {
        var attempts = HookAttempts()
        attempts.givenUp = access("\(hookGivenUp)/\(id)", F_OK) == 0
        let fd = open("\(hookFailures)/\(id)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return attempts }
        defer { close(fd) }
        var status = stat()
        if fstat(fd, &status) == 0 {
            attempts.lastFailure = Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9
        }
        attempts.errors = String(decoding: readAll(fd) ?? [], as: UTF8.self).split(separator: "\n").map(String.init)
        attempts.failures = attempts.errors.count
        return attempts
    }

    /// Whether a runner may take `new/ID` now: not failed, and its backoff (if any) has passed.
    func hookIsDue(_ id: String, base: Double, now: Double = wallClock()) -> Bool {
        let attempts = hookAttempts(id)
        return !attempts.givenUp && attempts.due(id: id, base: base) <= now
    }

    /// Appends attempt `attempt`'s failure to `.hook-failed/ID`.
    func recordHookFailure(_ id: String, attempt: Int, reason: String) {
        if mkdir(hookFailures, directoryMode) != 0 && errno != EEXIST { return }
        let fd = open("\(hookFailures)/\(id)", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, fileMode)
        guard fd >= 0 else { return }
        let line = "\(Clock.utcTimestamp()) attempt \(attempt): \(reason)".split(whereSeparator: \.isNewline).joined(separator: " ")
        _ = writeAll(fd, Array((line + "\n").utf8))
        close(fd)
    }

    /// Puts `new/ID` in the failed state, saying why.
    func markHookGivenUp(_ id: String, reason: String) {
        if mkdir(hookGivenUp, directoryMode) != 0 && errno != EEXIST { return }
        let fd = open("\(hookGivenUp)/\(id)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, fileMode)
        guard fd >= 0 else { return }
        _ = writeAll(fd, Array("\(Clock.utcTimestamp()) \(reason)\n".utf8))
        close(fd)
    }

    /// The payload was delivered: its attempts are history.
    func clearHookAttempts(_ id: String) {
        unlink("\(hookFailures)/\(id)")
        unlink("\(hookGivenUp)/\(id)")
    }

    /// The ids in `new/` in the failed state.
    public func failedIDs() throws(SystemError) -> [String] {
        try waitingIDs().filter { access("\(hookGivenUp)/\($0)", F_OK) == 0 }
    }

    /// `new/ID`'s envelope line with its hook record added: `{…,"length":N,"attempts":3,"failed":true,
    /// "errors":["…",…]}`.
    public func describeWithAttempts(_ id: String) -> String {
        let attempts = hookAttempts(id)
        let fd = open(path("new", id), O_RDONLY | O_CLOEXEC)
        defer { if fd >= 0 { close(fd) } }
        var line = fd >= 0 ? Envelope.readLine(from: fd).map { String(decoding: $0, as: UTF8.self) } : nil
        if line?.hasSuffix("}") != true { line = #"{"id":\#(JSON.quoted(id)),"unreadable":true}"# }
        let errors = attempts.errors.map { JSON.quoted($0) }.joined(separator: ",")
        return line!.dropLast() + #","attempts":\#(attempts.failures),"failed":\#(attempts.givenUp),"errors":[\#(errors)]}"#
    }
}
