#!/usr/bin/env bash
# The Debian packages for real, on this machine (root): built by deploy/debian/build-deb.sh (lintian: no error),
# installed with dpkg -i, the contract served through the installed nginx snippet and binary, upgraded to a newer
# build keeping the secret and the spool, removed, purged: a spool still holding payloads is kept (and the purge
# says how to delete it), otherwise nothing is left but what Debian policy keeps (the user).
# The maintainer scripts debhelper generated (dpkg-deb -e) are read for what they do to the units on install,
# upgrade and removal. systemd does not run as PID 1 here, so the units are checked by systemd-analyze and the
# handler is started by hand, the way its unit would (as the package's user, the secret copied by copy-secret);
# Tests/Integration/systemd.py installs, upgrades and purges the packages under a real systemd in a container.
# It installs and purges the packages on this machine: run it on a test machine, not on one serving webhooks.
# Usage: Tests/Integration/deb.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."

first=$(WEBHOOK_DEB_REVISION=1 deploy/debian/build-deb.sh | tail -n 1)
second=$(WEBHOOK_DEB_REVISION=2 deploy/debian/build-deb.sh | tail -n 1)
forwarder() { echo "${1/webhook-handler_/webhook-forwarder_}"; }
expect "build: both packages of each build exist" test -f "$first" -a -f "$(forwarder "$first")" -a -f "$second"
if dpkg-query -W -f='${Status}' webhook-handler 2>/dev/null | grep -q 'ok installed\|config-files'; then
    echo "     (purging the webhook-handler packages an earlier, interrupted run of this test left installed)"
    dpkg -P webhook-forwarder webhook-handler >/dev/null 2>&1 || true
fi

echo "== the maintainer scripts debhelper generated"
dpkg-deb -e "$second" "$work/control"
code() { grep -v '^[[:space:]]*#' "$work/control/$1"; }   # a maintainer script without its comments
expect "scripts: postinst never restarts nor stops the socket on upgrade (debhelper's action for it is start)" \
    sh -c "$(declare -f code); work='$work'; ! code postinst | grep -q '_dh_action=restart\|invoke \(restart\|stop\|try-restart\)' && code postinst | grep -q \"deb-systemd-invoke start 'webhook-handler.socket'\""
expect "scripts: prerm stops the units only on removal, not on upgrade" \
    sh -c "$(declare -f code); work='$work'; code prerm | grep -B1 'deb-systemd-invoke stop' | head -n 1 | grep -q '\"\$1\" = remove' && ! code prerm | grep -q 'upgrade'"
expect "scripts: an upgrade reloads the running service (the new binary checks its configuration, then takes over)" \
    grep -q 'deb-systemd-invoke reload webhook-handler.service' "$work/control/postinst"
expect "scripts: the units are the recipe's, generated (copy-secret, reload, the hardening)" \
    sh -c "dpkg-deb --fsys-tarfile '$second' | tar -xO ./lib/systemd/system/webhook-handler.service | grep -q '^ExecReload=/usr/bin/webhook-handler reload --pid' "

echo "== install"
dpkg -i "$first" "$(forwarder "$first")" >"$work/install.log" 2>&1 || { cat "$work/install.log"; }
expect "install: dpkg -i succeeds" sh -c "dpkg-query -W -f='\${Status}\n' webhook-handler webhook-forwarder | grep -c 'install ok installed' | grep -qx 2"
expect "install: the binaries in /usr/bin" test -x /usr/bin/webhook-handler -a -x /usr/bin/webhook-forwarder
expect "install: man pages generated from --help" sh -c "man -w webhook-handler && zcat /usr/share/man/man1/webhook-handler.1.gz | grep -q 'spool'"
expect "install: a system user" sh -c "id -u webhook-handler && test \$(id -u webhook-handler) -lt 1000"
expect "install: an empty secret file, mode 0600 root:root (systemd reads it as root)" \
    sh -c "test ! -s /etc/webhook-handler/secret && test \"\$(stat -c '%a %U:%G' /etc/webhook-handler/secret)\" = '600 root:root'"
expect "install: the spool, owned by the user" test "$(stat -c '%U %a' /var/lib/webhook-handler/spool)" = "webhook-handler 700"
expect "install: only the socket is enabled (sockets.target wants it; nothing wants the service)" \
    sh -c "test -L /etc/systemd/system/sockets.target.wants/webhook-handler.socket && ! ls /etc/systemd/system/*.wants/webhook-handler.service /etc/systemd/system/*.wants/webhook-forwarder.service 2>/dev/null | grep -q ."
expect "install: the systemd units" test -f /lib/systemd/system/webhook-handler.socket -a -f /lib/systemd/system/webhook-handler.service -a -f /lib/systemd/system/webhook-forwarder.service
expect "install: the units verify" sh -c "systemd-analyze verify /lib/systemd/system/webhook-handler.socket /lib/systemd/system/webhook-handler.service /lib/systemd/system/webhook-forwarder.service"
expect "install: nginx and Apache recipes in place, not enabled" \
    sh -c "test -f /etc/nginx/snippets/webhook-handler.conf && test -f /etc/nginx/sites-available/webhook-handler-status && test -f /etc/apache2/conf-available/webhook-handler.conf && test ! -e /etc/apache2/conf-enabled/webhook-handler.conf && test ! -e /etc/nginx/sites-enabled/webhook-handler-status && ! grep -rqs 'snippets/webhook-handler' /etc/nginx/sites-enabled /etc/nginx/conf.d"
