import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `webhook-handler reload` (systemd's ExecReload=), the configuration check before a SIGHUP re-executes, and
/// `copy-secret` (ExecStartPre=+ and ExecReload=+): the pieces of a key rotation under systemd.
@Suite(.serialized) struct ReloadTests {
    static let newSecret = "the-rotated-secret-2"

    /// A request signed with `secret`.
    static func signed(_ secret: String) throws -> ContractRow {
        let finished = try Programs.run(Programs.handler, ["sign"], environment: ["API_SECRET_KEY": secret],
                                        stdin: Contract.seedPayload)
        let signature = String(decoding: finished.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return ContractRow(name: "signed", signature: signature, body: Contract.seedPayload, status: 200)
    }

    static func reload(_ server: FastCGIServerProcess) throws -> Programs.Finished {
        try Programs.run(Programs.handler, ["reload", "--pid", String(server.process.processIdentifier),
                                            "--timeout-seconds", "20"], environment: [:])
    }

    /// The rotation procedure: add the new secret as the first line, reload (both accepted once it returns),
    /// drop the old line, reload (only the new one). A reload whose configuration fails says so (exit 1) and the
    /// server goes on with what it had.
    @Test func reloadRotatesTheSecretAndRefusesABrokenOne() throws {
        let directory = NSTemporaryDirectory() + "webhook-reload-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secretFile = directory + "/secret"
        func writeSecret(_ text: String) throws {
            try text.write(toFile: secretFile + ".new", atomically: false, encoding: .utf8)
            chmod(secretFile + ".new", 0o600)
            rename(secretFile + ".new", secretFile)
        }
        try writeSecret(Contract.secret + "\n")
        let server = try FastCGIServerProcess(.ownSocket, workers: 2, environment: ["API_SECRET_KEY_FILE": secretFile])
        let old = try Self.signed(Contract.secret), new = try Self.signed(Self.newSecret)
        #expect(try server.send(old).status == 200)
        #expect(try server.send(new).status == 400)

        try writeSecret(Self.newSecret + "\n" + Contract.secret + "\n")
        let first = try Self.reload(server)
        #expect(first.status == 0, "\(first.stderr)")
        for _ in 0..<6 {
            #expect(try server.send(new).status == 200)
            #expect(try server.send(old).status == 200)
        }

        try writeSecret("short\n")
        let refused = try Self.reload(server)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("refused the new configuration"))
        #expect(server.log.split(separator: "\n").contains {
            $0.contains("SIGHUP: not started again") && $0.contains("secret on line 1") && $0.contains("is shorter than 10")
        }, "the refusal names the check's own reason on its line")
        for _ in 0..<4 { #expect(try server.send(new).status == 200) }

        try writeSecret(Self.newSecret + "\n")
        let last = try Self.reload(server)
        #expect(last.status == 0, "\(last.stderr)")
        for _ in 0..<6 {
            #expect(try server.send(new).status == 200)
            #expect(try server.send(old).status == 400)
        }
        #expect(server.stop() == 0)
    }

    /// A plain SIGHUP (no one waiting) gets the same check: a broken configuration leaves the server as it was.
    @Test func aSighupWithABrokenConfigurationKeepsServing() throws {
        let directory = NSTemporaryDirectory() + "webhook-reload-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secretFile = directory + "/secret"
        try (Contract.secret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
        chmod(secretFile, 0o600)
        let server = try FastCGIServerProcess(.ownSocket, workers: 2, environment: ["API_SECRET_KEY_FILE": secretFile])
        let workers = server.workerPIDs
        unlink(secretFile)
        kill(server.process.processIdentifier, SIGHUP)
        try waitFor("the refusal") { server.log.contains("SIGHUP: not started again") }
        #expect(server.workerPIDs == workers)
        #expect(try server.send(try Self.signed(Contract.secret)).status == 200)
        #expect(server.stop() == 0)
    }

    @Test func everySendersSecretOthersCanReadIsWarnedAbout() throws {
        let directory = NSTemporaryDirectory() + "webhook-senders-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (name, mode) in [("open", 0o644), ("closed", 0o600), ("grouped", 0o640)] {
            try (Contract.secret + "\n").write(toFile: "\(directory)/\(name).secret", atomically: false, encoding: .utf8)
            chmod("\(directory)/\(name).secret", mode_t(mode))
        }
        let server = try FastCGIServerProcess(.ownSocket, workers: 1,
                                              environment: ["API_SECRET_KEY": Contract.secret, "WEBHOOK_SECRETS_DIR": directory])
        #expect(server.stop() == 0)
        #expect(server.log.contains("level=warning pid="))
        #expect(server.log.contains("\(directory)/open.secret is readable by group or others (mode 0644)"))
        #expect(server.log.contains("\(directory)/grouped.secret is readable by group or others (mode 0640)"))
        #expect(!server.log.contains("closed.secret is readable"))
    }

    @Test func copySecretChecksTheOperatorsFileAndReplacesTheCopy() throws {
        let directory = NSTemporaryDirectory() + "webhook-copy-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = directory + "/secret", copy = directory + "/run/api-secret"
        _ = FileManager.default.createFile(atPath: source, contents: Data("\n".utf8), attributes: [.posixPermissions: 0o600])
        let empty = try Programs.run(Programs.handler, ["copy-secret", source, copy], environment: [:])
        #expect(empty.status == 1)
        #expect(empty.stderr.contains("\(source) is empty: put the shared secret in it"))
        #expect(!FileManager.default.fileExists(atPath: copy))

        try (Self.newSecret + "\n").write(toFile: source, atomically: false, encoding: .utf8)
        chmod(source, 0o644)
        let exposed = try Programs.run(Programs.handler, ["copy-secret", source, copy], environment: [:])
        #expect(exposed.status == 0)
        #expect(exposed.stderr.contains("warning: \(source) is readable by group or others (mode 0644)"))
        #expect(try String(contentsOfFile: copy, encoding: .utf8) == Self.newSecret + "\n")
        var status = stat()
        #expect(stat(copy, &status) == 0 && status.st_mode & 0o777 == 0o400)

        chmod(source, 0o600)
        try "short\n".write(toFile: source, atomically: false, encoding: .utf8)
        let unusable = try Programs.run(Programs.handler, ["copy-secret", source, copy], environment: [:])
        #expect(unusable.status == 1)
        #expect(try String(contentsOfFile: copy, encoding: .utf8) == Self.newSecret + "\n")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory + "/run")
        #expect(names == ["api-secret"])
    }
}
