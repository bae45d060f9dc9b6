import CFastCGI

#if canImport(Glibc)
import Glibc
#endif

/// The single owner of a libfcgi `FCGX_Request`. libfcgi keeps pointers back into the structure, so it lives at a
/// fixed address for the owner's whole life, is initialised once and freed once, in `deinit`.
///
/// Param strings belong to libfcgi and die at the next accept or finish: ``param(_:)`` copies them out.
final class FastCGIRequest: RequestChannel {
    private let request: UnsafeMutablePointer<FCGX_Request>

    /// A request slot that accepts connections on `socket` (0: the socket handed over on fd 0).
    init(socket: Int32) throws(SystemError) {
        request = .allocate(capacity: 1)
        do {
            try check("FCGX_InitRequest", FCGX_InitRequest(request, socket, 0))
        } catch {
            request.deallocate()
            throw error
        }
    }

    deinit {
        FCGX_Free(request, 1)
        request.deallocate()
    }

    /// Finishes the previous request (if any) and waits for the next; false once libfcgi stops accepting
    /// (shutdown, or the listening socket failed).
    ///
    /// Reads and writes on the connection then give up after `timeoutSeconds` of silence, so that a client that
    /// stops half-way through a body (or an idle kept-alive connection) cannot hold this worker for ever; libfcgi
    /// sees the time-out as a failed read, the body as short (400), and closes the connection.
    func accept(timeoutSeconds: Double) -> Bool {
        guard FCGX_Accept_r(request) >= 0 else { return false }
        var limit = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - timeoutSeconds.rounded(.down)) * 1e6))
        let fd = request.pointee.ipcFd
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        return true
    }

    /// Flushes and ends the current request.
    func finish() {
        FCGX_Finish_r(request)
    }

    func param(_ name: String) -> String? {
        FCGX_GetParam(name, request.pointee.envp).map { String(cString: $0) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        let chunk = Int32(clamping: buffer.count)
        return max(0, Int(FCGX_GetStr(base.assumingMemoryBound(to: CChar.self), chunk, request.pointee.in)))
    }

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
