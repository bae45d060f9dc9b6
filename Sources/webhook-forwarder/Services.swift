import ArgumentParser
import WebhookForwarding
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forward the spool's payloads to PostgreSQL (the default).",
        discussion: """
            Without --once it runs as a service: woken when the handler
            stores a payload (a look every 5 s as a backup), reconnecting
            while PostgreSQL is away; the handler goes on answering and
            storing meanwhile. With --once it forwards what is there and
            exits 0, or exits 1 saying why (PostgreSQL could not be used, the
            spool cannot be read, a file in new/ is torn, a payload was set
            aside): nothing is lost, the payloads stay in new/.
            --from-cur --since T inserts again what cur/ holds since T (a
            database that lost recent commits); rows already there stay.
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
    @Option(name: .long, help: "Payloads per transaction at most (default: 500).")
    var batchSize: Int = 500
    @Option(name: .long, help: "Bytes of bodies per transaction at most (default: 33554432, 32 MiB).")
    var batchBytes: Int = 32 << 20
    @Option(name: .long, help: "The name recorded as each row's host (default: this machine's host name).")
    var hostName: String?
    @Flag(name: .long, help: "Insert again the payloads in cur/ stored since --since (implies --once; files stay).")
    var fromCur = false
    @Option(name: .long, help: ArgumentHelp("With --from-cur: a UTC time (2026-12-01T04:00:00Z) or an age (90m, 6h, 2d).",
                                            valueName: "time"))
    var since: String?
    @Option(name: .long, help: ArgumentHelp("Days cur/ keeps forwarded payloads (the service prunes it every 5 min); 0 or "
                                            + "off keeps them forever (default: $WEBHOOK_KEEP_CUR_DAYS, else 7).", valueName: "days"))
    var keepCurDays: String?
    var retention: CurRetention {
        get throws { do { return try .configured(keepCurDays, named: "--keep-cur-days") } catch { throw ValidationError("\(error)") } }
    }

    func validate() throws {
        _ = try retention
        if fromCur && since.flatMap(Self.epochSeconds) == nil {
            throw ValidationError("--from-cur needs --since TIME (2026-12-01T04:00:00Z) or an age (90m, 6h, 2d)")
        }
    }

    func run() throws {
        guard let directory = spoolDir ?? getenv("WEBHOOK_SPOOL_DIR").map({ String(cString: $0) }), !directory.isEmpty else {
            throw ValidationError("name the spool with --spool-dir or WEBHOOK_SPOOL_DIR")
        }
        var spool = Spool(directory: directory)
        spool.takenRetention = try retention
        var forwarder = Forwarder(spool: spool, databaseURL: database.url,
                                  host: hostName ?? Self.hostName(), batchSize: batchSize, batchBytes: batchBytes)
        forwarder.metrics = ForwarderMetrics.from(option: metrics.metricsFile)
        if !once && !fromCur {
            return try failing("forward") { () throws(PostgresError) in try forwarder.serve() }
        }
        let pass = try failing("forward; the payloads stay in \(directory)/new/") { () throws(PostgresError) in
            if fromCur, let seconds = since.flatMap(Self.epochSeconds) { return try forwarder.forwardAgain(since: seconds) }
            return try forwarder.forwardOnce()
        }
        var line = "forwarded \(pass.forwarded) payloads"
        if pass.unreadable > 0 { line += "; \(pass.unreadable) files cannot be read whole (left where they are)" }
        if pass.setAside > 0 { line += "; \(pass.setAside) refused by PostgreSQL, set aside in \(directory)/unforwardable/" }
        print(line)
        if pass.unreadable + pass.setAside > 0 { throw ExitCode(1) }
    }

    /// `2026-12-01T04:00:00Z` (UTC), or an age before now: `90m`, `6h`, `2d`, `30s`.
    static func epochSeconds(_ text: String) -> Double? {
        if let unit = text.last, let count = Double(text.dropLast()),
           let scale = ["s": 1.0, "m": 60, "h": 3600, "d": 86400][String(unit)] {
            return Clock.now() - count * scale
        }
        let fields = text.split(whereSeparator: { "-T:Z".contains($0) }).compactMap { Int32($0) }
        guard fields.count == 6, text.count == 19 || (text.count == 20 && text.hasSuffix("Z")) else { return nil }
        var parts = tm()
        (parts.tm_year, parts.tm_mon, parts.tm_mday) = (fields[0] - 1900, fields[1] - 1, fields[2])
        (parts.tm_hour, parts.tm_min, parts.tm_sec) = (fields[3], fields[4], fields[5])
        return Double(timegm(&parts))
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
            The command gets the body on stdin and WEBHOOK_ID, WEBHOOK_ATTEMPT
            (1, 2, ...), WEBHOOK_RECEIVED, WEBHOOK_SENDER and the other
            WEBHOOK_* variables, as the handler's --exec does. Exit 0 marks
            the payload done; exit 65 (EX_DATAERR) fails it for good at once;
            anything else (or --exec-timeout) makes it available again after
            10 s, 20 s, 40 s ... an hour at most (each +-25 % at random), until
            --max-attempts, after which it is failed (list --state failed,
            retry). A taken payload is leased for --lease-seconds and the
            lease is renewed every --renew-seconds while the command runs; the
            command dies with its consumer, and a consumer that dies leaves
            the lease to run out: another takes the payload then.
            Done payloads older than --keep-done-days are deleted as it goes.
            """)

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var metrics: MetricsOptions
    @Option(name: .customLong("exec"), help: ArgumentHelp("The shell command to run for each payload.", valueName: "command"))
    var command: String
    @Option(name: .customLong("exec-timeout"), help: "Seconds the command may run before it is killed (default: 30).")
    var timeoutSeconds: Double = 30
    @Option(name: .long, help: "Seconds a taken payload stays with this consumer between renewals (default: 60).")
    var leaseSeconds: Double = 60
    @Option(name: .long, help: "Seconds between lease renewals while the command runs (default: 10).")
    var renewSeconds: Double = 10
    @Option(name: .long, help: "Attempts before a payload is failed for good (default: \(Consumer.defaultMaxAttempts)).")
    var maxAttempts: Int = Consumer.defaultMaxAttempts
    @Option(name: .long, help: "Days done payloads are kept before the consumers delete them; 0 keeps them (default: 7).")
    var keepDoneDays: Double = 7
    @Flag(name: .long, help: "Handle what is there, then exit (1 if any command failed).")
    var once = false

    var consumer: Consumer {
        var consumer = Consumer(databaseURL: database.url, command: command, timeoutSeconds: timeoutSeconds,
                                leaseSeconds: leaseSeconds, renewSeconds: renewSeconds, maxAttempts: maxAttempts,
                                keepDoneDays: keepDoneDays)
        consumer.metrics = ForwarderMetrics.from(option: metrics.metricsFile)
        return consumer
    }

    func validate() throws {
        if let problem = consumer.leaseProblem { throw ValidationError(problem) }
        if maxAttempts < 1 { throw ValidationError("--max-attempts must be 1 or more") }
    }

    func run() throws {
        guard once else { return consumer.serve() }
        let counts = try failing("consume") { () throws(PostgresError) in try consumer.consumeOnce() }
        print("\(counts.succeeded) done, \(counts.failed) failed")
        if counts.failed > 0 { throw ExitCode(1) }
    }
}

struct MetricsOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Write metrics to this file for node_exporter's textfile collector, e.g. /var/lib/prometheus/node-exporter/webhook-forwarder.prom (default: $WEBHOOK_METRICS_FILE).",
                                            valueName: "path"))
    var metricsFile: String?
}
