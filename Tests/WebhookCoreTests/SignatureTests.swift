import Testing

@testable import WebhookCore

@Suite struct SignatureTests {
    static let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    @Test(arguments: [
        hex,
        hex.uppercased(),
        "757107EA0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=" + hex,
        "SHA256=" + hex,
        "  \t" + hex + " ",
    ])
    func acceptsHexInEitherCaseWithOptionalPrefix(_ header: String) throws {
        let signature = try Signature(parsing: header)
        #expect(Signature.hex(signature.bytes) == Self.hex)
    }

    @Test(arguments: [nil, "", "   ", "\t"])
    func missing(_ header: String?) {
        #expect(throws: Outcome.badRequest(Signature.missingReason)) { try Signature(parsing: header) }
    }

    @Test(arguments: [
        "123",
        String(hex.dropLast()),
        hex + "0",
        String(hex.dropLast()) + "g",
        "sha256=",
        "sha1=" + hex,
        "sha256=sha256=" + hex,
        hex.replacingFirst("7", with: " "),
        String(repeating: "é", count: 32),
        "0x" + String(hex.dropFirst(2)),
        "sha\u{12}\u{15}6=" + hex,  // control characters that `| 0x20` would turn into "256"
        "shA256\u{1D}" + hex,
    ])
    func malformed(_ header: String) {
        #expect(throws: Outcome.badRequest(Signature.malformedReason)) { try Signature(parsing: header) }
    }
}

extension String {
    func replacingFirst(_ target: Character, with replacement: Character) -> String {
        guard let index = firstIndex(of: target) else { return self }
        var copy = self
        copy.replaceSubrange(index...index, with: [replacement])
        return copy
    }
}
