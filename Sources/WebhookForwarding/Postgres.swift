import CLibPQ

#if canImport(Glibc)
import Glibc
#endif

/// A failed libpq call, in libpq's words (which name the server, never a password).
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }

    init(_ message: String) {
        self.message = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// A parameter bound to a statement: never spliced into SQL text.
enum PostgresValue {
    case text(String)
    /// Sent in binary format (for `bytea`): the bytes exactly.
    case bytes([UInt8])
    case null
}

/// One connection to PostgreSQL: the single owner of a libpq `PGconn`, finished in `deinit`. Every `PGresult` is
/// cleared before a call returns, on every path; all of libpq's pointers stay inside this file.
///
/// libpq gives the connection string its full meaning: URIs and `key=value` strings, the `PG*` environment
/// variables, `~/.pgpass`, TLS modes, and several hosts (`host=a,b target_session_attrs=read-write`).
final class PostgresConnection {
    private let connection: OpaquePointer

    init(_ conninfo: String) throws(PostgresError) {
        guard let connection = PQconnectdb(conninfo) else { throw PostgresError("out of memory") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection))
            PQfinish(connection)
            throw PostgresError(message)
        }
        self.connection = connection
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

    /// Runs one statement with bound parameters; returns its rows, each column as text (nil for NULL).
    @discardableResult
    func execute(_ sql: String, _ parameters: [PostgresValue] = []) throws(PostgresError) -> [[String?]] {
        let copies: [UnsafeMutablePointer<CChar>?] = parameters.map { value in
            switch value {
            case .text(let text): return strdup(text)
            case .bytes(let bytes):
                let copy = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, bytes.count))
                for (index, byte) in bytes.enumerated() { copy[index] = CChar(bitPattern: byte) }
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
        guard let result = PQexecParams(connection, sql, Int32(parameters.count), nil, values, lengths, formats, 0) else {
            throw PostgresError(String(cString: PQerrorMessage(connection)))
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            throw PostgresError(String(cString: PQresultErrorMessage(result)))
        }
        return (0..<PQntuples(result)).map { row in
            (0..<PQnfields(result)).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            }
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
            _ = try? execute("ROLLBACK")
            throw error
        }
    }

    /// Reads what the server sent (after ``socket`` became readable) and returns the channels notified.
    func receiveNotifications() throws(PostgresError) -> [String] {
        guard PQconsumeInput(connection) == 1 else { throw PostgresError(String(cString: PQerrorMessage(connection))) }
        return pendingNotifications()
    }

    private func pendingNotifications() -> [String] {
        var channels: [String] = []
        while let notification = PQnotifies(connection) {
            channels.append(String(cString: notification.pointee.relname))
            PQfreemem(notification)
        }
        return channels
    }
}

extension [UInt8] {
    /// A `bytea` column in PostgreSQL's text output (`\x` then hex).
    init?(byteaText text: String) {
        guard text.hasPrefix("\\x") else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((text.utf8.count - 2) / 2)
        var high: UInt8?
        for character in text.utf8.dropFirst(2) {
            let nibble: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = character - UInt8(ascii: "a") + 10
            default: return nil
            }
            if let first = high { bytes.append(first << 4 | nibble); high = nil } else { high = nibble }
        }
        guard high == nil else { return nil }
        self = bytes
    }
}
