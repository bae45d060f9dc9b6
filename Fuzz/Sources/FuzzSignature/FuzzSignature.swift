import FuzzDriver
import WebhookCore

/// Any text as an x-signature header: it parses to exactly 32 bytes that print back as the header's digits, or it
/// is refused with one of the two reasons; it never crashes.
@_cdecl("FuzzSignature_main")
func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { data, size in
        let text = String(decoding: bytes(data, size), as: UTF8.self)
        do throws(Outcome) {
            let signature = try Signature(parsing: text)
            require(signature.bytes.count == 32, "parsed \(signature.bytes.count) bytes")
            require(text.lowercased().contains(Signature.hex(signature.bytes)), "digits do not round-trip")
        } catch {
            require(error.status == .badRequest, "status \(error.status)")
            require([Signature.missingReason, Signature.malformedReason].contains(error.reason ?? ""), "reason")
        }
        return 0
    }
}
