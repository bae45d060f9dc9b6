public import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

/// Serves one request over any ``RequestChannel``: reads the head, asks the core, reads the body only when the
/// answer needs it, writes the CGI response and returns the line for the access log.
public struct Responder: Sendable {
    public let verifier: Verifier
    /// The secret from the process environment, or the 500 explaining why there is none.
    public let processSecret: Result<Secret, Outcome>

    public init(verifier: Verifier, processSecret: Result<Secret, Outcome>) {
        self.verifier = verifier
        self.processSecret = processSecret
    }

    /// At most this much of an unwanted body is read and discarded before giving up on it.
    var discardBound: Int { verifier.maxBodyBytes + (64 << 10) }

    func respond(over channel: some RequestChannel) -> AccessRecord {
        let started = Clock.now()
        let head = RequestHead(
            method: channel.param("REQUEST_METHOD") ?? "",
            signature: channel.param("HTTP_X_SIGNATURE"),
            contentLength: channel.param("CONTENT_LENGTH")
        )
        let outcome: Outcome
        var received = 0
        switch verifier.admit(head, secret: secret(for: channel)) {
        case .answer(let early):
            outcome = early
            channel.discardBody(declared: head.contentLength.flatMap { Int($0) }, bound: discardBound)
        case .readBody(let pending):
            let body = channel.readBody(length: pending.length)
            received = body.count
            outcome = pending.verify(body)
            channel.discardBody(declared: 0, bound: discardBound)
        }
        let delivered = channel.write(outcome.cgiResponse)
        return AccessRecord(
            remoteAddress: channel.param("REMOTE_ADDR"),
            method: head.method,
            outcome: outcome,
            bodyBytes: received,
            seconds: Clock.now() - started,
            delivered: delivered
        )
    }

    /// A secret the web server sets for this request (nginx `fastcgi_param API_SECRET_KEY`) wins over the
    /// process's. Clients cannot set it: their headers only ever arrive as `HTTP_*`.
    private func secret(for channel: some RequestChannel) -> Result<Secret, Outcome> {
        guard let text = channel.param("API_SECRET_KEY"), !text.isEmpty else { return processSecret }
        return Result { () throws(Outcome) in try Secret(text) }
    }
}

/// Monotonic seconds, for request durations.
enum Clock {
    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
