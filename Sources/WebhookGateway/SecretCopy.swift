public import WebhookCore
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// The handler's copy of the operator's secret file, made by root for a service that cannot read the original.
///
/// systemd's `LoadCredential=` copies a credential only when the service starts, and in systemd 252 a privileged
/// `ExecReload=+` command does not even see the service's credentials directory, so `systemctl reload` could
/// never hand the running handler a rotated secret that way. The units run `webhook-handler copy-secret` as root
/// (`+`) before the start and before each reload instead: it checks the operator's file (0600 root:root, usable
/// secrets) and replaces the copy in the service's runtime directory (tmpfs, owned by the service's user, removed
/// when it stops) in one rename, so the handler reads either the old copy or the new one, never half of one.
public enum SecretCopy {
    /// Copies `source` to `destination` (mode 0400, owned by the owner of `destination`'s directory); returns the
    /// warnings about `source`'s permissions, or throws why the secret cannot be used.
    public static func install(from source: String, to destination: String) throws(Outcome) -> [String] {
        guard let bytes = SecretSource.readSmallFile(source) else {
            throw .notConfigured("cannot read \(source): \(String(cString: strerror(errno)))")
        }
        if bytes.allSatisfy({ $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            throw .notConfigured("\(source) is empty: put the shared secret in it (one line)")
        }
        _ = try SecretSource.keyring(fromFile: bytes, path: source)
        let warnings = SecretSource.exposure(of: source, owner: 0).map { [$0] } ?? []

        let directory = destination.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        var owner = stat()
        guard stat(directory.isEmpty ? "/" : directory, &owner) == 0 else {
            throw .notConfigured("cannot use \(directory): \(String(cString: strerror(errno)))")
        }
        let temporary = "\(directory)/.copy-secret.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o400)
        guard fd >= 0 else { throw .notConfigured("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var failure = fchown(fd, owner.st_uid, owner.st_gid) == 0 ? nil : errno
        if failure == nil { failure = writeAll(fd, bytes) }
        close(fd)
        if failure == nil && rename(temporary, destination) != 0 { failure = errno }
        if let failure {
            unlink(temporary)
            throw .notConfigured("cannot write \(destination): \(String(cString: strerror(failure)))")
        }
        return warnings
    }
}
