#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Connection limits through the real daemon: max_connections (global and per listener)
and max_connections_per_ip. Over a limit a connection is closed at once, counted, and
summarized in a notice at most once a second; nothing else slows down.

    run_limits.py --sniroute build/sniroute [-k FILTER]
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CaptureBackend, Fail, check  # noqa: E402

NOTICE = "refused over limits"


def config(settings, listeners, backend_port):
    out = ["[sniroute]", "hello_timeout = 5s"] + settings
    for name, extra in listeners:
        out += ["[listener %s]" % name, "listen = 127.0.0.1:0", "routes = main"] + extra
    out += ["[routes main]", "default = 127.0.0.1:%d" % backend_port]
    return "\n".join(out) + "\n"


def hold(port, n, source="127.0.0.1"):
    """<n> connections that send nothing (counted from accept on)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def refused_at_once(port, source="127.0.0.1"):
    """True if a new connection is closed by the daemon within 2 s without a byte."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    try:
        how, data = harness.wait_close(s, 2)
        return how in ("eof", "reset") and not data
    except Fail:
        return False
    finally:
        s.close()


def routes(port, hello, backend, source="127.0.0.1"):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(hello)
    s.shutdown(socket.SHUT_WR)
    data = harness.recv_all(s, time.monotonic() + 10)
    s.close()
    r = backend.next_result(10, "backend")
    return r[0] == "ok" and r[1] == hello and data.startswith(b"GOT")


def finish(d):
    """The daemon must exit 0 on SIGTERM with no sanitizer report (counts released)."""
    status = d.stop()
    report = d.sanitizer_report()
    check(status == 0 and report is None, "%s exited %s; %s" % (d.name, status, report))


def close_all(socks):
    for s in socks:
        s.close()


