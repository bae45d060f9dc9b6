import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A webhook-handler serving FastCGI on a unix socket of the test's own, started and stopped by the test.
final class FastCGIServerProcess: @unchecked Sendable {
    enum Mode {
        /// `webhook-handler --listen SOCKET`
        case ownSocket
        /// `spawn-fcgi -n -s SOCKET -M 0666 -- webhook-handler`: the socket handed over on fd 0.
        case spawnFCGI
    }

    let socket: String
    let logPath: String
    let process = Process()
    private let directory: String

    init(_ mode: Mode, workers: Int = 2, environment: [String: String] = ["API_SECRET_KEY": Contract.secret],
         arguments: [String] = []) throws {
        directory = NSTemporaryDirectory() + "webhook-fcgi-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/handler.sock"
        logPath = directory + "/handler.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let handlerArguments = ["--workers", String(workers)] + arguments
        switch mode {
        case .ownSocket:
            process.executableURL = URL(fileURLWithPath: Programs.handler)
            process.arguments = ["--listen", socket] + handlerArguments
        case .spawnFCGI:
            process.executableURL = URL(fileURLWithPath: try Programs.system("spawn-fcgi"))
            process.arguments = ["-n", "-s", socket, "-M", "0666", "--", Programs.handler] + handlerArguments
        }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
        try waitFor("the socket \(socket)") { FileManager.default.fileExists(atPath: socket) && workers <= workerPIDs.count }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The worker processes the supervisor forked.
    var workerPIDs: [Int32] {
        let pid = process.processIdentifier
        let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return children.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// Sends one request through libfcgi's own client, `cgi-fcgi`, as a web server would.
    func send(_ row: ContractRow, params extra: [String: String] = [:], midway: (@Sendable () -> Void)? = nil) throws
        -> CGIResponse
    {
        let finished = try Programs.run(
            try Programs.system("cgi-fcgi"), ["-bind", "-connect", socket],
            environment: row.params(extra), stdin: row.body, midway: midway)
        return try CGIResponse(finished.stdout)
    }

    /// SIGTERM, then the exit status.
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// Polls `condition` for up to `seconds`.
func waitFor(_ what: String, seconds: Double = 10, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else { throw TestFailure("timed out waiting for \(what)") }
        usleep(20_000)
    }
}
