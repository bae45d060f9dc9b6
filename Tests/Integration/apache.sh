#!/usr/bin/env bash
# The webhook contract over HTTP through a real Apache on 127.0.0.1, in set-ups built from deploy/:
#   4. Apache -> mod_proxy_fcgi -> webhook-handler --listen SOCKET   (deploy/apache/proxy-fcgi.conf)
#   5. Apache -> mod_cgid (ScriptAlias) -> webhook-handler as CGI      (deploy/apache/cgi.conf)
#   6. Apache + the shared-hosting .htaccess -> webhook.cgi -> the portable binary, with suEXEC and without
#      (deploy/shared-hosting/; Tests/Integration/shared_hosting.sh, which needs root)
#   7. Apache -> mod_fcgid -> webhook-handler on fd 0                  (deploy/apache/fcgid.conf)
# and the rest of deploy/: the portable binary is self-contained (ldd; serves with the Swift toolchain hidden),
# and the systemd units pass systemd-analyze verify.
# Usage: Tests/Integration/apache.sh PATH/TO/webhook-handler PATH/TO/portable-webhook-handler
source "$(dirname "$0")/lib.sh"

handler=$(realpath "${1:?usage: apache.sh HANDLER PORTABLE}")
portable=$(realpath "${2:?usage: apache.sh HANDLER PORTABLE}")
forwarder="$(dirname "$handler")/webhook-forwarder"  # built beside the handler; its unit is verified with the others
deploy=$(realpath "$(dirname "$0")/../../deploy")
secret="apache-secret-$$-$RANDOM"
printf '%s\n' "$secret" >"$work/secret"
# As the recipes say: readable by Apache's group (CGI programs run as its user, nobody:nogroup here), not by others.
chgrp nogroup "$work/secret"
chmod 0640 "$work/secret"
# The socket as the recipes make it: 0660 (the default), its group from a setgid directory of Apache's group.
install -d -m 2750 -g nogroup "$work/run"
source "$(dirname "$0")/apache_lib.sh"

# apache_with SITE_FILE: Apache as nobody on a free port ($port) with a site file, itself a recipe from deploy/
# templated only for paths.
apache_with() {
    sed -e "s|/run/webhook-handler/webhook.sock|$work/run/webhook.sock|" \
        -e "s|/usr/local/bin/webhook-handler|$handler|" \
        -e "s|/etc/webhook-handler/secret|$work/secret|" \
        -e "s|127.0.0.1:8081|127.0.0.1:$status_port|" \
        "$1" >"$work/site.conf"
    apache_start nobody nogroup "LoadModule proxy_module $modules/mod_proxy.so
LoadModule proxy_fcgi_module $modules/mod_proxy_fcgi.so
LoadModule fcgid_module $modules/mod_fcgid.so
FcgidIPCDir \"$work/apache/fcgid\"
FcgidProcessTableFile \"$work/apache/fcgid_shm\"
DocumentRoot \"$work/htdocs\"
<Directory \"$work/htdocs\">
    AllowOverride All
    Require all granted
</Directory>
Include \"$work/site.conf\""
}

echo "== 4. Apache -> mod_proxy_fcgi -> webhook-handler on its own socket"
start webhook-handler "$work/handler.log" env -i API_SECRET_KEY_FILE="$work/secret" \
    "$handler" --listen "$work/run/webhook.sock" --workers 2
handler_pid=$last_pid
wait_until "the handler's socket" test -S "$work/run/webhook.sock"
expect "mod_proxy_fcgi: the socket is 0660 in Apache's group" test "$(stat -c '%a %G' "$work/run/webhook.sock")" = "660 nogroup"
status_port=$(free_port)   # the recipe's status listener, 127.0.0.1:8081, on a port of the test's
apache_with "$deploy/apache/proxy-fcgi.conf"
contract "http://127.0.0.1:$port/api/webhook" "$secret" "mod_proxy_fcgi"
expect "mod_proxy_fcgi: the status page, on its own listener, counts those requests" \
    sh -c "curl -s 'http://127.0.0.1:$status_port/webhook-status' | grep -q '\"requests\":{\"200\":[1-9]'"
