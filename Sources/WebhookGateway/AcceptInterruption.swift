#if canImport(Glibc)
import Glibc
#endif

/// How a stop signal ends a worker's wait in accept(2) without a race. A handler (without SA_RESTART, as libfcgi
/// installs one) interrupts the wait with EINTR, but a signal that comes just before the call would be handled and
/// the wait would begin anyway. So the handler puts a spare socket that listens on nothing in place of this
/// worker's descriptor of the listening socket (dup2 is async-signal-safe): an accept already waiting is
/// interrupted, one not yet begun fails at once, and either way the worker finds its descriptor no longer
/// listening. Other workers and the supervisor keep the listening socket (the descriptor table is per process).
enum AcceptInterruption {
    /// The handler's only state: this worker's listening descriptor and the spare, set before it is installed.
    nonisolated(unsafe) private static var descriptors: (listening: Int32, spare: Int32) = (-1, -1)

    /// Installs the handler for SIGTERM and SIGINT (they stay blocked outside accept); false if it cannot.
    static func install(listening: Int32) -> Bool {
        let spare = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard spare >= 0 else { return false }
        descriptors = (listening, spare)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            _ = dup2(AcceptInterruption.descriptors.spare, AcceptInterruption.descriptors.listening)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        return sigaction(SIGTERM, &action, nil) == 0 && sigaction(SIGINT, &action, nil) == 0
    }
}
