#!/bin/sh
# SPDX-License-Identifier: MIT
# Build and run every test twice: a normal optimized build (gcc), then an
# AddressSanitizer + UndefinedBehaviorSanitizer build (clang) that also builds the libFuzzer
# target and runs it for a fixed number of iterations. Exits non-zero on the first failure.
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure

CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSNIROUTE_SANITIZE=ON \
    -DSNIROUTE_FUZZ=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure
