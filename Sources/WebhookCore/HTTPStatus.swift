/// The few statuses the handler ever answers with.
public enum HTTPStatus: Int, Sendable, CaseIterable {
    case ok = 200
    case badRequest = 400
    case methodNotAllowed = 405
    case payloadTooLarge = 413
    case internalServerError = 500
    case badGateway = 502
    case serviceUnavailable = 503

    public var code: Int { rawValue }

    public var reasonPhrase: String {
        switch self {
        case .ok: "OK"
        case .badRequest: "Bad Request"
        case .methodNotAllowed: "Method Not Allowed"
        case .payloadTooLarge: "Payload Too Large"
        case .internalServerError: "Internal Server Error"
        case .badGateway: "Bad Gateway"
        case .serviceUnavailable: "Service Unavailable"
        }
    }
}
