#!/usr/bin/env bash
# The shared-hosting recipe (deploy/shared-hosting/: .htaccess + the webhook.cgi wrapper + the portable binary) in a
# real user's web space, through a real Apache, both ways shared hosts run CGI programs:
#   A. WITH suEXEC (apache2-suexec-custom, a UserDir site as Debian's /etc/apache2/suexec/www-data allows): the
#      program runs as the user; the secret is 0600 and owned by the user. First today's failure: SetEnv in
#      .htaccess never reaches the program (500, nothing stored); then the wrapper (the contract, payloads stored).
#   B. WITHOUT suEXEC: the program runs as the web server's user. A 0600 secret cannot be read (500); with the
#      secret 0640 in a group the user shares with the web server, and the spool 2770 in that group, it works
#      and the user can read and take the payloads. The secret is never world-readable.
# Needs root (it adds a user and a group, removed at the end).
# Usage: Tests/Integration/shared_hosting.sh PATH/TO/portable-webhook-handler
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/apache_lib.sh"

portable=$(realpath "${1:?usage: shared_hosting.sh PORTABLE}")
recipe=$(realpath "$(dirname "$0")/../../deploy/shared-hosting")
user="whuser$$"
shared="whshare$$"
home="$work/home/$user"
secret="hosting-secret-$$-$RANDOM-0123456789abcdef"

remove_account() {
    userdel "$user" 2>/dev/null || true
    groupdel "$shared" 2>/dev/null || true
}
trap 'cleanup; remove_account' EXIT
groupadd "$shared"
useradd -M -d "$home" -s /usr/sbin/nologin -U -G "$shared" "$user"

# Debian's suexec-custom takes its document root and UserDir suffix from the first two lines of its own file.
suexec_conf=/etc/apache2/suexec/www-data
userdir_suffix=$(sed -n 2p "$suexec_conf")            # public_html/cgi-bin
api="$home/$userdir_suffix/api"
mkdir -p "$api" "$home/webhook"
install -m 0755 "$portable" "$home/webhook/webhook-handler"
printf '%s\n' "$secret" >"$home/webhook/secret"
chmod 0600 "$home/webhook/secret"
chown -R "$user:$user" "$home"
chmod 0711 "$home"
chmod 0700 "$home/webhook"

# as_user COMMAND...: runs COMMAND as the hosting user, as a shell login on the host would.
as_user() { runuser -u "$user" -- "$@"; }

# install_site WRAPPER|BINARY [HTACCESS_EXTRA]: the recipe's .htaccess (plus extra lines) and webhook.cgi in $api.
install_site() {
    { cat "$recipe/.htaccess"; printf '%s\n' "${2:-}"; } >"$api/.htaccess"
    if [ "$1" = wrapper ]; then
        sed "s|/home/USER/|$home/|g" "$recipe/webhook.cgi" >"$api/webhook.cgi"
    else
        cp "$portable" "$api/webhook.cgi"
    fi
    chown "$user:$user" "$api/.htaccess" "$api/webhook.cgi"
    chmod 0644 "$api/.htaccess"
    chmod 0755 "$api/webhook.cgi"
}

seed="$work/seed.json"
printf '%s' '{"reference":"hosting","n":1}' >"$seed"
# post URL: one signed delivery of the seed; prints the status.
post() {
    curl -s -o "$work/body" -w '%{http_code}' -H "x-signature: $(sign "$secret" "$seed")" --data-binary @"$seed" "$1"
}
stored() { ls "$home/webhook/spool/new" 2>/dev/null | wc -l; }
# check_says USER GROUP STATUS PATTERN: `webhook.cgi check` run as USER:GROUP exits STATUS and prints PATTERN.
check_says() {
    local status=0
    runuser -u "$1" -g "$2" -- "$api/webhook.cgi" check >"$work/check.out" 2>&1 || status=$?
    test "$status" = "$3" && grep -Eq -- "$4" "$work/check.out" || { sed 's/^/    | /' "$work/check.out"; false; }
}

echo "== A. Apache WITH suEXEC, a UserDir site: the program runs as $user"
apache_start www-data www-data "LoadModule userdir_module $modules/mod_userdir.so
LoadModule suexec_module $modules/mod_suexec.so
DocumentRoot \"$work/htdocs\"
UserDir public_html
<Directory \"$work/home/*/public_html\">
    AllowOverride All
    Require all granted
</Directory>"
url="http://127.0.0.1:$port/~$user${userdir_suffix#public_html}/api/webhook"
expect "suEXEC: Apache says the wrapper is enabled" grep -q 'suEXEC mechanism enabled' "$work/apache-error.log"

