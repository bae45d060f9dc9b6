public import WebhookCore
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// Where the shared secrets come from: `API_SECRET_KEY` (and, during a rotation, `API_SECRET_KEY_PREVIOUS`), or
/// the file named by `API_SECRET_KEY_FILE`, one secret per line, the current one first. The variable wins when
/// both are set.
public enum SecretSource {
    public static let variable = "API_SECRET_KEY"
    public static let previousVariable = "API_SECRET_KEY_PREVIOUS"
    public static let fileVariable = "API_SECRET_KEY_FILE"
    /// A directory of named senders' secrets, `NAME.secret` each.
    public static let directoryVariable = "WEBHOOK_SECRETS_DIR"
    /// The param (or, as a CGI, variable) with which the web server chooses one of them for a location.
    public static let senderVariable = "WEBHOOK_SENDER"
    /// Standard Webhooks `v1a` public keys (`whpk_…`, whitespace-separated), or a file of them.
    public static let publicKeysVariable = "WEBHOOK_PUBLIC_KEYS"
    public static let publicKeysFileVariable = "WEBHOOK_PUBLIC_KEYS_FILE"

    /// The secrets configured in this process's environment, or the 500 that says what is wrong.
    public static func fromEnvironment() -> Result<Keyring, Outcome> {
        from(Environment.value)
    }

    static let noneSet = "neither \(variable) nor \(fileVariable) is set"

    /// Whether the environment names a secret or a public key at all (usable or not).
    public static var isNamedInEnvironment: Bool {
        [variable, fileVariable, publicKeysVariable, publicKeysFileVariable].contains {
            Environment.value($0)?.isEmpty == false
        }
    }

    /// A warning for each secret file that its group or others can read: `API_SECRET_KEY_FILE` and every
    /// `NAME.secret` in the senders' directory `sendersDirectory`. (Under systemd the first is the handler's own
    /// copy; `webhook-handler copy-secret`, which makes it as root, checks the operator's file.)
    public static func fileExposures(sendersDirectory: String?) -> [String] {
        var paths: [String] = []
        if Environment.value(variable)?.isEmpty != false, let path = Environment.value(fileVariable) { paths.append(path) }
        if let sendersDirectory, let names = try? directoryEntries(sendersDirectory) {
            paths += names.filter { $0.hasSuffix(".secret") }.map { "\(sendersDirectory)/\($0)" }
        }
        return paths.compactMap { exposure(of: $0) }
    }

    /// Why the secret file at `path` is readable by more than its owner (`root` too, if `owner` is given), or nil.
    static func exposure(of path: String, owner: uid_t? = nil) -> String? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        let mode = "0\(String(status.st_mode & 0o777, radix: 8))"
        if status.st_mode & 0o077 != 0 {
            return "\(path) is readable by group or others (mode \(mode)); chmod 600 it"
        }
        if let owner, status.st_uid != owner {
            return "\(path) belongs to uid \(status.st_uid), not \(owner): whoever that is can read it; chown it"
        }
        return nil
    }

    /// The secrets named by `lookup` (the environment, or a FastCGI request's params).
    static func from(_ lookup: (String) -> String?) -> Result<Keyring, Outcome> {
        Result { () throws(Outcome) in
            let publicKeys = try publicKeys(lookup)
            if let text = lookup(variable), !text.isEmpty {
                var secrets = [try Secret(text)]
                if let previous = lookup(previousVariable), !previous.isEmpty {
                    secrets.append(try Secret(previous, source: previousVariable))
                }
                return Keyring(secrets, publicKeys: publicKeys)
            }
            guard let path = lookup(fileVariable), !path.isEmpty else {
                guard !publicKeys.isEmpty else { throw Outcome.notConfigured(noneSet) }
                return Keyring([], publicKeys: publicKeys)
            }
            guard let bytes = readSmallFile(path) else {
                throw Outcome.notConfigured("cannot read \(fileVariable) \(path): \(String(cString: strerror(errno)))")
            }
            return Keyring(try keyring(fromFile: bytes, path: path).secrets, publicKeys: publicKeys)
        }
    }

    /// `WEBHOOK_PUBLIC_KEYS`, else the keys in `WEBHOOK_PUBLIC_KEYS_FILE`, else none.
    static func publicKeys(_ lookup: (String) -> String?) throws(Outcome) -> [PublicKey] {
        if let text = lookup(publicKeysVariable), !text.isEmpty { return try PublicKey.list(text, source: publicKeysVariable) }
        guard let path = lookup(publicKeysFileVariable), !path.isEmpty else { return [] }
        return try publicKeys(file: path, source: publicKeysFileVariable + " " + path)
    }

    static func publicKeys(file path: String, source: String) throws(Outcome) -> [PublicKey] {
        guard let bytes = readSmallFile(path) else {
            throw Outcome.notConfigured("cannot read \(source): \(String(cString: strerror(errno)))")
        }
        let keys = try PublicKey.list(String(decoding: bytes, as: UTF8.self), source: path)
        guard !keys.isEmpty else { throw Outcome.notConfigured("\(path) holds no public key") }
        return keys
    }

    /// One secret per line (`\n` or `\r\n`); blank lines are skipped.
    static func keyring(fromFile bytes: [UInt8], path: String) throws(Outcome) -> Keyring {
        var secrets: [Secret] = []
        for (number, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let secret = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
            if secret.isEmpty { continue }
            secrets.append(try Secret(bytes: Array(secret), source: "the secret on line \(number + 1) of \(path)"))
        }
        guard !secrets.isEmpty else { throw Outcome.notConfigured("\(path) holds no secret") }
        return Keyring(secrets)
    }

    /// The whole of a small file, or nil (with `errno` set) if it cannot be read.
    static func readSmallFile(_ path: String, limit: Int = 64 << 10) -> [UInt8]? {
        let fd = retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readAll(fd, limit: limit)
    }
}

