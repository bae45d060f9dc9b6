import CLinux
import WebhookCore
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// One worker process: waits for a connection (or the next request on a kept one), serves its requests one at a
/// time, and stops between requests when told to.
struct Worker {
    let server: FastCGIServer
    let socket: Int32
    /// `FCGI_WEB_SERVER_ADDRS`: for TCP, the IPv4 addresses allowed to connect (libfcgi's rule); nil allows all.
    let allowedAddresses: Set<String>? = Environment.value("FCGI_WEB_SERVER_ADDRS").map { list in
        Set(list.split(separator: ",").map { String($0.filter { $0 != " " }) })
    }

    /// Returns the worker's exit status.
    func serve() -> Int32 {
        // SIGTERM and SIGINT arrive as a readable descriptor between requests, never as an interruption inside one;
        // in accept, they end the wait (``AcceptInterruption``).
        let stop = Signals.stopDescriptor()
        guard stop >= 0, AcceptInterruption.install(listening: socket) else {
            Log.write(.error, "worker cannot serve: \(stop < 0 ? "signalfd" : "sigaction"): \(String(cString: strerror(errno)))")
            return 1
        }
        let request: FastCGIRequest
        do { request = try FastCGIRequest() } catch {
            Log.write(.error, "worker cannot serve: \(error)")
            return 1
        }
        var journal = JournalHold(spool: server.journaledSpool, board: server.journalBoard)
        var stopping = false
        while true {
            if let kept = request.keptConnection {
                // The web server keeps this connection for its next request, even while we stop: it closes it.
                let timeout = min(journal.idleTimeout ?? .infinity, server.readTimeoutSeconds)
                switch wait(for: kept, stop: stopping ? -1 : stop, timeout: timeout) {
                case .stop: stopping = true; continue
                case .timedOut:
                    if !journal.checkpointWhenIdle() { request.closeConnection() }
                    continue
                case .ready: break
                }
                if request.begin(on: nil, timeoutSeconds: server.readTimeoutSeconds) { serveRequest(request, &journal) }
                continue
            }
            if stopping {
                journal.release()
                return 0
            }
            server.responder.scoreboard?.mark(.idle)  // no kept connection (any more)
            let connection: Int32
            switch accept() {
            case .stop: stopping = true; continue
            case .timedOut: _ = journal.checkpointWhenIdle(); continue
            case .again: continue
            case .connection(let accepted): connection = accepted
            }
            if request.begin(on: connection, timeoutSeconds: server.readTimeoutSeconds) { serveRequest(request, &journal) }
        }
    }

    private func serveRequest(_ request: FastCGIRequest, _ journal: inout JournalHold) {
        let scoreboard = server.responder.scoreboard
        scoreboard?.beginRequest()
        let current = journal.current()
        var record = server.responder.respond(over: request, journal: current)
        if !request.finish() { record.delivered = false }
        scoreboard?.endRequest(record, kept: request.keptConnection != nil)
        server.responder.complete(record, journaled: current != nil && current?.failure == nil)
    }

    enum Wake { case ready, stop, timedOut }

    /// Waits until `fd` is readable, a stop signal is pending (`stop` < 0: not watched), or `timeout` passes.
    private func wait(for fd: Int32, stop: Int32, timeout: Double?) -> Wake {
        var polled = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        let milliseconds = timeout.map { Int32(min($0 * 1000, Double(Int32.max))) } ?? -1
        let count = poll(&polled, stop >= 0 ? 2 : 1, milliseconds)
        if count == 0 { return .timedOut }
        if count < 0 { return errno == EINTR ? .timedOut : .stop }
        if stop >= 0 && polled[1].revents != 0 { return .stop }
        return .ready
    }

    enum Accepted { case connection(Int32), stop, timedOut, again }

    /// Waits for a new connection in a blocking accept(2), as libfcgi's own workers do: the kernel queues the
    /// waiting workers and wakes one per connection, which takes it (a poll on the shared socket woke every idle
    /// worker, all but one in vain; epoll's EPOLLEXCLUSIVE left a burst queued behind the one worker it woke).
    /// The stop signals are let in only here, where ``AcceptInterruption`` makes them end the wait.
    private func accept() -> Accepted {
        var stopSignals = Signals.set([SIGTERM, SIGINT])
        sigprocmask(SIG_UNBLOCK, &stopSignals, nil)
        let connection = clinux_accept_cloexec(socket)
        let failure = errno
        sigprocmask(SIG_BLOCK, &stopSignals, nil)
        guard connection >= 0 else {
            // A stop signal came (before or during the wait): the descriptor is now a spare that listens on nothing.
            // One that comes just after a connection was taken is seen at the next accept.
            if !FastCGIServer.isListening(socket) { return .stop }
            switch failure {
            case EAGAIN, EWOULDBLOCK: return .timedOut
            case EINTR, ECONNABORTED, EPROTO: return .again
            default:  // EMFILE, ENFILE, ENOBUFS, ENOMEM: out of something; pause rather than spin on it
                Log.write(.error, "worker cannot accept: \(String(cString: strerror(failure))); pausing 1s")
                sleep(1)
                return .again
            }
        }
        guard isAllowed(connection) else { close(connection); return .again }
        return .connection(connection)
    }

    /// TCP: only `FCGI_WEB_SERVER_ADDRS` may connect, and responses go out without Nagle's delay.
    private func isAllowed(_ connection: Int32) -> Bool {
        var address = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let family = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(connection, $0, &size) == 0 ? Int32($0.pointee.sa_family) : -1 }
        }
        guard family == AF_INET || family == AF_INET6 else { return true }
        var on: Int32 = 1
        setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        guard let allowedAddresses else { return true }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        withUnsafePointer(to: &address) { pointer in
            if family == AF_INET {
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                    var bits = inet.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &bits, &text, socklen_t(text.count))
                }
            }
        }
        let peer = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if allowedAddresses.contains(peer) { return true }
        Log.write(.warning, "refused a connection from \(peer.isEmpty ? "an IPv6 address" : peer): not in FCGI_WEB_SERVER_ADDRS")
        return false
    }
}
