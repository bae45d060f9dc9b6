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

echo "== 4. one handler, a location per sender and scheme (deploy/nginx/webhook-senders.conf)"
for scheme in x-signature github standard-webhooks stripe; do
    printf 'whsec_%s\n' "$(printf '%s-%s' "$scheme" "$secret" | base64 -w0)" >"$work/$scheme.secret"
done
start webhook-handler "$work/senders.log" env -i "$handler" --listen "$work/senders.sock" --socket-mode 0666 \
    --workers 2 --spool-dir "$work/senders-spool"
senders_pid=$last_pid
wait_until "the handler's socket" test -S "$work/senders.sock"
nginx_with webhook-senders.conf "$work/senders.sock"
event="$work/event.json"
printf '{"type":"scheme.test","at":%s}' "$(date +%s)" >"$event"
# signed SCHEME SECRET_OF [SIGN OPTIONS]: the header lines a sender would send, in a file for curl -H @file.
signed() {
    local scheme=$1 key=$2 file="$work/$1.headers"; shift 2
    if [ "$scheme" = x-signature ]; then
        printf 'x-signature: %s\n' "$("$handler" sign --secret-file "$work/$key.secret" "$@" <"$event")" >"$file"
    else
        "$handler" sign --scheme "$scheme" --secret-file "$work/$key.secret" "$@" <"$event" >"$file"
    fi
    echo "$file"
}
previous=stripe
for scheme in x-signature github standard-webhooks stripe; do
    url="http://127.0.0.1:$port/api/$scheme"
    [ "$scheme" = x-signature ] && url="http://127.0.0.1:$port/api/webhook"
    check "$scheme: signed as the sender signs is 200" 200 '"verified":true' \
        -H @"$(signed "$scheme" "$scheme")" -H 'X-GitHub-Delivery: delivery-of-'"$scheme" --data-binary @"$event" "$url"
    check "$scheme: a tampered body is 400" 400 'does not match the body' \
        -H @"$(signed "$scheme" "$scheme")" --data-binary '{"type":"forged"}' "$url"
    check "$scheme: signed with the $previous sender's secret is 400" 400 'does not match the body' \
        -H @"$(signed "$scheme" "$previous")" --data-binary @"$event" "$url"
    previous=$scheme
done
old=$(( $(date +%s) - 1000 ))
check "standard-webhooks: a replay 1000 s later is 400" 400 'more than 300 seconds from now' \
    -H @"$(signed standard-webhooks standard-webhooks --id msg_replayed --timestamp "$old")" --data-binary @"$event" \
    "http://127.0.0.1:$port/api/standard-webhooks"
check "stripe: a replay 1000 s later is 400" 400 'more than 300 seconds from now' \
    -H @"$(signed stripe stripe --timestamp "$old")" --data-binary @"$event" "http://127.0.0.1:$port/api/stripe"
check "standard-webhooks: first delivery of msg_once is stored" 200 '"duplicate":false' \
    -H @"$(signed standard-webhooks standard-webhooks --id msg_once)" --data-binary @"$event" \
    "http://127.0.0.1:$port/api/standard-webhooks"
sleep 1
check "standard-webhooks: its retry, re-signed a second later, is a duplicate" 200 '"duplicate":true' \
    -H @"$(signed standard-webhooks standard-webhooks --id msg_once)" --data-binary @"$event" \
    "http://127.0.0.1:$port/api/standard-webhooks"
expect "github: the delivery id is logged" grep -q 'delivery=delivery-of-github' "$work/senders.log"
expect "x-signature: no delivery id for a scheme without one" sh -c "! grep -q 'delivery=delivery-of-x-signature' '$work/senders.log'"
stop "$nginx_pid"
stop "$senders_pid"; expect "senders: handler exits 0" test "$stopped_status" = 0

expect "no log line anywhere holds the secret" no_secret_in_logs
summary