def wait_admitted_again(port, hello, backend, source="127.0.0.1", timeout=5):
    """After clients left, the daemon must notice their EOF and admit again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if routes(port, hello, backend, source):
                return True
        except (OSError, Fail):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def case_global(ctx):
    """max_connections = 5: the sixth is closed at once; once one leaves, a new one routes.
    Fails if the sixth is served or the slot is not given back."""
    be = CaptureBackend()
    d = harness.Sniroute(ctx.binary, ctx.tmp, "global",
                         config(["max_connections = 5"], [("https", [])], be.port))
    try:
        socks = hold(d.port(), 5)
        time.sleep(0.2)
        check(refused_at_once(d.port()), "the sixth connection was not closed at once")
        close_all(socks)
        check(wait_admitted_again(d.port(), ctx.hello, be), "no connection admitted again")
        d.proc.wait_line("stderr", NOTICE + r".*: 1 max_connections", 5)
        finish(d)
        return None
    finally:
        d.stop()
        be.stop()


def case_listener(ctx):
    """A listener with max_connections = 3 refuses its fourth while another listener with
    no limit keeps accepting. Fails if either is wrong."""
    be = CaptureBackend()
    d = harness.Sniroute(ctx.binary, ctx.tmp, "listener",
                         config([], [("small", ["max_connections = 3"]), ("big", [])], be.port),
                         n_sockets=2)
    try:
        small, big = d.port("small"), d.port("big")
        socks = hold(small, 3) + hold(big, 10)
        time.sleep(0.2)
        check(refused_at_once(small), "the listener's fourth connection was served")
        check(routes(big, ctx.hello, be), "the other listener stopped serving")
        close_all(socks)
        check(wait_admitted_again(small, ctx.hello, be), "the small listener did not recover")
        finish(d)
        return None
    finally:
        d.stop()
        be.stop()


def case_per_ip(ctx):
    """max_connections_per_ip = 2: the third from 127.0.0.1 is closed at once while
    127.0.0.2 is still served. Fails if the limit counts all clients together or none."""
    be = CaptureBackend()
    d = harness.Sniroute(ctx.binary, ctx.tmp, "perip",
                         config(["max_connections_per_ip = 2"], [("https", [])], be.port))
    try:
        socks = hold(d.port(), 2, "127.0.0.1")
        time.sleep(0.2)
        check(refused_at_once(d.port(), "127.0.0.1"), "the third from 127.0.0.1 was served")
        check(routes(d.port(), ctx.hello, be, "127.0.0.2"), "127.0.0.2 was not served")
        close_all(socks)
        check(wait_admitted_again(d.port(), ctx.hello, be, "127.0.0.1"),
              "127.0.0.1 was not admitted again after its connections closed")
        finish(d)
        return None
    finally:
        d.stop()
        be.stop()


def case_flood_from_one_address(ctx):
    """2,000 connections from 127.0.0.9 against max_connections_per_ip = 10 while a client
    on 127.0.0.3 keeps routing: all of its requests succeed, the daemon stays up, and the
    refusals are summarized in at most one notice a second. Fails otherwise."""
    be = CaptureBackend()
    d = harness.Sniroute(ctx.binary, ctx.tmp, "flood",
                         config(["max_connections_per_ip = 10"], [("https", [])], be.port))
    try:
        port = d.port()
        held = hold(port, 10, "127.0.0.9")
        t0 = time.monotonic()
        refused = 0
        legit_ok = legit = 0
        for i in range(2000):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.bind(("127.0.0.9", 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                refused += 1
            except OSError:
                pass
            s.close()
            if i % 200 == 0:
                legit += 1
                legit_ok += routes(port, ctx.hello, be, "127.0.0.3")
            if time.monotonic() - t0 > 30:
                break
        elapsed = time.monotonic() - t0
        check(d.alive(), "daemon died under the flood")
        check(legit_ok == legit, "legitimate client: %d of %d routed" % (legit_ok, legit))
        time.sleep(1.2)
        notices = [x for x in d.proc.text("stderr").splitlines() if NOTICE in x]
        check(1 <= len(notices) <= int(elapsed) + 3,
              "%d refusal notices in %.1fs: not rate-limited" % (len(notices), elapsed))
        close_all(held)
        finish(d)
        return "%d connections in %.1fs, %d notices, legitimate %d/%d" % (
            refused, elapsed, len(notices), legit_ok, legit)
    finally:
        d.stop()
        be.stop()


def case_per_ip_behind_proxy(ctx):
    """proxy_protocol = accept with max_connections_per_ip = 2: the limit counts the client
    each PROXY header names, not the load balancer (127.0.0.1, which holds all six
    connections): the third from 192.0.2.1 is closed right after its header while
    192.0.2.2 is still routed, and a header without an address counts nowhere. Fails if
    the load balancer's address is counted or the named client is not."""
    be = CaptureBackend()
    d = harness.Sniroute(ctx.binary, ctx.tmp, "perip_proxy",
                         config(["max_connections_per_ip = 2"],
                                [("https", ["proxy_protocol = accept",
                                            "trusted_proxies = 127.0.0.1/32"])], be.port))

    def proxied(client):
        s = socket.socket()
        s.settimeout(10)
        s.connect(("127.0.0.1", d.port()))
        s.sendall(b"PROXY TCP4 %s 198.51.100.1 40000 443\r\n" % client.encode())
        return s

    try:
        held = [proxied("192.0.2.1"), proxied("192.0.2.1")]
        local = socket.socket()
        local.settimeout(10)
        local.connect(("127.0.0.1", d.port()))
        local.sendall(b"PROXY UNKNOWN\r\n")  # a health check: no address, not counted
        held.append(local)
        time.sleep(0.3)
        third = proxied("192.0.2.1")
        how, data = harness.wait_close(third, 3)
        third.close()
        check(how in ("eof", "reset") and not data,
              "the third connection from 192.0.2.1 was not closed after its header")
        try:
            s = proxied("192.0.2.2")
            s.sendall(ctx.hello)
            s.shutdown(socket.SHUT_WR)
            data = harness.recv_all(s, time.monotonic() + 10)
            s.close()
        except OSError as e:
            data = repr(e).encode()
        check(data.startswith(b"GOT"), "192.0.2.2 was not routed behind the same balancer: %r"
              % data[:60])
        d.proc.wait_line("stderr", NOTICE + r".*, 1 max_connections_per_ip", 5)
        close_all(held)
        finish(d)
        return None
    finally:
        d.stop()
        be.stop()


CASES = [case_global, case_listener, case_per_ip, case_per_ip_behind_proxy,
         case_flood_from_one_address]


def make_ctx(binary, tmp, args):
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    ctx.hello = harness.client_hello("limits.test")
    return ctx


if __name__ == "__main__":
    harness.run_suite(CASES, make_ctx)
