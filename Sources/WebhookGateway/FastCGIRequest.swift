import CFastCGI
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// The single owner of a libfcgi `FCGX_Request`. libfcgi keeps pointers back into the structure, so it lives at a
/// fixed address for the owner's whole life, is initialised once and freed once, in `deinit`.
///
/// libfcgi never accepts connections here: the worker does (``Worker``), with its own wait, time-outs and
/// close-on-exec, and hands each connection over with ``begin(on:timeoutSeconds:)``. libfcgi's own accept has no
/// time-out before the first record, and spins after a signal in its wait for a unix connection's first data.
/// Param strings belong to libfcgi and die at the next accept or finish: ``param(_:)`` copies them out.
final class FastCGIRequest: RequestChannel {
    static let paramsAreEnvironment = false

    private let request: UnsafeMutablePointer<FCGX_Request>

    init() throws(SystemError) {
        request = .allocate(capacity: 1)
        do {
            // No listening socket: should libfcgi ever try to accept (after a connection it read from failed), its
            // accept fails at once and ``begin(on:timeoutSeconds:)`` returns false.
            try check("FCGX_InitRequest", FCGX_InitRequest(request, -1, 0))
        } catch {
            request.deallocate()
            throw error
        }
    }

    deinit {
        FCGX_Free(request, 1)
        request.deallocate()
    }

    /// The connection kept open after the last request (nginx `fastcgi_keep_conn on`), if any.
    var keptConnection: Int32? { request.pointee.ipcFd >= 0 ? request.pointee.ipcFd : nil }

    /// Reads the next request's head from `connection` (a new one, or nil for the kept one); false when the
    /// connection ended or broke instead, and then it is closed.
    ///
    /// Reads and writes on a new connection give up after `timeoutSeconds` of silence, so that a client that sends
    /// nothing, or stops half-way through a body, cannot hold this worker for ever; libfcgi sees the time-out as a
    /// failed read, the body as short (400), and closes the connection.
    func begin(on connection: Int32?, timeoutSeconds: Double) -> Bool {
        if let connection {
            var limit = timeval(tv_sec: Int(timeoutSeconds),
                                tv_usec: Int((timeoutSeconds - timeoutSeconds.rounded(.down)) * 1e6))
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            request.pointee.ipcFd = connection
            request.pointee.keepConnection = 1  // so that FCGX_Accept_r's finish of the last request keeps it open
        }
        return FCGX_Accept_r(request) >= 0
    }

    /// Ends the current request: the rest of the response and the end-of-request record are written here.
    /// Returns false if they could not be (the web server went away); the connection is then closed.
    func finish() -> Bool {
        let failed = FCGX_FClose(request.pointee.err) != 0 || FCGX_FClose(request.pointee.out) != 0
        FCGX_Finish_r(request)
        return !failed
    }

    /// Closes the kept connection (it stayed silent too long).
    func closeConnection() {
        FCGX_Free(request, 1)
    }

    func param(_ name: String) -> String? {
        FCGX_GetParam(name, request.pointee.envp).map { String(cString: $0) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        let chunk = Int32(clamping: buffer.count)
        return max(0, Int(FCGX_GetStr(base.assumingMemoryBound(to: CChar.self), chunk, request.pointee.in)))
    }

    /// Buffers `bytes` for the response (libfcgi writes them at the latest in ``finish()``, which says whether
    /// they arrived).
    func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return true }
            let count = Int32(buffer.count)
            return FCGX_PutStr(base.assumingMemoryBound(to: CChar.self), count, request.pointee.out) == count
        }
    }

    /// FastCGI frames the body, so it is read to its end; a body past `bound` is abandoned by closing the
    /// connection instead, which keeps a kept-alive connection from carrying leftovers into the next request.
    func discardBody(declared: Int?, bound: Int) {
        if !discard(upTo: bound) { request.pointee.keepConnection = 0 }
    }
}
