#!/usr/bin/env bash
# `webhook-handler check` against real secrets and real file systems: the verdict and exit status for the good
# case and for each way a CGI would fail its first delivery: no secret, an unreadable one (another user's 0600
# file), a weak one, one readable by others; a spool on a read-only tmpfs, on a tmpfs (gone at reboot), on a FUSE
# file system without O_TMPFILE (bindfs, like an NFS home directory). For the spool cases, one CGI delivery shows
# what check predicted (503 where it says the spool cannot work). Needs root (it mounts).
# Usage: Tests/Integration/check.sh PATH/TO/webhook-handler
source "$(dirname "$0")/lib.sh"

handler=$(realpath "${1:?usage: check.sh HANDLER}")
mounts=()
unmount_all() {
    local point
    for point in "${mounts[@]+"${mounts[@]}"}"; do
        fusermount3 -u "$point" 2>/dev/null || umount "$point" 2>/dev/null || true
    done
}
trap 'unmount_all; cleanup' EXIT

strong=$(openssl rand -hex 32)
printf '%s\n' "$strong" >"$work/secret"
chmod 0600 "$work/secret"

# run_check NAME ENV... : runs check with only ENV (and PATH) set; its output in $work/NAME.out, status in $status.
run_check() {
    local name=$1; shift
    env -i PATH="$PATH" "$@" "$handler" check >"$work/$name.out" 2>&1 && status=0 || status=$?
}
# verdict NAME STATUS PATTERN: check exited STATUS and printed a line matching PATTERN (and never the secret).
verdict_holds() { test "$status" = "$2" && grep -Eq -- "$3" "$work/$1.out" && ! grep -qF -- "$strong" "$work/$1.out"; }
verdict() {
    expect "check, $1: exit $2, says /$3/" verdict_holds "$@"
    verdict_holds "$@" || sed 's/^/    | /' "$work/$1.out"
}
# deliver SPOOL: one signed CGI delivery with that spool; prints the Status line's code.
deliver() {
    local body='{"check":"delivery"}'
    printf '%s' "$body" | env -i GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=POST CONTENT_LENGTH=${#body} \
        HTTP_X_SIGNATURE="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$strong" -r | cut -d' ' -f1)" \
        API_SECRET_KEY_FILE="$work/secret" WEBHOOK_SPOOL_DIR="$1" "$handler" 2>/dev/null |
        sed -n 's/^Status: \([0-9]*\).*/\1/p'
}

echo "== the good case: a strong 0600 secret, a spool on $(stat -f -c %T "$work")"
run_check good API_SECRET_KEY_FILE="$work/secret" WEBHOOK_SPOOL_DIR="$work/spool"
verdict good 0 '^verdict: ready'
verdict good 0 '^ok +spool: name it with linkat'
verdict good 0 '^ok +spool: fsync the directories'
expect "check, good: the probe left nothing in the spool" \
    test -z "$(find "$work/spool/tmp" "$work/spool/new" -mindepth 1)"
expect "check, good: a delivery there is 200" test "$(deliver "$work/spool")" = 200
"$handler" check --secret-file "$work/secret" --spool-dir "$work/spool" >"$work/options.out" 2>&1 && status=0 || status=$?
verdict options 0 '^verdict: ready'

echo "== the secret"
run_check none WEBHOOK_SPOOL_DIR="$work/spool"
verdict none 1 '^FAIL +no secret'
install -m 0755 "$handler" "$work/handler-copy"   # nobody must be able to run it
env -i PATH="$PATH" API_SECRET_KEY_FILE="$work/secret" runuser -u nobody -- "$work/handler-copy" check \
    >"$work/unreadable.out" 2>&1 && status=0 || status=$?
