import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// Lines on stderr for whoever runs the server (journald, nginx's or Apache's error log, a terminal), in logfmt:
/// `ts=2026-11-29T09:30:00Z level=info pid=812 msg="…" key=value …`, every value quoted as logfmt quotes it. Under
/// journald (`JOURNAL_STREAM` names stderr) each line starts with its syslog priority, `<6>`, and has no `ts=`
/// (the journal stamps it), so that `journalctl -p err` finds the errors. Each line is one `write(2)`, so that
/// workers never interleave.
public enum Log {
    /// Levels, with their syslog priorities.
    public enum Level: String, Sendable {
        case error, warning, notice, info, debug

        var priority: Int {
            switch self {
            case .error: 3
            case .warning: 4
            case .notice: 5
            case .info: 6
            case .debug: 7
            }
        }
    }

    /// A line of free text, at level info (what code written before levels calls).
    public static func write(_ message: String) {
        write(.info, message)
    }

    /// `level=… pid=… msg="…"` and `fields`, one line.
    public static func write(_ level: Level, _ message: String, _ fields: KeyValuePairs<String, String> = [:]) {
        write(level, message, fields: fields.map { ($0.key, $0.value) })
    }

    package static func write(_ level: Level, _ message: String, fields: [(String, String)]) {
        var line: [UInt8] = []
        line.reserveCapacity(64 + message.utf8.count)
        if toJournal {
            line += "<\(level.priority)>".utf8
        } else {
            line += "ts=".utf8
            Clock.appendUTCTimestamp(to: &line)
            line.append(UInt8(ascii: " "))
        }
        line += "level=\(level.rawValue) pid=\(getpid()) msg=".utf8
        line += quoted(message).utf8
        for (key, value) in fields {
            line += " \(key)=".utf8
            line += quoted(value).utf8
        }
        line.append(UInt8(ascii: "\n"))
        _ = writeAll(STDERR_FILENO, line)
    }

    /// True when stderr is a journald stream: `JOURNAL_STREAM` (set by systemd) holds its device and inode.
    static let toJournal: Bool = {
        guard let stream = Environment.value("JOURNAL_STREAM") else { return false }
        var status = stat()
        return fstat(STDERR_FILENO, &status) == 0 && stream == "\(status.st_dev):\(status.st_ino)"
    }()

    /// `value` bare when it can be (no space, quote, `=` or control character), else in double quotes with JSON's
    /// escapes (`\\`, `\"`, `\n`, `\u00XX`), which logfmt parsers read.
    static func quoted(_ value: String) -> String {
        let bare = !value.isEmpty && value.utf8.allSatisfy {
            $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: "\\")
        }
        return bare ? value : JSON.quoted(value)
    }

    /// `text` as is, in one `write(2)`.
    public static func writeStandardError(_ text: String) {
        _ = writeAll(STDERR_FILENO, Array(text.utf8))
    }

    /// `text` as is on stdout, in one `write(2)`.
    public static func writeStandardOutput(_ text: String) {
        _ = writeAll(STDOUT_FILENO, Array(text.utf8))
    }

    /// A duration for a log line: milliseconds with two decimals (`12.34`).
    package static func milliseconds(_ seconds: Double) -> String {
        let hundredths = Int((seconds * 100_000).rounded())
        let fraction = hundredths % 100
        return String(hundredths / 100) + (fraction < 10 ? ".0" : ".") + String(fraction)
    }

    /// Client-supplied text made safe for one log line: no control characters, quotes or unbounded length.
    package static func printable(_ text: String, limit: Int = 40) -> String {
        let plain = text.utf8.count <= limit
            && text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") }
        if plain { return text }
        var out = ""
        for scalar in text.unicodeScalars.prefix(limit) {
            out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F || scalar == "\"" ? "?" : scalar)
        }
        return text.unicodeScalars.count > limit ? out + "…" : out
    }
}

/// Time, read from the system.
public enum Clock {
    /// Monotonic seconds, for durations.
    public static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// Now in UTC, ISO 8601: `2026-11-29T09:30:00Z`, or `2026-11-29T09:30:00.123Z` with milliseconds.
    public static func utcTimestamp(milliseconds: Bool = false) -> String {
        var text: [UInt8] = []
        appendUTCTimestamp(to: &text, milliseconds: milliseconds)
        return String(decoding: text, as: UTF8.self)
    }

    /// ``utcTimestamp(milliseconds:)`` written digit by digit: every log line starts with one.
    static func appendUTCTimestamp(to text: inout [UInt8], milliseconds: Bool = false) {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var parts = tm()
        var seconds = time.tv_sec
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int, _ width: Int, then separator: Unicode.Scalar) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 { text.append(UInt8(48 + value / divisor % 10)); divisor /= 10 }
            text.append(UInt8(ascii: separator))
        }
        digits(Int(parts.tm_year) + 1900, 4, then: "-")
        digits(Int(parts.tm_mon) + 1, 2, then: "-")
        digits(Int(parts.tm_mday), 2, then: "T")
        digits(Int(parts.tm_hour), 2, then: ":")
        digits(Int(parts.tm_min), 2, then: ":")
        if milliseconds {
            digits(Int(parts.tm_sec), 2, then: ".")
            digits(time.tv_nsec / 1_000_000, 3, then: "Z")
        } else {
            digits(Int(parts.tm_sec), 2, then: "Z")
        }
    }
}

/// Reads of the process environment, copied out at once.
package enum Environment {
    package static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