# Today's recipe: the binary itself as webhook.cgi, its settings in SetEnv lines. suEXEC drops them.
install_site binary "SetEnv API_SECRET_KEY_FILE $home/webhook/secret
SetEnv WEBHOOK_SPOOL_DIR $home/webhook/spool"
expect "suEXEC: SetEnv never reaches the program: a signed delivery gets 500" test "$(post "$url")" = 500
expect "suEXEC: ... and nothing is stored" test "$(stored)" = 0
expect "suEXEC: check, run by $user, would have said so (exit 1, no secret)" \
    check_says "$user" "$user" 1 '^FAIL +no secret'

install_site wrapper
expect "suEXEC: ./webhook.cgi check, run by $user, says ready (exit 0)" \
    check_says "$user" "$user" 0 '^verdict: ready'
contract "$url" "$secret" "suEXEC + webhook.cgi"
check "suEXEC + webhook.cgi: query words are not options" 405 'Method GET is not allowed' "$url?--help"
status_of() { curl -s -o /dev/null -w '%{http_code}' "$1"; }
expect "suEXEC: .htaccess is not served" test "$(status_of "${url%webhook}.htaccess")" = 403
expect "suEXEC: no directory listing" test "$(status_of "${url%webhook}")" = 403
expect "suEXEC: the payloads are stored" test "$(stored)" -ge 1
expect "suEXEC: stored files belong to $user, mode 0600" \
    sh -c "stat -c '%U %a' '$home/webhook/spool/new/'* | sort -u | grep -qx '$user 600'"
expect "suEXEC: the secret stays 0600 $user" test "$(stat -c '%U %a' "$home/webhook/secret")" = "$user 600"
expect "suEXEC: suexec.log shows the program run as $user" \
    sh -c "grep -E 'uid: \([0-9]+/$user\) gid: \([0-9]+/$user\) cmd: webhook.cgi' /var/log/apache2/suexec.log | grep -q ."
stop "$apache_pid"

echo "== B. Apache WITHOUT suEXEC: the program runs as the web server's user (www-data, group $shared)"
rm -rf "$home/webhook/spool"
apache_start www-data "$shared" "DocumentRoot \"$home/public_html\"
<Directory \"$home/public_html\">
    AllowOverride All
    Require all granted
</Directory>"
folder=${userdir_suffix#public_html}; folder=${folder#/}
url="http://127.0.0.1:$port/${folder:+$folder/}api/webhook"
# The web server's user reaches the binary through the shared group; the secret is still 0600, as under suEXEC.
chgrp "$shared" "$home/webhook"
chmod 0710 "$home/webhook"
expect "no suEXEC: the 0600 secret the suEXEC host needs cannot be read: 500" test "$(post "$url")" = 500
expect "no suEXEC: check, run as www-data, says so (exit 1)" \
    check_says www-data "$shared" 1 '^FAIL +secret: cannot read .*Permission denied'
expect "no suEXEC: the error log says why" grep -q "cannot read API_SECRET_KEY_FILE.*Permission denied" \
    "$work/apache-error.log"

# The modes README.md prescribes without suEXEC: a group shared with the web server, nothing for others.
chgrp "$shared" "$home/webhook/secret"
chmod 0640 "$home/webhook/secret"
install -d -o "$user" -g "$shared" -m 2770 "$home/webhook/spool" \
    "$home/webhook/spool/new" "$home/webhook/spool/cur" "$home/webhook/spool/tmp"
sed -i 's/^WEBHOOK_SPOOL_GROUP_READABLE=0/WEBHOOK_SPOOL_GROUP_READABLE=1/' "$api/webhook.cgi"
expect "no suEXEC: check, run as www-data, says ready (exit 0)" \
    check_says www-data "$shared" 0 '^verdict: ready'
contract "$url" "$secret" "no suEXEC + webhook.cgi"
expect "no suEXEC: the payloads are stored" test "$(stored)" -ge 1
expect "no suEXEC: stored files are www-data:$shared 0640" \
    sh -c "stat -c '%U %G %a' '$home/webhook/spool/new/'* | sort -u | grep -qx 'www-data $shared 640'"
first=$(ls "$home/webhook/spool/new" | head -n 1)
expect "no suEXEC: $user reads a payload and takes it into cur/" \
    as_user sh -c "cat '$home/webhook/spool/new/$first' >/dev/null && mv '$home/webhook/spool/new/$first' '$home/webhook/spool/cur/'"
expect "no suEXEC: the secret is not world-readable" test "$(stat -c '%a' "$home/webhook/secret")" = 640
expect "no suEXEC: nobody else can read it" sh -c "! runuser -u nobody -- cat '$home/webhook/secret' 2>/dev/null"
stop "$apache_pid"

expect "no log line anywhere holds the secret" sh -c "! grep -rqF -- '$secret' '$work'/*.log"
summary