/// The secrets fixed when the handler starts. A request may only choose among them (`WEBHOOK_SENDER`), never bring
/// its own: anyone who can reach the FastCGI socket can send any param, so a param that carried a key or a path
/// would let them sign their own deliveries (the same trap as php-fpm's `PHP_VALUE`).
public struct Secrets: Sendable {
    /// `API_SECRET_KEY` (and `API_SECRET_KEY_PREVIOUS`) or `API_SECRET_KEY_FILE`, or the 500 that says why not.
    public let standard: Result<Keyring, Outcome>
    /// The senders in `WEBHOOK_SECRETS_DIR`, by name.
    public let senders: [String: Keyring]
    public let directory: String?

    public init(standard: Result<Keyring, Outcome>, senders: [String: Keyring] = [:], directory: String? = nil) {
        self.standard = standard
        self.senders = senders
        self.directory = directory
    }

    /// The keyring of `sender`, or the standard one when none is named; an unknown sender fails closed.
    func keyring(forSender sender: String?) -> Result<Keyring, Outcome> {
        guard let sender else { return standard }
        if let keyring = senders[sender] { return .success(keyring) }
        guard let directory else {
            return .failure(.notConfigured("\(SecretSource.senderVariable) \(Log.printable(sender)) is set, but no "
                + "\(SecretSource.directoryVariable) (--secrets-dir) holds the senders' secrets"))
        }
        return .failure(.notConfigured("no sender \(Log.printable(sender)): \(directory) has no \(Log.printable(sender)).secret"))
    }

    /// Every `NAME.secret` in `directory`, read now; any that cannot be used stops the start with the reason.
    public static func load(standard: Result<Keyring, Outcome>, directory: String?) throws(Outcome) -> Secrets {
        guard let directory else { return Secrets(standard: standard) }
        let files: [String]
        do { files = try directoryEntries(directory) } catch {
            throw .notConfigured("cannot read \(SecretSource.directoryVariable) \(directory): \(String(cString: strerror(error.code)))")
        }
        var senders: [String: Keyring] = [:]
        for file in files {
            let stem = file.hasSuffix(".secret") ? file.dropLast(7)
                : file.hasSuffix(SecretSource.publicKeysSuffix) ? file.dropLast(SecretSource.publicKeysSuffix.count) : nil
            guard let stem, let name = SecretSource.senderName(String(stem)), senders[name] == nil else { continue }
            senders[name] = try SecretSource.sender(name, in: directory)
        }
        return Secrets(standard: standard, senders: senders, directory: directory)
    }

    /// As a CGI the environment is the request, set by the web server: the standard secret from it, and only
    /// the sender it names.
    public static func fromCGIEnvironment() -> Secrets {
        let directory = Environment.value(SecretSource.directoryVariable).flatMap { $0.isEmpty ? nil : $0 }
        let sender = Environment.value(SecretSource.senderVariable).flatMap { $0.isEmpty ? nil : $0 }
        var senders: [String: Keyring] = [:]
        if let directory, let sender, let name = SecretSource.senderName(sender) {
            senders[name] = try? SecretSource.sender(name, in: directory)
        }
        return Secrets(standard: SecretSource.fromEnvironment(), senders: senders, directory: directory)
    }
}

extension SecretSource {
    /// Request params that would carry key material; a FastCGI request holding any of them is refused.
    static let keyParams = [variable, fileVariable, previousVariable, publicKeysVariable, publicKeysFileVariable]

    /// `text` if it can name a sender: letters, digits, `-`, `_` and `.`, not starting with a dot.
    static func senderName(_ text: String) -> String? {
        let allowed = !text.isEmpty && text.utf8.count <= 64 && !text.hasPrefix(".")
            && text.utf8.allSatisfy { $0 < 0x80 && (isalnum(Int32($0)) != 0 || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E) }
        return allowed ? text : nil
    }

    /// A sender's public keys file beside (or instead of) its `NAME.secret`.
    static let publicKeysSuffix = ".public-keys"

    /// `NAME.secret` (one secret per line) and `NAME.public-keys` (whitespace-separated `whpk_…`), either or both.
    static func sender(_ name: String, in directory: String) throws(Outcome) -> Keyring {
        let path = "\(directory)/\(name).secret"
        let keysPath = "\(directory)/\(name)\(publicKeysSuffix)"
        let publicKeys = access(keysPath, F_OK) == 0 ? try publicKeys(file: keysPath, source: keysPath) : []
        guard let bytes = readSmallFile(path) else {
            if errno == ENOENT && !publicKeys.isEmpty { return Keyring([], publicKeys: publicKeys) }
            throw .notConfigured("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        return Keyring(try keyring(fromFile: bytes, path: path).secrets, publicKeys: publicKeys)
    }
}
