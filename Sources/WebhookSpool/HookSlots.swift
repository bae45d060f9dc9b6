import CLinux

#if canImport(Glibc)
import Glibc
#endif

/// At most `count` hooks at once across processes: slot N is the file `DIR/N`, held with `flock` (the kernel
/// lets it go when its holder dies, however it dies).
package struct HookSlots: Sendable {
    let directory: String
    let count: Int

    init(directory: String, count: Int) {
        self.directory = directory
        self.count = max(1, count)
    }

    init(spool: Spool, count: Int) {
        self.init(directory: "\(spool.directory)/.hook-slots", count: count)
    }

    /// A free slot's descriptor (close it to give the slot back), or nil when all are taken or cannot be used.
    func tryAcquire() -> Int32? {
        for fd in openSlots() {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return fd }
            close(fd)
        }
        return nil
    }

    /// The lock of the one runner that stays to wait for retries, or nil when another has it.
    func tryAcquireTimer() -> Int32? {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { return nil }
        let fd = open("\(directory)/timer", O_RDONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return fd }
        close(fd)
        return nil
    }

    /// Waits for a slot; -1 if slots cannot be used at all (then the hook runs unthrottled).
    func acquire() -> Int32 {
        if let free = tryAcquire() { return free }
        let all = openSlots()
        guard let fd = all.randomElement() else { return -1 }
        for other in all where other != fd { close(other) }
        guard retryingOnInterrupt({ flock(fd, LOCK_EX) }) == 0 else { close(fd); return -1 }
        return fd
    }

    private func openSlots() -> [Int32] {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { return [] }
        return (0..<count).map { open("\(directory)/\($0)", O_RDONLY | O_CREAT | O_CLOEXEC, 0o600) }.filter { $0 >= 0 }
    }
}

extension Spool {
    /// Whether no runner holds `new/ID` right now.
    func isFree(_ id: String) -> Bool {
        let fd = open(path("new", id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) == 0
    }
}

/// Runs `body` with a NULL-terminated C array of `strings`.
package func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
