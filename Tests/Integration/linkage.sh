#!/usr/bin/env bash
# Each executable links only the C libraries of its own job, read from the dynamic section (readelf -d NEEDED):
# webhook-forwarder needs libpq and not libfcgi (it links WebhookSpool, not the FastCGI gateway), and
# webhook-handler needs libfcgi and not libpq (a CGI pays every library it loads on each request).
# Usage: Tests/Integration/linkage.sh BIN_DIR (the directory `swift build --show-bin-path` prints)
source "$(dirname "$0")/lib.sh"
bin=$(realpath "$1")

# needed BINARY: the sonames BINARY's dynamic section names, one a line.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }
# names LIST SONAME / lacks LIST SONAME: whether the list has a line starting with SONAME.
names() { grep -q "^$2\.so" <<<"$1"; }
lacks() { ! names "$1" "$2"; }

for binary in webhook-handler webhook-forwarder; do
    expect "$binary exists" test -x "$bin/$binary"
done
forwarder=$(needed "$bin/webhook-forwarder") handler=$(needed "$bin/webhook-handler")
expect "webhook-forwarder needs libpq (what it is for)" names "$forwarder" libpq
expect "webhook-forwarder does not need libfcgi (it needs: $(echo $forwarder))" lacks "$forwarder" libfcgi
expect "webhook-handler needs libfcgi (what it is for)" names "$handler" libfcgi
expect "webhook-handler does not need libpq (it needs: $(echo $handler))" lacks "$handler" libpq
summary
