import ArgumentParser
import WebhookCore
import WebhookGateway
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// `webhook-handler check`: whether this configuration can serve, found out before a sender does. A CGI reads its
/// secret and opens its spool only when a delivery arrives, so a mistake there costs that delivery (500 or 503).
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the secret and the spool this configuration would use; exit 0 if it can serve, 1 if not.",
        discussion: """
            Reads the settings a request would: API_SECRET_KEY or
            API_SECRET_KEY_FILE, WEBHOOK_SECRETS_DIR and WEBHOOK_SENDER,
            WEBHOOK_SPOOL_DIR, WEBHOOK_SCHEME, or the options below. It checks
              the secret  readable, not readable by others, every line usable
                          by the scheme and at least \(Check.strongLength) characters,
                          and one for a delivery naming no sender (or the
                          sender WEBHOOK_SENDER names);
              the spool   created if missing, then each step a delivery takes
                          tried on a probe file in tmp/ and removed (an unnamed
                          file with O_TMPFILE, write and fsync, linkat, fsync of
                          the directory), on a file system kept across reboots.
            Run it as the user that runs the handler; on a shared host through
            the wrapper that sets the variables: ./webhook.cgi check
            Prints one line per finding (ok, note or FAIL) and the verdict,
            never a secret.
            """
    )

    /// Shorter secrets are refused here: a random secret of 32 characters or more (e.g. openssl rand -hex 32)
    /// leaves guessing out of the question for HMAC-SHA256.
    static let strongLength = 32

    @Option(name: .long, help: ArgumentHelp("Check this secret file instead of the environment's.", valueName: "path"))
    var secretFile: String?

    @Option(name: .long, help: ArgumentHelp("Senders' secrets, NAME.secret each (default: $WEBHOOK_SECRETS_DIR).",
                                            valueName: "dir"))
    var secretsDir: String?

    @Option(name: .long, help: "The scheme the secrets must suit (default: $WEBHOOK_SCHEME, else x-signature).")
    var scheme: String?

    @OptionGroup var spoolOptions: SpoolOptions

    func run() throws {
        if let secretFile { setenv(SecretSource.fileVariable, secretFile, 1); unsetenv(SecretSource.variable) }
        var report = Report()
        let user = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "?"
        report.note("checking as \(user) (uid \(geteuid())): the handler must run as this user to see the same")
        let scheme = try Settings.verifier(maxBodyBytes: nil, scheme: scheme).scheme
        let directory = secretsDir ?? Settings.environment(SecretSource.directoryVariable)
        let secret = checkSecret(scheme: scheme, needed: directory == nil, into: &report)
        if let directory { checkSenders(directory, standard: secret, into: &report) }
        checkSpool(into: &report)
        if report.problems == 0 {
            print("verdict: ready: this configuration can serve")
        } else {
            print("verdict: NOT READY: \(report.problems) problem\(report.problems == 1 ? "" : "s") (FAIL above)")
            throw ExitCode(1)
        }
    }

    /// Findings, printed as they are made.
    struct Report {
        var problems = 0
        func ok(_ text: String) { print("ok    \(text)") }
        func note(_ text: String) { print("note  \(text)") }
        mutating func fail(_ text: String) {
            problems += 1
            print("FAIL  \(text)")
        }
    }

    private func checkSecret(scheme: SignatureScheme, needed: Bool, into report: inout Report)
        -> Result<Keyring, Outcome>
    {
        let secret = SecretSource.fromEnvironment()
        guard SecretSource.isNamedInEnvironment else {
            if needed {
                report.fail("no secret: neither API_SECRET_KEY nor API_SECRET_KEY_FILE is set (every delivery gets 500)")
            }
            return secret
        }
        let texts: [(source: String, text: [UInt8])]
        if let value = Settings.environment(SecretSource.variable), !value.isEmpty {
            texts = [SecretSource.variable, SecretSource.previousVariable].compactMap { name in
                Settings.environment(name).flatMap { $0.isEmpty ? nil : (name, Array($0.utf8)) }
            }
        } else {
            let path = Settings.environment(SecretSource.fileVariable) ?? ""
            if case .failure(let problem) = secret {
                report.fail("secret: \(problem.detail ?? "unusable")")
                return secret
            }
            report.ok("secret file \(path) is readable")
            checkMode(of: path, into: &report)
            texts = secretLines(path)
        }
        switch secret {
        case .failure(let problem):
            report.fail("secret: \(problem.detail ?? "unusable")")
        case .success(let keyring):
            if let problem = keyring.unusable(for: scheme) {
                report.fail("secret: \(problem.detail ?? "unusable for \(scheme.name)")")
            }
            checkStrength(texts, into: &report)
        }
        return secret
    }

    /// A secret shorter than ``strongLength``, or of fewer than 8 distinct characters, is weak.
    private func checkStrength(_ texts: [(source: String, text: [UInt8])], into report: inout Report) {
        for (source, text) in texts {
            let length = String(decoding: text, as: UTF8.self).count
            if length < Self.strongLength || Set(text).count < 8 {
                report.fail("\(source) is weak (\(length) characters, \(Set(text).count) distinct): use "
                    + "\(Self.strongLength) or more random ones, e.g. openssl rand -hex 32, with the sender")
            } else {
                report.ok("\(source): \(length) characters")
            }
        }
    }

    /// The secret file's non-empty lines, each named as the handler's messages name it.
    private func secretLines(_ path: String) -> [(source: String, text: [UInt8])] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        let bytes = readAll(fd, limit: 64 << 10) ?? []
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        return lines.enumerated().compactMap { number, line in
            let text = Array(line.last == UInt8(ascii: "\r") ? line.dropLast() : line)
            return text.isEmpty ? nil : ("the secret on line \(number + 1) of \(path)", text)
        }
    }

    /// Others must not read the secret; its group may (a web server sharing the group runs a CGI without suEXEC).
    private func checkMode(of path: String, into report: inout Report) {
        var status = stat()
        guard stat(path, &status) == 0 else { return }
        let mode = "0" + String(status.st_mode & 0o777, radix: 8)
        let owner = getpwuid(status.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(status.st_uid)"
        let group = getgrgid(status.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(status.st_gid)"
        if status.st_mode & 0o007 != 0 {
            report.fail("\(path) is readable by others (mode \(mode)): chmod 600 it (or 640 with a group shared with "
                + "the web server only)")
        } else if status.st_mode & 0o070 != 0 {
            report.note("\(path) is \(mode) \(owner):\(group): group \(group) can read it (right only for the web "
                + "server's group on a host without suEXEC)")
        } else {
            report.ok("\(path) is \(mode) \(owner):\(group)")
        }
    }

    private func checkSenders(_ directory: String, standard: Result<Keyring, Outcome>, into report: inout Report) {
        do throws(Outcome) {
            let secrets = try Secrets.load(standard: standard, directory: directory)
            let names = secrets.senders.keys.sorted()
            if names.isEmpty {
                report.fail("senders: \(directory) holds no NAME.secret")
            } else {
                report.ok("senders from \(directory): \(names.joined(separator: ", "))")
                checkChosenSender(names, directory: directory, standard: standard, into: &report)
                for name in names {
                    let path = "\(directory)/\(name).secret"
                    checkMode(of: path, into: &report)
                    checkStrength(secretLines(path), into: &report)
                }
            }
        } catch {
            report.fail("senders: \(error.detail ?? "unusable")")
        }
    }

    /// A delivery's secret is the sender's that WEBHOOK_SENDER names (a CGI's variable, a FastCGI location's param),
    /// else the standard one: a name with no file, or neither, answers every such delivery 500.
    private func checkChosenSender(_ names: [String], directory: String, standard: Result<Keyring, Outcome>,
                                   into report: inout Report)
    {
        if let sender = Settings.environment(SecretSource.senderVariable), !sender.isEmpty {
            if !names.contains(sender) {
                report.fail("\(SecretSource.senderVariable)=\(sender.debugDescription) is set, but \(directory) "
                    + "holds no such NAME.secret: every delivery gets 500")
            }
        } else if case .failure = standard, !SecretSource.isNamedInEnvironment {
            report.fail("no secret for a delivery that names no sender (500): as a CGI (webhook.cgi) set "
                + "\(SecretSource.senderVariable)=NAME or \(SecretSource.fileVariable); behind nginx, every location "
                + "needs fastcgi_param \(SecretSource.senderVariable) NAME")
        }
    }

    private func checkSpool(into report: inout Report) {
        let options = spoolOptions
        guard let spool = Settings.spool(directory: options.spoolDir, groupReadable: options.spoolGroupReadable,
                                         journaled: !options.noSpoolJournal)
        else {
            report.note("no spool (WEBHOOK_SPOOL_DIR unset): a 200 will mean verified, not stored")
            return
        }
        for step in spool.probe() {
            if let failure = step.failure {
                let hint = failure.code == EOPNOTSUPP || failure.code == EISDIR || failure.code == EINVAL
                    ? " (this file system cannot; the spool needs a local one such as ext4, xfs, btrfs)" : ""
                report.fail("spool: \(step.name): \(failure)\(hint); every verified delivery would get 503")
            } else {
                report.ok("spool: \(step.name)")
            }
        }
        if let fileSystem = spool.fileSystem() {
            if fileSystem.persistent {
                report.ok("spool: on \(fileSystem.name)")
            } else {
                report.fail("spool: on \(fileSystem.name), which forgets its files at reboot: payloads answered 200 "
                    + "would be lost")
            }
        }
        if spool.journaled {
            report.note("journal: a FastCGI server records payloads in \(spool.directory)/.journal first "
                + "(--no-spool-journal or WEBHOOK_SPOOL_JOURNAL=off: a sync per file); a CGI never uses it")
        } else {
            report.note("journal: off; each payload is synced on its own (as a CGI always does)")
        }
    }
}
