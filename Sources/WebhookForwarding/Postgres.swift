import CLibPQ
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// A failed libpq call, in libpq's words with any password taken out (see ``PostgresConnection/redacted(_:)``).
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// The server's SQLSTATE, when it sent one; "stop" when a stop signal ended the wait.
    public let state: String?
    public var description: String { message }

    init(_ message: String, state: String? = nil) {
        self.message = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        self.state = state
    }

    static let stopped = PostgresError("stopped by a signal", state: "stop")

    /// A statement that failed because of the data it carried (a value too large, a constraint, a limit): the
    /// same statement with fewer rows might pass. Connection and server failures are not.
    var isAboutTheData: Bool {
        guard let state else { return false }
        return ["22", "23", "54"].contains(String(state.prefix(2))) || state == "53200"  // …, out of memory
    }
}

/// A parameter bound to a statement: never spliced into SQL text.
enum PostgresValue {
    case text(String)
    /// Sent in binary format (for `bytea`, or an ``array(_:of:)``): the bytes exactly.
    case bytes([UInt8])
    case null

    /// PostgreSQL's type ids of the arrays' elements.
    enum Element: UInt32 {
        case bytea = 17
        case text = 25
    }

    /// A one-dimensional array in PostgreSQL's binary format (what `array_recv` reads): a whole batch's column as
    /// one parameter, for `unnest($1::text[], …)`. Every number is big-endian; a NULL element has length -1.
    static func array(_ elements: [[UInt8]?], of element: Element) -> PostgresValue {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(20 + elements.reduce(0) { $0 + 4 + ($1?.count ?? 0) })
        func append(_ value: Int32) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
        let hasNull = elements.contains { $0 == nil }
        for header in [1, hasNull ? 1 : 0, Int32(bitPattern: element.rawValue), Int32(elements.count), 1] as [Int32] {
            append(header)  // dimensions, has-nulls, element type, length, lower bound
        }
        for element in elements {
            append(element.map { Int32($0.count) } ?? -1)
            if let element { bytes += element }
        }
        return .bytes(bytes)
    }
}

/// What a statement returned. Columns arrive in binary format (so a role's `bytea_output` cannot change a body):
/// text columns as their UTF-8 bytes, `bytea` as the bytes; queries cast anything else `::text`.
struct PostgresRows {
    let rows: [[[UInt8]?]]
    /// Rows inserted, updated or deleted.
    let affected: Int

    var first: [[UInt8]?]? { rows.first }
}

extension Array where Element == [UInt8]? {
    func text(_ column: Int) -> String? { self[column].map { String(decoding: $0, as: UTF8.self) } }
    func int(_ column: Int) -> Int? { text(column).flatMap { Int($0) } }
}

/// One connection to PostgreSQL: the single owner of a libpq `PGconn`, finished in `deinit`. Every `PGresult` is
/// cleared before a call returns, on every path; all of libpq's pointers stay inside this file and
/// PostgresConnect.swift.
///
/// Every wait for the server is a `poll` on its socket together with `stop` (the stop signals' descriptor): a
/// silent network never holds up SIGTERM by more than half a second.
final class PostgresConnection {
    let connection: OpaquePointer
    let stop: Int32
    let secrets: [String]

    init(connection: OpaquePointer, stop: Int32, secrets: [String]) {
        self.connection = connection
        self.stop = stop
        self.secrets = secrets
    }

    deinit { PQfinish(connection) }

    /// `host:port` of the server this connection reached (of several, the one that answered).
    var server: String {
        let host = PQhost(connection).map { String(cString: $0) } ?? "?"
        let port = PQport(connection).map { String(cString: $0) } ?? "?"
        return host.hasPrefix("/") ? "\(host) (socket, port \(port))" : "\(host):\(port)"
    }

    /// The connection's socket, to wait on for notifications.
    var socket: Int32 { PQsocket(connection) }

    func failure(_ state: String? = nil) -> PostgresError {
        PostgresError(Self.redacted(String(cString: PQerrorMessage(connection)), secrets: secrets), state: state)
    }

    /// Runs one statement with bound parameters and returns its rows (binary format).
    @discardableResult
    func execute(_ sql: String, _ parameters: [PostgresValue] = []) throws(PostgresError) -> PostgresRows {
        try send(sql, parameters)
        return try receive()
    }

