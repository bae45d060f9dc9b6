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
chmod 644 "$work/secret"                 # CGI programs run as Apache's user (nobody here)
modules=/usr/lib/apache2/modules

# apache_with SITE_FILE: starts Apache (pid in $apache_pid) on a free port ($port) with a site file, itself a
# recipe from deploy/ templated only for paths.
apache_with() {
    port=$(free_port)
    mkdir -p "$work/apache" "$work/htdocs"
    chmod 755 "$work/apache" "$work/htdocs"
    cat >"$work/httpd.conf" <<CONF
ServerRoot "$work/apache"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$work/apache/httpd.pid"
ErrorLog "$work/apache-error.log"
LogLevel warn
User nobody
Group nogroup
LoadModule mpm_event_module $modules/mod_mpm_event.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule authz_host_module $modules/mod_authz_host.so
LoadModule alias_module $modules/mod_alias.so
LoadModule dir_module $modules/mod_dir.so
LoadModule env_module $modules/mod_env.so
LoadModule mime_module $modules/mod_mime.so
LoadModule rewrite_module $modules/mod_rewrite.so
LoadModule cgid_module $modules/mod_cgid.so
LoadModule proxy_module $modules/mod_proxy.so
LoadModule proxy_fcgi_module $modules/mod_proxy_fcgi.so
LoadModule fcgid_module $modules/mod_fcgid.so
TypesConfig /etc/mime.types
ScriptSock "$work/apache/cgid.sock"
FcgidIPCDir "$work/apache/fcgid"
FcgidProcessTableFile "$work/apache/fcgid_shm"
DocumentRoot "$work/htdocs"
<Directory "$work/htdocs">
    AllowOverride All
    Require all granted
</Directory>
Include "$work/site.conf"
CONF
    sed -e "s|/run/webhook-handler/webhook.sock|$work/handler.sock|" \
        -e "s|/usr/local/bin/webhook-handler|$handler|" \
        -e "s|/etc/webhook-handler/secret|$work/secret|" \
        "$1" >"$work/site.conf"
    start apache "$work/apache.log" apache2 -f "$work/httpd.conf" -DFOREGROUND
    apache_pid=$last_pid
    wait_until "Apache on port $port" curl -s -o /dev/null "http://127.0.0.1:$port/" ||
        { cat "$work/apache-error.log" "$work/apache.log" >&2; return 1; }
}

echo "== 4. Apache -> mod_proxy_fcgi -> webhook-handler on its own socket"
start webhook-handler "$work/handler.log" env -i API_SECRET_KEY_FILE="$work/secret" \
    "$handler" --listen "$work/handler.sock" --socket-mode 0666 --workers 2
handler_pid=$last_pid
wait_until "the handler's socket" test -S "$work/handler.sock"
apache_with "$deploy/apache/proxy-fcgi.conf"
contract "http://127.0.0.1:$port/api/webhook" "$secret" "mod_proxy_fcgi"
expect "mod_proxy_fcgi: the status page counts those requests" \
    sh -c "curl -s 'http://127.0.0.1:$port/webhook-status' | grep -q '\"requests\":{\"200\":[1-9]'"
expect "mod_proxy_fcgi: ping answers pong" sh -c "curl -s 'http://127.0.0.1:$port/webhook-ping' | grep -qx pong"
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
