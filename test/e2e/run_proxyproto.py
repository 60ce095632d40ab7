#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Upstream pools and the PROXY protocol through the real daemon, with HAProxy (Debian's
package) as the real peer on both sides:

- a pool with a dead server: every connection still succeeds (the next server is tried
  within connect_timeout), the live servers share the load, the dead one is taken out;
- source_hash keeps a client address on one server;
- proxy_protocol = v1 / v2 towards HAProxy with accept-proxy: HAProxy logs the real client
  address (and, for v2, the server name as the authority TLV);
- proxy_protocol = accept behind HAProxy's send-proxy-v2: sniroute logs the real client;
  a source outside trusted_proxies and a connection without a header are refused.

    run_proxyproto.py --sniroute build/sniroute [-k FILTER]
Skips (77) when haproxy is not installed.
"""

import os
import shutil
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CaptureBackend, Fail, check  # noqa: E402


def ask(port, hello, source="127.0.0.1"):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(hello)
    s.shutdown(socket.SHUT_WR)
    data = harness.recv_all(s, time.monotonic() + 10)
    s.close()
    return data


def drain(backend):
    n = 0
    while not backend.results.empty():
        backend.results.get_nowait()
        n += 1
    return n


def haproxy(tmp, name, body):
    """HAProxy in the foreground, logging to stdout in raw format."""
    path = os.path.join(tmp, name + ".cfg")
    with open(path, "w") as f:
        f.write("global\n    log stdout format raw local0\n"
                "defaults\n    mode tcp\n    log global\n    timeout connect 5s\n"
                "    timeout client 30s\n    timeout server 30s\n" + body)
    proc = harness.Proc(["haproxy", "-db", "-f", path], "haproxy(" + name + ")")
    time.sleep(0.5)
    check(proc.p.poll() is None, "haproxy %s did not start: %s" % (name, proc.tail("stderr")))
    return proc


def case_pool_retries_and_spreads(ctx):
    """round_robin over [dead, a, b]: 20 of 20 routed, a and b both used, the dead server
    reported out. Fails if a connection is lost to the dead server."""
    a, b = CaptureBackend(), CaptureBackend()
    dead_sock, dead = harness.dead_port()
    text = ("[sniroute]\nconnect_timeout = 3s\n[listener https]\nlisten = 127.0.0.1:0\n"
            "routes = main\n[routes main]\npool.test = apps\n[upstream apps]\n"
            "server = 127.0.0.1:%d\nserver = 127.0.0.1:%d\nserver = 127.0.0.1:%d\n"
            "balance = round_robin\n" % (dead, a.port, b.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "pool", text)
    try:
        hello = harness.client_hello("pool.test")
        ok = sum(ask(d.port(), hello).startswith(b"GOT") for _ in range(20))
        check(ok == 20, "%d of 20 routed through a pool with a dead server" % ok)
        na = nb = 0
        deadline = time.monotonic() + 5  # results are queued just after each reply
        while na + nb < 20 and time.monotonic() < deadline:
            na, nb = na + drain(a), nb + drain(b)
            time.sleep(0.01)
        check(na + nb == 20 and na >= 5 and nb >= 5, "spread: a=%d b=%d" % (na, nb))
        d.proc.wait_line("stderr", r"upstream apps: server 127\.0\.0\.1:%d failed repeatedly"
                         % dead, 5)
        lines = d.logs()
        check(all(e.get("upstream", "").startswith("apps/") for e in lines),
              "access log upstream: %s" % [e.get("upstream") for e in lines][:3])
        check(d.stop() == 0 and d.sanitizer_report() is None, "daemon exit")
        return "a=%d b=%d" % (na, nb)
    finally:
        d.stop()
        a.stop()
        b.stop()
        dead_sock.close()


def case_source_hash_sticks(ctx):
    """source_hash: each of 6 client addresses always reaches the same server."""
    backends = [CaptureBackend() for _ in range(3)]
    text = ("[listener https]\nlisten = 127.0.0.1:0\nroutes = main\n[routes main]\n"
            "default = apps\n[upstream apps]\n" +
            "".join("server = 127.0.0.1:%d\n" % be.port for be in backends) +
            "balance = source_hash\n")
    d = harness.Sniroute(ctx.binary, ctx.tmp, "hash", text)
    try:
        hello = harness.client_hello("hash.test")
        seen = {}
        for i in range(6):
            src = "127.0.0.%d" % (20 + i)
            for _ in range(4):
                check(ask(d.port(), hello, src).startswith(b"GOT"), "not routed")
                # The backend queues its result just after replying: wait for it.
                deadline = time.monotonic() + 5
                while (all(be.results.empty() for be in backends)
                       and time.monotonic() < deadline):
                    time.sleep(0.01)
                got = [n for n, be in enumerate(backends) if drain(be)]
                check(len(got) == 1, "one request reached %s" % got)
                seen.setdefault(src, set()).add(got[0])
        check(all(len(v) == 1 for v in seen.values()), "a client moved: %s" % seen)
        check(len(set().union(*seen.values())) >= 2, "all clients on one server: %s" % seen)
        return "%s" % {k: min(v) for k, v in seen.items()}
    finally:
        d.stop()
        for be in backends:
            be.stop()


def send_case(ctx, version):
    """sniroute -> HAProxy (accept-proxy) -> capture backend: HAProxy must log the client
    address sniroute saw, and for v2 the server name."""
    be = CaptureBackend()
    hport = harness.free_port()
    h = haproxy(ctx.tmp, "recv" + version,
                "frontend fe\n    bind 127.0.0.1:%d accept-proxy\n"
                "    log-format \"CLIENT %%ci:%%cp AUTH %%[fc_pp_authority]\"\n"
                "    default_backend be\nbackend be\n    server s 127.0.0.1:%d\n"
                % (hport, be.port))
    text = ("[listener https]\nlisten = 127.0.0.1:0\nroutes = main\n[routes main]\n"
            "default = apps\n[upstream apps]\nserver = 127.0.0.1:%d\nproxy_protocol = %s\n"
            % (hport, version))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "send" + version, text)
    try:
        hello = harness.client_hello("named.example")
        s = socket.socket()
        s.bind(("127.0.0.7", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", d.port()))
        cport = s.getsockname()[1]
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        data = harness.recv_all(s, time.monotonic() + 10)
        s.close()
        check(data.startswith(b"GOT"), "no reply through HAProxy")
        r = be.next_result(10, "backend behind haproxy")
        check(r[1] == hello, "the backend did not get the hello unchanged (the PROXY header "
              "must end at HAProxy): %s" % harness.short(r[1]))
        _, m = h.wait_line("stdout", r"CLIENT (\S+) AUTH (\S*)", 10)
        check(m.group(1) == "127.0.0.7:%d" % cport,
              "HAProxy saw client %s, want 127.0.0.7:%d" % (m.group(1), cport))
        if version == "v2":
            check(m.group(2) == "named.example", "authority TLV: %r" % m.group(2))
        return "HAProxy logged %s" % m.group(0)
    finally:
        d.stop()
        h.stop()
        be.stop()


def case_send_v1(ctx):
    return send_case(ctx, "v1")


def case_send_v2(ctx):
    return send_case(ctx, "v2")


def case_accept_behind_haproxy(ctx):
    """client (127.0.0.9) -> HAProxy send-proxy-v2 -> sniroute (accept, trusted 127.0.0.1)
    -> backend: sniroute logs the real client and forwards the hello without the header.
    A direct connection from an untrusted address, and one without a header, are refused.
    """
    be = CaptureBackend()
    sport = harness.free_port()
    text = ("[listener lb]\nlisten = 127.0.0.1:%d\nroutes = main\nproxy_protocol = accept\n"
            "trusted_proxies = 127.0.0.1/32\n[routes main]\ndefault = 127.0.0.1:%d\n"
            % (sport, be.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "accept", text)
    hport = harness.free_port()
    h = haproxy(ctx.tmp, "send",
                "frontend fe\n    bind 127.0.0.1:%d\n    default_backend be\n"
                "backend be\n    server s 127.0.0.1:%d send-proxy-v2\n" % (hport, sport))
    try:
        hello = harness.client_hello("through.lb")
        s = socket.socket()
        s.bind(("127.0.0.9", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", hport))
        cport = s.getsockname()[1]
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        data = harness.recv_all(s, time.monotonic() + 10)
        s.close()
        check(data.startswith(b"GOT"), "no reply through HAProxy and sniroute")
        r = be.next_result(10, "backend")
        check(r[1] == hello, "backend got %s, want the hello alone" % harness.short(r[1]))
        e = d.wait_log(lambda e: e.get("sni") == "through.lb", "proxied connection")
        check(e.get("client") == "127.0.0.9:%d" % cport and e.get("outcome") == "ok",
              "sniroute logged %s" % e["_raw"])
        # Untrusted source: refused, whatever it sends.
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", sport))
        s.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + hello)
        how, got = harness.wait_close(s, 5)
        s.close()
        check(not got, "untrusted source got %s" % harness.short(got))
        d.wait_log(lambda e: e.get("outcome") == "untrusted_proxy", "untrusted source")
        # Trusted source without a header: refused too.
        check(not ask(sport, hello).startswith(b"GOT"), "a header-less connection was routed")
        d.wait_log(lambda e: e.get("outcome") == "proxy_invalid", "missing header")
        check(be.results.empty(), "a refused connection reached the backend")
        check(d.stop() == 0 and d.sanitizer_report() is None, "daemon exit")
        return "logged client 127.0.0.9:%d" % cport
    finally:
        d.stop()
        h.stop()
        be.stop()


def case_health_check(ctx):
    """health_check = 200ms: a server that stops listening is reported failing and gets no
    connection attempt (no connect failure is counted while it is down), and comes back
    when it listens again. Fails if sniroute keeps trying it, or never brings it back."""
    import promtext
    a = CaptureBackend()
    b = CaptureBackend()
    b_port = b.port
    text = ("[sniroute]\nadmin = 127.0.0.1:0\n[listener https]\nlisten = 127.0.0.1:0\n"
            "routes = main\n[routes main]\ndefault = apps\n[upstream apps]\n"
            "server = 127.0.0.1:%d\nserver = 127.0.0.1:%d\nhealth_check = 200ms\n"
            % (a.port, b_port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "health", text)
    try:
        _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
        aport = int(m.group(1))

        def failures():
            r = harness.run(["curl", "-s", "--max-time", "5",
                             "http://127.0.0.1:%d/metrics" % aport])
            fams = promtext.parse(harness.txt(r.stdout))
            total = 0.0
            for fam in fams.values():
                for name, labels, v, _ in fam.samples:
                    if name == "sniroute_upstream_connect_failures_total":
                        total += v
            return total

        hello = harness.client_hello("health.test")
        b.stop()  # b no longer listens
        d.proc.wait_line("stderr", r"server 127\.0\.0\.1:%d fails its health check" % b_port, 5)
        f0 = failures()
        for _ in range(10):
            check(ask(d.port(), hello).startswith(b"GOT"), "not routed while b is down")
        check(failures() == f0, "sniroute tried the server its health check marked down")
        got = 0
        while not a.results.empty():
            r = a.results.get_nowait()
            got += r[0] == "ok" and r[1] == hello  # health probes connect and send nothing
        check(got == 10, "a took %d of the 10 connections" % got)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", b_port))
        sock.listen(16)
        d.proc.wait_line("stderr", r"server 127\.0\.0\.1:%d passes its health check" % b_port,
                         5)
        sock.close()
        return "down and back up, no connect attempt while down"
    finally:
        d.stop()
        a.stop()


CASES = [case_pool_retries_and_spreads, case_health_check, case_source_hash_sticks, case_send_v1, case_send_v2,
         case_accept_behind_haproxy]


if __name__ == "__main__":
    if shutil.which("haproxy") is None:
        print("SKIP proxyproto: haproxy is not installed (apt-get install haproxy)")
        sys.exit(77)
    harness.run_suite(CASES)
