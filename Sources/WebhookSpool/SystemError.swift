#if canImport(Glibc)
import Glibc
#endif

/// A failed system or C library call, named by what we were doing.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Int32

    package init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    public var description: String {
        let text = code > 0 ? String(cString: strerror(code)) : "error \(code)"
        return "\(operation): \(text)"
    }
}

/// The one place C return codes become Swift errors: POSIX calls report -1 and set `errno`;
/// libfcgi calls report a negative number (often `-errno`).
@discardableResult
package func check(_ operation: @autoclosure () -> String, _ result: Int32) throws(SystemError) -> Int32 {
    guard result < 0 else { return result }
    throw SystemError(operation: operation(), code: result == -1 ? errno : -result)
}

/// Retries a POSIX call interrupted by a signal.
package func retryingOnInterrupt<T: BinaryInteger>(_ call: () -> T) -> T {
    while true {
        let result = call()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}

/// The names in `directory` that do not start with a dot, sorted.
public func directoryEntries(_ directory: String) throws(SystemError) -> [String] {
    var names: [String] = []
    try forEachEntry(in: directory) { _, name in
        names.append(name)
        return true
    }
    return names.sorted()
}

/// Calls `body` with the directory's descriptor (for the `*at` calls) and each name in `directory` that does not
/// start with a dot, in `readdir`'s order, one at a time (a directory of millions is never held in memory), until
/// `body` returns false.
package func forEachEntry(in directory: String, _ body: (_ directoryFD: Int32, _ name: String) throws(SystemError) -> Bool)
    throws(SystemError)
{
    guard let stream = opendir(directory) else { throw SystemError(operation: "read \(directory)", code: errno) }
    defer { closedir(stream) }
    let fd = dirfd(stream)
    while let entry = readdir(stream) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if !name.hasPrefix("."), try !body(fd, name) { return }
    }
}

/// Writes all of `bytes` to `fd` — at its file position, or at `offset` (`pwrite`) — retrying short writes and
/// interruptions; the `errno` of a failure, or nil.
package func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int? = nil) -> Int32? {
    bytes.withUnsafeBytes { buffer in
        var done = 0
        while done < buffer.count {
            let count = retryingOnInterrupt {
                if let offset {
                    pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
                } else {
                    write(fd, buffer.baseAddress! + done, buffer.count - done)
                }
            }
            if count < 0 { return errno }
            if count == 0 { return EIO }
            done += count
        }
        return nil
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
