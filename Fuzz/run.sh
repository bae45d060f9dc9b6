#!/usr/bin/env bash
# Builds the libFuzzer targets (with AddressSanitizer) and runs each for SECONDS (default 20), starting from the
# seed corpus in Fuzz/Corpus/TARGET. New inputs go to .build-fuzz/corpus/TARGET, crashes to .build-fuzz/crashes/.
# Usage: Fuzz/run.sh [SECONDS] [TARGET...]      Exit status: non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}; shift || true
targets=("$@")
((${#targets[@]})) || targets=(FuzzSignature FuzzRequestHead FuzzVerifyRespond FuzzSchemes FuzzTemplate)

mkdir -p .build-fuzz/crashes
ln -sfn "$PWD" .build-fuzz/webhook-handler
# Product by product: building everything would also build the core package's own executable with these flags.
# lld, because gold trips over the sanitized objects' debug information.
build() { (cd Fuzz && swift build -c release --scratch-path ../.build-fuzz/build "$@"); }
for target in "${targets[@]}"; do
    build -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -use-ld=lld --product "$target" >&2
done
bin=$(build --show-bin-path)

failed=0
for target in "${targets[@]}"; do
    mkdir -p ".build-fuzz/corpus/$target"
    echo "== $target for ${seconds}s"
    if "$bin/$target" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix=.build-fuzz/crashes/ \
        ".build-fuzz/corpus/$target" "Fuzz/Corpus/$target" 2>".build-fuzz/$target.log"; then
        grep -E "stat::number_of_executed_units|Done [0-9]+ runs" ".build-fuzz/$target.log" | tail -2
    else
        failed=$((failed + 1))
        echo "FAIL $target: see .build-fuzz/$target.log and .build-fuzz/crashes/"
        tail -30 ".build-fuzz/$target.log"
    fi
done
echo "$(( ${#targets[@]} - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
