import ArgumentParser
import WebhookCore
import WebhookGateway
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// `systemctl reload`'s second half (`ExecReload=`): asks the running server to reload and waits for the answer.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Ask a running FastCGI server to start again (new binary, new secrets) and wait until it has.",
        discussion: """
            Sends SIGHUP to the server PID. The server first checks the configuration with
            the binary it will run; if that fails it goes on with the running binary, and
            this command says so and exits 1 (systemctl reload fails). Otherwise the server
            executes the binary again on the same socket, and this command exits 0 once
            every worker of the last start has finished: from then on every request is
            answered with the new configuration (a rotated secret). Run as the server's
            user (systemd: ExecReload=webhook-handler reload --pid $MAINPID).
            """
    )

    @Option(name: .long, help: "The server's process id (the supervisor's, systemd's $MAINPID).")
    var pid: Int32

    @Option(name: .long, help: "Seconds to wait for the old workers to finish.")
    var timeoutSeconds: Double = 80

    func run() throws {
        if let problem = Reload.request(pid: pid, timeoutSeconds: timeoutSeconds) {
            Log.writeStandardError("webhook-handler reload: \(problem)\n")
            throw ExitCode(1)
        }
        Log.writeStandardOutput("webhook-handler reload: every worker now runs the new configuration\n")
    }
}

/// Run as root by the systemd units before the start and each reload (`ExecStartPre=+`, `ExecReload=+`).
struct CopySecretCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-secret",
        abstract: "Check the operator's secret file and copy it where the service (another user) can read it.",
        discussion: """
            Refuses (exit 1, saying why) a file that is missing, empty or holds a secret
            too short to use; warns when anyone but root can read it. The copy is made
            with mode 0400 for the owner of its directory (the service's runtime
            directory), replacing the last copy in one rename.
            """
    )

    @Argument(help: "The operator's file, e.g. /etc/webhook-handler/secret (0600 root:root).")
    var source: String

    @Argument(help: "The copy, e.g. /run/webhook-handler-secret/api-secret.")
    var destination: String

    func run() throws {
        do throws(Outcome) {
            for warning in try SecretCopy.install(from: source, to: destination) {
                Log.writeStandardError("webhook-handler copy-secret: warning: \(warning)\n")
            }
        } catch {
            Log.writeStandardError("webhook-handler copy-secret: \(error.detail ?? "unusable secret")\n")
            throw ExitCode(1)
        }
    }
}
