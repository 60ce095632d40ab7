#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""protocol = http through the real daemon: plain HTTP/1.x routed by Host (port, case and
a trailing dot ignored, absolute-form honoured) to real HTTP servers (Python's
http.server), 421 for a host the map does not route and 400 for what is not HTTP, curl as
the client; and keep-alive: a later request on the same connection for a host routed
elsewhere is never served by the first backend (the connection ends with a 421 after the
responses still owed). Upgrade and CONNECT switch the connection to a tunnel only when the
backend's response says so (101, 2xx to CONNECT): a backend that ignores the upgrade or
refuses the CONNECT leaves the next request checked (issue 11 items 1 and 5).

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
    """An HTTP/1.1 keep-alive server answering "<name> <path> <body length>" and recording
    each request. It ignores Upgrade headers (as most servers do for a path that does not
    take one), except that with <websocket> a request for /ws asking for websocket is
    answered 101 and the connection then echoes every byte. <connect>: "ok" answers CONNECT
    200 and echoes from then on, "deny" answers it 403 and goes on reading requests. A
    path starting /slow is answered after half a second, with a 300 KB body written in
    pieces."""

    def __init__(self, name, websocket=False, connect=None):
        site = self
        self.name = name
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.reply()

            def do_HEAD(self):
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

            def do_CONNECT(self):
                site.requests.append((self.command, self.path, self.headers.get("Host"), b""))
                if connect == "ok":
                    self.send_response(200, "Connection Established")
                    self.end_headers()
                    self.echo()
                    return
                out = b"CONNECT refused"
                self.send_response(403)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def echo(self):
                """The connection is a tunnel now: every byte comes back, until EOF."""
                self.wfile.flush()
                while True:
                    b = self.rfile.read1(65536)
                    if not b:
                        break
                    self.wfile.write(b)
                    self.wfile.flush()
                self.close_connection = True

            def reply(self, body=b""):
                site.requests.append((self.command, self.path, self.headers.get("Host"), body))
                tokens = [t.strip().lower() for t in self.headers.get("Connection", "").split(",")]
                if (websocket and self.path == "/ws" and "upgrade" in tokens
                        and self.headers.get("Upgrade", "").lower() == "websocket"):
                    self.send_response(101)
                    self.send_header("Upgrade", "websocket")
                    self.send_header("Connection", "Upgrade")
                    self.end_headers()
                    self.echo()
                    return
                if self.path.startswith("/slow"):
                    time.sleep(0.5)
                    big = (b"%s %s %d " % (site.name.encode(), self.path.encode(), len(body))
                           + b"x" * 300000)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(big)))
                    self.end_headers()
                    for i in range(0, len(big), 30000):
                        self.wfile.write(big[i:i + 30000])
                        self.wfile.flush()
                        time.sleep(0.01)
                    return
                out = ("%s %s %d" % (site.name, self.path, len(body))).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self):
        return [r[1] for r in self.requests]

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


class Client:
    """A raw connection with a read buffer, so that pipelined responses are taken one at a
    time."""

    def __init__(self, port):
        self.s = harness.connect(port)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, what):
        b = self.s.recv(65536)
        if not b:
            raise harness.Fail("connection closed while reading %s (have %s)"
                               % (what, harness.short(self.buf)))
        self.buf += b

    def exactly(self, n):
        while len(self.buf) < n:
            self._fill("%d bytes" % n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, is_head=False):
        """One response: (status, head, body). A 1xx comes alone, with an empty body."""
        while b"\r\n\r\n" not in self.buf:
            self._fill("a response head")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        if status < 200 or status in (204, 304) or is_head:
            n = 0
        return status, head, self.exactly(n)

    def refused(self, what):
        """The end of a connection whose next request sniroute refused: a 421 that closes
        the connection, then EOF."""
        status, head, _ = self.response()
        check(status == 421 and b"\r\nConnection: close" in head,
              "%s: a 421 with Connection: close, not %s" % (what, harness.short(head)))
        how, rest = harness.wait_close(self.s, 5)
        check(self.buf + rest == b"", "%s: bytes after the 421: %s" % (what, rest))


