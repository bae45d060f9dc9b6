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
              WEBHOOK_KEEP_CUR_DAYS   days cur/ keeps handled payloads (7; 0 or off: forever)
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
    @OptionGroup var retentionOptions: RetentionOptions

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
                                   journaled: !spoolOptions.noSpoolJournal, retention: try retentionOptions.retention())
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
        // Retries left by a previous run; not in a reload's configuration check, which only reads the configuration.
        if let hook, let spool, !Reload.isCheck { hook.startRunner(for: spool, logFile: nil) }
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
