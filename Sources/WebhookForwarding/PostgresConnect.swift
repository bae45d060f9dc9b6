import CLibPQ
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

extension PostgresConnection {
    /// Client-side time-outs libpq leaves off unless told: a half-open connection is noticed within about a minute
    /// (keepalives after 30 s idle, 3 probes 10 s apart; unacknowledged data for 60 s). The URL, a `PG*`
    /// variable or a service file's `connect_timeout` overrides them; a service file's keepalive values are
    /// overridden by these (put them in the URL instead).
    static let defaults = [
        ("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"), ("keepalives_count", "3"),
        ("tcp_user_timeout", "60000"),
    ]
    /// Seconds for each host to answer when nothing says otherwise (libpq's own default is to wait forever).
    static let defaultConnectTimeout = 10.0

    /// Connects to `url` (a URI, `key=value` pairs, or empty for the `PG*` variables and service files), waiting
    /// at most `connect_timeout` for each host before trying the next, and giving up at once when `stop` becomes
    /// readable. The session then commits synchronously whatever the server's or the role's default is.
    convenience init(_ url: String, stop: Int32 = -1) throws(PostgresError) {
        let (connection, secrets) = try Self.open(url, stop: stop)
        self.init(connection: connection, stop: stop, secrets: secrets)
        try execute("SET synchronous_commit = on")
    }

    private static func open(_ url: String, stop: Int32) throws(PostgresError) -> (OpaquePointer, [String]) {
        var given = Set<String>()
        var secrets: [String] = []
        if url.contains("=") || url.hasPrefix("postgres") {
            var message: UnsafeMutablePointer<CChar>?
            guard let options = PQconninfoParse(url, &message) else {
                let said = message.map { String(cString: $0) } ?? "cannot be parsed"
                if let message { PQfreemem(message) }
                throw PostgresError("the database URL is malformed: \(Self.unquoted(said))")
            }
            defer { PQconninfoFree(options) }
            var option = options
            while let keyword = option.pointee.keyword {
                if let value = option.pointee.val {
                    given.insert(String(cString: keyword))
                    if String(cString: keyword) == "password" { secrets.append(String(cString: value)) }
                }
                option += 1
            }
        }
        var settings = Self.defaults.filter { !given.contains($0.0) }
        settings.append(("dbname", url))  // expanded last: whatever the URL says wins
        while true {
            let connection = try Self.start(settings, secrets: secrets)
            let (hosts, timeout) = Self.resolved(connection)
            do throws(PostgresError) {
                try Self.complete(connection, stop: stop, seconds: timeout, secrets: secrets)
                return (connection, secrets)
            } catch {
                PQfinish(connection)
                // libpq only moves on to the next host by itself when one refuses; one that is silent ran out of
                // time here: try the rest without it.
                guard error.state == "timeout", let rest = Self.withoutFirstHost(hosts) else { throw error }
                Log.write(.warning, "\(error); trying the next host")
                settings.removeAll { ["host", "hostaddr", "port"].contains($0.0) }
                settings += rest
            }
        }
    }

    private static func start(_ settings: [(String, String)], secrets: [String]) throws(PostgresError) -> OpaquePointer {
        let connection = withCStrings(settings.map(\.0)) { keys in
            withCStrings(settings.map(\.1)) { values in
                keys.withUnsafeBufferPointer { k in
                    values.withUnsafeBufferPointer { v in
                        PQconnectStartParams(UnsafeRawPointer(k.baseAddress!).assumingMemoryBound(to: UnsafePointer<CChar>?.self),
                                             UnsafeRawPointer(v.baseAddress!).assumingMemoryBound(to: UnsafePointer<CChar>?.self), 1)
                    }
                }
            }
        }
        guard let connection else { throw PostgresError("out of memory") }
        guard PQstatus(connection) != CONNECTION_BAD else {
            let message = redacted(String(cString: PQerrorMessage(connection)), secrets: secrets)
            PQfinish(connection)
            throw PostgresError(message.contains("invalid") ? unquoted(message) : message)
        }
        return connection
    }

    /// The host, hostaddr and port lists and the per-host time-out, as libpq resolved them (URL, variables,
    /// service file).
    private static func resolved(_ connection: OpaquePointer) -> ([String: String], Double) {
        var values: [String: String] = [:]
        if let options = PQconninfo(connection) {
            defer { PQconninfoFree(options) }
            var option = options
            while let keyword = option.pointee.keyword {
                if let value = option.pointee.val { values[String(cString: keyword)] = String(cString: value) }
                option += 1
            }
        }
        let timeout = values["connect_timeout"].flatMap { Double($0) }.flatMap { $0 > 0 ? max(2, $0) : nil }
        return (values.filter { ["host", "hostaddr", "port"].contains($0.key) },
                timeout ?? defaultConnectTimeout)
    }

    /// The host lists after the first host, or nil when it was the only one.
    private static func withoutFirstHost(_ lists: [String: String]) -> [(String, String)]? {
        let hosts = lists["host"].map { $0.split(separator: ",", omittingEmptySubsequences: false) } ?? []
        guard hosts.count > 1 else { return nil }
        return lists.compactMap { key, value in
            let items = value.split(separator: ",", omittingEmptySubsequences: false)
            return (key, items.count > 1 ? items.dropFirst().joined(separator: ",") : value)
        }
    }

    /// Drives `PQconnectPoll` until the connection is made, `seconds` pass without it, or `stop` fires.
    private static func complete(_ connection: OpaquePointer, stop: Int32, seconds: Double,
                                 secrets: [String]) throws(PostgresError) {
        var deadline = Clock.now() + seconds
        var socket = PQsocket(connection)
        var polling = PGRES_POLLING_WRITING
        while true {
            switch polling {
            case PGRES_POLLING_OK: return
            case PGRES_POLLING_FAILED:
                throw PostgresError(redacted(String(cString: PQerrorMessage(connection)), secrets: secrets))
            default: break
            }
            if PQsocket(connection) != socket {  // libpq moved on to the next host (the last one refused)
                socket = PQsocket(connection)
                deadline = Clock.now() + seconds
            }
            let events = Int16(polling == PGRES_POLLING_READING ? POLLIN : POLLOUT)
            var fds = [pollfd(fd: socket, events: events, revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
            let left = deadline - Clock.now()
            let host = PQhost(connection).map { String(cString: $0) } ?? "?"
            guard left > 0 else {
                throw PostgresError("\(host) did not answer within \(Int(seconds))s (connect_timeout)", state: "timeout")
            }
            if poll(&fds, stop >= 0 ? 2 : 1, Int32(min(left, 1) * 1000)) < 0 && errno != EINTR {
                throw PostgresError("poll: \(String(cString: strerror(errno)))")
            }
            if stop >= 0 && fds[1].revents != 0 { throw PostgresError.stopped }
            if fds[0].revents != 0 { polling = PQconnectPoll(connection) }
        }
    }

    /// libpq's message with every known password replaced, so that no secret reaches a log.
    static func redacted(_ message: String, secrets: [String]) -> String {
        secrets.filter { !$0.isEmpty }.reduce(message) { $0.replacingAll($1, with: "[password]") }
    }

    /// A message about a malformed connection string quotes the string around the fault, which may be a password:
    /// keep the words, drop the quotes' contents.
    static func unquoted(_ message: String) -> String {
        var result = "", quoted = false
        for character in message {
            if character == "\"" {
                quoted.toggle()
                result += quoted ? "\"…" : "\""
            } else if !quoted {
                result.append(character)
            }
        }
        return result
    }
}

/// Runs `body` with a NULL-terminated C array of `strings`.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = "", rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