def http_daemon(ctx, name, sites):
    """sniroute with one HTTP listener routing each NAME of <sites> to its Site."""
    text = ("[listener web]\nlisten = 127.0.0.1:0\nprotocol = http\nroutes = main\n"
            "[routes main]\n" + "".join("%s = 127.0.0.1:%d\n" % (n, s.port)
                                        for n, s in sites.items()))
    return harness.Sniroute(ctx.binary, ctx.tmp, name, text)


def case_keep_alive_never_crosses_hosts(ctx):
    """On one connection: two requests for a.test are both answered by site-a, a chunked
    POST passes whole, and a third request for b.test is never served by site-a (nor
    anyone): the client gets a 421 that closes the connection, and the log says
    host_changed."""
    a, b = Site("site-a"), Site("site-b")
    d = http_daemon(ctx, "keepalive", {"a.test": a, "b.test": b})
    try:
        mark = d.mark()
        with Client(d.port("web")) as c:
            c.send(b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
            check(c.response()[2] == b"site-a /1 0", "first request")
            c.send(b"POST /2 HTTP/1.1\r\nHost: a.test:80\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"4\r\nGET \r\n1c\r\n/ HTTP/1.1\r\nHost: b.test\r\n\r\n\r\n0\r\n\r\n")
            check(c.response()[2] == b"site-a /2 32", "chunked POST on the same host")
            c.send(b"GET /3 HTTP/1.1\r\nHost: b.test\r\n\r\n")
            c.refused("the request for b.test")
        time.sleep(0.2)
        check(a.paths() == ["/1", "/2"], "site-a served %s" % a.requests)
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


WEBSOCKET = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
H2C = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
       b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")
SECRET = b"GET /secret HTTP/1.1\r\nHost: b.test\r\n\r\n"
# What a tunnel must carry untouched: every byte value, and a request for another host.
PAYLOAD = bytes(range(256)) + SECRET + b"\r\n\r\n\x00tail"


def case_upgrade_ignored(ctx):
    """Issue 11 item 1: websocket and h2c upgrade requests to a backend that ignores them
    (it answers 200 and keeps the connection). That 200 is no switch, so the next request
    on the connection is still checked: one for b.test, sent after the 200 or pipelined in
    the same write as the upgrade, gets a 421 after the 200 and reaches no backend; one
    for a.test is served. The same after a POST that asks to upgrade with Expect:
    100-continue: the interim 100 is not the answer."""
    a, b = Site("site-a"), Site("site-b")
    d = http_daemon(ctx, "ignored", {"a.test": a, "b.test": b})
    try:
        mark = d.mark()
        port = d.port("web")
        n_refused = 0
        for name, headers in (("websocket", WEBSOCKET), ("h2c", H2C)):
            upgrade = b"GET /up HTTP/1.1\r\nHost: a.test\r\n" + headers + b"\r\n"
            for pipelined in (False, True):
                what = "%s%s" % (name, " pipelined" if pipelined else "")
                with Client(port) as c:
                    c.send(upgrade + SECRET if pipelined else upgrade)
                    status, _, body = c.response()
                    check((status, body) == (200, b"site-a /up 0"),
                          "%s: the backend's answer: %d %s" % (what, status, body))
                    if not pipelined:
                        c.send(SECRET)
                    c.refused(what)
                    n_refused += 1
            with Client(port) as c:
                c.send(upgrade)
                check(c.response()[2] == b"site-a /up 0", "%s: first answer" % name)
                c.send(b"GET /again HTTP/1.1\r\nHost: a.test\r\n\r\n")
                check(c.response()[2] == b"site-a /again 0",
                      "%s: the same host after an ignored upgrade is served" % name)
        with Client(port) as c:
            c.send(b"POST /up HTTP/1.1\r\nHost: a.test\r\n" + WEBSOCKET +
                   b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            check(c.response()[0] == 100, "Expect: 100-continue: no 100 Continue")
            c.send(b"hello")
            check(c.response()[2] == b"site-a /up 5", "Expect: 100-continue: the final answer")
            c.send(SECRET)
            c.refused("after 100 Continue and 200")
            n_refused += 1
        time.sleep(0.2)
        check("/secret" not in a.paths(), "site-a served /secret: %s" % a.paths())
        check(b.requests == [], "site-b got %s" % b.requests)
        got = [e for e in d.wait_log_count(n_refused + 2, start=mark)
               if e.get("outcome") == "host_changed"]
        check(len(got) == n_refused, "%d host_changed lines, want %d" % (len(got), n_refused))
        return None
    finally:
        d.stop()
        a.stop()
        b.stop()


def case_upgrade_accepted(ctx):
    """A backend that accepts a websocket upgrade (101) and then echoes: the tunnel
    carries arbitrary bytes, a request for another host among them, whether they follow
    the 101 or are pipelined behind the upgrade request in the same write (held until the
    101 is seen), behind a 300 KB response and a HEAD pipelined before it, and after a 100
    Continue."""
    ws, b = Site("site-ws", websocket=True), Site("site-b")
    d = http_daemon(ctx, "accepted", {"ws.test": ws, "b.test": b})
    try:
        port = d.port("web")
        upgrade = b"GET /ws HTTP/1.1\r\nHost: ws.test\r\n" + WEBSOCKET + b"\r\n"
        # A large body first (spliced up to its end), then a HEAD (no body): the 101
        # must still be found right after them.
        earlier = (b"GET /slow HTTP/1.1\r\nHost: ws.test\r\n\r\n"
                   b"HEAD /h HTTP/1.1\r\nHost: ws.test\r\n\r\n")
        for what, first, then in (("after the 101", upgrade, PAYLOAD),
                                  ("pipelined", upgrade + PAYLOAD, b""),
                                  ("behind two requests", earlier + upgrade + PAYLOAD, b"")):
            with Client(port) as c:
                c.send(first)
                if first.startswith(earlier):
                    body = c.response()[2]
                    check(len(body) == 300016 and body.startswith(b"site-ws /slow 0 "),
                          "%s: /slow: %d bytes" % (what, len(body)))
                    check(c.response(is_head=True)[0] == 200, "%s: HEAD /h" % what)
                check(c.response()[0] == 101, "%s: no 101" % what)
                c.send(then)
                check(c.exactly(len(PAYLOAD)) == PAYLOAD, "%s: the echo differs" % what)
                c.send(b"more")
                check(c.exactly(4) == b"more", "%s: a second echo" % what)
        with Client(port) as c:
            c.send(b"POST /ws HTTP/1.1\r\nHost: ws.test\r\n" + WEBSOCKET +
                   b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            check(c.response()[0] == 100, "Expect: 100-continue: no 100 Continue")
            c.send(b"hello" + PAYLOAD)
            check(c.response()[0] == 101, "after 100 Continue: no 101")
            check(c.exactly(len(PAYLOAD)) == PAYLOAD, "after 100 Continue: the echo differs")
        check(b.requests == [], "site-b got %s" % b.requests)
        check("/secret" not in ws.paths(), "site-ws served /secret as HTTP")
        return None
    finally:
        d.stop()
        ws.stop()
        b.stop()


def case_connect(ctx):
    """CONNECT answered 200 is a tunnel (arbitrary bytes both ways, even pipelined behind
    the CONNECT); CONNECT answered 403 is not: the next request on the connection is HTTP
    again, served if its host goes to the same backend and refused with a 421 otherwise.
    A CONNECT with a body is refused (its framing is not defined)."""
    ok, deny, b = Site("site-ok", connect="ok"), Site("site-deny", connect="deny"), Site("site-b")
    d = http_daemon(ctx, "connect", {"ok.test": ok, "deny.test": deny, "b.test": b})
    try:
        port = d.port("web")
        for what, connect in (("ok", b"CONNECT ok.test:443 HTTP/1.1\r\nHost: ok.test:443\r\n\r\n"),
                              ("ok pipelined", b"")):
            with Client(port) as c:
                if connect:
                    c.send(connect)
                    check(c.response()[0] == 200, "%s: no 200" % what)
                    c.send(PAYLOAD)
                else:
                    c.send(b"CONNECT ok.test:443 HTTP/1.1\r\nHost: ok.test:443\r\n\r\n" + PAYLOAD)
                    check(c.response()[0] == 200, "%s: no 200" % what)
                check(c.exactly(len(PAYLOAD)) == PAYLOAD, "%s: the echo differs" % what)
        with Client(port) as c:
            c.send(b"CONNECT deny.test:443 HTTP/1.1\r\nHost: deny.test:443\r\n\r\n")
            status, _, body = c.response()
            check((status, body) == (403, b"CONNECT refused"), "deny: %d %s" % (status, body))
            c.send(b"GET /after HTTP/1.1\r\nHost: deny.test\r\n\r\n")
            check(c.response()[2] == b"site-deny /after 0", "deny: the next request")
            c.send(SECRET)
            c.refused("deny: a request for b.test")
        with Client(port) as c:
            c.send(b"CONNECT deny.test:443 HTTP/1.1\r\nHost: deny.test:443\r\n"
                   b"Content-Length: 5\r\n\r\nhello")
            status, head, _ = c.response()
            check(status == 400, "CONNECT with a body: %s" % harness.short(head))
        time.sleep(0.2)
        check(b.requests == [], "site-b got %s" % b.requests)
        check(deny.paths() == ["deny.test:443", "/after"], "site-deny saw %s" % deny.paths())
        return None
    finally:
        d.stop()
        ok.stop()
        deny.stop()
        b.stop()


def case_refusal_delivers_earlier(ctx):
    """Issue 11 item 5: a refused request does not cut what came before it. Pipelined
    a.test then b.test in one write: the a.test request is forwarded and its response
    reaches the client whole, then the 421. A slow POST with a 300 KB response and a
    request for b.test behind it: the client gets the complete response, then the 421."""
    a, b = Site("site-a"), Site("site-b")
    d = http_daemon(ctx, "refusal", {"a.test": a, "b.test": b})
    try:
        mark = d.mark()
        port = d.port("web")
        with Client(port) as c:
            c.send(b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n" + SECRET)
            check(c.response()[2] == b"site-a /1 0", "pipelined: the a.test response")
            c.refused("pipelined")
        with Client(port) as c:
            c.send(b"POST /slow HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello")
            time.sleep(0.2)
            c.send(SECRET)
            status, _, body = c.response()
            check(status == 200 and len(body) == 300015 and body.startswith(b"site-a /slow 5 "),
                  "slow POST: %d, %d bytes" % (status, len(body)))
            c.refused("slow POST")
        time.sleep(0.2)
        check(a.paths() == ["/1", "/slow"], "site-a served %s" % a.paths())
        check(b.requests == [], "site-b got %s" % b.requests)
        got = [e.get("outcome") for e in d.wait_log_count(2, start=mark)]
        check(got == ["host_changed", "host_changed"], "outcomes: %s" % got)
        return None
    finally:
        d.stop()
        a.stop()
        b.stop()


def case_deep_pipeline(ctx):
    """200 requests (GET and HEAD) in one write, more than sniroute matches at once: all
    answered in order, then a request for b.test behind them gets its 421 after the last
    response."""
    a, b = Site("site-a"), Site("site-b")
    d = http_daemon(ctx, "pipeline", {"a.test": a, "b.test": b})
    try:
        reqs = b"".join(b"%s /%d HTTP/1.1\r\nHost: a.test\r\n\r\n"
                        % (b"HEAD" if i % 3 == 0 else b"GET", i) for i in range(200))
        with Client(d.port("web")) as c:
            c.send(reqs + SECRET)
            for i in range(200):
                status, head, body = c.response(is_head=i % 3 == 0)
                want = b"" if i % 3 == 0 else b"site-a /%d 0" % i
                check(status == 200 and body == want, "response %d: %s" % (i, body))
            c.refused("after 200 responses")
        check(b.requests == [], "site-b got %s" % b.requests)
        return None
    finally:
        d.stop()
        a.stop()
        b.stop()


if __name__ == "__main__":
    harness.run_suite([case_routes_by_host, case_keep_alive_never_crosses_hosts,
                       case_upgrade_ignored, case_upgrade_accepted, case_connect,
                       case_refusal_delivers_earlier, case_deep_pipeline])
