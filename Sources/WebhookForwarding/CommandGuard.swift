#if canImport(Glibc)
import Glibc
#endif

/// Keeps a consumer's command from outliving the consumer. The hook runner starts every command in a process
/// group of its own (to kill it whole on time-out), so a consumer killed with SIGKILL would leave it running, and
/// after the lease another consumer would run the same payload at the same time.
///
/// So the command runs under a small shell guard: `setpriv --pdeathsig` (util-linux) asks the kernel to send the
/// guard SIGUSR2 when its parent dies, and the guard's trap then kills its whole process group. The guard runs the
/// command in the background (so the trap runs at once, not after the command) with the body still on its stdin,
/// and exits with the command's status. It also sets `WEBHOOK_ATTEMPT`. Its parent is the hook's C guard
/// (hook_guard.h), not the consumer, and that one watches the consumer itself (a pidfd), so the shell does not
/// compare `$PPID` with the consumer's pid: it never matched, and every command "exited with status 1".
enum CommandGuard {
    static let script = #"""
        exec 3<&0; trap 'kill -KILL 0' USR2
        WEBHOOK_ATTEMPT=$1; export WEBHOOK_ATTEMPT
        (eval "$2") <&3 3<&- & wait $!
        """#

    /// The shell command that runs `command` under the guard, for attempt `attempt` of this consumer.
    static func wrapping(_ command: String, attempt: Int) -> String {
        "exec setpriv --pdeathsig USR2 -- /bin/sh -c \(quoted(script)) guard \(attempt) \(quoted(command))"
    }

    static func quoted(_ text: String) -> String { "'" + text.replacingAll("'", with: #"'\''"#) + "'" }
}
