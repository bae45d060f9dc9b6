#!/usr/bin/env bash
# The webhook contract over HTTP through a real nginx on 127.0.0.1, in three set-ups built from deploy/nginx/:
#   1. nginx -> webhook-handler --listen SOCKET          (deploy/nginx/webhook.conf)
#   2. nginx -> spawn-fcgi -s SOCKET -M 0666 -- handler  (the same recipe, socket handed over on fd 0)
#   3. nginx -> fcgiwrap -> handler as a plain CGI       (deploy/nginx/webhook-cgi.conf)
#   4. one handler, a location per sender               (deploy/nginx/webhook-senders.conf)
#   5. kept-alive connections: the recipe's sizing under load, and the stall when it is broken
# Usage: Tests/Integration/nginx.sh PATH/TO/webhook-handler
source "$(dirname "$0")/lib.sh"

handler=$(realpath "${1:?usage: nginx.sh PATH/TO/webhook-handler}")
secret="integration-secret-$$-$RANDOM"
printf '%s\n' "$secret" >"$work/secret"
chmod 600 "$work/secret"

no_secret_in_logs() {
    ! grep -qF -- "$secret" "$work"/*.log
}

echo "== 1. nginx -> webhook-handler on its own socket, with a spool (default workers)"
start webhook-handler "$work/handler.log" \
    env -i API_SECRET_KEY_FILE="$work/secret" "$handler" --listen "$work/handler.sock" --socket-mode 0666 \
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
expect "own socket: access lines logged" grep -q ' method=POST status=200 bytes=158 ' "$work/handler.log"

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
mkdir -m 700 "$work/senders"
for scheme in x-signature github standard-webhooks stripe; do
    printf 'whsec_%s\n' "$(printf '%s-%s' "$scheme" "$secret" | base64 -w0)" >"$work/senders/$scheme.secret"
done
start webhook-handler "$work/senders.log" env -i "$handler" --listen "$work/senders.sock" --socket-mode 0666 \
    --workers 2 --spool-dir "$work/senders-spool" --secrets-dir "$work/senders"
senders_pid=$last_pid
wait_until "the handler's socket" test -S "$work/senders.sock"
nginx_with webhook-senders.conf "$work/senders.sock"
event="$work/event.json"
printf '{"type":"scheme.test","at":%s}' "$(date +%s)" >"$event"
# signed SCHEME SECRET_OF [SIGN OPTIONS]: the header lines a sender would send, in a file for curl -H @file.
signed() {
    local scheme=$1 key=$2 file="$work/$1.headers"; shift 2
    if [ "$scheme" = x-signature ]; then
        printf 'x-signature: %s\n' "$("$handler" sign --secret-file "$work/senders/$key.secret" "$@" <"$event")" >"$file"
    else
        "$handler" sign --scheme "$scheme" --secret-file "$work/senders/$key.secret" "$@" <"$event" >"$file"
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
expect "senders: the handler read the four senders' secrets at start-up" \
    grep -q "senders from $work/senders: github, standard-webhooks, stripe, x-signature" "$work/senders.log"
expect "senders: a stored payload's envelope names its sender and scheme" \
    sh -c "cat '$work'/senders-spool/new/* | grep -q '\"sender\":\"standard-webhooks\",\"scheme\":\"standard-webhooks\"'"
expect "github: the delivery id is logged" grep -q 'delivery=delivery-of-github' "$work/senders.log"
expect "x-signature: no delivery id for a scheme without one" sh -c "! grep -q 'delivery=delivery-of-x-signature' '$work/senders.log'"
stop "$nginx_pid"
stop "$senders_pid"; expect "senders: handler exits 0" test "$stopped_status" = 0

echo "== 5. kept-alive connections: workers > keepalive x nginx workers (deploy/nginx/webhook.conf)"
start webhook-handler "$work/kept.log" env -i API_SECRET_KEY_FILE="$work/secret" "$handler" \
    --listen "$work/kept.sock" --socket-mode 0666
kept_pid=$last_pid
wait_until "the handler's socket" test -S "$work/kept.sock"
nginx_with webhook.conf "$work/kept.sock"
workers=$(sed -n 's/.* with \([0-9]*\) workers"*$/\1/p' "$work/kept.log")
pool=$(( $(sed -n 's/^ *keepalive \([0-9]*\);/\1/p' "$recipes/webhook.conf") * 2 ))  # start_nginx runs 2 nginx workers
expect "recipe: the default workers ($workers) outnumber nginx's kept connections ($pool)" test "${workers:-0}" -gt "$pool"
printf '{"load":"%s"}' "$(head -c 600 /dev/zero | tr '\0' k)" >"$work/load.json"
load=$(SOAK_METHOD=POST SOAK_BODY_FILE="$work/load.json" SOAK_SIGNATURE="$(sign "$secret" "$work/load.json")" \
    SOAK_EXPECT=200 wrk_checked -t2 -c32 -d3s "http://127.0.0.1:$port/api/webhook")
echo "     32 clients for 3 s: $load"
value() { tr ' ' '\n' <<<"$load" | sed -n "s/^$1=//p"; }
expect "recipe: 32 clients for 3 s, every answer 200" test "$(value unexpected)" = 0 -a "$(value errors)" = 0 -a "$(value requests)" -gt 100
# Waiting for a worker means waiting until nginx drops an idle kept connection: keepalive_timeout, 10 s in the
# recipe (the trap below shows it with 2 s). The bound sits at half that, above this virtual machine's scheduling
# noise: on 2026-12-01 the code of 2026-11-30 itself measured p99 0.6-1.1 s here and this code up to 1.75 s (p50
# under 2 ms), so a 250 ms bound measured the machine, not the handler. Latency against the C responder is
# bench/run.sh's, as ratios.
expect "recipe: no request waited for a worker (p99 under 5 s, keepalive_timeout is 10 s)" \
    awk -v p="$(value p99_ms)" 'BEGIN { exit !(p < 5000) }'
slowest=0
for _ in $(seq 20); do
    took=$(curl -s -o /dev/null -w '%{time_total}' -H "x-signature: $(sign "$secret" "$work/load.json")" \
        --data-binary @"$work/load.json" "http://127.0.0.1:$port/api/webhook")
    slowest=$(awk -v a="$slowest" -v b="$took" 'BEGIN { print (b > a ? b : a) }')
done
expect "recipe: after the load, with nginx's idle connections kept, new requests are served at once (slowest ${slowest} s)" \
    awk -v s="$slowest" 'BEGIN { exit !(s < 0.5) }'
kept_connections() { ss -x state established src "$work/kept.sock" | tail -n +2 | wc -l; }
expect "recipe: between requests nginx keeps connections open to the handler ($(kept_connections), at most $pool)" \
    test "$(kept_connections)" -ge 1 -a "$(kept_connections)" -le "$pool"
# SIGTERM while nginx still holds kept connections: the workers on them go on serving until nginx closes them
# (closing them first could race with nginx sending a request: a 502), then the handler exits at once.
kill -TERM "$kept_pid"
sleep 1
expect "recipe: SIGTERM with nginx's connections still kept: the handler waits for nginx to close them" \
    kill -0 "$kept_pid"
started_stop=$(date +%s%N)
stop "$nginx_pid"
stop "$kept_pid"
took_ms=$(( ($(date +%s%N) - started_stop) / 1000000 ))
expect "recipe: once nginx has closed them, the handler exits 0 (in ${took_ms} ms, under 2 s)" \
    test "$stopped_status" = 0 -a "$took_ms" -lt 2000

# The trap the sizing avoids: two pools of one kept connection each, in front of one worker. The first request
# leaves its connection idle in pool a, holding the worker; the second, from pool b, waits in the backlog until
# nginx drops that idle connection (keepalive_timeout 2s). With two workers it is served at once.
kept_in_front_of() {  # WORKERS: time of a request through pool b right after one through pool a
    start webhook-handler "$work/trap.log" env -i API_SECRET_KEY_FILE="$work/secret" "$handler" \
        --listen "$work/trap.sock" --socket-mode 0666 --workers "$1"
    trap_pid=$last_pid
    wait_until "the handler's socket" test -S "$work/trap.sock"
    port=$(free_port)
    cat >"$work/site.conf" <<CONF
upstream pool_a { server unix:$work/trap.sock; keepalive 1; keepalive_timeout 2s; }
upstream pool_b { server unix:$work/trap.sock; keepalive 1; keepalive_timeout 2s; }
server {
    listen 127.0.0.1:$port;
    location = /a { include /etc/nginx/fastcgi_params; fastcgi_keep_conn on; fastcgi_pass pool_a; }
    location = /b { include /etc/nginx/fastcgi_params; fastcgi_keep_conn on; fastcgi_pass pool_b; }
}
CONF
    start_nginx
    local signed=(-H "x-signature: $(sign "$secret" "$work/load.json")" --data-binary @"$work/load.json")
    curl -s -o /dev/null "${signed[@]}" "http://127.0.0.1:$port/a"
    took=$(curl -s -o "$work/trap-answer" -w '%{http_code} %{time_total}' "${signed[@]}" "http://127.0.0.1:$port/b")
    stop "$nginx_pid"
    stop "$trap_pid"
}
kept_in_front_of 1
expect "trap: 2 kept connections in front of 1 worker: the second pool's request waits for nginx's keepalive_timeout (200 after ${took#* } s)" \
    awk -v t="$took" 'BEGIN { split(t, a, " "); exit !(a[1] == 200 && a[2] >= 1.5 && a[2] < 5) }'
kept_in_front_of 2
expect "trap: sized, 2 kept connections and 2 workers: served at once (200 after ${took#* } s)" \
    awk -v t="$took" 'BEGIN { split(t, a, " "); exit !(a[1] == 200 && a[2] < 0.5) }'

expect "no log line anywhere holds the secret" no_secret_in_logs
summary
