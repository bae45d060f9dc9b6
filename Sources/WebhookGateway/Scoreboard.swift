import CLinux
import WebhookCore

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
             durationCount, durationMicroseconds
    }

    private let base: UnsafeMutablePointer<Int64>
    /// One slot per live worker: its pid while idle, minus its pid while it serves a request, 0 when free. The
    /// supervisor frees a dead worker's slot, so a worker killed mid-request is not counted busy for ever.
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
        for slot in slotPointers { _ = clinux_atomic_replace(slot, Int64(pid), 0) || clinux_atomic_replace(slot, -Int64(pid), 0) }
    }

    /// (live workers, busy ones).
    func workers() -> (total: Int, busy: Int) {
        let values = slotPointers.map { clinux_atomic_load($0) }
        return (values.filter { $0 != 0 }.count, values.filter { $0 < 0 }.count)
    }

    /// A worker takes a request; if that left no worker idle, it counts (php-fpm's "max children reached").
    func beginRequest() {
        let pid = Int64(getpid())
        guard let slot = slotPointers.first(where: { clinux_atomic_load($0) == pid }) else { return }
        clinux_atomic_store(slot, -pid)
        let (total, busy) = workers()
        if busy >= total { add(.maxWorkersReached) }
    }

    /// A worker is done with a request; what it did is counted (a request to the status page itself is not).
    func endRequest(_ record: AccessRecord) {
        let pid = Int64(getpid())
        if let slot = slotPointers.first(where: { clinux_atomic_load($0) == -pid }) { clinux_atomic_store(slot, pid) }
        if record.isEndpoint { return }
        let status = Int(record.outcome.status.code)
        clinux_atomic_add(base + Self.requestsAt + (Self.statuses.firstIndex(of: status) ?? Self.statuses.count), 1)
        if let receipt = record.outcome.receipt { add(receipt.duplicate ? .duplicates : .stored) }
        if record.outcome.status == .serviceUnavailable { add(.storeFailures) }
        add(.durationCount)
        add(.durationMicroseconds, Int64(record.seconds * 1e6))
        clinux_atomic_add(base + Self.bucketsAt + (Self.buckets.firstIndex { record.seconds <= $0 } ?? Self.buckets.count), 1)
    }

    /// A hook's run ended.
    func countHook(_ result: Hook.Result) {
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
        let (total, busy) = workers()
        return Snapshot(counters: Dictionary(uniqueKeysWithValues: Counter.allCases.map { ($0, value($0)) }),
                        workers: total, busy: busy, requests: requests, buckets: buckets)
    }

    struct Snapshot {
        let counters: [Counter: Int64]
        let workers: Int
        let busy: Int
        let requests: [(status: String, count: Int64)]
        /// Cumulative, as OpenMetrics wants them.
        let buckets: [(le: String, count: Int64)]
    }
}
