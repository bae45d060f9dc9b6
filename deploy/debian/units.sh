#!/usr/bin/env bash
# Writes the Debian package's systemd units into DIR, generated from deploy/systemd/ (the recipe's units): one
# source, so the package's copies cannot fall behind the recipe's hardening. The only differences:
#   - the binaries are in /usr/bin (not /usr/local/bin), and the documentation is the man page;
#   - the package has a system user, webhook-handler (made by postinst, owning /var/lib/webhook-handler): the
#     services run as it instead of a DynamicUser of the same name;
#   - the recipe's leading comment (how to install it by hand) is dropped.
# Usage: deploy/debian/units.sh DIR
set -euo pipefail
cd "$(dirname "$0")/../systemd"
out=$1
mkdir -p "$out"
for unit in webhook-handler.socket webhook-handler.service webhook-forwarder.service; do
    name=${unit%.*}
    sed -e '1,/^\[Unit\]$/{/^#/d}' \
        -e 's|/usr/local/bin/|/usr/bin/|g' \
        -e "s|^Documentation=.*|Documentation=man:$name(1)|" \
        -e '/^DynamicUser=yes$/d' \
        -e 's|^User=webhook-handler$|User=webhook-handler\nGroup=webhook-handler|' \
        "$unit" >"$out/$unit"
done
