import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs programs the way a web server or an operator would, and reads back what they said.
enum Programs {
    /// The built `webhook-handler`, beside this test binary (or `WEBHOOK_HANDLER_BIN`).
    static let handler: String = {
        if let path = ProcessInfo.processInfo.environment["WEBHOOK_HANDLER_BIN"] { return path }
        return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("webhook-handler").path
    }()

    /// A program from the system (`cgi-fcgi`, `spawn-fcgi`), which the project's scripts install.
    static func system(_ name: String) throws -> String {
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw TestFailure("\(name) is not installed: run scripts/test, which installs it")
    }

    struct Finished: Sendable {
        let status: Int32
        let stdout: [UInt8]
        let stderr: String
        /// How many stdin bytes the program took before closing it (a pipe write failed with EPIPE after that).
        let stdinAccepted: Int
    }

    /// The x-signature of `body` under `Contract.secret`, from the handler's own `sign`.
    static func sign(_ body: [UInt8]) -> String {
        let finished = try? run(handler, ["sign"], environment: ["API_SECRET_KEY": Contract.secret], stdin: body)
        return String(decoding: finished?.stdout ?? [], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs `path` to completion with exactly `environment`, feeding `stdin` from a pipe.
    /// `midway`, if given, runs when half of `stdin` has been written (to act while a body is in flight).
    static func run(
        _ path: String, _ arguments: [String] = [], environment: [String: String], stdin: [UInt8] = [],
        midway: (@Sendable () -> Void)? = nil
    ) throws -> Finished {
        signal(SIGPIPE, SIG_IGN)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = environment
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()

        // Blocking pipe I/O gets threads of its own: the shared pools are small on a 2-core machine, and parallel
        // tests waiting on each other there would hang.
        let writer = PipeWriter(input.fileHandleForWriting, bytes: stdin, midway: midway)
        let stderrReader = PipeReader(fd: errors.fileHandleForReading.fileDescriptor)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread { writer.write(); done.signal() }
        Thread.detachNewThread { stderrReader.read(); done.signal() }
        let stdoutReader = PipeReader(fd: output.fileHandleForReading.fileDescriptor)
        stdoutReader.read()
        process.waitUntilExit()
        done.wait()
        done.wait()
        return Finished(
            status: process.terminationStatus, stdout: stdoutReader.data,
            stderr: String(decoding: stderrReader.data, as: UTF8.self), stdinAccepted: writer.accepted
        )
    }
}

/// Writes all it can to a pipe, then closes it; remembers how far it got.
///
/// The descriptor is closed through its FileHandle, which would otherwise close the same number again when it
/// goes away — by then perhaps another test's pipe.
final class PipeWriter: @unchecked Sendable {
    let handle: FileHandle
    let bytes: [UInt8]
    let midway: (@Sendable () -> Void)?
    private(set) var accepted = 0

    init(_ handle: FileHandle, bytes: [UInt8], midway: (@Sendable () -> Void)?) {
        self.handle = handle
        self.bytes = bytes
        self.midway = midway
    }

    func write() {
        let fd = handle.fileDescriptor
        bytes.withUnsafeBytes { buffer in
            var pauseAt = midway == nil ? Int.max : buffer.count / 2
            while accepted < buffer.count {
                if accepted >= pauseAt {
                    midway?()
                    pauseAt = Int.max
                }
                let count = Glibc.write(fd, buffer.baseAddress! + accepted, min(buffer.count, pauseAt) - accepted)
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                accepted += count
            }
        }
        try? handle.close()
    }
}

/// Reads a pipe to its end. Foundation's `readDataToEndOfFile` traps on EINTR, which its own SIGCHLD handling
/// for `Process` causes, so this retries instead.
final class PipeReader: @unchecked Sendable {
    let fd: Int32
    private(set) var data = [UInt8]()
    init(fd: Int32) { self.fd = fd }

    func read() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }
            data += chunk[..<count]
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A CGI response as the web server would parse it.
struct CGIResponse {
    let status: Int
    let headers: [String: String]
    let body: String

    init(_ bytes: [UInt8]) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no header/body separator in: \(text)") }
        var headers: [String: String] = [:]
        for line in text[..<split.lowerBound].components(separatedBy: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { throw TestFailure("bad header line: \(line)") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let status = headers["status"]?.prefix(3).description, let code = Int(status) else {
            throw TestFailure("no Status header in: \(text)")
        }
        self.status = code
        self.headers = headers
        self.body = String(text[split.upperBound...])
    }

    /// The body as a JSON object.
    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw TestFailure("body is not a JSON object: \(body)")
        }
        return object
    }
}
