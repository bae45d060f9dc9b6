public import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// Where the shared secret comes from: `API_SECRET_KEY`, or the file named by `API_SECRET_KEY_FILE`
/// (one trailing newline trimmed). The variable wins when both are set.
public enum SecretSource {
    public static let variable = "API_SECRET_KEY"
    public static let fileVariable = "API_SECRET_KEY_FILE"

    /// The secret configured in this process's environment, or the 500 that says what is wrong.
    public static func fromEnvironment() -> Result<Secret, Outcome> {
        if let text = Environment.value(variable), !text.isEmpty {
            return Result { () throws(Outcome) in try Secret(text) }
        }
        guard let path = Environment.value(fileVariable), !path.isEmpty else {
            return .failure(.notConfigured("neither \(variable) nor \(fileVariable) is set"))
        }
        return Result { () throws(Outcome) in
            guard var bytes = readSmallFile(path) else {
                throw Outcome.notConfigured("cannot read \(fileVariable) \(path): \(String(cString: strerror(errno)))")
            }
            if bytes.last == UInt8(ascii: "\n") {
                bytes.removeLast()
                if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            }
            return try Secret(bytes: bytes, source: "the secret in \(path)")
        }
    }

    /// The whole of a small file, or nil (with `errno` set) if it cannot be read.
    static func readSmallFile(_ path: String, limit: Int = 64 << 10) -> [UInt8]? {
        let fd = retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
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
}

/// Reads of the process environment, copied out at once.
enum Environment {
    static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
