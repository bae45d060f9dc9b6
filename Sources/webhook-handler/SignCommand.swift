import ArgumentParser
import WebhookCore
import WebhookGateway
import WebhookSpool

#if canImport(Glibc)
import Glibc
#endif

/// Print the signature of stdin, for testing a deployment with curl.
struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the signature of standard input under the configured secret.",
        discussion: """
            The secret comes from --secret-file, API_SECRET_KEY or API_SECRET_KEY_FILE (its first line).
            For x-signature it prints the hex signature alone:
              curl -H "x-signature: $(webhook-handler sign < body.json)" \\
                   --data-binary @body.json http://127.0.0.1:8080/api/webhook
            For the other schemes it prints the header lines a sender would send:
              webhook-handler sign --scheme github < body.json > headers.txt
              curl -H @headers.txt --data-binary @body.json http://127.0.0.1:8080/api/webhook
            """
    )

    @Option(name: .long, help: ArgumentHelp("Read the secret from this file.", valueName: "path"))
    var secretFile: String?

    @Option(name: .long, help: "The signature scheme (default: $WEBHOOK_SCHEME, else x-signature).")
    var scheme: String?

    @Option(name: .long, help: "Twilio and other schemes that sign the URL: the URL the sender requests.")
    var url: String = ""

    @Option(name: .long, help: "Standard Webhooks: the message id (default: a random msg_…).")
    var id: String?

    @Option(name: .long, help: "Standard Webhooks and Stripe: the Unix time signed (default: now).")
    var timestamp: Int64?

    func run() throws {
        if let secretFile { setenv(SecretSource.fileVariable, secretFile, 1); unsetenv(SecretSource.variable) }
        let keyring: Keyring
        do {
            keyring = try SecretSource.fromEnvironment().get()
        } catch {
            Log.writeStandardError("webhook-handler sign: \(error.detail ?? "no usable secret")\n")
            throw ExitCode(1)
        }
        let scheme = try Settings.verifier(maxBodyBytes: nil, scheme: scheme).scheme
        guard let secret = keyring.current else {
            Log.writeStandardError("webhook-handler sign: only public keys are configured; v1a is signed by the sender's private key\n")
            throw ExitCode(1)
        }
        if let problem = keyring.unusable(for: scheme) {
            Log.writeStandardError("webhook-handler sign: \(problem.detail ?? "unusable secret")\n")
            throw ExitCode(1)
        }
        guard let body = readAll(STDIN_FILENO) else {
            Log.writeStandardError("webhook-handler sign: cannot read standard input: \(String(cString: strerror(errno)))\n")
            throw ExitCode(1)
        }
        let randomID = "msg_" + (0..<12).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        let headers = scheme.headers(
            for: body, secret: secret, id: id ?? randomID, timestamp: timestamp ?? Int64(time(nil)), url: url)
        if scheme == .xSignature {
            print(headers[0].1)
        } else {
            for (name, value) in headers { print("\(name): \(value)") }
        }
    }
}
