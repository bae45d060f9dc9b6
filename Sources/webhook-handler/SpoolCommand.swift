import ArgumentParser
import WebhookGateway

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

    @Option(name: .customLong("exec-timeout"), help: "Seconds the command may run before it is killed (default: 30).")
    var timeoutSeconds: Double?

    @Option(name: .customLong("exec-concurrency"), help: "Commands running at once, across all workers (default: 2).")
    var concurrency: Int?

    var hook: Hook? { Settings.hook(command: command, timeoutSeconds: timeoutSeconds, concurrency: concurrency) }
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
        subcommands: [List.self, Stats.self, Retry.self, Recover.self],
        defaultSubcommand: Stats.self
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per payload waiting in new/.")
        @OptionGroup var options: SpoolOptions

        func run() throws {
            let spool = try options.requiredSpool()
            for entry in try spool.waiting() { print(entry) }
        }
    }

    struct Retry: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the hook again for every payload still in new/ (e.g. from a timer).",
            discussion: """
                Payloads a hook runner is running right now are skipped.
                Runners skip payloads whose hook failed (.hook-failed/ID says
                why); this runs them again. Exits 1 if any failed again.
                """)
        @OptionGroup var options: SpoolOptions
        @OptionGroup var hookOptions: HookOptions

        func run() throws {
            let spool = try options.requiredSpool()
            guard let hook = hookOptions.hook else { throw ValidationError("name the command with --exec or WEBHOOK_EXEC") }
            try spool.prepare()
            var delivered = 0, failed = 0, busy = 0
            for id in try spool.waitingIDs() {
                switch hook.deliver(id, from: spool) {
                case .ran(succeeded: true): delivered += 1
                case .ran(succeeded: false): failed += 1
                case .busy: busy += 1
                case .gone: break
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

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "How many payloads wait, were taken, or are half-written.")
        @OptionGroup var options: SpoolOptions

        func run() throws {
            print(try options.requiredSpool().statistics())
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
