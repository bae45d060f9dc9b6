// swift-tools-version: 6.0
import PackageDescription

// Every dependency is paid for on each CGI start-up, so the list is short on purpose:
// swift-crypto 4.x for HMAC (BoringSSL, links FoundationEssentials only, not full Foundation/ICU) and
// swift-argument-parser for the operator's command line (never touched on the CGI request path).
let package = Package(
    name: "webhook-handler",
    products: [
        .executable(name: "webhook-handler", targets: ["webhook-handler"]),
        .executable(name: "webhook-forwarder", targets: ["webhook-forwarder"]),
        .library(name: "WebhookCore", targets: ["WebhookCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        /// libfcgi from Debian's libfcgi-dev, `fcgiapp.h` only.
        .systemLibrary(
            name: "CFastCGI",
            pkgConfig: "fcgi",
            providers: [.apt(["libfcgi-dev"])]
        ),
        /// Linux calls and constants Swift's Glibc does not import (O_TMPFILE, prctl), as fixed-signature functions.
        .systemLibrary(name: "CLinux"),
        /// libpq from Debian's libpq-dev, `libpq-fe.h` only: for webhook-forwarder, never the handler.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        /// The pure verification core: no libfcgi, no file or network I/O.
        .target(
            name: "WebhookCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        /// Storage and hand-off: the spool, its journal and namer, the hooks, the log. Every verified payload is kept
        /// here until a consumer takes it; no libfcgi, no FastCGI, so the forwarder links it alone.
        .target(
            name: "WebhookSpool",
            dependencies: ["CLinux", "WebhookCore"],
            swiftSettings: [.enableUpcomingFeature("InternalImportsByDefault")]
        ),
        /// Transport and supervision: FastCGI (all libfcgi work lives here) and CGI, the worker processes, the
        /// responder, secrets, the status page and scoreboard.
        .target(
            name: "WebhookGateway",
            dependencies: ["CFastCGI", "CLinux", "WebhookCore", "WebhookSpool"],
            swiftSettings: [.enableUpcomingFeature("InternalImportsByDefault")]
        ),
        .executableTarget(
            name: "webhook-handler",
            dependencies: [
                "WebhookGateway",
                "WebhookSpool",
                "WebhookCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        /// Spool -> PostgreSQL -> consumers: all libpq work lives here.
        .target(
            name: "WebhookForwarding",
            dependencies: ["CLibPQ", "CLinux", "WebhookSpool"],
            swiftSettings: [.enableUpcomingFeature("InternalImportsByDefault")]
        ),
        /// A second executable, so that the handler (and its CGI start-up) never pays for libpq.
        .executableTarget(
            name: "webhook-forwarder",
            dependencies: [
                "WebhookForwarding",
                "WebhookSpool",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        /// A dudect-style timing check of verification, run by hand (docs/hostile-input.md: Constant time).
        .executableTarget(name: "timing-check", dependencies: ["WebhookCore"]),
        /// HMAC throughput of the core, for bench/run.sh.
        .executableTarget(name: "hmac-throughput", dependencies: ["WebhookCore", "WebhookSpool"]),
        .testTarget(
            name: "WebhookCoreTests",
            dependencies: ["WebhookCore"]
        ),
        .testTarget(
            name: "WebhookSpoolTests",
            dependencies: ["WebhookSpool", "WebhookCore"]
        ),
        .testTarget(
            name: "WebhookHandlerTests",
            dependencies: ["webhook-handler"]
        ),
    ]
)
