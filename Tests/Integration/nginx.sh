#!/usr/bin/env bash
# The webhook contract over HTTP through a real nginx on 127.0.0.1, in three set-ups built from deploy/nginx/:
#   1. nginx -> webhook-handler --listen SOCKET          (deploy/nginx/webhook.conf)
#   2. nginx -> spawn-fcgi -s SOCKET -M 0666 -- handler  (the same recipe, socket handed over on fd 0)
#   3. nginx -> fcgiwrap -> handler as a plain CGI       (deploy/nginx/webhook-cgi.conf)
# Usage: Tests/Integration/nginx.sh PATH/TO/webhook-handler
source "$(dirname "$0")/lib.sh"

handler=$(realpath "${1:?usage: nginx.sh PATH/TO/webhook-handler}")
secret="integration-secret-$$-$RANDOM"
printf '%s\n' "$secret" >"$work/secret"
chmod 600 "$work/secret"

no_secret_in_logs() {
    ! grep -qF -- "$secret" "$work"/*.log
}

echo "== 1. nginx -> webhook-handler on its own socket, with a spool"
start webhook-handler "$work/handler.log" \
    env -i API_SECRET_KEY_FILE="$work/secret" "$handler" --listen "$work/handler.sock" --socket-mode 0666 --workers 2 \
    --spool-dir "$work/spool"
handler_pid=$last_pid
wait_until "the handler's socket" test -S "$work/handler.sock"
nginx_with webhook.conf "$work/handler.sock"
contract "http://127.0.0.1:$port/api/webhook" "$secret" "own socket"
seed_id=$(sha256sum "$work/seed.json" | cut -d' ' -f1)
check "own socket: a replayed delivery is a duplicate" 200 "^\{\"verified\":true,\"id\":\"$seed_id\",\"duplicate\":true\}\$" \
    -H "x-signature: $(sign "$secret" "$work/seed.json")" --data-binary @"$work/seed.json" "http://127.0.0.1:$port/api/webhook"
stored_body() { tail -n +2 "$work/spool/new/$seed_id" | cmp -s - "$work/seed.json"; }
expect "own socket: the seed payload is stored whole, after its envelope line" stored_body
expect "own socket: two payloads in new/ (the seed and the empty body; the rest were duplicates)" \
    test "$(ls "$work/spool/new" | wc -l)" = 2
stop "$nginx_pid"; expect "own socket: nginx stops cleanly" test "$stopped_status" = 0
stop "$handler_pid"; expect "own socket: handler exits 0 on SIGTERM" test "$stopped_status" = 0
expect "own socket: socket removed" test ! -e "$work/handler.sock"
expect "own socket: access lines logged" grep -q ' POST 200 bytes=158 ' "$work/handler.log"

echo "== 2. nginx -> spawn-fcgi -s SOCKET -M 0666 -- webhook-handler"
start spawn-fcgi "$work/spawn.log" \
    env -i API_SECRET_KEY_FILE="$work/secret" spawn-fcgi -n -s "$work/spawn.sock" -M 0666 -- "$handler"
spawn_pid=$last_pid
wait_until "spawn-fcgi's socket" test -S "$work/spawn.sock"
nginx_with webhook.conf "$work/spawn.sock"
contract "http://127.0.0.1:$port/api/webhook" "$secret" "spawn-fcgi"
stop "$nginx_pid"; expect "spawn-fcgi: nginx stops cleanly" test "$stopped_status" = 0
stop "$spawn_pid"; expect "spawn-fcgi: handler exits 0 on SIGTERM" test "$stopped_status" = 0
expect "spawn-fcgi: served on fd 0" grep -q 'serving FastCGI on the socket on fd 0' "$work/spawn.log"

echo "== 3. nginx -> fcgiwrap -> webhook-handler as CGI"
start fcgiwrap "$work/fcgiwrap.log" env -i spawn-fcgi -n -s "$work/fcgiwrap.sock" -M 0666 -- "$(command -v fcgiwrap)"
fcgiwrap_pid=$last_pid
wait_until "fcgiwrap's socket" test -S "$work/fcgiwrap.sock"
nginx_with webhook-cgi.conf "$work/fcgiwrap.sock"
contract "http://127.0.0.1:$port/api/webhook" "$secret" "fcgiwrap CGI"
stop "$nginx_pid"
stop "$fcgiwrap_pid"

expect "no log line anywhere holds the secret" no_secret_in_logs
summary
