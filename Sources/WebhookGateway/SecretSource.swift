public import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// Where the shared secrets come from: `API_SECRET_KEY` (and, during a rotation, `API_SECRET_KEY_PREVIOUS`), or
/// the file named by `API_SECRET_KEY_FILE`, one secret per line, the current one first. The variable wins when
/// both are set.
public enum SecretSource {
    public static let variable = "API_SECRET_KEY"
    public static let previousVariable = "API_SECRET_KEY_PREVIOUS"
    public static let fileVariable = "API_SECRET_KEY_FILE"

    /// The secrets configured in this process's environment, or the 500 that says what is wrong.
    public static func fromEnvironment() -> Result<Keyring, Outcome> {
        from(Environment.value)
    }

    static let noneSet = "neither \(variable) nor \(fileVariable) is set"

    /// Whether the environment names a secret at all (usable or not).
    public static var isNamedInEnvironment: Bool {
        [variable, fileVariable].contains { Environment.value($0)?.isEmpty == false }
    }

    /// A warning when the secret file can be read by its group or by others.
    public static func fileExposure() -> String? {
        guard Environment.value(variable)?.isEmpty != false, let path = Environment.value(fileVariable) else { return nil }
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & 0o077 != 0 else { return nil }
        return "\(path) is readable by group or others (mode 0\(String(status.st_mode & 0o777, radix: 8))); chmod 600 it"
    }

    /// The secrets named by `lookup` (the environment, or a FastCGI request's params).
    static func from(_ lookup: (String) -> String?) -> Result<Keyring, Outcome> {
        Result { () throws(Outcome) in
            if let text = lookup(variable), !text.isEmpty {
                var secrets = [try Secret(text)]
                if let previous = lookup(previousVariable), !previous.isEmpty {
                    secrets.append(try Secret(previous, source: previousVariable))
                }
                return Keyring(secrets)
            }
            guard let path = lookup(fileVariable), !path.isEmpty else { throw Outcome.notConfigured(noneSet) }
            guard let bytes = readSmallFile(path) else {
                throw Outcome.notConfigured("cannot read \(fileVariable) \(path): \(String(cString: strerror(errno)))")
            }
            return try keyring(fromFile: bytes, path: path)
        }
    }

    /// One secret per line (`\n` or `\r\n`); blank lines are skipped.
    static func keyring(fromFile bytes: [UInt8], path: String) throws(Outcome) -> Keyring {
        var secrets: [Secret] = []
        for (number, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let secret = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
            if secret.isEmpty { continue }
            secrets.append(try Secret(bytes: Array(secret), source: "the secret on line \(number + 1) of \(path)"))
        }
        guard !secrets.isEmpty else { throw Outcome.notConfigured("\(path) holds no secret") }
        return Keyring(secrets)
    }

    /// The whole of a small file, or nil (with `errno` set) if it cannot be read.
    static func readSmallFile(_ path: String, limit: Int = 64 << 10) -> [UInt8]? {
        let fd = retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readAll(fd, limit: limit)
    }
}

/// Everything `fd` has until its end (at least `limit` bytes are read, then reading stops), or nil (with `errno`
/// set) on a failed read.
public func readAll(_ fd: Int32, limit: Int = .max) -> [UInt8]? {
    var bytes = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: min(limit, 64 << 10))
    while bytes.count < limit {
        let count = chunk.withUnsafeMutableBytes { buffer in
            retryingOnInterrupt { Glibc.read(fd, buffer.baseAddress, buffer.count) }
        }
        if count < 0 { return nil }
        if count == 0 { break }
        bytes += chunk[..<count]
    }
    return bytes
}

/// Reads of the process environment, copied out at once.
enum Environment {
    static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
