// swift-tools-version:5.9
// libFuzzer targets for the verification core. A package of its own so that the main package's `swift build`
// never needs libFuzzer. Build and run them with Fuzz/run.sh, which also makes the
// ../.build-fuzz/webhook-handler link this depends on (a fixed name, so that the dependency's identity does not
// depend on the checkout's folder name).
import PackageDescription

let core: Target.Dependency = .product(name: "WebhookCore", package: "webhook-handler")

let package = Package(
    name: "webhook-handler-fuzz",
    dependencies: [.package(path: "../.build-fuzz/webhook-handler")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(name: "FuzzSignature", dependencies: [core, "FuzzDriver"]),
        .executableTarget(name: "FuzzRequestHead", dependencies: [core, "FuzzDriver"]),
        .executableTarget(name: "FuzzVerifyRespond", dependencies: [core, "FuzzDriver"]),
        .executableTarget(name: "FuzzSchemes", dependencies: [core, "FuzzDriver"]),
        .executableTarget(name: "FuzzTemplate", dependencies: [core, "FuzzDriver"]),
    ]
)
