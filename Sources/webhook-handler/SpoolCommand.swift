import ArgumentParser
import WebhookGateway
import WebhookSpool

/// Options naming the spool, shared by `serve` and `spool`.
struct SpoolOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Keep each verified payload in this maildir-style directory before answering 200 (default: $WEBHOOK_SPOOL_DIR).",
            valueName: "dir"))
    var spoolDir: String?

    @Flag(name: .long, help: "Spool files 0640 and directories 0750, for a consumer in the handler's group.")
    var spoolGroupReadable = false

    @Flag(name: .long, help: ArgumentHelp(
        "FastCGI: sync each payload's file on its own instead of through the spool's journal (default: the journal, "
            + "unless WEBHOOK_SPOOL_JOURNAL=off)."))
    var noSpoolJournal = false
}

/// Options naming the command verified payloads are handed to.
struct HookOptions: ParsableArguments {
    @Option(name: .customLong("exec"), help: ArgumentHelp(
        "Hand each verified payload to this shell command, body on stdin (default: $WEBHOOK_EXEC).",
        valueName: "command"))
    var command: String?

    @Option(name: .customLong("exec-timeout"), help: ArgumentHelp(
        "Seconds the command may run, output and exit, before it is stopped (SIGTERM, SIGKILL 2 s later) (default: 30).",
        valueName: "seconds"))
    var timeoutSeconds: Double?

    @Option(name: .customLong("exec-concurrency"), help: "Commands running at once, across all workers (default: 2).")
    var concurrency: Int?

    @Option(name: .customLong("exec-max-attempts"), help: ArgumentHelp(
        "With a spool: runs of one payload before it is failed and left for spool retry (default: $WEBHOOK_EXEC_MAX_ATTEMPTS, else 20).",
        valueName: "n"))
    var maxAttempts: Int?

    @Option(name: .customLong("exec-backoff"), help: ArgumentHelp(
        "With a spool: seconds before the second attempt, doubling (with jitter) up to an hour (default: $WEBHOOK_EXEC_BACKOFF, else 30).",
        valueName: "seconds"))
    var backoffSeconds: Double?

    var hook: Hook? {
        Settings.hook(command: command, timeoutSeconds: timeoutSeconds, concurrency: concurrency, maxAttempts: maxAttempts,
                      backoffSeconds: backoffSeconds)
    }
}

/// How long `cur/` keeps handled payloads: `serve`'s hook runners and namer prune it (docs/spool.md, Retention).
struct RetentionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Days cur/ keeps the payloads consumers moved there, counted from when each was stored; 0 or off keeps them forever (default: $WEBHOOK_KEEP_CUR_DAYS, else 7).",
        valueName: "days"))
    var keepCurDays: String?

    func validate() throws { _ = try retention() }
    func retention() throws -> CurRetention { try curRetention(keepCurDays, named: "--keep-cur-days") }
}

/// ``CurRetention/configured(_:named:)``, its error the command line's.
func curRetention(_ option: String?, named name: String) throws -> CurRetention {
    do { return try CurRetention.configured(option, named: name) } catch { throw ValidationError(error.description) }
}