expect "mod_proxy_fcgi: ping answers pong on its own listener" sh -c "curl -s 'http://127.0.0.1:$status_port/webhook-ping' | grep -qx pong"
public_refuses_endpoints mod_proxy_fcgi "$port"
stop "$apache_pid"
stop "$handler_pid"; expect "mod_proxy_fcgi: handler exits 0 on SIGTERM" test "$stopped_status" = 0

echo "== 5. Apache -> mod_cgid -> webhook-handler as CGI"
apache_with "$deploy/apache/cgi.conf"
contract "http://127.0.0.1:$port/api/webhook" "$secret" "mod_cgid"
check "mod_cgid: query words are not options" 405 'Method GET is not allowed' "http://127.0.0.1:$port/api/webhook?--help"
stop "$apache_pid"

echo "== 6. Apache + the shared-hosting .htaccess -> webhook.cgi -> the portable binary, with suEXEC and without"
expect "shared hosting: Tests/Integration/shared_hosting.sh passes" "$(dirname "$0")/shared_hosting.sh" "$portable"

echo "== 7. Apache -> mod_fcgid -> webhook-handler on fd 0"
apache_with "$deploy/apache/fcgid.conf"
contract "http://127.0.0.1:$port/api/webhook" "$secret" "mod_fcgid"
stop "$apache_pid"

echo "== the portable binary"
expect "portable: ldd finds no shared libraries" sh -c "! ldd '$portable' >/dev/null 2>&1 && ldd '$portable' 2>&1 | grep -q 'not a dynamic executable'"
seed="$work/seed.json"
signature=$(sign "$secret" "$seed")
# serve_hidden BINARY: one CGI request in a private mount namespace where the Swift toolchain is an empty tmpfs.
serve_hidden() {
    unshare -m sh -c 'mount -t tmpfs tmpfs "$1" && exec env -i GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=POST \
        CONTENT_LENGTH="$(wc -c <"$2")" HTTP_X_SIGNATURE="$3" API_SECRET_KEY_FILE="$4" "$5" <"$2"' \
        sh "$swift_root" "$seed" "$signature" "$work/secret" "$1" 2>/dev/null
}
swift_root=$(dirname "$(dirname "$(dirname "$(realpath "$(command -v swift)")")")")
expect "portable: serves a request with $swift_root hidden" sh -c "$(declare -f serve_hidden); swift_root='$swift_root' seed='$seed' signature='$signature' work='$work' serve_hidden '$portable' | grep -q '^Status: 200'"
expect "the dynamic build does not (so the check above can fail)" sh -c "$(declare -f serve_hidden); swift_root='$swift_root' seed='$seed' signature='$signature' work='$work'; ! serve_hidden '$handler' | grep -q '^Status: 200'"

echo "== systemd units"
mkdir -p "$work/units"
sed "s|/usr/local/bin/webhook-handler|$handler|" "$deploy/systemd/webhook-handler.service" >"$work/units/webhook-handler.service"
sed "s|/usr/local/bin/webhook-forwarder|$forwarder|" "$deploy/systemd/webhook-forwarder.service" \
    >"$work/units/webhook-forwarder.service"
cp "$deploy/systemd/webhook-handler.socket" "$work/units/"
verified=$(cd "$work/units" && systemd-analyze verify ./webhook-handler.socket ./webhook-handler.service \
    ./webhook-forwarder.service 2>&1) && status=0 || status=$?
expect "systemd: units verify cleanly${verified:+ ($verified)}" test "$status" = 0 -a -z "$verified"

expect "no log line anywhere holds the secret" sh -c "! grep -rqF -- '$secret' '$work'/*.log"
summary
