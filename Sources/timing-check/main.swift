// A dudect-style timing check of signature verification (not part of CI: a shared machine is too noisy for a
// pass/fail there). Two classes of wrong signatures — wrong in the first byte, wrong in the last byte — are
// verified in random order, each timed; Welch's t-test then says whether the classes' times differ. |t| < 4.5
// after many samples means no detectable difference (the dudect threshold). The same is done for a deliberately
// early-exiting comparison, to show that the harness can see a leak.
//
//     swift run -c release timing-check [SAMPLES]        (default 1,000,000 per comparison)
import WebhookCore

#if canImport(Glibc)
import Glibc
#endif

let samples = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 1_000_000
let secret = try! Secret("timing-secret-0123456789")
let body = Array(#"{"reference":"test","topic_id":"0.0.134383"}"#.utf8)
let right = Array(secret.signature(of: body).utf8)

/// The signature with one hex digit changed at `index` — to another of the same kind (digit for digit, letter for
/// letter), so that both classes cost the same to parse and only where they differ from the MAC differs.
func wrong(at index: Int) -> String {
    var digits = right
    let isDigit = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digits[index])
    let (first, second) = isDigit ? (UInt8(ascii: "0"), UInt8(ascii: "1")) : (UInt8(ascii: "a"), UInt8(ascii: "b"))
    digits[index] = digits[index] == first ? second : first
    return String(decoding: digits, as: UTF8.self)
}

func nanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Welch's t statistic of two samples.
func welch(_ a: [Double], _ b: [Double]) -> Double {
    func moments(_ x: [Double]) -> (Double, Double) {
        let mean = x.reduce(0, +) / Double(x.count)
        return (mean, x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(x.count - 1))
    }
    let (ma, va) = moments(a), (mb, vb) = moments(b)
    return (ma - mb) / ((va / Double(a.count) + vb / Double(b.count)).squareRoot())
}

/// Times `operation` on the two classes in random order; drops the slowest 5 % of each (interrupts, migrations).
/// `prepare` runs untimed before each measurement, so that each is made from fresh allocations and no fixed memory
/// layout of one class can pass for a difference in the operation.
func measure<Input>(_ name: String, prepare: (Int) -> Input, _ operation: (Input) -> Bool) -> Double {
    var times: [[Double]] = [[], []]
    for _ in 0..<samples {
        let which = Int.random(in: 0...1)
        let input = prepare(which)
        let start = nanoseconds()
        let accepted = operation(input)
        let took = nanoseconds() - start
        precondition(!accepted, "a wrong signature was accepted")
        times[which].append(Double(took))
    }
    let trimmed = times.map { Array($0.sorted().prefix(Int(Double($0.count) * 0.95))) }
    let t = welch(trimmed[0], trimmed[1])
    let medians = trimmed.map { $0[$0.count / 2] }
    print("\(name): t = \((t * 100).rounded() / 100) (medians \(Int(medians[0])) ns vs \(Int(medians[1])) ns, \(samples) samples)")
    return t
}

let classes = [wrong(at: 0), wrong(at: right.count - 1)]
let verifier = Verifier()
/// The secret-dependent step — the HMAC and its comparison with the signature sent — is what is timed.
let verify = measure("verifier, first vs last byte wrong", prepare: { which -> PendingBody in
    let head = RequestHead(method: "POST", signature: String(classes[which]), contentLength: String(body.count))
    guard case .readBody(let pending) = verifier.admit(head, secret: .success(secret)) else { fatalError("refused") }
    return pending
}) { pending in pending.verify(body).isVerified }
let control = measure("control: early-exit ==, first vs last byte wrong", prepare: { Array(classes[$0].utf8) }) {
    $0 == right
}

print(abs(verify) < 4.5 ? "no timing difference detected" : "TIMING DIFFERENCE: |t| >= 4.5")
print(abs(control) >= 4.5 ? "the harness detects the leaky control" : "the control was not detected (too few samples?)")
exit(abs(verify) < 4.5 ? 0 : 1)
