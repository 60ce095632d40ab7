#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ALPN-conditioned routes ("NAME[PROTO] = upstream") through the real daemon, with real
ClientHellos from OpenSSL (Python's ssl): a TLS-ALPN-01 challenge (acme-tls/1) goes to the
certificate manager while h2 and http/1.1 for the same name go to the web server.

    run_alpn.py --sniroute build/sniroute
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CaptureBackend, check  # noqa: E402


def case_alpn_routes(ctx):
    """Each hello must reach the backend its name and offered protocols select, the hello
    unchanged; the access log names the ALPN condition used. Fails on any misroute."""
    web, acme, grpc = CaptureBackend(), CaptureBackend(), CaptureBackend()
    text = ("[listener https]\nlisten = 127.0.0.1:0\nroutes = main\n[routes main]\n"
            "site.test = 127.0.0.1:%d\nsite.test[acme-tls/1] = 127.0.0.1:%d\n"
            "*.other.test[h2] = 127.0.0.1:%d\ndefault = 127.0.0.1:%d\n"
            % (web.port, acme.port, grpc.port, web.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "alpn", text)
    backends = {"web": web, "acme": acme, "grpc": grpc}
    cases = [
        ("site.test", ["acme-tls/1"], "acme", "acme-tls/1"),
        ("site.test", ["h2", "http/1.1"], "web", None),
        ("site.test", None, "web", None),
        ("x.other.test", ["http/1.1", "h2"], "grpc", "h2"),
        ("x.other.test", ["http/1.1"], "web", None),
        ("x.other.test", None, "web", None),
    ]
    try:
        for sni, alpn, want, cond in cases:
            hello = harness.client_hello(sni, alpn=alpn)
            mark = d.mark()
            with harness.connect(d.port()) as s:
                s.sendall(hello)
                s.shutdown(socket.SHUT_WR)
                reply = harness.recv_all(s, time.monotonic() + 10)
            check(reply.startswith(b"GOT"), "%s %s: no reply" % (sni, alpn))
            r = backends[want].next_result(10, "%s %s" % (sni, alpn))
            check(r[1] == hello, "%s %s: %s got %s" % (sni, alpn, want, harness.short(r[1])))
            e = d.wait_log(lambda e: e.get("sni") == sni, "%s %s" % (sni, alpn), start=mark)
            check(e.get("alpn") == cond, "%s %s: log says alpn=%s" % (sni, alpn, e.get("alpn")))
        for name, be in backends.items():
            check(be.results.empty(), "%s got a connection meant for another" % name)
        return None
    finally:
        d.stop()
        for be in backends.values():
            be.stop()


if __name__ == "__main__":
    harness.run_suite([case_alpn_routes])
