// HMAC-SHA256 throughput of the core's signing path (the same HMAC verification computes), for bench/run.sh to set
// beside `openssl speed -hmac sha256`. Prints one line per size: `SIZE bytes: N MB/s`.
//     swift run -c release hmac-throughput [SECONDS]
import WebhookCore
import WebhookSpool

let seconds = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 1
let secret = try! Secret("throughput-secret-0123456789")

for size in [1024, 1 << 20] {
    let body = [UInt8](repeating: 0x61, count: size)
    var rounds = 0, checksum = 0
    let start = Clock.now()
    while Clock.now() - start < seconds {
        checksum &+= Int(secret.signature(of: body).utf8.first!)
        rounds += 1
    }
    let megabytes = Double(rounds * size) / 1e6 / (Clock.now() - start)
    print("\(size) bytes: \(Int(megabytes.rounded())) MB/s (\(rounds) rounds, checksum \(checksum % 10))")
}
