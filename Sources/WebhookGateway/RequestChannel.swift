/// One request's conversation with the web server, whichever protocol carried it (CGI or FastCGI).
protocol RequestChannel {
    /// True when the params are this process's environment (CGI), set by the web server alone; false when they
    /// come over a socket that others may reach too (FastCGI).
    static var paramsAreEnvironment: Bool { get }
    /// A CGI meta-variable (or FastCGI param) by name, copied out of C memory.
    func param(_ name: String) -> String?
    /// Reads up to `buffer.count` body bytes; 0 at end of body or on a failed read.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int
    /// Writes all of `bytes`; false if the web server went away.
    func write(_ bytes: [UInt8]) -> Bool
    /// Discards what is left of a body that will not be read, so the web server is not cut off mid-upload
    /// (fcgiwrap and Apache answer 502 otherwise). `declared` is what `CONTENT_LENGTH` still promises, if known;
    /// never more than `bound` bytes are read.
    func discardBody(declared: Int?, bound: Int)
}

extension RequestChannel {
    /// Reads and throws away up to `limit` bytes; true if the body ended before the limit was reached.
    func discard(upTo limit: Int) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: 64 << 10, alignment: 1) { scratch in
            var left = limit
            while left > 0 {
                let count = read(into: UnsafeMutableRawBufferPointer(rebasing: scratch.prefix(left)))
                if count <= 0 { return true }
                left -= count
            }
            return false
        }
    }

    /// Reads up to `length` bytes; fewer only if the body ended early.
    func readBody(length: Int) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: length)
        let received = body.withUnsafeMutableBytes { buffer in
            var filled = 0
            while filled < length {
                let count = read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
                if count <= 0 { break }
                filled += count
            }
            return filled
        }
        if received < length { body.removeSubrange(received...) }
        return body
    }
}