/// Shows what waits in the spool.
struct SpoolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool",
        abstract: "Show the payloads waiting in the spool.",
        discussion: """
            Consumers take files from new/, process them, then move them to cur/ (keeping the name) or delete
            them. Each file is one JSON envelope line, then the body's bytes exactly as received.
            """,
        subcommands: [List.self, Stats.self, Retry.self, Recover.self, Prune.self],
        defaultSubcommand: Stats.self
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per payload waiting in new/.")
        @OptionGroup var options: SpoolOptions
        @Flag(name: .long, help: "Only the failed ones (the hook gave up on them), with their attempts' errors.")
        var failed = false

        func run() throws {
            let spool = try options.requiredSpool()
            if failed {
                for id in try spool.failedIDs() { print(spool.describeWithAttempts(id)) }
            } else {
                for entry in try spool.waiting() { print(entry) }
            }
        }
    }

    struct Retry: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the hook now for every payload still in new/, failed ones included: the manual replay.",
            discussion: """
                Hook runners retry a failed run by themselves, with backoff,
                up to --exec-max-attempts; then the payload is failed
                (.hook-given-up/ID) and only this runs it again. Each run is
                the payload's next attempt (WEBHOOK_ATTEMPT), its errors
                appended to .hook-failed/ID. Payloads a hook runner is
                running right now are skipped. Exits 1 if any failed again.
                """)
        @OptionGroup var options: SpoolOptions
        @OptionGroup var hookOptions: HookOptions
        @Flag(name: .long, help: "Only the failed payloads (spool list --failed).")
        var failed = false

        func run() throws {
            let spool = try options.requiredSpool()
            guard let hook = hookOptions.hook else { throw ValidationError("name the command with --exec or WEBHOOK_EXEC") }
            try spool.prepare()
            var delivered = 0, failed = 0, busy = 0
            for id in try self.failed ? spool.failedIDs() : spool.waitingIDs() {
                switch hook.deliver(id, from: spool) {
                case .ran(succeeded: true): delivered += 1
                case .ran(succeeded: false): failed += 1
                case .busy: busy += 1
                case .gone, .notDue: break
                }
            }
            print("\(delivered) delivered, \(failed) failed (left in new/), \(busy) being run by a hook runner already")
            if failed > 0 { throw ExitCode(1) }
        }
    }

    struct Recover: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Name the payloads a stopped FastCGI server left in the spool's journal.",
            discussion: """
                A FastCGI server records each payload in the journal (.journal/log) before its
                200 and names new/ID a moment later; when it starts, it names what a crash left.
                Run this when it will not start again soon (say, before moving the spool): it
                does the same for every journal slot no running server holds.
                """)
        @OptionGroup var options: SpoolOptions

        func run() throws {
            let named = try options.requiredSpool().recoverJournal()
            print("recovered \(named) payloads into new/")
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the payloads in cur/ stored more than N days ago (the services do it by themselves).",
            discussion: """
                cur/ remembers what was handled: a replayed delivery found
                there is answered as a duplicate, not handled again, and
                webhook-forwarder forward --from-cur --since re-inserts from
                it. The handler's hook runners and FastCGI namer, and
                webhook-forwarder forward, prune it by themselves every 5
                minutes (--keep-cur-days, WEBHOOK_KEEP_CUR_DAYS, default 7);
                this does it now, for a consumer of your own that moves files
                to cur/ (cron). Only regular files in cur/, by modification
                time (when the payload was stored); never new/ or tmp/.
                """)
        @OptionGroup var options: SpoolOptions
        @Option(name: .long, help: ArgumentHelp(
            "Age in days (fractions allowed, at least 0.042: one hour) (default: $WEBHOOK_KEEP_CUR_DAYS, else 7).",
            valueName: "days"))
        var olderThan: String?

        func validate() throws { _ = try curRetention(olderThan, named: "--older-than") }

        func run() throws {
            let spool = try options.requiredSpool()
            let retention = try curRetention(olderThan, named: "--older-than")
            guard let age = retention.seconds else {
                print("\(CurRetention.variable) keeps cur/ forever: nothing removed (name an age with --older-than DAYS)")
                return
            }
            do {
                print(spool.describe(try spool.pruneTaken(olderThan: age), retention: retention))
            } catch {
                Log.write(.error, "cannot prune \(spool.path("cur")): \(error)")
                throw ExitCode(1)
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "How many payloads wait, were taken, or are half-written.")
        @OptionGroup var options: SpoolOptions

        func run() throws {
            let spool = try options.requiredSpool()
            print(try spool.statistics())
            let failed = try spool.failedIDs().count
            if failed > 0 { print("failed (given up on by the hook) \(failed) of new/ (spool list --failed shows them)") }
        }
    }
}

/// The spool's status for a CGI set-up, where no process lives between requests to keep counts.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print what the spool knows: backlog, age of the oldest payload, hook failures.",
        discussion: """
            JSON by default; --openmetrics prints the OpenMetrics text
            format, e.g. for node_exporter's textfile collector, from cron:
              webhook-handler status --spool-dir DIR --openmetrics \\
                > /var/lib/node_exporter/webhook.prom.$$ &&
                mv /var/lib/node_exporter/webhook.prom.$$ \\
                   /var/lib/node_exporter/webhook.prom
            A FastCGI server answers its full status (requests, workers,
            durations) on a location with fastcgi_param WEBHOOK_ENDPOINT
            status.
            """)
    @OptionGroup var options: SpoolOptions
    @Flag(name: .long, help: "OpenMetrics text instead of JSON.")
    var openmetrics = false

    func run() throws {
        let page = StatusPage(spool: try options.requiredSpool())
        Log.writeStandardOutput(openmetrics ? page.openMetrics() : page.json())
    }
}

extension SpoolOptions {
    func requiredSpool() throws -> Spool {
        guard let spool = Settings.spool(directory: spoolDir) else {
            throw ValidationError("name the spool with --spool-dir or WEBHOOK_SPOOL_DIR")
        }
        return spool
    }
}
