public import WebhookCore
public import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// Serves one request over any ``RequestChannel``: reads the head, asks the core, reads the body only when the
/// answer needs it, writes the CGI response and returns the line for the access log.
public struct Responder: Sendable {
    public let verifier: Verifier
    /// The secrets configured at start-up: a request's params may choose among them, never add to them.
    public let secrets: Secrets
    /// Where verified payloads are kept before the 200; without one the handler only verifies.
    public let spool: Spool?
    /// The command verified payloads are handed to, if any.
    public var hook: Hook?
    /// A FastCGI server's counts, for its status page.
    public var scoreboard: Scoreboard? {
        didSet { hook?.counters = scoreboard }
    }
    /// Which requests get an access line.
    public let accessLog: AccessLogPolicy
    /// The journal's shared positions in a FastCGI server, for the status page.
    var journalBoard: JournalBoard?
    /// The handler's version, for the status page.
    public var version = "unknown"

    public init(verifier: Verifier, secrets: Secrets, spool: Spool? = nil, hook: Hook? = nil,
                accessLog: AccessLogPolicy = .all) {
        self.verifier = verifier
        self.secrets = secrets
        self.spool = spool
        self.hook = hook
        self.accessLog = accessLog
    }

    /// At most this much of an unwanted body is read and discarded before giving up on it.
    var discardBound: Int { verifier.maxBodyBytes + (64 << 10) }

    /// `journal`: a FastCGI worker's, for the spool (a CGI has none).
    func respond(over channel: some RequestChannel, journal: Journal? = nil) -> AccessRecord {
        let started = Clock.now()
        if let endpoint = channel.param(StatusPage.endpointVariable), !endpoint.isEmpty {
            var page = StatusPage(scoreboard: scoreboard, spool: spool)
            (page.board, page.secrets, page.roomNeeded, page.version) = (journalBoard, secrets, discardBound, version)
            return page.respond(to: endpoint, over: channel, journal: journal, started: started)
        }
        let (verifier, sender, keys) = configuration(for: channel)
        var headers: [String: String] = [:]
        for name in verifier.scheme.params { headers[name] = channel.param(name) }
        let head = RequestHead(
            method: channel.param("REQUEST_METHOD") ?? "",
            contentLength: channel.param("CONTENT_LENGTH"),
            transferEncoding: channel.param("HTTP_TRANSFER_ENCODING"),
            headers: headers
        )
        let outcome: Outcome
        var received = 0
        switch verifier.admit(head, keys: keys, now: Int64(time(nil))) {
        case .answer(let early):
            outcome = early
            channel.discardBody(declared: head.contentLength.flatMap { Int($0) }, bound: discardBound)
        case .readBody(let pending):
            let body = channel.readBody(length: pending.expected.readLimit)
            received = body.count
            // A body without a length is read to its end; past the limit, the rest is discarded.
            let rest = if case .toEnd = pending.expected { discardBound } else { 0 }
            channel.discardBody(declared: rest, bound: discardBound)
            outcome = handOff(body, verdict: pending.verify(body), sender: sender, scheme: verifier.scheme,
                              channel: channel, journal: journal)
        }
        let delivered = channel.write(outcome.cgiResponse)
        var record = AccessRecord(
            remoteAddress: channel.param("REMOTE_ADDR"),
            method: head.method,
            outcome: outcome,
            bodyBytes: received,
            seconds: Clock.now() - started,
            delivered: delivered
        )
        record.requestID = channel.param(AccessRecord.requestIDParam).flatMap { $0.isEmpty ? nil : $0 }
        return record
    }

    /// What becomes of a verified body: stored in the spool, or handed to the hook, or (with neither) nothing.
    private func handOff(_ body: [UInt8], verdict: Outcome, sender: String?, scheme: SignatureScheme,
                         channel: some RequestChannel, journal: Journal?) -> Outcome {
        guard verdict.isVerified, spool != nil || hook != nil else { return verdict }
        var envelope = Envelope(
            body: body, id: verdict.verification?.payloadID(of: body, sender: sender, scheme: scheme),
            remoteAddress: channel.param("REMOTE_ADDR"), contentType: channel.param("CONTENT_TYPE"),
            sender: sender, scheme: scheme.rawValue)
        envelope.requestID = channel.param(AccessRecord.requestIDParam).flatMap { $0.isEmpty ? nil : $0 }
        if let spool {
            let stored = spool.store(body, envelope: envelope, journal: journal)
            return stored.receipt.map { verdict.stored($0) } ?? stored
        }
        let handedOff = hook!.handOff(body, envelope: envelope, slots: hook!.privateSlots)
        return handedOff.isVerified ? verdict : handedOff
    }

    /// After the response has gone: the access line, then (with a spool) a hook runner for a newly stored
    /// payload, unless it was `journaled` (the namer starts one once it has named it). `hookLog` is where that
    /// runner logs, when not to stderr.
    func complete(_ record: AccessRecord, hookLog: String? = nil, journaled: Bool = false) {
        if record.isEndpoint { return }
        if accessLog.records(record) { Log.write(record.level, "request", fields: record.fields) }
        if spool?.journaled == true, journalBoard != nil, record.outcome.receipt != nil, !journaled {
            scoreboard?.add(.journalFallbacks)
        }
        if let hook, let spool, let receipt = record.outcome.receipt, !receipt.duplicate, !journaled {
            hook.startRunner(for: spool, logFile: hookLog)
        }
    }

    /// The verifier, sender and secrets for this request. The web server may choose, per location, a scheme
    /// (`WEBHOOK_SCHEME`) and a sender configured at start-up (`WEBHOOK_SENDER`); unknown ones fail closed. A
    /// FastCGI request that carries key material itself is refused: see ``Secrets``.
    private func configuration<Channel: RequestChannel>(for channel: Channel)
        -> (Verifier, sender: String?, Result<Keyring, Outcome>)
    {
        let sender = channel.param(SecretSource.senderVariable).flatMap { $0.isEmpty ? nil : $0 }
        var keys = secrets.keyring(forSender: sender)
        if !Channel.paramsAreEnvironment, let param = SecretSource.keyParams.first(where: { channel.param($0) != nil }) {
            keys = .failure(.notConfigured("the request carries a \(param) param; secrets cannot come with a request: "
                + "configure them when the handler starts (\(SecretSource.directoryVariable)/NAME.secret) and choose "
                + "one with fastcgi_param \(SecretSource.senderVariable) NAME"))
        }
        guard let name = channel.param("WEBHOOK_SCHEME"), !name.isEmpty else { return (verifier, sender, keys) }
        guard let scheme = verifier.scheme(named: name) else {
            return (verifier, sender, .failure(.notConfigured("WEBHOOK_SCHEME \(Log.printable(name)) is not a known scheme")))
        }
        return (verifier.with(scheme: scheme), sender, keys)
    }
}
