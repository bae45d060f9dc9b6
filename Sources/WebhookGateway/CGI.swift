public import WebhookCore
public import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// Classic CGI (RFC 3875): the request is this process's environment and stdin; one response on stdout.
public enum CGI {
    /// True when a web server started us as a CGI program (it always sets `GATEWAY_INTERFACE`).
    public static var isInvoked: Bool { Environment.value("GATEWAY_INTERFACE") != nil }

    /// Serves the one request and returns the process's exit status.
    public static func serve(verifier: Verifier, spool: Spool?, hook: Hook?, accessLog: AccessLogPolicy = .all) -> Int32 {
        signal(SIGPIPE, SIG_IGN)  // a server that hung up is logged as `response=undelivered`, not a crash
        // Every CGI request is a start-up: make sure the spool exists; if it cannot, storing answers 503.
        _ = try? spool?.prepare()
        let channel = StandardStreams()
        let responder = Responder(
            verifier: verifier, secrets: Secrets.fromCGIEnvironment(), spool: spool, hook: hook, accessLog: accessLog)
        let record = responder.respond(over: channel)
        responder.complete(record, hookLog: spool.map { "\($0.directory)/hook.log" })
        return record.delivered ? 0 : 1
    }
}

/// The CGI request: environment for params, fd 0 for the body, fd 1 for the response.
struct StandardStreams: RequestChannel {
    static let paramsAreEnvironment = true

    func param(_ name: String) -> String? { Environment.value(name) }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        max(0, retryingOnInterrupt { Glibc.read(STDIN_FILENO, buffer.baseAddress, buffer.count) })
    }

    func write(_ bytes: [UInt8]) -> Bool {
        writeAll(STDOUT_FILENO, bytes) == nil
    }

    /// RFC 3875 §4.2: never read past `CONTENT_LENGTH`; the server need not close stdin.
    func discardBody(declared: Int?, bound: Int) {
        guard let declared, declared > 0 else { return }
        _ = discard(upTo: min(declared, bound))
    }
}
