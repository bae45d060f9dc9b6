#!/usr/bin/env bash
# Builds the Debian packages webhook-handler_<version>_<arch>.deb and webhook-forwarder_<version>_<arch>.deb, the
# Debian way: deploy/debian/debian/ (control, changelog, copyright, rules, maintainer scripts), the units generated
# from deploy/systemd/ by deploy/debian/units.sh, and debhelper,
# around release builds made here with the Swift toolchain (its runtime linked in; libfcgi, libpq and glibc from
# Debian, as the packages' Depends say), with man pages generated from --help. lintian must report no error.
# Writes both into .build-deb/debs/ and prints the handler package's path as its last line; the rest goes to stderr.
# WEBHOOK_DEB_REVISION=N builds version <version>-N (default 1), e.g. to test an upgrade.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/bootstrap debhelper lintian help2man fakeroot dpkg-dev >&2
version=$(sed -n 's/.*static let version = "\(.*\)"/\1/p' Sources/webhook-handler/WebhookHandler.swift)
revision=${WEBHOOK_DEB_REVISION:-1}
for product in webhook-handler webhook-forwarder; do
    swift build -c release --static-swift-stdlib --scratch-path .build-deb --product "$product" >&2
done
bin=.build-deb/release

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
source="$stage/webhook-handler-$version"
mkdir -p "$source/prebuilt/nginx" "$source/prebuilt/apache2"
cp -r deploy/debian/debian "$source/"
deploy/debian/units.sh "$source/debian"   # the units, from deploy/systemd/ (one source)
cp "$bin/webhook-handler" "$bin/webhook-forwarder" "$source/prebuilt/"
cp deploy/nginx/webhook-snippet.conf "$source/prebuilt/nginx/webhook-handler.conf"
cp deploy/nginx/webhook-status.conf "$source/prebuilt/nginx/webhook-handler-status"
cp deploy/apache/proxy-fcgi.conf "$source/prebuilt/apache2/webhook-handler.conf"
help2man --no-info --version-string="$version" --name="verify signed webhooks behind nginx or Apache" \
    --output="$source/prebuilt/webhook-handler.1" "$bin/webhook-handler"
help2man --no-info --version-string="$version" --name="forward verified webhooks to PostgreSQL" \
    --output="$source/prebuilt/webhook-forwarder.1" "$bin/webhook-forwarder"
if [ "$revision" != 1 ]; then
    { printf 'webhook-handler (%s-%s) unstable; urgency=medium\n\n  * Rebuilt.\n\n -- %s  %s\n\n' "$version" \
        "$revision" "$(sed -n 's/^Maintainer: //p' deploy/debian/debian/control)" "$(date -R)"
      cat deploy/debian/debian/changelog; } >"$source/debian/changelog"
fi
# -d: the build depends on the Swift toolchain, which is not a Debian package; the -dev packages are checked by
# scripts/bootstrap above.
# noddebs: no -dbgsym packages (the Swift runtime inside makes them large and of little use).
(cd "$source" && DEB_BUILD_OPTIONS=noddebs dpkg-buildpackage -us -uc -b -d >&2)
lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "$stage"/*.changes >&2
mkdir -p .build-deb/debs
cp "$stage"/webhook-*.deb .build-deb/debs/
arch=$(dpkg --print-architecture)
echo "$PWD/.build-deb/debs/webhook-handler_${version}-${revision}_${arch}.deb"
