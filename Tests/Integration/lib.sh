# Helpers for integration tests against real servers on 127.0.0.1. Sourced, not run.
# Servers are started in the background by the test, their pids tracked, and stopped by the test itself.

set -euo pipefail

passed=0
failed=0
pids=()
work=$(mktemp -d "${TMPDIR:-/tmp}/webhook-it.XXXXXX")
chmod 755 "$work"                      # nginx workers (user nobody) must reach the sockets in here
recipes=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../../deploy/nginx")
soak_lua=$(realpath "$(dirname "${BASH_SOURCE[0]}")/soak.lua")  # for wrk_checked

# signal_group SIG PID: to PID's whole process group (start gives each server one), else to PID alone.
signal_group() { kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null || true; }

cleanup() {
    local pid
    for pid in "${pids[@]}"; do signal_group TERM "$pid"; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
    rm -rf "$work"
}
trap cleanup EXIT

# workers_of PID: the pids of PID's children (a FastCGI server's workers), on one line.
workers_of() { echo $(cat "/proc/$1/task/$1/children"); }

# memory PID FIELD: a size in KiB from /proc/PID/status (VmRSS, or VmHWM: the peak resident size).
memory() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

# wrk_checked WRK_OPTIONS... URL: wrk sending one kind of request (soak.lua: SOAK_METHOD, SOAK_BODY_FILE,
# SOAK_SIGNATURE, SOAK_EXPECT from the environment) and checking every answer's status. Prints soak.lua's summary:
# requests=N unexpected=N errors=N p99_ms=X p50_ms=X rps=N
wrk_checked() { wrk -s "$soak_lua" "$@" 2>&1 | sed -n 's/^SOAK //p'; }

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start NAME LOG COMMAND...: runs COMMAND in the background in a process group of its own (so that stopping it
# stops whatever it forked too, e.g. fcgiwrap's children), remembering its pid in $last_pid.
start() {
    local name=$1 log=$2; shift 2
    setsid "$@" >>"$log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
    echo "started $name (pid $last_pid)"
}

# stop PID: SIGTERM to its process group, then wait for it; its exit status is left in $stopped_status.
# (Not called in $(...): a subshell cannot wait for this shell's children.)
stop() {
    local pid=$1
    stopped_status=0
    signal_group TERM "$pid"
    wait "$pid" 2>/dev/null || stopped_status=$?
    local kept=() p
    for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    pids=("${kept[@]+"${kept[@]}"}")
}

# wait_until DESCRIPTION COMMAND...: polls COMMAND for up to 10 s.
wait_until() {
    local what=$1; shift
    for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "timed out waiting for $what" >&2
    return 1
}

# sign SECRET FILE: the hex HMAC-SHA256 of FILE, computed by openssl (independently of the handler).
sign() {
    openssl dgst -sha256 -hmac "$1" -r "$2" | cut -d' ' -f1
}

# check NAME STATUS BODY_REGEX CURL_ARGS...: one HTTP exchange; checks status, JSON content type and body.
check() {
    local name=$1 want_status=$2 want_body=$3; shift 3
    local headers="$work/headers" body="$work/body" status
    status=$(curl -sS -o "$body" -D "$headers" -w '%{http_code}' "$@") || status="curl-failed"
    local problems=()
    [ "$status" = "$want_status" ] || problems+=("status $status, wanted $want_status")
    grep -qi '^content-type: application/json' "$headers" 2>/dev/null || problems+=("content type is not JSON")
    grep -Eq -- "$want_body" "$body" 2>/dev/null || problems+=("body $(head -c 300 "$body" 2>/dev/null) !~ $want_body")
    if [ "$want_status" = 405 ]; then
        grep -qi '^allow: POST' "$headers" || problems+=("no Allow: POST header")
    fi
    if ((${#problems[@]})); then
        failed=$((failed + 1))
        printf 'FAIL %s: %s\n' "$name" "$(IFS=';'; echo "${problems[*]}")"
    else
        passed=$((passed + 1))
        printf 'ok   %s\n' "$name"
    fi
}

# nginx_with RECIPE SOCKET: starts nginx (pid in $nginx_pid) on a free port ($port) from a recipe in deploy/nginx/,
# templated only for paths and the port: the handler's socket, and for the CGI recipe $handler and $work/secret.
nginx_with() {
    local recipe=$1 socket=$2
    port=${3:-0}
    [ "$port" != 0 ] || port=$(free_port)
    status_port=$(free_port)
    sed -e "s|listen 127.0.0.1:8080;|listen 127.0.0.1:$port;|" \
        -e "s|listen 127.0.0.1:8081;|listen 127.0.0.1:$status_port;|" \
        -e "s|unix:/run/webhook-handler/webhook.sock|unix:$socket|" \
        -e "s|unix:/run/fcgiwrap.socket|unix:$socket|" \
        -e "s|/usr/local/bin/webhook-handler|$handler|" \
        -e "s|/etc/webhook-handler/secret|$work/secret|" \
        -e "s|/etc/webhook-handler/\([a-z-]*\).secret|$work/\1.secret|" \
        -e "s|include fastcgi_params;|include /etc/nginx/fastcgi_params;|" \
        "$recipes/$recipe" >"$work/site.conf"
    start_nginx
}

# start_nginx: nginx (pid in $nginx_pid) serving $work/site.conf on $port, everything else in $work.
start_nginx() {
    cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/client_body;
    fastcgi_temp_path $work/fastcgi_temp;
    proxy_temp_path $work/proxy_temp;
    uwsgi_temp_path $work/uwsgi_temp;
    scgi_temp_path $work/scgi_temp;
    include $work/site.conf;
}
CONF
    start nginx "$work/nginx.log" nginx -e "$work/nginx-error.log" -c "$work/nginx.conf"
    nginx_pid=$last_pid
    wait_until "nginx on port $port" curl -s -o /dev/null "http://127.0.0.1:$port/" ||
        { cat "$work/nginx-error.log" >&2; return 1; }
}

# expect NAME CONDITION...: a plain assertion.
expect() {
    local name=$1; shift
    if "$@"; then passed=$((passed + 1)); printf 'ok   %s\n' "$name"
    else failed=$((failed + 1)); printf 'FAIL %s\n' "$name"; fi
}

# public_refuses_endpoints LABEL PORT: the public listener on PORT serves neither the status page nor ping, even to
# a client on 127.0.0.1 (as a TLS terminator or reverse proxy on this host would ask).
public_refuses_endpoints() {
    local label=$1 port=$2 endpoint answer
    for endpoint in webhook-status webhook-ping; do
        answer=$(curl -s -o "$work/public.out" -w '%{http_code}' "http://127.0.0.1:$port/$endpoint")
        expect "$label: the public listener does not serve /$endpoint, even to a local client ($answer)" \
            sh -c "test '$answer' = 404 && ! grep -q 'stored\\|pong' '$work/public.out'"
    done
}

# contract URL SECRET LABEL: every row of the webhook contract over HTTP.
contract() {
    local url=$1 secret=$2 label=$3
    local seed="$work/seed.json" empty="$work/empty.json" small="$work/small.json" big="$work/big.json"
    printf '%s' '{"reference":"test","topic_id":"0.0.134383","consensus_timestamp":{"seconds":1598306688,"nanos":750728007},"transaction_id":"0.0.116507@1598338540.979000000"}' >"$seed"
    : >"$empty"
    printf '{}' >"$small"
    head -c 1100000 /dev/zero | tr '\0' 'a' >"$big"
    local signature; signature=$(sign "$secret" "$seed")
    local upper; upper=$(echo "$signature" | tr a-f A-F)

    check "$label: GET is 405" 405 '^\{"reason":"Method GET is not allowed on this route"\}$' "$url"
    check "$label: PUT is 405" 405 '"reason":"Method PUT is not allowed' -X PUT --data-binary @"$small" "$url"
    check "$label: POST without signature is 400" 400 '"reason":"missing x-signature header"' \
        -H 'Content-Type: application/json' --data-binary @"$seed" "$url"
    check "$label: {} with x-signature 123 is 400" 400 '"reason":"x-signature must be' \
        -H 'x-signature: 123' --data-binary @"$small" "$url"
    check "$label: wrong signature is 400" 400 '^\{"reason":"x-signature does not match the body"\}$' \
        -H "x-signature: $(sign wrong-secret-123 "$seed")" --data-binary @"$seed" "$url"
    check "$label: seed payload signed by the sender is 200" 200 \
        '^\{"verified":true(,"id":"[0-9a-f]{64}","duplicate":(true|false))?\}$' \
        -H 'Content-Type: application/json' -H "x-signature: $signature" --data-binary @"$seed" "$url"
    check "$label: upper-case hex with sha256= is 200" 200 '"verified":true' \
        -H "x-signature: sha256=$upper" --data-binary @"$seed" "$url"
    check "$label: signed empty body is 200" 200 '"verified":true' \
        -H "x-signature: $(sign "$secret" "$empty")" --data-binary @"$empty" "$url"
    check "$label: chunked upload is verified" 200 '"verified":true' \
        -H 'Transfer-Encoding: chunked' -H "x-signature: $signature" --data-binary @"$seed" "$url"
    check "$label: body over 1 MiB is 413" 413 '"reason":"request body' \
        -H "x-signature: $(sign "$secret" "$big")" --data-binary @"$big" "$url"
}

# summary: the closing line test runners are read by; fails the script if anything failed.
summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
