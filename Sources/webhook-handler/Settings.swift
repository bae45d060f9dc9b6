import ArgumentParser
import WebhookCore
import WebhookGateway
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

extension AccessLogPolicy: ExpressibleByArgument {}

/// Settings shared by the CGI path and the command line.
enum Settings {
    static let maxBodyVariable = "WEBHOOK_MAX_BODY_BYTES"
    static let spoolVariable = "WEBHOOK_SPOOL_DIR"
    static let groupReadableVariable = "WEBHOOK_SPOOL_GROUP_READABLE"
    static let journalVariable = "WEBHOOK_SPOOL_JOURNAL"

    /// The spool named by `directory`, else by `WEBHOOK_SPOOL_DIR`; nil when neither names one.
    /// `cur/` is kept for `retention`, else `WEBHOOK_KEEP_CUR_DAYS` (a bad value: forever, and a warning, as a CGI
    /// has no command line to refuse: a misspelled "keep" must never delete).
    static func spool(directory: String?, groupReadable: Bool = false, journaled: Bool = true,
                      retention: CurRetention? = nil) -> Spool? {
        guard let directory = directory ?? environment(spoolVariable), !directory.isEmpty else { return nil }
        let readable = groupReadable || ["1", "true", "yes"].contains(environment(groupReadableVariable) ?? "")
        let journal = journaled && !["0", "off", "false", "no"].contains(environment(journalVariable) ?? "")
        var spool = Spool(directory: directory, groupReadable: readable, journaled: journal)
        do { spool.takenRetention = try retention ?? CurRetention.configured(nil, named: "") } catch {
            spool.takenRetention = .forever
            Log.write(.warning, "\(error); keeping cur/ forever")
        }
        return spool
    }

    /// The hook named by `command`, else by `WEBHOOK_EXEC`; nil when neither names one.
    static func hook(command: String?, timeoutSeconds: Double?, concurrency: Int?, maxAttempts: Int? = nil,
                     backoffSeconds: Double? = nil) -> Hook? {
        guard let command = command ?? environment("WEBHOOK_EXEC"), !command.isEmpty else { return nil }
        return Hook(
            command: command,
            timeoutSeconds: timeoutSeconds ?? environment("WEBHOOK_EXEC_TIMEOUT").flatMap(Double.init) ?? 30,
            concurrency: concurrency ?? environment("WEBHOOK_EXEC_CONCURRENCY").flatMap(Int.init) ?? 2,
            maxAttempts: maxAttempts ?? environment("WEBHOOK_EXEC_MAX_ATTEMPTS").flatMap(Int.init) ?? Hook.defaultMaxAttempts,
            backoffSeconds: backoffSeconds ?? environment("WEBHOOK_EXEC_BACKOFF").flatMap(Double.init) ?? Hook.defaultBackoffSeconds)
    }

    /// `WEBHOOK_ACCESS_LOG`, else every request.
    static func accessLog() throws -> AccessLogPolicy {
        guard let text = environment(AccessLogPolicy.variable), !text.isEmpty else { return .all }
        guard let policy = AccessLogPolicy(rawValue: text) else {
            throw ValidationError("\(AccessLogPolicy.variable) must be all or failures, not \(text)")
        }
        return policy
    }

    /// CGI has no command line to refuse: a bad `WEBHOOK_ACCESS_LOG` logs everything, and says so.
    static func accessLogFromEnvironment() -> AccessLogPolicy {
        do { return try accessLog() } catch {
            Log.write(.warning, "\(error); logging all requests")
            return .all
        }
    }

    static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Without a spool, the slots that bound concurrent hooks live in a private directory, made once and handed on
    /// to the next start by SIGHUP (through the environment) so that old and new workers share it.
    static func privateHookSlots() throws -> String {
        let variable = "WEBHOOK_HOOK_SLOTS_DIR"
        if let inherited = environment(variable), access(inherited, W_OK) == 0 { return inherited }
        var template = Array("\(environment("TMPDIR") ?? "/tmp")/webhook-handler-hooks.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            Log.write(.error, "cannot make a directory for the hook's slots: \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        let directory = String(cString: made)
        setenv(variable, directory, 1)
        return directory
    }

    static func removePrivateHookSlots(_ directory: String) {
        for name in (try? directoryEntries(directory)) ?? [] { unlink("\(directory)/\(name)") }
        rmdir(directory)
    }

    /// CGI has no command line: the limit comes from the environment, and a bad value falls back to the default
    /// (with a log line) rather than failing every request.
    static func verifierFromEnvironment() -> Verifier {
        do { return try verifier(maxBodyBytes: nil) } catch {
            Log.write(.warning, "\(error); using \(Verifier.defaultMaxBodyBytes)")
            return Verifier()
        }
    }

    static func verifier(maxBodyBytes: Int?, scheme: String? = nil, toleranceSeconds: Int64? = nil) throws
        -> Verifier
    {
        var limit = maxBodyBytes ?? Verifier.defaultMaxBodyBytes
        if maxBodyBytes == nil, let text = environment(maxBodyVariable) {
            guard let value = Int(text), value >= 0 else {
                throw ValidationError("\(maxBodyVariable) must be a number of bytes, not \(text)")
            }
            limit = value
        }
        if let toleranceSeconds, toleranceSeconds < 0 {
            throw ValidationError("--tolerance-seconds must be a number of seconds, not \(toleranceSeconds)")
        }
        var tolerance = toleranceSeconds
        if toleranceSeconds == nil, let text = environment("WEBHOOK_TOLERANCE_SECONDS") {
            guard let value = Int64(text), value >= 0 else {
                throw ValidationError("WEBHOOK_TOLERANCE_SECONDS must be a number of seconds, not \(text)")
            }
            tolerance = value
        }
        let generic = try genericScheme()
        let catalog = Verifier(maxBodyBytes: limit, toleranceSeconds: tolerance, generic: generic)
        guard let name = scheme ?? environment("WEBHOOK_SCHEME"), !name.isEmpty else { return catalog }
        guard let chosen = catalog.scheme(named: name) else {
            let names = (SignatureScheme.presets.map(\.name) + ["generic"]).joined(separator: ", ")
            let why = name == "generic" ? "generic needs WEBHOOK_GENERIC_HEADER" : "it must be one of \(names)"
            throw ValidationError("no scheme \(name): \(why)")
        }
        return catalog.with(scheme: chosen)
    }

    /// The `generic` scheme from `WEBHOOK_GENERIC_*`, when `WEBHOOK_GENERIC_HEADER` is set.
    static func genericScheme() throws -> SignatureScheme? {
        func value(_ name: String) -> String? { environment("WEBHOOK_GENERIC_" + name).flatMap { $0.isEmpty ? nil : $0 } }
        guard let header = value("HEADER") else { return nil }
        guard let algorithm = MACAlgorithm(rawValue: value("ALGORITHM") ?? "sha256"), algorithm != .token else {
            throw ValidationError("WEBHOOK_GENERIC_ALGORITHM must be sha256, sha512 or sha1")
        }
        guard let encoding = SignatureEncoding(rawValue: value("ENCODING") ?? "hex"), encoding != .plain else {
            throw ValidationError("WEBHOOK_GENERIC_ENCODING must be hex or base64")
        }
        do {
            return try SignatureScheme.generic(
                header: header, algorithm: algorithm, encoding: encoding, prefix: value("PREFIX") ?? "",
                template: value("TEMPLATE") ?? "{body}", timestampHeader: value("TIMESTAMP_HEADER"))
        } catch {
            throw ValidationError("the generic scheme (WEBHOOK_GENERIC_*): \(error)")
        }
    }
}
