import ArgumentParser
import WebhookCore
import WebhookGateway
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// The operator's command line. Never parsed on the CGI request path (see main.swift).
struct WebhookHandler: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "webhook-handler",
        abstract: "Verify HMAC-SHA256 signed webhooks behind nginx or Apache, as FastCGI or CGI.",
        discussion: """
            One binary, three ways to run:
              FastCGI on fd 0      spawn-fcgi, a systemd socket unit or mod_fcgid
              FastCGI, own socket  webhook-handler --listen /run/webhook/webhook.sock
              CGI                  the web server sets GATEWAY_INTERFACE; one request

            A POST whose x-signature header holds the hex HMAC-SHA256 of the raw body,
            keyed with the shared secret, gets 200. Otherwise: 405 for other methods;
            400 for a missing, malformed or wrong signature or a bad CONTENT_LENGTH;
            413 for a body over the limit; 500 when no usable secret is configured.

            Environment:
              API_SECRET_KEY          the shared secret (at least 10 characters)
              API_SECRET_KEY_FILE     a file holding it (one secret per line, current first)
              WEBHOOK_SECRETS_DIR     senders' secrets, NAME.secret each (--secrets-dir)
              WEBHOOK_MAX_BODY_BYTES  the body limit without --max-body-bytes (CGI)
              WEBHOOK_SPOOL_DIR       keep verified payloads here before answering 200
              WEBHOOK_SPOOL_GROUP_READABLE=1  spool files 0640, directories 0750
              WEBHOOK_SPOOL_JOURNAL=off  FastCGI: a sync per payload file, no journal
              WEBHOOK_EXEC            hand each verified payload to this command
              WEBHOOK_EXEC_TIMEOUT, WEBHOOK_EXEC_CONCURRENCY  its limits
              WEBHOOK_EXEC_MAX_ATTEMPTS, WEBHOOK_EXEC_BACKOFF  its retries (docs/hooks.md)
              WEBHOOK_SCHEME          x-signature, github, standard-webhooks, stripe, slack,
                                      shopify, twilio, paddle, svix, gitlab, github-sha1
                                      or generic (docs/schemes.md)
              WEBHOOK_TOLERANCE_SECONDS  timestamp tolerance of every dated scheme
                                      (default: the sender's, 300; Paddle's 5)
              WEBHOOK_PUBLIC_KEYS     Standard Webhooks v1a public keys (whpk_...)
              WEBHOOK_PUBLIC_KEYS_FILE  a file of them, whitespace-separated
              WEBHOOK_GENERIC_HEADER, _ALGORITHM, _ENCODING, _PREFIX, _TEMPLATE,
              _TIMESTAMP_HEADER       the generic scheme (docs/schemes.md)
              API_SECRET_KEY_PREVIOUS  a second secret still accepted during a rotation
              WEBHOOK_ACCESS_LOG      all (default) or failures: which requests are logged
              FCGI_WEB_SERVER_ADDRS   TCP only: web server addresses allowed in

            Secrets are read when the handler starts, never from a request: under
            FastCGI a request may only choose a configured sender (nginx
            fastcgi_param WEBHOOK_SENDER NAME, for WEBHOOK_SECRETS_DIR/NAME.secret), and
            one carrying API_SECRET_KEY* params is refused (500). SIGHUP checks the
            configuration, then starts the handler again on the same socket (new
            binary, new secrets) without losing a request; `webhook-handler reload`
            waits for it (docs/deployment.md). One access line per request (or per failure) goes to stderr;
            the secret and signatures are never logged.
            """,
        version: "webhook-handler \(version)",
        subcommands: [
            Serve.self, Sign.self, Check.self, SpoolCommand.self, StatusCommand.self, ReloadCommand.self,
            CopySecretCommand.self,
        ],
        defaultSubcommand: Serve.self
    )
}