verdict unreadable 1 "^FAIL +secret: cannot read API_SECRET_KEY_FILE $work/secret: Permission denied"
printf '%s\n' 'short-0123' >"$work/weak"
chmod 0600 "$work/weak"
run_check weak API_SECRET_KEY_FILE="$work/weak"
verdict weak 1 '^FAIL +the secret on line 1 of .* is weak \(10 characters'
printf '%s\n%s\n' "$strong" 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' >"$work/weak2"
chmod 0600 "$work/weak2"
run_check weak-second API_SECRET_KEY_FILE="$work/weak2"
verdict weak-second 1 '^FAIL +the secret on line 2 of .* is weak \(40 characters, 1 distinct'
run_check weak-variable API_SECRET_KEY=short-0123456
verdict weak-variable 1 '^FAIL +API_SECRET_KEY is weak'
cp "$work/secret" "$work/exposed"
chmod 0644 "$work/exposed"
run_check exposed API_SECRET_KEY_FILE="$work/exposed"
verdict exposed 1 '^FAIL +.*exposed is readable by others \(mode 0644\)'
printf '%s!\n' "$strong" >"$work/not-base64"
chmod 0600 "$work/not-base64"
run_check short API_SECRET_KEY_FILE="$work/not-base64" WEBHOOK_SCHEME=standard-webhooks
verdict short 1 '^FAIL +secret: .*not a Standard Webhooks secret'

# The senders as deploy/nginx/README.md hands them over under DynamicUser: one credential per sender, NAME.secret,
# beside the unit's own api-secret, in the credentials directory that WEBHOOK_SECRETS_DIR names.
mkdir -m 0700 "$work/credentials"
cp "$work/secret" "$work/credentials/api-secret"
(umask 077; openssl rand -hex 32 >"$work/credentials/github.secret")
(umask 077; openssl rand -hex 32 >"$work/credentials/stripe.secret")
run_check credentials API_SECRET_KEY_FILE="$work/credentials/api-secret" WEBHOOK_SECRETS_DIR="$work/credentials"
verdict credentials 0 '^ok +senders from .*/credentials: github, stripe$'
printf 'short-but-usable\n' >"$work/credentials/stripe.secret"
run_check credentials-weak API_SECRET_KEY_FILE="$work/credentials/api-secret" WEBHOOK_SECRETS_DIR="$work/credentials"
verdict credentials-weak 1 '^FAIL +the secret on line 1 of .*/stripe.secret is weak'
printf 'short\n' >"$work/credentials/stripe.secret"
run_check credentials-short API_SECRET_KEY_FILE="$work/credentials/api-secret" WEBHOOK_SECRETS_DIR="$work/credentials"
verdict credentials-short 1 '^FAIL +senders: .*stripe.secret'

echo "== the spool's file system"
mkdir -p "$work/ro" "$work/tmpfs" "$work/fuse-source" "$work/fuse"
mount -t tmpfs -o ro,size=1m tmpfs "$work/ro" && mounts+=("$work/ro")
run_check read-only API_SECRET_KEY_FILE="$work/secret" WEBHOOK_SPOOL_DIR="$work/ro/spool"
verdict read-only 1 '^FAIL +spool: create .*Read-only file system'
verdict read-only 1 '^verdict: NOT READY: 1 problem '
expect "check, read-only: a delivery there is 503, as it predicted" test "$(deliver "$work/ro/spool")" = 503

mount -t tmpfs -o size=1m tmpfs "$work/tmpfs" && mounts+=("$work/tmpfs")
run_check tmpfs API_SECRET_KEY_FILE="$work/secret" WEBHOOK_SPOOL_DIR="$work/tmpfs/spool"
verdict tmpfs 1 '^FAIL +spool: on tmpfs, which forgets its files at reboot'
verdict tmpfs 1 '^ok +spool: fsync the directories'

start bindfs "$work/bindfs.log" bindfs -f "$work/fuse-source" "$work/fuse"
bindfs_pid=$last_pid
mounts+=("$work/fuse")
wait_until "the FUSE mount" mountpoint -q "$work/fuse"
run_check fuse API_SECRET_KEY_FILE="$work/secret" WEBHOOK_SPOOL_DIR="$work/fuse/spool"
verdict fuse 1 '^FAIL +spool: an unnamed file in new/ \(O_TMPFILE\): .*Operation not supported'
verdict fuse 1 '^ok +spool: create'
expect "check, fuse: a delivery there is 503, as it predicted" test "$(deliver "$work/fuse/spool")" = 503
fusermount3 -u "$work/fuse"
stop "$bindfs_pid"

summary
