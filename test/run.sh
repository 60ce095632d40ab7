#!/bin/sh
# SPDX-License-Identifier: MIT
# Build and run every test twice: a normal optimized build (gcc), then an
# AddressSanitizer + UndefinedBehaviorSanitizer build (clang) that also builds the libFuzzer
# targets and runs them for a fixed number of iterations. Installs the Debian packages of
# test/packages that are missing first. Exits non-zero on the first failure; a suite that
# was skipped says why at the end.
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The packages of test/packages that dpkg does not report as installed.
missing_packages() {
    for pkg in $(sed 's/#.*//' test/packages); do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || printf '%s ' "$pkg"
    done
}

if command -v dpkg-query >/dev/null 2>&1; then
    missing=$(missing_packages)
    if [ -n "$missing" ]; then
        echo "test/run.sh: installing missing Debian packages: $missing"
        as_root apt-get update
        # shellcheck disable=SC2086 # one word per package
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends $missing
    fi
else
    echo "test/run.sh: no dpkg here; install the packages in test/packages by hand"
fi

# Print, for every test CTest skipped in build directory $1, the reason its own output
# gave (each suite prints "SKIP name: why" before it exits 77).
skip_summary() {
    log="$1/Testing/Temporary/LastTest.log"
    [ -f "$log" ] || return 0
    reasons=$(grep -E '^SKIP [^ ]+: ' "$log" || true)
    if [ -n "$reasons" ]; then
        echo "Skipped in $1 (and why):"
        echo "$reasons" | sed 's/^/    /'
    fi
}

# The container image and bench/ build Release (-O3), whose inlining lets gcc see more
# (a maybe-uninitialized warning, an error with -Werror, once reached main this way):
# build the daemon that way too, before the tests.
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
cmake --build build-release -j"$jobs" --target sniroute

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure
skip_summary build

# kernel_relay is opt-in. Where this kernel and these privileges let the sockmap suite run,
# the suites that relay TCP bytes run again with every daemon on the kernel path
# (harness.py writes kernel_relay = sockmap into each config that does not choose, and
# tallies what each daemon's stop line says went through it; none at all is a failure).
if grep -q '^SKIP sockmap: ' build/Testing/Temporary/LastTest.log; then
    echo "Kernel relay pass skipped: the sockmap suite was (see above)."
else
    tally=$(mktemp)
    SNIROUTE_TEST_KERNEL_RELAY=sockmap SNIROUTE_TEST_KERNEL_RELAY_TALLY="$tally" \
        ctest --test-dir build --output-on-failure \
        -R '^(e2e|faults|workers|proxyproto|limits|fallback|alpn|reload|access|upgrade|browser)$'
    awk '{ k += $3; n += $4 } END {
        printf "Kernel relay pass: %d of %d connections went through the kernel relay\n", k, n
        exit (k > 0 ? 0 : 1) }' "$tally"
    rm -f "$tally"
fi

CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSNIROUTE_SANITIZE=ON \
    -DSNIROUTE_FUZZ=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure
skip_summary build-asan
