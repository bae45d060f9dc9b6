import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A FastCGI client that can misbehave: it writes records by hand, so it can stop half-way through a body.
final class RawFastCGIClient {
    private let fd: Int32

    init(socket path: String) throws {
        fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw TestFailure("cannot connect to \(path): \(errno)") }
    }

    deinit { close(fd) }

    /// BEGIN_REQUEST and the params, then `body` as STDIN — without the empty record that ends it.
    func start(params: [String: String], body: [UInt8]) {
        send(type: 1, [0, 1, 0, 0, 0, 0, 0, 0])  // role RESPONDER, no keep-alive
        var encoded: [UInt8] = []
        for (name, value) in params {
            for length in [name.utf8.count, value.utf8.count] {
                encoded += length < 128 ? [UInt8(length)]
                    : [UInt8(length >> 24 | 0x80), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            }
            encoded += Array(name.utf8) + Array(value.utf8)
        }
        send(type: 4, encoded)
        send(type: 4, [])
        if !body.isEmpty { send(type: 5, body) }
    }

    /// The STDOUT records until END_REQUEST (or the connection closes).
    func response() -> [UInt8] {
        var output: [UInt8] = []
        while let (type, content) = readRecord() {
            if type == 6 { output += content }
            if type == 3 { break }
        }
        return output
    }

    private func send(type: UInt8, _ content: [UInt8]) {
        let record: [UInt8] = [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xFF), 0, 0] + content
        _ = record.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    private func readRecord() -> (UInt8, [UInt8])? {
        guard let header = read(8) else { return nil }
        let length = Int(header[4]) << 8 | Int(header[5])
        guard let content = read(length + Int(header[6])) else { return nil }
        return (header[1], Array(content.prefix(length)))
    }

    private func read(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, count - filled) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return nil }
            filled += got
        }
        return bytes
    }
}