mkdir -p /run/webhook-handler-secret
chown webhook-handler:webhook-handler /run/webhook-handler-secret
chmod 700 /run/webhook-handler-secret
copy_secret=$(sed -n 's/^ExecStartPre=+//p' /lib/systemd/system/webhook-handler.service)
refusal=$($copy_secret 2>&1) && refused=0 || refused=$?
expect "install: while the secret is empty the service refuses to start, saying why ($refusal)" \
    sh -c "test $refused != 0 && echo '$refusal' | grep -q 'secret is empty'"

echo "== serve through the installed snippet and binary"
secret="deb-secret-$$-$RANDOM"
printf '%s\n' "$secret" >/etc/webhook-handler/secret
$copy_secret
expect "serve: copy-secret made the service's copy, 0400 for its user" \
    test "$(stat -c '%a %U' /run/webhook-handler-secret/api-secret)" = "400 webhook-handler"
mkdir -p /run/webhook-handler
chown webhook-handler:webhook-handler /run/webhook-handler
start webhook-handler "$work/handler.log" runuser -u webhook-handler -- env -i API_SECRET_KEY_FILE=/run/webhook-handler-secret/api-secret \
    /usr/bin/webhook-handler --listen /run/webhook-handler/webhook.sock --socket-mode 0666 \
    --spool-dir /var/lib/webhook-handler/spool
handler_pid=$last_pid
wait_until "the handler's socket" test -S /run/webhook-handler/webhook.sock
port=$(free_port)
printf 'server {\n    listen 127.0.0.1:%s;\n    include /etc/nginx/snippets/webhook-handler.conf;\n}\n' "$port" |
    sed "s|include fastcgi_params;|include /etc/nginx/fastcgi_params;|" >"$work/site.conf"
sed 's|include fastcgi_params;|include /etc/nginx/fastcgi_params;|' /etc/nginx/snippets/webhook-handler.conf >"$work/snippet.conf"
sed -i "s|/etc/nginx/snippets/webhook-handler.conf|$work/snippet.conf|" "$work/site.conf"
# The status listener as installed (sites-available), on a port of its own instead of 8081.
status_port=$(free_port)
sed -e 's|include fastcgi_params;|include /etc/nginx/fastcgi_params;|' -e "s|listen 127.0.0.1:8081;|listen 127.0.0.1:$status_port;|" \
    /etc/nginx/sites-available/webhook-handler-status >>"$work/site.conf"
start_nginx
contract "http://127.0.0.1:$port/api/webhook" "$secret" "installed"
expect "installed: the status page answers on its own listener" sh -c "curl -s http://127.0.0.1:$status_port/webhook-status | grep -q '\"stored\":'"
expect "installed: ping answers pong on its own listener" sh -c "curl -s http://127.0.0.1:$status_port/webhook-ping | grep -qx pong"
public_refuses_endpoints installed "$port"  # the snippet's server has neither
stored=$(ls /var/lib/webhook-handler/spool/new | wc -l)
expect "installed: verified payloads are in the package's spool ($stored)" test "$stored" -ge 1
stop "$nginx_pid"
stop "$handler_pid"

echo "== upgrade"
dpkg -i "$second" "$(forwarder "$second")" >"$work/upgrade.log" 2>&1 || cat "$work/upgrade.log"
expect "upgrade: the newer build is installed" test "$(dpkg-query -W -f='${Version}' webhook-handler)" = 0.1.0-2
expect "upgrade: the secret is kept, 0600 root:root" \
    test "$(cat /etc/webhook-handler/secret) $(stat -c '%a %U:%G' /etc/webhook-handler/secret)" = "$secret 600 root:root"
expect "upgrade: the spool is kept" test "$(ls /var/lib/webhook-handler/spool/new | wc -l)" = "$stored"

echo "== remove, then purge"
dpkg -r webhook-forwarder webhook-handler >"$work/remove.log" 2>&1 || cat "$work/remove.log"
expect "remove: the binaries are gone" test ! -e /usr/bin/webhook-handler -a ! -e /usr/bin/webhook-forwarder
expect "remove: configuration stays (conffiles, the secret, the spool)" \
    test -f /etc/nginx/snippets/webhook-handler.conf -a -f /etc/webhook-handler/secret -a -d /var/lib/webhook-handler/spool
dpkg -P webhook-forwarder webhook-handler >"$work/purge.log" 2>&1 || cat "$work/purge.log"
expect "purge: the packages are gone" sh -c "! dpkg-query -W -f='\${Status}' webhook-handler 2>/dev/null | grep -q installed"
expect "purge: configuration and secret are gone" \
    test ! -e /etc/nginx/snippets/webhook-handler.conf -a ! -e /etc/nginx/sites-available/webhook-handler-status -a ! -e /etc/apache2/conf-available/webhook-handler.conf -a ! -e /etc/webhook-handler
expect "purge: a spool still holding payloads is kept, all $stored of them" \
    test "$(ls /var/lib/webhook-handler/spool/new | wc -l)" = "$stored"
expect "purge: and says where it is and how to delete it" grep -q 'still holds payloads.*rm -rf /var/lib/webhook-handler' "$work/purge.log"
rm -rf /var/lib/webhook-handler
dpkg -i "$first" >"$work/install-again.log" 2>&1 || cat "$work/install-again.log"
dpkg -P webhook-handler >"$work/purge-empty.log" 2>&1 || cat "$work/purge-empty.log"
expect "purge: an empty spool goes with the package" test ! -e /var/lib/webhook-handler -a ! -e /etc/webhook-handler
expect "purge: nothing of the package is left in the unit directories" \
    sh -c "! ls /lib/systemd/system/webhook-* /etc/systemd/system/*/webhook-* 2>/dev/null | grep -q ."
rm -rf /run/webhook-handler /run/webhook-handler-secret
summary
