#!/bin/sh
# SPDX-License-Identifier: MIT
# Where a proxied connection's time goes: system calls per connection (strace -c over a
# fixed number of rate-mode connections) for sniroute, the ceiling relay, HAProxy and
# sniproxy, and a perf profile (software cpu-clock, so it works in VMs without hardware
# counters) of sniroute under load. Run after bench/run.py has built bench-build/ and
# installed the peers; as root (it runs in a private network namespace, unshare -n).
# Output: bench/results/profile-syscalls.txt and, when perf works, profile-perf.txt.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ "${1:-}" != "--inside" ]; then
    command -v strace >/dev/null || { echo "profile.sh: needs strace"; exit 1; }
    exec unshare -n sh "$0" --inside
fi
ip link set lo up
echo "10000 65000" >/proc/sys/net/ipv4/ip_local_port_range
echo 1 >/proc/sys/net/ipv4/tcp_tw_reuse
B=$repo/bench-build
F=$repo/test/fixtures/hello
out=$repo/bench/results
tmp=$B/profile
N=2000
mkdir -p "$tmp" "$out"
ulimit -n "$(ulimit -Hn)"

"$B/bench_backend" -l 127.0.0.1:9000 -f "$F/curl.bin" >/dev/null 2>&1 &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT
printf '[sniroute]\naccess_log = off\n[listener b]\nlisten = 127.0.0.1:8443\nroutes = m\n[routes m]\ncurl.example = 127.0.0.1:9000\n' >"$tmp/sniroute.ini"
printf 'user nobody\nlistener 127.0.0.1:8446 {\n protocol tls\n table t\n}\ntable t {\n ^curl\\.example$ 127.0.0.1:9000\n}\n' >"$tmp/sniproxy.conf"
printf 'global\n nbthread 1\ndefaults\n mode tcp\n timeout connect 5s\n timeout client 1h\n timeout server 1h\nfrontend fe\n bind 127.0.0.1:8444\n tcp-request inspect-delay 5s\n tcp-request content accept if { req_ssl_hello_type 1 }\n use_backend be if { req_ssl_sni -i curl.example }\nbackend be\n server s1 127.0.0.1:9000\n' >"$tmp/haproxy.cfg"
sleep 0.3

{
    echo "System calls per proxied connection: strace -f -c over $N rate-mode connections"
    echo "(517-byte hello, 64-byte reply, FIN both ways), $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r)."
    echo "Columns: calls per connection (failed calls per connection)."
    echo
} >"$out/profile-syscalls.txt"
for t in sniroute relay haproxy sniproxy; do
    case $t in
    sniroute) set -- "$B/sniroute" -c "$tmp/sniroute.ini"; port=8443 ;;
    relay) set -- "$B/bench_relay" 127.0.0.1:8447 127.0.0.1:9000; port=8447 ;;
    haproxy) set -- haproxy -f "$tmp/haproxy.cfg" -db; port=8444 ;;
    sniproxy) set -- sniproxy -f -c "$tmp/sniproxy.conf"; port=8446 ;;
    esac
    timeout -s INT 15 strace -f -c -o "$tmp/strace-$t.txt" "$@" >/dev/null 2>&1 &
    tracer=$!
    sleep 1.5
    timeout 60 "$B/bench_loadgen" rate -a 127.0.0.1:$port -f "$F/curl.bin" -c 50 -t 30 \
        -n $N -L "$t" >"$tmp/rate-$t.json"
    wait $tracer || true
    awk -v n=$N -v t="$t" '
        $NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $4 ~ /^[0-9]+$/ {
            errs = (NF == 6) ? $5 : 0
            per = $4 / n
            if (per >= 0.05) { line[$NF] = sprintf("  %-14s %6.2f (%.2f)", $NF, per, errs / n); tot += per }
        }
        END {
            printf "%s: %.1f system calls per connection\n", t, tot
            for (k in line) print line[k] | "sort -k2 -rn"
            close("sort -k2 -rn")
            print ""
        }' "$tmp/strace-$t.txt" >>"$out/profile-syscalls.txt"
done
cat "$out/profile-syscalls.txt"

# perf: a software clock, so it also works where hardware counters are not exposed (VMs).
if command -v perf >/dev/null && perf record -e cpu-clock -o /dev/null true >/dev/null 2>&1; then
    "$B/sniroute" -c "$tmp/sniroute.ini" 2>/dev/null &
    daemon=$!
    sleep 0.5
    timeout 30 "$B/bench_loadgen" rate -a 127.0.0.1:8443 -f "$F/curl.bin" -c 50 -t 6 >/dev/null &
    load=$!
    sleep 1
    perf record -e cpu-clock -F 2000 -g -p $daemon -o "$tmp/perf.data" -- sleep 4 >/dev/null 2>&1
    wait $load || true
    kill $daemon
    perf report -i "$tmp/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
        grep '%' | head -60 >"$out/profile-perf.txt"
    echo "perf profile: $out/profile-perf.txt"
fi
