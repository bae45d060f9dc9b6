/// Metrics as Prometheus and OpenMetrics want them: one model, written in either text format, chosen from the
/// scraper's `Accept` header (or `?openmetrics` for a browser or curl).
public struct MetricFamily: Sendable {
    public enum Kind: String, Sendable { case counter, gauge, histogram, info }

    /// The family's name; a counter's samples end in `_total`, an info's in `_info` (OpenMetrics' rule).
    let name: String
    let kind: Kind
    /// The unit the name ends with (`seconds`, `bytes`), written as OpenMetrics' `# UNIT`.
    let unit: String?
    let help: String
    /// (suffix such as `_total` or `_bucket`, labels, value).
    let samples: [(suffix: String, labels: [(String, String)], value: String)]

    public init(_ name: String, _ kind: Kind, unit: String? = nil, _ help: String,
                _ samples: [(suffix: String, labels: [(String, String)], value: String)]) {
        self.name = name
        self.kind = kind
        self.unit = unit
        self.help = help
        self.samples = samples
    }

    /// A family of one sample without labels (a counter's gets `_total`).
    public init(_ name: String, _ kind: Kind, unit: String? = nil, _ help: String, value: some Numeric) {
        self.init(name, kind, unit: unit, help, [(kind == .counter ? "_total" : "", [], "\(value)")])
    }
}

/// The text formats a status page can answer in.
public enum Exposition: Equatable, Sendable {
    case openMetrics, prometheusText, json

    package var contentType: String {
        switch self {
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        case .prometheusText: "text/plain; version=0.0.4; charset=utf-8"
        case .json: "application/json"
        }
    }

    /// The format for a request: `openmetrics` in the query (bare, `openmetrics=` or `openmetrics=1`, as
    /// Prometheus' `params:` writes it) chooses OpenMetrics; otherwise the `Accept` header, by quality, with ties
    /// going to OpenMetrics, then the Prometheus text format 0.0.4, then JSON; JSON when nothing matches (a browser).
    package static func negotiate(query: String?, accept: String?) -> Exposition {
        let keys = (query ?? "").split(separator: "&").map { $0.split(separator: "=", maxSplits: 1).first ?? "" }
        if keys.contains("openmetrics") { return .openMetrics }
        var best: (format: Exposition, quality: Double)?
        for range in (accept ?? "").split(separator: ",") {
            let parts = range.split(separator: ";").map { $0.trimmingSpaces.lowercased() }
            guard let type = parts.first else { continue }
            var parameters: [String: String] = [:]
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces }
                if pair.count == 2 { parameters[pair[0]] = pair[1].replacingQuotes }
            }
            let quality = parameters["q"].flatMap(Double.init) ?? 1
            let format: Exposition? = switch type {
            case "application/openmetrics-text": [nil, "1.0.0", "0.0.1"].contains(parameters["version"]) ? .openMetrics : nil
            case "text/plain": [nil, "0.0.4"].contains(parameters["version"]) ? .prometheusText : nil
            case "application/json": .json
            default: nil
            }
            guard let format, quality > 0 else { continue }
            if let current = best, current.quality > quality || (current.quality == quality && current.format.rank <= format.rank) {
                continue
            }
            best = (format, quality)
        }
        return best?.format ?? .json
    }

    private var rank: Int {
        switch self {
        case .openMetrics: 0
        case .prometheusText: 1
        case .json: 2
        }
    }

    /// `families` in this text format (not JSON: the status page writes that itself).
    public func text(_ families: [MetricFamily]) -> String {
        var text = ""
        let openMetrics = self == .openMetrics
        for family in families {
            // The Prometheus text format names a counter's family with its `_total`, an info as a gauge.
            let name = !openMetrics && family.kind == .counter ? family.name + "_total"
                : !openMetrics && family.kind == .info ? family.name + "_info" : family.name
            let kind = !openMetrics && family.kind == .info ? "gauge" : family.kind.rawValue
            text += "# TYPE \(name) \(kind)\n"
            if openMetrics, let unit = family.unit { text += "# UNIT \(name) \(unit)\n" }
            text += "# HELP \(name) \(Self.escapedHelp(family.help))\n"
            for sample in family.samples {
                text += family.name + sample.suffix
                if !sample.labels.isEmpty {
                    text += "{" + sample.labels.map { #"\#($0)="\#(Self.escapedLabel($1))""# }.joined(separator: ",") + "}"
                }
                text += " " + sample.value + "\n"
            }
        }
        return openMetrics ? text + "# EOF\n" : text
    }

    static func escapedHelp(_ text: String) -> String {
        text.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }

    static func escapedLabel(_ text: String) -> String {
        escapedHelp(text).replacing("\"", with: "\\\"")
    }
}

extension StringProtocol {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

extension String {
    fileprivate var replacingQuotes: String { filter { $0 != "\"" } }
}
