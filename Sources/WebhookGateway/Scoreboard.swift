import CLinux
import WebhookCore
package import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// The numbers of the status page, counted by every process of a FastCGI server into one anonymous shared mapping
/// that the supervisor makes before it forks (php-fpm's scoreboard): each worker and hook runner adds to the same
/// counters with atomic operations, so the counts are exact across processes, and a worker that dies loses none.
public final class Scoreboard: @unchecked Sendable {  // a fixed mapping, touched only through atomics
    /// Statuses counted one by one; anything else counts as `other`.
    static let statuses = [200, 400, 405, 413, 500, 502, 503]
    /// Upper bounds of the request-duration histogram's buckets, in seconds (then +Inf).
    static let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

    enum Counter: Int, CaseIterable {
        case startTime, maxWorkersReached, stored, duplicates, storeFailures, hookOK, hookFailed, hookTimedOut,
             durationCount, durationMicroseconds,
             /// Unix seconds of the last verified payload stored (or found stored already).
             lastStored,
             /// Payloads stored with a sync of their own because the worker's journal had failed.
             journalFallbacks,
             /// Passes of the namer that failed, and whether its last pass did (1) or not (0).
             namerErrors, namerFailing
    }

    /// What a worker is doing: waiting for a new connection, serving a request, or holding a connection the web
    /// server keeps open between requests (it takes no new connection meanwhile).
    enum WorkerState: Int64, CaseIterable {
        case idle = 0, busy = 1, kept = 2
        var label: String { self == .idle ? "idle" : self == .busy ? "busy" : "kept_alive" }
    }

    private let base: UnsafeMutablePointer<Int64>
    /// One slot per live worker: its pid plus its ``WorkerState`` times 2^32, 0 when free. The supervisor frees a
    /// dead worker's slot, so a worker killed mid-request is not counted busy for ever.
    private let slots: Int
    private static let requestsAt = Counter.allCases.count
    private static let bucketsAt = requestsAt + statuses.count + 1
    private static let slotsAt = bucketsAt + buckets.count + 1

    /// Shared with every process forked after this; nil if the system refuses the mapping (then nothing counts).
    /// `workers` bounds the slots: twice as many, for workers finishing while their replacements start.
    public init?(workers: Int) {
        slots = 2 * workers
        let bytes = (Self.slotsAt + slots) * MemoryLayout<Int64>.size
        guard let memory = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
              memory != MAP_FAILED
        else { return nil }
        base = memory.bindMemory(to: Int64.self, capacity: Self.slotsAt + slots)
        base[Counter.startTime.rawValue] = Int64(time(nil))
    }

    func add(_ counter: Counter, _ value: Int64 = 1) { clinux_atomic_add(base + counter.rawValue, value) }
    func value(_ counter: Counter) -> Int64 { clinux_atomic_load(base + counter.rawValue) }

    private var slotPointers: [UnsafeMutablePointer<Int64>] { (0..<slots).map { base + Self.slotsAt + $0 } }

    /// A new worker takes a free slot (the supervisor calls this with the worker's pid, right after forking it).
    func join(_ pid: pid_t) {
        _ = slotPointers.first { clinux_atomic_replace($0, 0, Int64(pid)) }
    }

    /// A worker is gone: its slot is free again.
    func leave(_ pid: pid_t) {
        for slot in slotPointers where clinux_atomic_load(slot) & 0xFFFF_FFFF == Int64(pid) {
            for state in WorkerState.allCases { _ = clinux_atomic_replace(slot, Int64(pid) + state.rawValue << 32, 0) }
        }
    }

    /// Live workers by state.
    func workers() -> [WorkerState: Int] {
        var counts: [WorkerState: Int] = [.idle: 0, .busy: 0, .kept: 0]
        for slot in slotPointers {
            let value = clinux_atomic_load(slot)
            if value != 0, let state = WorkerState(rawValue: value >> 32) { counts[state, default: 0] += 1 }
        }
        return counts
    }

    /// This worker is now in `state` (a store only when it changed).
    func mark(_ state: WorkerState) {
        let pid = Int64(getpid())
        guard let slot = slotPointers.first(where: { clinux_atomic_load($0) & 0xFFFF_FFFF == pid }) else { return }
        if clinux_atomic_load(slot) != pid + state.rawValue << 32 { clinux_atomic_store(slot, pid + state.rawValue << 32) }
    }

    /// A worker takes a request. If that left no worker waiting for a new connection (every other one busy or
    /// holding a kept-alive connection), it counts: the next new connection waits in the listen queue until a
    /// worker is free (php-fpm's "max children reached").
    func beginRequest() {
        mark(.busy)
        if workers()[.idle] == 0 { add(.maxWorkersReached) }
    }

    /// A worker is done with a request (`kept`: the web server keeps the connection for its next one); what it
    /// did is counted (a request to the status page itself is not).
    func endRequest(_ record: AccessRecord, kept: Bool = false) {
        mark(kept ? .kept : .idle)
        if record.isEndpoint { return }
        let status = Int(record.outcome.status.code)
        clinux_atomic_add(base + Self.requestsAt + (Self.statuses.firstIndex(of: status) ?? Self.statuses.count), 1)
        if let receipt = record.outcome.receipt {
            add(receipt.duplicate ? .duplicates : .stored)
            clinux_atomic_raise(base + Counter.lastStored.rawValue, Int64(time(nil)))
        }
        if record.outcome.status == .serviceUnavailable { add(.storeFailures) }
        add(.durationCount)
        add(.durationMicroseconds, Int64(record.seconds * 1e6))
        clinux_atomic_add(base + Self.bucketsAt + (Self.buckets.firstIndex { record.seconds <= $0 } ?? Self.buckets.count), 1)
    }

    /// A hook's run ended.
    package func countHook(_ result: Hook.Result) {
        add(result.timedOut ? .hookTimedOut : result.succeeded ? .hookOK : .hookFailed)
    }

    /// What the status page shows, read now.
    func snapshot() -> Snapshot {
        var requests: [(String, Int64)] = Self.statuses.enumerated().map {
            (String($1), clinux_atomic_load(base + Self.requestsAt + $0))
        }
        requests.append(("other", clinux_atomic_load(base + Self.requestsAt + Self.statuses.count)))
        var cumulative: Int64 = 0
        let buckets = (0...Self.buckets.count).map { index -> (String, Int64) in
            cumulative += clinux_atomic_load(base + Self.bucketsAt + index)
            return (index < Self.buckets.count ? String(Self.buckets[index]) : "+Inf", cumulative)
        }
        return Snapshot(counters: Dictionary(uniqueKeysWithValues: Counter.allCases.map { ($0, value($0)) }),
                        workers: workers(), requests: requests, buckets: buckets)
    }

    /// The namer's pass failed (or not): counted, and remembered for the health check.
    package func namerPass(failed: Bool) {
        if failed { add(.namerErrors) }
        if value(.namerFailing) != (failed ? 1 : 0) { clinux_atomic_store(base + Counter.namerFailing.rawValue, failed ? 1 : 0) }
    }

    struct Snapshot {
        let counters: [Counter: Int64]
        let workers: [WorkerState: Int]
        let requests: [(status: String, count: Int64)]
        /// Cumulative, as OpenMetrics wants them.
        let buckets: [(le: String, count: Int64)]
    }
}

/// The counts the spool makes (the hook's runs, the namer's passes) land here.
extension Scoreboard: SpoolCounters {}
