import CLinux

#if canImport(Glibc)
import Glibc
#endif

/// What `webhook-handler check` asks of a spool before any sender depends on it: every step of ``Spool``'s store
/// protocol, tried once on a probe file in `tmp/` (which consumers never read) and removed again. A CGI cannot
/// refuse to start on a file system that lacks one of them; this is how its operator finds out first.
extension Spool {
    /// One step and what went wrong, if it did.
    public struct ProbeStep: Sendable {
        public let name: String
        public let failure: SystemError?
    }

    /// The steps in order, up to and including the first that fails (the later ones need it).
    public func probe() -> [ProbeStep] {
        var steps: [ProbeStep] = []
        func attempt(_ name: String, _ body: () throws(SystemError) -> Void) -> Bool {
            do throws(SystemError) {
                try body()
                steps.append(ProbeStep(name: name, failure: nil))
                return true
            } catch {
                steps.append(ProbeStep(name: name, failure: error))
                return false
            }
        }
        let tmp = path("tmp")
        let name = path("tmp", ".check-\(getpid())")
        var fd: Int32 = -1
        defer {
            if fd >= 0 { close(fd) }
            unlink(name)  // a probe left named by a failed step
        }
        _ = attempt("create \(directory) and its new/, cur/, tmp/") { () throws(SystemError) in try prepare() }
            && attempt("an unnamed file in new/ (O_TMPFILE)") { () throws(SystemError) in try checkUnnamedFiles() }
            && attempt("write and fsync an unnamed file in tmp/") { () throws(SystemError) in
                fd = try check("create an unnamed file in \(tmp) (O_TMPFILE)",
                               open(tmp, clinux_o_tmpfile() | O_WRONLY | O_CLOEXEC, fileMode))
                if let failure = writeAll(fd, Array("webhook-handler check\n".utf8)) {
                    throw SystemError(operation: "write into \(tmp)", code: failure)
                }
                try check("fsync the file", fsync(fd))
            }
            && attempt("name it with linkat") { () throws(SystemError) in
                try check("link \(name)", linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, name, AT_SYMLINK_FOLLOW))
            }
            && attempt("fsync the directories tmp/ and new/") { () throws(SystemError) in
                try Self.syncDirectory(tmp)
                try Self.syncDirectory(path("new"))
            }
            && attempt("remove the probe") { () throws(SystemError) in
                try check("unlink \(name)", unlink(name))
                try Self.syncDirectory(tmp)
            }
        return steps
    }

    /// The type of the file system the spool is on (the mount holding it in /proc/self/mountinfo: ext4, xfs, nfs4,
    /// fuse.sshfs, tmpfs…), and whether what it holds survives a reboot.
    public func fileSystem() -> (name: String, persistent: Bool)? {
        guard let resolved = realpath(directory, nil) else { return nil }
        let path = String(cString: resolved)
        free(resolved)
        let fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // Each line: ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS; the last
        // mount whose point holds the path is the one that counts (later mounts hide earlier ones).
        var best: (point: String, type: String)?
        for line in String(decoding: readAll(fd) ?? [], as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count > 6, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { continue }
            let point = Self.unescapeMountPoint(fields[4])
            let holds = point == "/" || path == point || path.hasPrefix(point + "/")
            if holds && point.count >= (best?.point.count ?? 0) { best = (point, fields[dash + 1]) }
        }
        return best.map { ($0.type, !["tmpfs", "ramfs"].contains($0.type)) }
    }

    /// mountinfo writes space, tab, newline and backslash in octal (`\040`).
    private static func unescapeMountPoint(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        var rest = Substring(text).utf8[...]
        while let byte = rest.first {
            if byte == UInt8(ascii: "\\"), rest.count >= 4,
               let code = UInt8(String(decoding: rest.dropFirst().prefix(3), as: UTF8.self), radix: 8)
            {
                bytes.append(code)
                rest = rest.dropFirst(4)
            } else {
                bytes.append(byte)
                rest = rest.dropFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
