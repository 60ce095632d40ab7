#!/bin/sh
# SPDX-License-Identifier: MIT
# Set everything up and run sniroute on etc/sniroute.ini: install the Debian packages if
# they are missing, build, make a throwaway CA and one certificate per site, start one
# `openssl s_server` backend per route (ports 9001-9003), then run sniroute in the
# foreground. Ctrl-C stops sniroute and the backends.
#
#   etc/demo.sh               run it, and try the curl commands it prints
#   etc/demo.sh --self-test   run it, make the three requests, check which site answered,
#                             stop; exit 0 only if every name reached its own backend
# SNIROUTE=path/to/sniroute skips the install and build steps (the test suite uses this).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-run}
work="${DEMO_DIR:-$top/build/demo}"
pids=""

cleanup() {
    for pid in $pids; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ -z "${SNIROUTE:-}" ]; then
    need=""
    for cmd in cmake cc pkg-config openssl curl; do
        command -v "$cmd" >/dev/null 2>&1 || need=yes
    done
    pkg-config --exists libuv inih libcrypto libbpf 2>/dev/null || need=yes
    command -v clang >/dev/null 2>&1 || need=yes
    if [ -n "$need" ]; then
        echo "demo: installing build dependencies from Debian"
        as_root apt-get update
        as_root apt-get install -y build-essential cmake pkg-config libuv1-dev libinih-dev libssl-dev \
            clang libbpf-dev \
            openssl curl python3
    fi
    cmake -S "$top" -B "$top/build" >/dev/null
    cmake --build "$top/build" -j"$(nproc)" --target sniroute
    SNIROUTE="$top/build/sniroute"
fi
"$SNIROUTE" -t -c "$top/etc/sniroute.ini"

# A throwaway CA and one certificate per site, each naming only its own hosts.
mkdir -p "$work"
cd "$work"
if [ ! -f ca.pem ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
        -subj "/CN=sniroute demo CA" 2>/dev/null
fi
make_cert() { # name, subjectAltName
    if [ ! -f "$1.pem" ]; then
        openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" \
            -subj "/CN=$1" 2>/dev/null
        printf 'subjectAltName=%s\n' "$2" > "$1.ext"
        openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out "$1.pem" -days 30 -extfile "$1.ext" 2>/dev/null
    fi
}
make_cert site-exact "DNS:example.com"
make_cert site-wildcard "DNS:*.example.com"
make_cert site-default "DNS:localhost,DNS:other.test,IP:127.0.0.1"

start_backend() { # port, cert name
    openssl s_server -quiet -www -accept "127.0.0.1:$1" -cert "$2.pem" -key "$2.key" \
        >/dev/null 2>&1 &
    pids="$pids $!"
}
start_backend 9001 site-exact
start_backend 9002 site-wildcard
start_backend 9003 site-default

if [ "$mode" != "--self-test" ]; then
    cat <<TXT

sniroute is starting on 127.0.0.1:8443. In another terminal, try:
  curl --cacert $work/ca.pem --resolve example.com:8443:127.0.0.1 https://example.com:8443/
  curl --cacert $work/ca.pem --resolve www.example.com:8443:127.0.0.1 https://www.example.com:8443/
  curl --cacert $work/ca.pem --resolve other.test:8443:127.0.0.1 https://other.test:8443/
  openssl s_client -connect 127.0.0.1:8443 -servername a.b.example.com -CAfile $work/ca.pem </dev/null
Each certificate is valid only for its own site, so a wrong route fails verification.
Ctrl-C stops it (and the demo backends).

TXT
    "$SNIROUTE" -c "$top/etc/sniroute.ini"
    exit $?
fi

# --self-test: the same, checked.
"$SNIROUTE" -c "$top/etc/sniroute.ini" >"$work/access.log" 2>"$work/sniroute.err" &
pids="$pids $!"
tries=0
until grep -q "listening on" "$work/sniroute.err" 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 50 ] || { cat "$work/sniroute.err"; echo "demo: sniroute did not start"; exit 1; }
    sleep 0.1
done
sleep 0.3 # let the backends finish starting
fail=0
check() { # name, expected certificate CN
    subject=$(curl -sS -v --max-time 10 --cacert ca.pem --resolve "$1:8443:127.0.0.1" \
        "https://$1:8443/" 2>&1 >/dev/null | sed -n 's/^\*  subject: //p')
    case "$subject" in
    *"CN=$2"*) echo "demo: $1 -> $2: ok" ;;
    *) echo "demo: $1 -> expected $2, got '${subject:-no certificate}'"; fail=1 ;;
    esac
}
check example.com site-exact
check www.example.com site-wildcard
check x.y.example.com site-wildcard
check other.test site-default
exit $fail