/// Serve FastCGI requests until SIGTERM or SIGINT.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve FastCGI requests (the default).",
        discussion: """
            Without --listen, the listening socket must be handed over on fd 0
            (spawn-fcgi, systemd socket activation, mod_fcgid). Run from a terminal
            with neither, it prints this help to stderr and exits 2.
            SIGTERM or SIGINT: stop taking connections; requests in flight finish, and
            connections the web server keeps open are served until it closes them (up
            to --grace-seconds). SIGHUP: execute the binary again in this process, on
            the same socket: the new workers serve at once, the old ones finish as on
            SIGTERM (zero-downtime upgrade or reconfiguration).
            """
    )

    @Option(
        name: .long,
        help: ArgumentHelp("Listen here instead of on fd 0: a unix socket path, or HOST:PORT.", valueName: "path|host:port")
    )
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("Permissions of a unix socket (octal).", valueName: "mode"))
    var socketMode: String = "0660"

    @Option(name: .long, help: "Worker processes, each serving one request at a time (default: 4 per CPU, 8 with a journaled spool; keep it above nginx's kept-alive connections, keepalive x worker_processes).")
    var workers: Int?

    @Option(name: .long, help: "Largest body accepted, in bytes; longer ones get 413 (default: 1048576).")
    var maxBodyBytes: Int?

    @Option(name: .long, help: "Seconds in-flight requests get to finish after SIGTERM.")
    var graceSeconds: Double = 30

    @Option(name: .long, help: "Seconds a connection may stay silent, mid-body or idle, before it is dropped.")
    var readTimeoutSeconds: Double = 30

    @Option(name: .long, help: "How senders sign: a preset (x-signature, github, standard-webhooks, stripe, slack, shopify, twilio, paddle, svix, gitlab, github-sha1) or generic (default: $WEBHOOK_SCHEME, else x-signature).")
    var scheme: String?

    @Option(name: .long, help: "Dated schemes: how far a signature's timestamp may be from now (default: $WEBHOOK_TOLERANCE_SECONDS, else the sender's: 300, Paddle 5).")
    var toleranceSeconds: Int64?

    @Option(name: .long, help: "Access lines for all requests, or only failures: those not answered 200 (default: $WEBHOOK_ACCESS_LOG, else all).")
    var accessLog: AccessLogPolicy?

    @Option(name: .long, help: ArgumentHelp(
        "Senders' secrets, NAME.secret each, read at start-up; nginx chooses one per location with fastcgi_param WEBHOOK_SENDER NAME (default: $WEBHOOK_SECRETS_DIR).",
        valueName: "dir"))
    var secretsDir: String?

    @OptionGroup var spoolOptions: SpoolOptions
    @OptionGroup var hookOptions: HookOptions

    func validate() throws {
        guard (workers ?? 1) >= 1 else { throw ValidationError("--workers must be at least 1") }
        guard UInt32(socketMode, radix: 8).map({ $0 <= 0o777 }) == true else {
            throw ValidationError("--socket-mode must be an octal mode such as 0660")
        }
        if let maxBodyBytes, maxBodyBytes < 0 { throw ValidationError("--max-body-bytes cannot be negative") }
        guard graceSeconds >= 0 else { throw ValidationError("--grace-seconds cannot be negative") }
        guard readTimeoutSeconds > 0 else { throw ValidationError("--read-timeout-seconds must be positive") }
    }

    func run() throws {
        let listener: FastCGIServer.Listener
        if let listen {
            let isTCP = !listen.hasPrefix("/") && listen.contains(":")
            listener = isTCP ? .tcp(listen) : .unixSocket(path: listen, mode: UInt32(socketMode, radix: 8)!)
        } else if FastCGIServer.isHandedListener {
            listener = .inherited
        } else {
            Log.writeStandardError(WebhookHandler.helpMessage() + "\n")
            throw ExitCode(2)
        }
        try serve(on: listener, secret: try checkedSecret())
    }

    /// The process's secrets; a secret that is named but unusable is a mistake to stop for. None at all is not:
    /// nginx may pass one per request (fastcgi_param), and requests without one get 500.
    private func checkedSecret() throws -> Result<Keyring, Outcome> {
        let secret = SecretSource.fromEnvironment()
        if case .failure(let problem) = secret {
            guard SecretSource.isNamedInEnvironment else {
                Log.write(.warning, "\(problem.detail ?? "no secret"); only locations naming a sender of --secrets-dir "
                    + "(WEBHOOK_SENDER) can be served, the others get 500")
                return secret
            }
            Log.write(.error, "cannot serve: \(problem.detail ?? "no usable secret")")
            throw ExitCode(1)
        }
        return secret
    }

    private func serve(on listener: FastCGIServer.Listener, secret: Result<Keyring, Outcome>) throws {
        let verifier = try Settings.verifier(maxBodyBytes: maxBodyBytes, scheme: scheme, toleranceSeconds: toleranceSeconds)
        let secrets: Secrets
        do throws(Outcome) {
            secrets = try Secrets.load(
                standard: secret, directory: secretsDir ?? Settings.environment(SecretSource.directoryVariable))
            if case .success(let keyring) = secrets.standard, let problem = keyring.unusable(for: verifier.scheme) {
                throw problem
            }
        } catch {
            Log.write(.error, "cannot serve: \(error.detail ?? "no usable secret")")
            throw ExitCode(1)
        }
        for warning in SecretSource.fileExposures(sendersDirectory: secrets.directory) { Log.write(.warning, "\(warning)") }
        if let directory = secrets.directory {
            let names = secrets.senders.keys.sorted().joined(separator: ", ")
            Log.write(.info, "senders from \(directory): \(names.isEmpty ? "none" : names)")
        }
        let spool = Settings.spool(directory: spoolOptions.spoolDir, groupReadable: spoolOptions.spoolGroupReadable,
                                   journaled: !spoolOptions.noSpoolJournal)
        if let spool {
            do {
                try spool.prepare()
                try spool.checkUnnamedFiles()
                Log.write(.info, "spool \(spool.directory): ready")
            } catch {
                Log.write(.error, "cannot use the spool: \(error)")
                throw ExitCode(1)
            }
        }
        var hook = hookOptions.hook
        if hook != nil && spool == nil { hook?.privateSlotsDirectory = try Settings.privateHookSlots() }
        defer { if let slots = hook?.privateSlotsDirectory { Settings.removePrivateHookSlots(slots) } }
        if let hook, let spool { hook.startRunner(for: spool, logFile: nil) }  // retries left by a previous run
        var responder = Responder(verifier: verifier, secrets: secrets, spool: spool, hook: hook,
                                  accessLog: try accessLog ?? Settings.accessLog())
        responder.version = WebhookHandler.version
        let server = FastCGIServer(
            listener: listener,
            workers: workers ?? FastCGIServer.defaultWorkers(journaled: spool?.journaled == true),
            graceSeconds: graceSeconds,
            readTimeoutSeconds: readTimeoutSeconds,
            responder: responder
        )
        do {
            throw ExitCode(try server.run())
        } catch let error as SystemError {
            Log.write(.error, "cannot serve: \(error)")
            throw ExitCode(1)
        }
    }
}

/// Print the signature of stdin, for testing a deployment with curl.
struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the signature of standard input under the configured secret.",
        discussion: """
            The secret comes from --secret-file, API_SECRET_KEY or API_SECRET_KEY_FILE (its first line).
            For x-signature it prints the hex signature alone:
              curl -H "x-signature: $(webhook-handler sign < body.json)" \\
                   --data-binary @body.json http://127.0.0.1:8080/api/webhook
            For the other schemes it prints the header lines a sender would send:
              webhook-handler sign --scheme github < body.json > headers.txt
              curl -H @headers.txt --data-binary @body.json http://127.0.0.1:8080/api/webhook
            """
    )

    @Option(name: .long, help: ArgumentHelp("Read the secret from this file.", valueName: "path"))
    var secretFile: String?

    @Option(name: .long, help: "The signature scheme (default: $WEBHOOK_SCHEME, else x-signature).")
    var scheme: String?

    @Option(name: .long, help: "Twilio and other schemes that sign the URL: the URL the sender requests.")
    var url: String = ""

    @Option(name: .long, help: "Standard Webhooks: the message id (default: a random msg_…).")
    var id: String?

    @Option(name: .long, help: "Standard Webhooks and Stripe: the Unix time signed (default: now).")
    var timestamp: Int64?

    func run() throws {
        if let secretFile { setenv(SecretSource.fileVariable, secretFile, 1); unsetenv(SecretSource.variable) }
        let keyring: Keyring
        do {
            keyring = try SecretSource.fromEnvironment().get()
        } catch {
            Log.writeStandardError("webhook-handler sign: \(error.detail ?? "no usable secret")\n")
            throw ExitCode(1)
        }
        let scheme = try Settings.verifier(maxBodyBytes: nil, scheme: scheme).scheme
        guard let secret = keyring.current else {
            Log.writeStandardError("webhook-handler sign: only public keys are configured; v1a is signed by the sender's private key\n")
            throw ExitCode(1)
        }
        if let problem = keyring.unusable(for: scheme) {
            Log.writeStandardError("webhook-handler sign: \(problem.detail ?? "unusable secret")\n")
            throw ExitCode(1)
        }
        guard let body = readAll(STDIN_FILENO) else {
            Log.writeStandardError("webhook-handler sign: cannot read standard input: \(String(cString: strerror(errno)))\n")
            throw ExitCode(1)
        }
        let randomID = "msg_" + (0..<12).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        let headers = scheme.headers(
            for: body, secret: secret, id: id ?? randomID, timestamp: timestamp ?? Int64(time(nil)), url: url)
        if scheme == .xSignature {
            print(headers[0].1)
        } else {
            for (name, value) in headers { print("\(name): \(value)") }
        }
    }
}

extension AccessLogPolicy: ExpressibleByArgument {}

/// Settings shared by the CGI path and the command line.
enum Settings {
    static let maxBodyVariable = "WEBHOOK_MAX_BODY_BYTES"
    static let spoolVariable = "WEBHOOK_SPOOL_DIR"
    static let groupReadableVariable = "WEBHOOK_SPOOL_GROUP_READABLE"
    static let journalVariable = "WEBHOOK_SPOOL_JOURNAL"

    /// The spool named by `directory`, else by `WEBHOOK_SPOOL_DIR`; nil when neither names one.
    static func spool(directory: String?, groupReadable: Bool = false, journaled: Bool = true) -> Spool? {
        guard let directory = directory ?? environment(spoolVariable), !directory.isEmpty else { return nil }
        let readable = groupReadable || ["1", "true", "yes"].contains(environment(groupReadableVariable) ?? "")
        let journal = journaled && !["0", "off", "false", "no"].contains(environment(journalVariable) ?? "")
        return Spool(directory: directory, groupReadable: readable, journaled: journal)
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

