#!/bin/sh
# SPDX-License-Identifier: MIT
# Long libFuzzer runs: each target (fuzz_hello, fuzz_config, fuzz_proxyproto, fuzz_http,
# fuzz_httpresp, fuzz_quic, fuzz_quicanswer) for SECONDS (default 300), one after the other, under ASan+UBSan. Configures and builds
# build-fuzz with clang first (a no-op when up to date). New
# inputs go to build-fuzz/corpus/TARGET (never into the source tree); crashes, leaks and
# timeouts to build-fuzz/findings/TARGET. Prints a Markdown summary (append it to
# bench/results/fuzz.md to record a run). Exit 0 when no target found anything.
#
#   bench/fuzz.sh [SECONDS] [TARGET...]
set -eu
cd "$(dirname "$0")/.."
secs=${1:-300}
[ $# -gt 0 ] && shift
targets=${*:-fuzz_hello fuzz_config fuzz_proxyproto fuzz_http fuzz_httpresp fuzz_quic fuzz_quicanswer}
build="build-fuzz"

# Configure every time: a target added since the last run must be known to the build.
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DSNIROUTE_SANITIZE=ON \
    -DSNIROUTE_FUZZ=ON >/dev/null
# shellcheck disable=SC2086 # one word per target
cmake --build "$build" -j"$(nproc)" --target $targets >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

status=0
echo "## $(date -u +%Y-%m-%d) ($(git rev-parse --short HEAD), $secs s per target, clang $(clang -dumpversion), ASan+UBSan)"
echo
echo "| target | runs | exec/s | cov (edges) | ft | corpus | findings |"
echo "|---|---|---|---|---|---|---|"
for t in $targets; do
    case $t in
    fuzz_hello) seeds="test/fixtures/hello" extra="" ;;
    fuzz_config)
        seeds="test/fuzz/corpus/config test/fixtures/config"
        extra="-dict=test/fuzz/config.dict -max_len=4096"
        ;;
    fuzz_proxyproto)
        seeds="test/fuzz/corpus/proxyproto test/fixtures/proxyproto"
        extra="-dict=test/fuzz/proxyproto.dict"
        ;;
    fuzz_http) seeds="test/fuzz/corpus/http" extra="-max_len=4096" ;;
    fuzz_httpresp)
        seeds="test/fuzz/corpus/httpresp"
        extra="-dict=test/fuzz/httpresp.dict -max_len=4096"
        ;;
    fuzz_quic) seeds="test/fuzz/corpus/quic test/fixtures/quic" extra="-max_len=8192" ;;
    fuzz_quicanswer) seeds="test/fuzz/corpus/quicanswer" extra="-max_len=2048" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    corpus=$build/corpus/$t
    findings=$build/findings/$t
    log=$build/findings/$t.log
    mkdir -p "$corpus" "$findings"
    # A finding ends that target's run (libFuzzer's default): fix it before fuzzing on.
    # shellcheck disable=SC2086
    if "$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$findings/" $extra "$corpus" $seeds >"$log" 2>&1; then
        :
    else
        status=1
    fi
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    eps=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p')
    n=$(find "$findings" -type f | wc -l)
    if [ "$n" -gt 0 ]; then
        status=1
        found="$n in $findings"
    else
        found="none"
    fi
    echo "| $t | ${runs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $found |"
done
exit $status
