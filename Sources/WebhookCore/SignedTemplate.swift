/// What a sender signs, in order: literal separators, the body, the verified timestamp, a request header, the URL
/// the sender requested, or the sorted form parameters of the body (Twilio).
///
/// Written as text in a configuration: `{header:webhook-id}.{timestamp}.{body}`, `v0:{timestamp}:{body}`,
/// `{url}{form}`; `{{` and `}}` are literal braces.
public struct SignedTemplate: Sendable, Hashable, CustomStringConvertible {
    public enum Part: Sendable, Hashable {
        case literal(String)
        case body
        /// The timestamp, in decimal (as the sender formats the number it signs).
        case timestamp
        /// A request header by its name as sent (`webhook-id`).
        case header(String)
        /// The URL as the sender saw it: the `WEBHOOK_URL` param if the web server sets one, else
        /// `REQUEST_SCHEME://HTTP_HOST` followed by `REQUEST_URI`.
        case url
        /// The body as `application/x-www-form-urlencoded` parameters, sorted by name then value, each distinct
        /// pair once, written name then value with nothing between (Twilio's rule).
        case form
    }

    public let parts: [Part]

    public init(_ parts: [Part]) {
        self.parts = parts
    }

    /// Parses the written form; the error says what is wrong and where.
    public init(parsing text: String) throws(TemplateError) {
        var parts: [Part] = []
        var literal = ""
        var rest = Substring(text)
        func flush() { if !literal.isEmpty { parts.append(.literal(literal)); literal = "" } }
        while let character = rest.first {
            rest.removeFirst()
            if character == "}" {
                guard rest.first == "}" else { throw TemplateError("a lone } (write }} for a literal brace)") }
                rest.removeFirst()
                literal.append("}")
                continue
            }
            guard character == "{" else { literal.append(character); continue }
            if rest.first == "{" { rest.removeFirst(); literal.append("{"); continue }
            guard let end = rest.firstIndex(of: "}") else { throw TemplateError("a { without its }") }
            let name = rest[..<end]
            rest = rest[rest.index(after: end)...]
            flush()
            switch name {
            case "body": parts.append(.body)
            case "timestamp": parts.append(.timestamp)
            case "url": parts.append(.url)
            case "form": parts.append(.form)
            default:
                guard name.hasPrefix("header:"), let header = HeaderName(String(name.dropFirst(7))) else {
                    throw TemplateError("{\(name.prefix(40))} is not {body}, {timestamp}, {url}, {form} or {header:NAME}")
                }
                parts.append(.header(header.name))
            }
        }
        flush()
        guard parts.contains(.body) || parts.contains(.form) else { throw TemplateError("it signs no {body}") }
        self.parts = parts
    }

    public var description: String {
        parts.map { part in
            switch part {
            case .literal(let text): text.replacingBraces
            case .body: "{body}"
            case .timestamp: "{timestamp}"
            case .header(let name): "{header:\(name)}"
            case .url: "{url}"
            case .form: "{form}"
            }
        }.joined()
    }

    /// The headers the template reads.
    var headers: [String] {
        parts.compactMap { if case .header(let name) = $0 { name } else { nil } }
    }

    /// The signed bytes up to the body, with `body` standing for it: resolved when the head is judged.
    enum Piece: Sendable {
        case bytes([UInt8])
        case body
        case form
    }

    /// The bytes signed, with the body (and its form) filled in.
    static func join(_ pieces: [Piece], body: [UInt8]) -> [[UInt8]] {
        pieces.map { piece in
            switch piece {
            case .bytes(let bytes): bytes
            case .body: body
            case .form: FormParameters.signed(body)
            }
        }
    }
}

public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A header name as configured: letters, digits and `-` (so that it maps to one CGI param).
struct HeaderName: Sendable {
    let name: String

    init?(_ text: String) {
        let allowed = !text.isEmpty && text.utf8.count <= 64 && text.utf8.allSatisfy {
            (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 0x2D
        }
        guard allowed else { return nil }
        name = text
    }

    /// The CGI param the web server passes it as (RFC 3875 §4.1.18): `webhook-id` → `HTTP_WEBHOOK_ID`.
    static func param(_ name: String) -> String {
        "HTTP_" + String(decoding: name.utf8.map { $0 == 0x2D ? 0x5F : ($0 >= 97 && $0 <= 122 ? $0 - 32 : $0) },
                         as: UTF8.self)
    }
}

/// `application/x-www-form-urlencoded` as Twilio signs it.
enum FormParameters {
    /// Name-value pairs, decoded: `+` is a space, `%XX` a byte (a malformed escape stays as written).
    static func parse(_ body: [UInt8]) -> [([UInt8], [UInt8])] {
        body.split(separator: UInt8(ascii: "&")).map { pair in
            let sides = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            return (decode(sides[0]), sides.count > 1 ? decode(sides[1]) : [])
        }
    }

    /// Sorted by name then value (byte order, which for UTF-8 is code point order, as Python sorts), each distinct
    /// pair once, names and values concatenated.
    static func signed(_ body: [UInt8]) -> [UInt8] {
        var seen = Set<[[UInt8]]>()
        var pairs: [([UInt8], [UInt8])] = []
        for (name, value) in parse(body) where seen.insert([name, value]).inserted { pairs.append((name, value)) }
        pairs.sort { $0.0 == $1.0 ? $0.1.lexicographicallyPrecedes($1.1) : $0.0.lexicographicallyPrecedes($1.0) }
        return pairs.flatMap { $0.0 + $0.1 }
    }

    static func decode(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var index = text.startIndex
        while index < text.endIndex {
            let byte = text[index]
            if byte == UInt8(ascii: "+") {
                out.append(0x20)
            } else if byte == UInt8(ascii: "%"), index + 2 < text.endIndex,
                      let high = SignatureEncoding.nibble(text[index + 1]),
                      let low = SignatureEncoding.nibble(text[index + 2]) {
                out.append(high << 4 | low)
                index += 2
            } else {
                out.append(byte)
            }
            index += 1
        }
        return out
    }
}

extension String {
    var replacingBraces: String {
        var out = ""
        for character in self {
            if character == "{" || character == "}" { out.append(character) }
            out.append(character)
        }
        return out
    }
}
