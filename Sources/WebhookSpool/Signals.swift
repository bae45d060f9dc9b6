package import CLinux

#if canImport(Glibc)
import Glibc
#endif

/// Signal sets, in Swift terms.
package enum Signals {
    package static func set(_ signals: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        return set
    }

    /// In a child of the supervisor: SIGTERM and SIGINT stay blocked (the supervisor blocked them before forking)
    /// and become readable on the descriptor returned (-1 if none could be made); SIGHUP is the supervisor's
    /// (re-execute), so a terminal's hang-up is ignored; SIGCHLD is unblocked for the hook runners.
    package static func stopDescriptor() -> Int32 {
        var stopSignals = set([SIGTERM, SIGINT])
        let stop = clinux_signal_fd(&stopSignals)
        signal(SIGHUP, SIG_IGN)
        var unblock = set([SIGCHLD, SIGHUP])
        sigprocmask(SIG_UNBLOCK, &unblock, nil)
        return stop
    }

    /// `waitpid`'s status in words (the WIFEXITED family are macros Swift does not import).
    package static func describe(waitStatus status: Int32) -> String {
        let signal = status & 0x7F
        if signal == 0 { return "exited with status \((status >> 8) & 0xFF)" }
        return "was killed by signal \(signal)"
    }
}
