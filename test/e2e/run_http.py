#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""protocol = http through the real daemon: plain HTTP/1.x routed by Host (port, case and
a trailing dot ignored, absolute-form honoured) to real HTTP servers (Python's
http.server), 421 for a host the map does not route and 400 for what is not HTTP, curl as
the client; and keep-alive: a later request on the same connection for a host routed
elsewhere is never served by the first backend (the connection is closed instead).

    run_http.py --sniroute build/sniroute
"""

import http.server
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402


class Site:
    """An HTTP/1.1 keep-alive server answering "<name> <path>" and counting requests."""

    def __init__(self, name):
        site = self
        self.name = name
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.reply()

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(n)
                self.reply(body)

            def reply(self, body=b""):
                site.requests.append((self.command, self.path, self.headers.get("Host"), body))
                out = ("%s %s %d" % (site.name, self.path, len(body))).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def curl(port, host, path="/", extra=()):
    r = harness.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10",
                     "--resolve", "%s:%d:127.0.0.1" % (host, port)] + list(extra) +
                    ["http://%s:%d%s" % (host, port, path)])
    body, _, code = harness.txt(r.stdout).rpartition("\n")
    return int(code or 0), body


def read_response(s):
    """One HTTP response with a Content-Length, or b'' if the connection closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(4096)
        if not b:
            return data
        data += b
    head, _, rest = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        b = s.recv(4096)
        if not b:
            break
        rest += b
    return head + b"\r\n\r\n" + rest


def case_routes_by_host(ctx):
    """curl reaches each site by its Host; 421 and 400 are real HTTP answers."""
    a, b = Site("site-a"), Site("site-b")
    text = ("[listener web]\nlisten = 127.0.0.1:0\nprotocol = http\nroutes = main\n"
            "[routes main]\na.test = 127.0.0.1:%d\n*.b.test = 127.0.0.1:%d\n" % (a.port, b.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "http", text)
    try:
        port = d.port("web")
        check(curl(port, "a.test", "/x") == (200, "site-a /x 0"), "a.test: %r"
              % (curl(port, "a.test", "/x"),))
        check(curl(port, "www.b.test")[1].startswith("site-b"), "www.b.test not on site-b")
        check(curl(port, "A.TEST.")[1].startswith("site-a"), "case and trailing dot")
        check(curl(port, "nowhere.test")[0] == 421, "unrouted host: %r"
              % (curl(port, "nowhere.test"),))
        with harness.connect(port) as s:
            s.sendall(b"GET http://x.b.test/abs HTTP/1.1\r\nHost: x.b.test\r\n\r\n")
            resp = read_response(s)
        check(resp.endswith(b"site-b http://x.b.test/abs 0") or b"site-b" in resp,
              "absolute-form: %s" % harness.short(resp))
        with harness.connect(port) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            resp = read_response(s)
        check(resp.startswith(b"HTTP/1.1 400"), "TLS on an HTTP listener: %s"
              % harness.short(resp))
        return None
    finally:
        d.stop()
        a.stop()
        b.stop()


def case_keep_alive_never_crosses_hosts(ctx):
    """On one connection: two requests for a.test are both answered by site-a, a chunked
    POST passes whole, and a third request for b.test is never served by site-a (nor
    anyone): the connection is closed and the log says host_changed."""
    a, b = Site("site-a"), Site("site-b")
    text = ("[listener web]\nlisten = 127.0.0.1:0\nprotocol = http\nroutes = main\n"
            "[routes main]\na.test = 127.0.0.1:%d\nb.test = 127.0.0.1:%d\n" % (a.port, b.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "keepalive", text)
    try:
        mark = d.mark()
        with harness.connect(d.port("web")) as s:
            s.sendall(b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
            check(read_response(s).endswith(b"site-a /1 0"), "first request")
            s.sendall(b"POST /2 HTTP/1.1\r\nHost: a.test:80\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"4\r\nGET \r\n1c\r\n/ HTTP/1.1\r\nHost: b.test\r\n\r\n\r\n0\r\n\r\n")
            check(read_response(s).endswith(b"site-a /2 32"), "chunked POST on the same host")
            s.sendall(b"GET /3 HTTP/1.1\r\nHost: b.test\r\n\r\n")
            how, data = harness.wait_close(s, 5)
            check(data == b"", "the request for b.test got an answer: %s" % harness.short(data))
        time.sleep(0.2)
        check([r[1] for r in a.requests] == ["/1", "/2"], "site-a served %s" % a.requests)
        check(b.requests == [], "site-b got %s through a connection routed to site-a"
              % b.requests)
        e = d.wait_log(lambda e: e.get("sni") == "a.test", "the keep-alive connection",
                       start=mark)
        check(e.get("outcome") == "host_changed", "log: %s" % e["_raw"])
        return None
    finally:
        d.stop()
        a.stop()
        b.stop()


if __name__ == "__main__":
    harness.run_suite([case_routes_by_host, case_keep_alive_never_crosses_hosts])
