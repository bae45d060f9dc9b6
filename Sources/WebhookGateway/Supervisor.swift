import CLinux
import WebhookCore
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// The supervising process: keeps `workers` processes alive, restarts itself on SIGHUP and stops gracefully.
struct Supervisor {
    let server: FastCGIServer
    let socket: Int32
    let signals: sigset_t
    /// Live workers of this start, and when each started.
    var started: [pid_t: Double] = [:]
    /// Workers told to finish (of an earlier start, or of this one while stopping): never replaced.
    var retiring: Set<pid_t> = []
    /// When the next workers are due (after a crash or a failed fork), earliest first.
    var replacementsDue: [Double] = []
    /// Workers that died young (or could not be forked) in a row: each waits twice as long, up to 30 s.
    var failuresInARow = 0
    /// The process naming journaled payloads (with a journaled spool), and when it is due again after it died.
    var namer: pid_t?
    var namerDue: Double?
    /// `webhook-handler reload` requests waiting until no worker of an earlier start is left (pidfds).
    var requesters: [Int32] = []

    init(server: FastCGIServer, socket: Int32, signals: sigset_t) {
        self.server = server
        self.socket = socket
        self.signals = signals
        _ = Handover.executable
    }

    /// Forks a child that runs `body` and exits with its status; the child's pid, or -1.
    private func forkChild(_ body: () -> Int32) -> pid_t {
        let supervisor = getpid()
        let pid = fork()
        if pid == 0 {
            // Die with the supervisor (a worker left behind would serve with nobody to replace or stop it).
            _ = clinux_set_parent_death_signal(SIGTERM)
            if getppid() != supervisor { _exit(0) }
            _exit(body())
        }
        return pid
    }

    /// Forks a worker; if the system cannot (EAGAIN: too many processes), tries again later.
    mutating func spawn() {
        let pid = forkChild { [server, socket] in Worker(server: server, socket: socket).serve() }
        if pid < 0 {
            let delay = backoff()
            Log.write(.error, "cannot start a worker: fork: \(String(cString: strerror(errno))); trying again in \(Int(delay))s")
            schedule(after: delay)
            return
        }
        started[pid] = Clock.now()
        server.responder.scoreboard?.join(pid)
    }

    /// Forks the ``Namer``, if the spool is journaled; if the system cannot, tries again in a second.
    mutating func spawnNamer() {
        guard let board = server.journalBoard, let spool = server.journaledSpool else { return }
        let pid = forkChild { [hook = server.responder.hook, scoreboard = server.responder.scoreboard] in
            let stop = Signals.stopDescriptor()
            // Only on CPU time the workers leave: a sender waits on them, nobody waits on a name (the records are
            // durable). Under load the namer catches up when the workers idle; a worker whose slot fills faster than
            // it is named helps (``Journal``).
            if clinux_schedule_when_idle() != 0 { _ = nice(19) }
            _ = clinux_set_process_name(Namer.processName)
            return Namer(spool: spool, board: board, hook: hook, counters: scoreboard).run(stop: stop)
        }
        (namer, namerDue) = pid > 0 ? (pid, nil) : (nil, Clock.now() + 1)
    }

    /// Tells `workers` to finish what they are serving and exit.
    mutating func retire(_ workers: [pid_t]) {
        for pid in workers { retiring.insert(pid); kill(pid, SIGTERM) }
    }

    mutating func superviseUntilStopped() -> Int32 {
        var signals = signals
        var deadline: Double?
        while true {
            var tick = timespec(tv_sec: 0, tv_nsec: 200_000_000)
            var info = siginfo_t()
            let signal = sigtimedwait(&signals, &info, &tick)
            if (signal == SIGTERM || signal == SIGINT) && deadline == nil {
                deadline = Clock.now() + server.graceSeconds
                Log.write(.info, "\(signal == SIGTERM ? "SIGTERM" : "SIGINT"): stopping; \(started.count + retiring.count) "
                    + "workers finish their requests and kept connections first")
                retire(Array(started.keys) + (namer.map { [$0] } ?? []))
                (started, namer, namerDue) = ([:], nil, nil)
            }
            if signal == SIGHUP && deadline == nil { startAgain(requester: Reload.requester(of: info)) }
            reap()
            if !requesters.isEmpty && retiring.isEmpty {
                Log.write("reload: every worker of the last start has finished")
                for requester in requesters { Reload.answer(requester, Reload.done) }
                requesters = []
            }
            if let deadline {
                if retiring.isEmpty { break }
                // Repeat the signal: a worker that was forking when it first came may have missed it.
                let signal = Clock.now() < deadline ? SIGTERM : SIGKILL
                if signal == SIGKILL { Log.write(.warning, "grace period over: killing \(retiring.count) workers") }
                for pid in retiring { kill(pid, signal) }
            } else {
                let now = Clock.now()
                while let due = replacementsDue.first, due <= now {
                    replacementsDue.removeFirst()
                    spawn()
                }
                if let due = namerDue, due <= now { spawnNamer() }
            }
        }
        Log.write(.info, "stopped")
        return 0
    }

    /// SIGHUP: checks the configuration with the binary now at ``Handover/executable``, then executes it in this
    /// process; if either fails, goes on as before and tells `requester` (a pidfd, or -1).
    private mutating func startAgain(requester: Int32) {
        if let problem = Reload.check(Handover.executable, socket: socket) {
            Log.write(.error, "SIGHUP: not started again: \(problem); going on with the running binary")
            Reload.answer(requester, Reload.refused)
            return
        }
        Log.write("SIGHUP: configuration checked; starting \(Handover.executable) again on the same socket")
        let failure = Handover.reexecute(Handover.executable, socket: socket,
                                         workers: Array(started.keys) + Array(retiring) + (namer.map { [$0] } ?? []),
                                         requesters: requesters + (requester >= 0 ? [requester] : []))
        Log.write(.error, "cannot start again: \(failure); going on as before")
        Reload.answer(requester, Reload.refused)
    }

    private mutating func reap() {
        var status: Int32 = 0
        while case let pid = waitpid(-1, &status, WNOHANG), pid > 0 {
            server.responder.scoreboard?.leave(pid)
            if retiring.remove(pid) != nil { continue }
            if pid == namer {
                Log.write(.warning, "the journal's namer \(pid) \(Signals.describe(waitStatus: status)); starting another in 1s")
                (namer, namerDue) = (nil, Clock.now() + 1)
                continue
            }
            guard let began = started.removeValue(forKey: pid) else { continue }
            let lived = Clock.now() - began
            if lived >= 10 { failuresInARow = 0 }
            let delay = lived < 10 ? backoff() : 0
            Log.write(.warning, "worker \(pid) \(Signals.describe(waitStatus: status)); starting another"
                + (delay > 0 ? " in \(Int(delay))s" : ""))
            schedule(after: delay)
        }
    }

    /// 1, 2, 4 … 30 seconds, for the failures in a row so far.
    private mutating func backoff() -> Double {
        failuresInARow += 1
        return min(30, Double(1 << min(failuresInARow - 1, 5)))
    }

    private mutating func schedule(after delay: Double) {
        replacementsDue.append(Clock.now() + delay)
        replacementsDue.sort()
    }
}
