import ArgumentParser
import WebhookForwarding
import WebhookSpool

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
                      webhook_payloads, one row per payload id, then moves
                      the file to cur/ (the default)
            consume   runs a command for each payload in the table, each
                      taken by exactly one of any number of consumers
            migrate   creates or upgrades the table (as its owner)
            list      shows the payloads in a state (failed, pending, done)
            retry     sends failed payloads back to the consumers
            purge     deletes payloads handled more than N days ago

            The database is named as libpq names it: prefer the PG*
            variables, ~/.pgpass and a pg_service.conf (PGSERVICE=name), or
            $WEBHOOK_DATABASE_URL: --database-url on the command line is
            visible to every user of the machine until the program starts.
            A URI (postgresql://user@host/db) or key=value pairs ("host=a,b
            dbname=webhooks target_session_attrs=read-write" for failover).
            See docs/forwarder.md.
            """,
        version: "webhook-forwarder 0.2.0",
        subcommands: [Forward.self, Consume.self, Migrate.self, List.self, Retry.self, Purge.self],
        defaultSubcommand: Forward.self
    )
}

struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The PostgreSQL database (default: $WEBHOOK_DATABASE_URL, else libpq's "
                                            + "PG* variables and service file).", valueName: "url"))
    var databaseURL: String?

    var url: String { databaseURL ?? getenv("WEBHOOK_DATABASE_URL").map { String(cString: $0) } ?? "" }
}

/// Runs `body`; a PostgreSQL error is logged as "cannot WHAT: …" and exits 1.
func failing<T>(_ what: String, _ body: () throws(PostgresError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        Log.write(.error, "cannot \(what): \(error)")
        throw ExitCode(1)
    }
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade webhook_payloads (run it as the role that owns the table).")
    @OptionGroup var database: DatabaseOptions

    func run() throws {
        let applied = try failing("migrate") { () throws(PostgresError) in try Schema.migrate(database.url) }
        print(applied.isEmpty ? "webhook_payloads is up to date" : "applied migrations \(applied.map(String.init).joined(separator: ", "))")
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List payloads in a state, oldest first.")
    @OptionGroup var database: DatabaseOptions
    @Option(name: .long, help: "pending, done or failed (default: failed).")
    var state = "failed"
    @Option(name: .long, help: "At most this many (default: 100).")
    var limit = 100

    func validate() throws {
        guard Queue.states.contains(state) else { throw ValidationError("--state is one of \(Queue.states.joined(separator: ", "))") }
    }

    func run() throws {
        let lines = try failing("list") { () throws(PostgresError) in try Queue.list(database.url, state: state, limit: limit) }
        lines.forEach { print($0) }
    }
}

struct Retry: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send failed payloads back to the consumers (attempts start again at 1; the errors are kept).")
    @OptionGroup var database: DatabaseOptions
    @Flag(name: .long, help: "Every failed payload.")
    var failed = false
    @Argument(help: "The ids of the failed payloads to send back.")
    var ids: [String] = []

    func validate() throws {
        guard failed != !ids.isEmpty else { throw ValidationError("name the payloads: retry ID... or retry --failed") }
    }

    func run() throws {
        let count = try failing("retry") { () throws(PostgresError) in try Queue.retry(database.url, ids: failed ? nil : ids) }
        print("sent back \(count) payloads")
    }
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete payloads handled more than N days ago (consume does this by itself: --keep-done-days).")
    @OptionGroup var database: DatabaseOptions
    @Option(name: .long, help: "Age in days of the handled payloads to delete.")
    var olderThanDays: Double

    func run() throws {
        let count = try failing("purge") { () throws(PostgresError) in
            try Queue.purge(database.url, olderThanDays: olderThanDays)
        }
        print("purged \(count) payloads")
    }
}

/// The arguments, read once; then the value of `--database-url` is overwritten in the process's own argv, so that
/// `ps` and /proc/PID/cmdline stop showing it (it was visible until now: prefer the environment).
func argumentsHidingTheDatabaseURL() -> [String] {
    let arguments = Array(CommandLine.arguments.dropFirst())
    for index in 1..<Int(CommandLine.argc) {
        guard let argument = CommandLine.unsafeArgv[index] else { continue }
        let text = String(cString: argument)
        if text.hasPrefix("--database-url=") {
            memset(argument + 15, Int32(UInt8(ascii: "*")), strlen(argument) - 15)
        } else if text == "--database-url", index + 1 < Int(CommandLine.argc), let value = CommandLine.unsafeArgv[index + 1] {
            memset(value, Int32(UInt8(ascii: "*")), strlen(value))
        }
    }
    return arguments
}

WebhookForwarderCommand.main(argumentsHidingTheDatabaseURL())
