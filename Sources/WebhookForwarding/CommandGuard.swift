import CLinux
import WebhookGateway

#if canImport(Glibc)
import Glibc
#endif

/// Keeps a consumer's command from outliving the consumer. The hook runner starts every command in a process
/// group of its own (to kill it whole on time-out), so a consumer killed with SIGKILL would leave it running, and
/// after the lease another consumer would run the same payload at the same time. So `consume` runs the command
/// through `webhook-forwarder run-command` (this guard): it asks the kernel for a signal when its parent dies,
/// and on that signal kills its whole process group, itself included. It also gives the command
/// `WEBHOOK_ATTEMPT`.
public enum CommandGuard {
    /// The signal the kernel sends the guard when the consumer dies: one nothing else sends a command's group.
    static let parentDied = SIGUSR2

    /// The shell command that runs `command` under the guard, for attempt `attempt` of this consumer.
    static func wrapping(_ command: String, attempt: Int) -> String {
        "exec \(quoted(executablePath)) run-command --parent \(getpid()) --attempt \(attempt) -- \(quoted(command))"
    }

    /// This program, as the kernel knows it (not `argv[0]`, which may be relative or a name on `PATH`).
    static let executablePath: String = {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    static func quoted(_ text: String) -> String { "'" + text.replacingAll("'", with: #"'\''"#) + "'" }

    /// The guard itself: arms the parent-death signal, checks the parent is still `parent` (it may have died
    /// before the signal was armed), runs `/bin/sh -c command` in this process group and returns its exit status
    /// (128 + N if signal N killed it).
    public static func run(command: String, parent: Int32, attempt: Int) -> Int32 {
        signal(parentDied) { _ in _ = kill(0, SIGKILL) }  // the whole group, this guard included
        _ = clinux_set_parent_death_signal(parentDied)
        guard getppid() == parent else { return 1 }
        setenv("WEBHOOK_ATTEMPT", String(attempt), 1)
        var pid: pid_t = 0
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, parentDied)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))
        let arguments = ["/bin/sh", "-c", command]
        let spawned = withCStrings(arguments) { argv in posix_spawn(&pid, "/bin/sh", nil, &attributes, argv, environ) }
        guard spawned == 0 else {
            Log.write("cannot start /bin/sh: \(String(cString: strerror(spawned)))")
            return 127
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}
