import FuzzDriver
import WebhookCore

let secret = try! Secret("fuzz-secret-0123456789")

/// Arbitrary bodies, signed as the sender signs, through admit and verify: the untouched request is always
/// accepted; with one bit of the body or of the signature flipped (chosen by the input), it never is.
@_cdecl("FuzzVerifyRespond_main")
func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { data, size in
        let input = bytes(data, size)
        guard input.count >= 2 else { return 0 }
        let flip = Int(input[0]) << 8 | Int(input[1])
        let body = Array(input.dropFirst(2))
        let signature = secret.signature(of: body)
        require(verify(body, signature) == .ok, "a correctly signed body was refused")

        var tamperedBody = body
        if !tamperedBody.isEmpty {
            tamperedBody[flip % tamperedBody.count] ^= UInt8(1 << (flip % 8))
            require(verify(tamperedBody, signature) == .badRequest, "a tampered body was accepted")
        }
        var digits = Array(signature.utf8)
        let index = flip % digits.count
        digits[index] = digits[index] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        require(verify(body, String(decoding: digits, as: UTF8.self)) == .badRequest, "a wrong signature was accepted")
        return 0
    }
}

func verify(_ body: [UInt8], _ signature: String) -> HTTPStatus {
    let head = RequestHead(method: "POST", signature: signature, contentLength: String(body.count))
    switch Verifier().admit(head, secret: .success(secret)) {
    case .answer(let outcome): return outcome.status
    case .readBody(let pending): return pending.verify(body).status
    }
}
