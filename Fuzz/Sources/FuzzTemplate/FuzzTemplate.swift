import FuzzDriver
import WebhookCore

/// Any text as a signed-content template, a signature in each encoding, and a list of public keys: a template either
/// is refused with a reason or prints back to text that parses to the same parts; whatever base64 or hex decodes
/// encodes back to text that decodes to the same bytes; a public key list parses or is refused with a 500, never a
/// crash.
@_cdecl("FuzzTemplate_main")
func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { data, size in
        let input = bytes(data, size)
        let text = String(decoding: input, as: UTF8.self)
        do throws(TemplateError) {
            let template = try SignedTemplate(parsing: text)
            let again = try SignedTemplate(parsing: template.description)
            require(again == template, "\(text) printed as \(template) parses differently")
        } catch {
            require(!error.description.isEmpty, "a refusal without a reason")
        }
        for encoding in SignatureEncoding.allCases {
            if let decoded = encoding.decode(Substring(text)) {
                require(encoding.decode(Substring(encoding.encode(decoded))) == decoded, "\(encoding) round trip")
            }
        }
        require(SignatureEncoding.base64.decode(Substring(SignatureEncoding.base64.encode(input))) == input, "base64")
        require(SignatureEncoding.hex.decode(Substring(SignatureEncoding.hex.encode(input))) == input, "hex")
        do throws(Outcome) {
            let keys = try PublicKey.list(text, source: "fuzz")
            require(keys.allSatisfy { text.contains($0.description.dropFirst(5).prefix(8)) }, "a key not in the text")
        } catch {
            require(error.status == .internalServerError, "status \(error.status)")
        }
        return 0
    }
}
