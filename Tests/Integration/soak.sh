#!/usr/bin/env bash
# Soak: mixed requests through a real nginx at full concurrency, six wrk load generators at once (valid, bad
# signature, missing signature, wrong method, oversized body, empty signed body). Every answer must have its
# expected status; the handler must log no 5xx; its workers must neither restart, nor grow in RSS by 1 MiB or
# more, nor gain file descriptors. File descriptors are counted with nginx stopped: the recipe keeps connections
# alive, so how many a worker holds under nginx depends on the moment; once nginx is gone it must hold none.
# Usage: Tests/Integration/soak.sh PATH/TO/webhook-handler [SECONDS]   (SECONDS defaults to 10; CI runs that)
source "$(dirname "$0")/lib.sh"

handler=$(realpath "${1:?usage: soak.sh HANDLER [SECONDS]}")
seconds=${2:-10}
secret="soak-secret-$$-$RANDOM"
printf '%s\n' "$secret" >"$work/secret"; chmod 600 "$work/secret"
start webhook-handler "$work/handler.log" env -i API_SECRET_KEY_FILE="$work/secret" \
    "$handler" --listen "$work/handler.sock" --socket-mode 0666
handler_pid=$last_pid
wait_until "the handler's socket" test -S "$work/handler.sock"
nginx_with webhook.conf "$work/handler.sock"
url="http://127.0.0.1:$port/api/webhook"

printf '%s' '{"reference":"test","topic_id":"0.0.134383","consensus_timestamp":{"seconds":1598306688,"nanos":750728007},"transaction_id":"0.0.116507@1598338540.979000000"}' >"$work/seed.json"
: >"$work/empty.json"
head -c 1048577 /dev/zero | tr '\0' 'a' >"$work/oversized.json"
workers() { workers_of "$handler_pid"; }
rss_kib() { local total=0 pid; for pid in $(workers); do total=$((total + $(memory "$pid" VmRSS))); done; echo "$total"; }
fds() { local total=0 pid; for pid in $(workers); do total=$((total + $(ls "/proc/$pid/fd" | wc -l))); done; echo "$total"; }
# no_connections: no worker holds a connected socket (state 03 in /proc/net/unix). Each worker also holds the
# listening socket it inherited and its own unconnected spare (AcceptInterruption); neither is a connection.
no_connections() {
    local pid
    test "$(for pid in $(workers); do sockets "$pid"; done | grep -cxF -f <(connected_unix_sockets))" = 0
}
sockets() { find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null; }
connected_unix_sockets() { awk 'NR > 1 && $6 == "03" {print "socket:[" $7 "]"}' /proc/net/unix; }
# quiet LABEL: stops nginx and gives the workers 2 s to drop its kept connections (well within the recipe's
# keepalive_timeout, after which nginx would have closed them anyway); the fds check counts then.
quiet() {
    stop "$nginx_pid"
    for _ in $(seq 1 20); do no_connections && break; sleep 0.1; done
    expect "soak: once nginx stops, the workers hold no connection ($1)" no_connections
}

# load SECONDS: the six kinds at once; their summary lines go to $work/load.out
load() {
    local duration=$1
    : >"$work/load.out"
    run_kind() {  # NAME METHOD BODY SIGNATURE EXPECT CONNECTIONS
        SOAK_METHOD=$2 SOAK_BODY_FILE=$3 SOAK_SIGNATURE=$4 SOAK_EXPECT=$5 \
            wrk_checked -t1 -c"$6" -d"${duration}s" "$url" | sed "s/^/$1 /" >>"$work/load.out"
    }
    local generators=()
    run_kind valid POST "$work/seed.json" "$(sign "$secret" "$work/seed.json")" 200 4 & generators+=($!)
    run_kind bad-signature POST "$work/seed.json" "$(sign wrong-secret-1 "$work/seed.json")" 400 2 & generators+=($!)
    run_kind no-signature POST "$work/seed.json" "" 400 2 & generators+=($!)
    run_kind wrong-method GET "" "" 405 2 & generators+=($!)
    run_kind oversized POST "$work/oversized.json" "$(sign "$secret" "$work/oversized.json")" 413 1 & generators+=($!)
    run_kind empty-signed POST "$work/empty.json" "$(sign "$secret" "$work/empty.json")" 200 1 & generators+=($!)
    wait "${generators[@]}"   # not a bare wait: nginx and the handler are this shell's children too
}

echo "== warm-up (2 s)"
load 2
before_workers=$(workers)
before_rss=$(rss_kib)
quiet "after the warm-up"; before_fds=$(fds)
start_nginx
echo "== soak (${seconds} s), workers: $before_workers"
load "$seconds"
cat "$work/load.out"
after_workers=$(workers)
after_rss=$(rss_kib)
quiet "after the soak"; after_fds=$(fds)
total=$(awk '{sub("requests=","",$2); s+=$2} END {print s}' "$work/load.out")
echo "requests: $total; RSS of all workers: ${before_rss} KiB -> ${after_rss} KiB; fds: $before_fds -> $after_fds; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

expect "soak: six kinds of request ran" test "$(wc -l <"$work/load.out")" = 6
expect "soak: every answer had its expected status" sh -c "! grep -v ' unexpected=0 ' '$work/load.out'"
expect "soak: no socket errors" sh -c "! grep -v ' errors=0 ' '$work/load.out'"
expect "soak: the handler answered no 5xx" sh -c "! grep -E ' method=(GET|POST) status=5[0-9][0-9] ' '$work/handler.log'"
expect "soak: no worker restarted" test "$before_workers" = "$after_workers"
workers_count=$(echo "$after_workers" | wc -w)
expect "soak: worker RSS grew by less than 1 MiB each (${before_rss} -> ${after_rss} KiB over $workers_count workers)" \
    test $((after_rss - before_rss)) -lt $((1024 * workers_count))
expect "soak: no file descriptors gained ($before_fds -> $after_fds)" test "$after_fds" -le "$before_fds"
stop "$handler_pid"; expect "soak: handler exits 0 on SIGTERM" test "$stopped_status" = 0
summary
