#!/usr/bin/env bash
# Builds the portable webhook-handler for shared hosting: one fully static executable with the Swift runtime,
# Foundation Essentials, BoringSSL and Debian's libfcgi.a linked in, so the host needs neither Swift nor libfcgi.
# Prints the built file's path as its last line; everything else goes to stderr.
#
# Static glibc note: only the hostname form of --listen HOST:PORT would need the host's NSS libraries; IP
# addresses, unix sockets and CGI need nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap >&2
swift build -c release --product webhook-handler --scratch-path .build-static \
    --static-swift-stdlib -Xswiftc -static-executable -Xlinker -lfcgi >&2
out="$PWD/.build-static/webhook-handler-portable"
strip -o "$out" .build-static/release/webhook-handler
echo "built $(du -h "$out" | cut -f1) static executable; libfcgi embedded from libfcgi-dev $(dpkg-query -W -f='${Version}' libfcgi-dev)" >&2
echo "$out"
