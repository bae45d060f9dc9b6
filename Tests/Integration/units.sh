#!/usr/bin/env bash
# The systemd units as shipped: the recipe's (deploy/systemd/) and the Debian package's, generated from them
# (deploy/debian/units.sh: no second copy in deploy/debian/debian/). Each service is rated by
# `systemd-analyze security --offline=yes` at most 2.0 (the test fails above), and every unit verifies.
# Under a real systemd the installed units are rated again (Tests/Integration/systemd.py).
# Usage: Tests/Integration/units.sh HANDLER FORWARDER (binaries that stand in for the installed ones)
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
handler=$(realpath "$1") forwarder=$(realpath "$2")
bound=2.0

mkdir -p "$work/recipe" "$work/package"
cp deploy/systemd/webhook-handler.socket deploy/systemd/*.service "$work/recipe/"
deploy/debian/units.sh "$work/package"
expect "one source: the package keeps no unit of its own in deploy/debian/debian" \
    sh -c '! ls deploy/debian/debian/*.service deploy/debian/debian/*.socket 2>/dev/null | grep -q .'
for copy in recipe package; do
    for unit in webhook-handler.service webhook-forwarder.service; do
        rated=$(systemd-analyze security --offline=yes --threshold=$((${bound%.*} * 10 + ${bound#*.})) \
            "$work/$copy/$unit" 2>&1) && status=0 || status=$?
        exposure=$(echo "$rated" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
        expect "hardening: the $copy's $unit is rated $exposure (at most $bound)" \
            sh -c "test '$status' = 0 && test -n '$exposure' && awk 'BEGIN { exit !($exposure <= $bound) }'"
        [ "$status" = 0 ] || echo "$rated" | grep '✗' | sort -t' ' -k2 | head -20
    done
    sed -i -e "s|/usr/local/bin/webhook-handler|$handler|g; s|/usr/bin/webhook-handler|$handler|g" \
        -e "s|/usr/local/bin/webhook-forwarder|$forwarder|g; s|/usr/bin/webhook-forwarder|$forwarder|g" "$work/$copy"/*
    verified=$(cd "$work/$copy" && systemd-analyze verify --man=no ./webhook-handler.socket ./webhook-handler.service \
        ./webhook-forwarder.service 2>&1) && status=0 || status=$?
    expect "verify: the $copy's units verify cleanly${verified:+ ($verified)}" test "$status" = 0 -a -z "$verified"
done
summary
