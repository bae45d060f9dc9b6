import ArgumentParser
import WebhookForwarding
import WebhookGateway

#if canImport(Glibc)
import Glibc
#endif

/// Carries verified payloads from a handler's spool to PostgreSQL, and from PostgreSQL to commands on any host.
/// Its own executable: libpq is linked here, never into the handler (a CGI pays every library on each request).
struct WebhookForwarderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook-forwarder",
        abstract: "Forward a webhook-handler spool to PostgreSQL, and consume the payloads from there.",
        discussion: """
            forward   moves each payload in the spool's new/ into the table
                      webhook_payloads (created when absent), one row per
                      payload id, then moves the file to cur/ (the default)
            consume   runs a command for each payload in the table, each
                      taken by exactly one of any number of consumers
            purge     deletes payloads handled more than N days ago

            The database is named as libpq names it: a URI
            (postgresql://user@host/db), key=value pairs ("host=a,b
            dbname=webhooks target_session_attrs=read-write" for failover),
            or the PG* variables, ~/.pgpass and pg_service.conf when
            --database-url and $WEBHOOK_DATABASE_URL are empty.
            """,
        version: "webhook-forwarder 0.1.0",
        subcommands: [Forward.self, Consume.self, Purge.self],
        defaultSubcommand: Forward.self
    )
}

struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The PostgreSQL database (default: $WEBHOOK_DATABASE_URL, else libpq's PG* variables).",
                                            valueName: "url"))
    var databaseURL: String?

    var url: String { databaseURL ?? getenv("WEBHOOK_DATABASE_URL").map { String(cString: $0) } ?? "" }
}

struct MetricsOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Write metrics to this file for node_exporter's textfile collector, e.g. /var/lib/prometheus/node-exporter/webhook-forwarder.prom (default: $WEBHOOK_METRICS_FILE).",
                                            valueName: "path"))
    var metricsFile: String?
}

struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forward the spool's payloads to PostgreSQL (the default).",
        discussion: """
            Without --once it runs as a service: woken when the handler
            stores a payload (a look every 5 s as a backup), reconnecting
            while PostgreSQL is away; the handler goes on answering and
            storing meanwhile. With --once it forwards what is there and
            exits 0, or exits 1 saying why PostgreSQL could not be used
            (nothing is lost: the payloads stay in new/).
            A spool has one consumer of new/: a forwarded spool's handler
            has no --exec; run the command with `webhook-forwarder consume
            --exec` instead, on this host or any other.
            """)

    @Option(name: .long, help: ArgumentHelp("The handler's spool (default: $WEBHOOK_SPOOL_DIR).", valueName: "dir"))
    var spoolDir: String?
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var metrics: MetricsOptions
    @Flag(name: .long, help: "Forward what is there, then exit.")
    var once = false
    @Option(name: .long, help: "Payloads per transaction (default: 500).")
    var batchSize: Int = 500
    @Option(name: .long, help: "The name recorded as each row's host (default: this machine's host name).")
    var hostName: String?

    func run() throws {
        guard let directory = spoolDir ?? getenv("WEBHOOK_SPOOL_DIR").map({ String(cString: $0) }), !directory.isEmpty else {
            throw ValidationError("name the spool with --spool-dir or WEBHOOK_SPOOL_DIR")
        }
        var forwarder = Forwarder(spool: Spool(directory: directory), databaseURL: database.url,
                                  host: hostName ?? Self.hostName(), batchSize: batchSize)
        forwarder.metrics = ForwarderMetrics.from(option: metrics.metricsFile)
        guard once else { return forwarder.serve() }
        do {
            print("forwarded \(try forwarder.forwardOnce()) payloads")
        } catch {
            Log.write(.error, "cannot forward: \(error); the payloads stay in \(directory)/new/")
            throw ExitCode(1)
        }
    }

    static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

struct Consume: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command for each payload in PostgreSQL, each taken by exactly one consumer.",
        discussion: """
            The command gets the body on stdin and WEBHOOK_ID,
            WEBHOOK_RECEIVED, WEBHOOK_SENDER and the other WEBHOOK_*
            variables, as the handler's --exec does. Exit 0 marks the
            payload done; anything else (or --exec-timeout) makes it
            available again after 10 s, 20 s, 40 s ... (an hour at most).
            A payload is leased to its consumer for --lease-seconds
            (default: the time-out + 30 s); a consumer that dies leaves the
            lease to run out, and another takes the payload.
            """)

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var metrics: MetricsOptions
    @Option(name: .customLong("exec"), help: ArgumentHelp("The shell command to run for each payload.", valueName: "command"))
    var command: String
    @Option(name: .customLong("exec-timeout"), help: "Seconds the command may run before it is killed (default: 30).")
    var timeoutSeconds: Double = 30
    @Option(name: .long, help: "Seconds a taken payload stays with this consumer (default: the time-out + 30).")
    var leaseSeconds: Double?
    @Flag(name: .long, help: "Handle what is there, then exit (1 if any command failed).")
    var once = false

    func run() throws {
        var consumer = Consumer(databaseURL: database.url, hook: Hook(command: command, timeoutSeconds: timeoutSeconds),
                                leaseSeconds: leaseSeconds)
        consumer.metrics = ForwarderMetrics.from(option: metrics.metricsFile)
        guard once else { return consumer.serve() }
        do {
            let counts = try consumer.consumeOnce()
            print("\(counts.succeeded) done, \(counts.failed) failed")
            if counts.failed > 0 { throw ExitCode(1) }
        } catch let error as PostgresError {
            Log.write(.error, "cannot consume: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete payloads handled more than N days ago.")
    @OptionGroup var database: DatabaseOptions
    @Option(name: .long, help: "Age in days of the handled payloads to delete.")
    var olderThanDays: Int

    func run() throws {
        do {
            print("purged \(try purgeDone(databaseURL: database.url, olderThanDays: olderThanDays)) payloads")
        } catch {
            Log.write(.error, "cannot purge: \(error)")
            throw ExitCode(1)
        }
    }
}

WebhookForwarderCommand.main()