    /// Sends a statement without waiting for its result: the caller may work meanwhile (the server runs it), but
    /// must call ``receive()`` before anything else is sent on this connection.
    func send(_ sql: String, _ parameters: [PostgresValue]) throws(PostgresError) {
        let copies: [UnsafeMutablePointer<CChar>?] = parameters.map { value in
            switch value {
            case .text(let text): return strdup(text)
            case .bytes(let bytes):
                let copy = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, bytes.count))
                bytes.withUnsafeBytes { UnsafeMutableRawPointer(copy).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                return copy
            case .null: return nil
            }
        }
        defer {
            for (copy, value) in zip(copies, parameters) {
                if case .bytes = value { copy?.deallocate() } else { free(copy) }
            }
        }
        let lengths = parameters.map { value -> Int32 in
            if case .bytes(let bytes) = value { Int32(bytes.count) } else { 0 }
        }
        let formats = parameters.map { value -> Int32 in if case .bytes = value { 1 } else { 0 } }
        let values = copies.map { UnsafePointer($0) }
        guard PQsendQueryParams(connection, sql, Int32(parameters.count), nil, values, lengths, formats, 1) == 1 else {
            throw failure()
        }
        while true {  // a large batch does not fit the socket's buffer at once
            let flushed = PQflush(connection)
            if flushed == 0 { return }
            guard flushed > 0 else { throw failure() }
            try wait(for: Int16(POLLIN | POLLOUT))
            guard PQconsumeInput(connection) == 1 else { throw failure() }
        }
    }

    /// Reads the results of the statement sent last, to the end (after its implicit transaction's commit, when it
    /// ran outside `BEGIN`); the first error among them is thrown.
    @discardableResult
    func receive() throws(PostgresError) -> PostgresRows {
        var rows: [[[UInt8]?]] = []
        var affected = 0
        var error: PostgresError?
        while true {
            while PQisBusy(connection) == 1 {
                try wait(for: Int16(POLLIN))
                guard PQconsumeInput(connection) == 1 else { throw failure() }
            }
            guard let result = PQgetResult(connection) else { break }
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
                if error == nil {
                    let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
                    let message = Self.redacted(String(cString: PQresultErrorMessage(result)), secrets: secrets)
                    error = PostgresError(message, state: state)
                }
                continue
            }
            affected += Int(String(cString: PQcmdTuples(result))) ?? 0
            rows += (0..<PQntuples(result)).map { row in
                (0..<PQnfields(result)).map { column -> [UInt8]? in
                    guard PQgetisnull(result, row, column) == 0 else { return nil }
                    let count = Int(PQgetlength(result, row, column))
                    return PQgetvalue(result, row, column).withMemoryRebound(to: UInt8.self, capacity: count) {
                        Array(UnsafeBufferPointer(start: $0, count: count))
                    }
                }
            }
        }
        if let error { throw error }
        return PostgresRows(rows: rows, affected: affected)
    }

    /// Waits until the socket is ready for `events`: on its own for the first half second (a healthy server
    /// answers well within it, and a statement under way is not abandoned lightly), then together with `stop`.
    func wait(for events: Int16, seconds: Double = .infinity) throws(PostgresError) {
        let deadline = Clock.now() + seconds
        var first = true
        while true {
            let left = deadline - Clock.now()
            guard left > 0 else { throw PostgresError("timed out waiting for \(server)", state: "timeout") }
            var fds = [pollfd(fd: socket, events: events, revents: 0)]
            if !first && stop >= 0 { fds.append(pollfd(fd: stop, events: Int16(POLLIN), revents: 0)) }
            let slice = first ? min(left, 0.5) : min(left, 3600)
            first = false
            guard poll(&fds, nfds_t(fds.count), Int32(slice * 1000)) >= 0 || errno == EINTR else { throw failure() }
            if fds.count > 1 && fds[1].revents != 0 { throw PostgresError.stopped }
            if fds[0].revents != 0 { return }
        }
    }

    /// Runs `body` in a transaction: committed if it returns, rolled back if it throws.
    func transaction<T>(_ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            if error.state != "stop" { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Reads what the server sent (after ``socket`` became readable) and returns the channels notified.
    func receiveNotifications() throws(PostgresError) -> [String] {
        guard PQconsumeInput(connection) == 1 else { throw failure() }
        var channels: [String] = []
        while let notification = PQnotifies(connection) {
            channels.append(String(cString: notification.pointee.relname))
            PQfreemem(notification)
        }
        return channels
    }
}
