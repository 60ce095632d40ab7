#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Access rules, allow and deny (issue 15), through the real daemon with real clients on
loopback addresses 127.0.0.1, 127.0.0.2, 127.0.0.3 and ::1:

- TLS: a listener's deny refuses at accept, before any byte is read (the client reads a
  fatal access_denied alert, 49, without sending anything); an upstream's allow lets its
  clients through with the backend's certificate checked (openssl s_client
  -verify_return_error and curl, against the test CA) and refuses the others with the alert
  in the client's own record version; no refused client reaches a backend (accepts
  counted); the access log says outcome=denied rule=...; sniroute_denied_total counts by
  rule;
- HTTP: 403 with Connection: close, and on a keep-alive connection the response owed for
  the request before the refused one arrives whole first;
- behind HAProxy's send-proxy-v2: the rules see the client the PROXY header names;
- QUIC: raw Initial datagrams (test/fixtures/quic) from chosen addresses: a refused flow's
  datagrams reach no upstream, it is logged once and its retransmit is dropped as refused;
- reload: new rules for new connections, an open connection untouched;
- explain --from.

    run_access.py --sniroute build/sniroute [-k FILTER]
"""

import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import EchoBackend, Fail, check  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures", "quic")


class TlsBackend(harness._Acceptor):
    """A TLS server (Python's ssl, a leaf from the test CA) that counts accepted TCP
    connections and answers one HTTP request with 'hello from NAME'."""

    def __init__(self, pki, name):
        cert, key = pki.leaf(name, ["DNS:" + name])
        self.name = name
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.n_accepts = 0
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn):
        with self.lock:
            self.n_accepts += 1
        conn.settimeout(10)
        with self.ctx.wrap_socket(conn, server_side=True) as s:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return
                data += chunk
            body = b"hello from " + self.name.encode() + b"\n"
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (len(body), body))
            try:
                s.unwrap()  # close_notify: s_client treats a bare EOF as an error
            except (ssl.SSLError, OSError):
                pass

    def accepts(self):
        with self.lock:
            return self.n_accepts


class HttpBackend(harness._Acceptor):
    """Plain HTTP/1.1 with keep-alive: each request gets 200 and 'hello from NAME'."""

    def __init__(self, name):
        self.name = name
        self.n_accepts = 0
        self.n_requests = 0
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn):
        with self.lock:
            self.n_accepts += 1
        conn.settimeout(10)
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            _, data = data.split(b"\r\n\r\n", 1)
            with self.lock:
                self.n_requests += 1
            body = b"hello from " + self.name.encode() + b"\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def counts(self):
        with self.lock:
            return self.n_accepts, self.n_requests


def alert(version):
    """The fatal access_denied alert record (RFC 8446 6.2, description 49)."""
    return bytes([21, version >> 8, version & 0xff, 0, 2, 2, 49])


def raw_tls(port, src, send=None, host="127.0.0.1", family=socket.AF_INET):
    """Connect from <src>, send <send> (None: nothing), read what comes until the close."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(10)
    s.connect((host, port))
    if send is not None:
        s.sendall(send)
        s.shutdown(socket.SHUT_WR)
    data = harness.recv_all(s, time.monotonic() + 10)
    s.close()
    return data


def s_client(ca, port, name):
    """openssl s_client from 127.0.0.1, the backend's certificate checked; returns (status,
    output)."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
                        name, "-CAfile", ca, "-verify_return_error", "-verify_hostname", name,
                        "-quiet", "-ign_eof"],
                       input=b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % name.encode(),
                       capture_output=True, timeout=20)
    return r.returncode, harness.txt(r.stdout) + harness.txt(r.stderr)


def curl(args, timeout=20):
    r = subprocess.run(["curl", "-sS", "--max-time", "10"] + args, capture_output=True,
                       timeout=timeout)
    return r.returncode, harness.txt(r.stdout), harness.txt(r.stderr)


def admin_port(d):
    _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
    return int(m.group(1))


def metric(aport, name, **labels):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % aport, timeout=5) as r:
        fams = promtext.parse(r.read())
    try:
        return promtext.value(fams, name, **labels)
    except KeyError:
        return 0


def stop_clean(d):
    status = d.stop()
    report = d.sanitizer_report()
    check(report is None, "sanitizer: %s" % report)
    check(status == 0, "daemon exit status %s; stderr: %s" % (status, d.proc.tail("stderr")))


def case_tls(ctx):
    """Listener deny 127.0.0.3; upstream 'secure' allows 127.0.0.1 and ::1 only; 'open' has
    no rules."""
    secure = TlsBackend(ctx.pki, "a.test")
    open_ = TlsBackend(ctx.pki, "b.test")
    text = ("[sniroute]\nadmin = 127.0.0.1:0\n"
            "[listener tls]\nlisten = 127.0.0.1:0\nlisten = [::1]:0\nroutes = main\n"
            "deny = 127.0.0.3\n"
            "[routes main]\na.test = secure\nb.test = open\n"
            "[upstream secure]\nserver = 127.0.0.1:%d\nallow = 127.0.0.1, ::1\n"
            "[upstream open]\nserver = 127.0.0.1:%d\n" % (secure.port, open_.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "tls", text, n_sockets=2)
    try:
        aport = admin_port(d)
        port = d.port("tls")
        port6 = [p for h, p in d.addrs["tls"] if ":" in h][0]
        # Allowed: openssl s_client (from 127.0.0.1) checks the backend's certificate.
        rc, out = s_client(ctx.pki.ca, port, "a.test")
        check(rc == 0 and "hello from a.test" in out,
              "s_client to a.test: status %d: %s" % (rc, harness.short(out.encode(), 300)))
        # Allowed over IPv6 (::1), curl verifying against the CA.
        rc, body, err = curl(["--cacert", ctx.pki.ca, "--resolve", "a.test:%d:[::1]" % port6,
                              "https://a.test:%d/" % port6])
        check(rc == 0 and body == "hello from a.test\n", "curl over ::1: %d %s %s"
              % (rc, body, err))
        check(secure.accepts() == 2, "secure backend accepts: %d, want 2" % secure.accepts())
        # 127.0.0.2: the open upstream lets it through, the secure one refuses it.
        rc, body, err = curl(["--interface", "127.0.0.2", "--cacert", ctx.pki.ca, "--resolve",
                              "b.test:%d:127.0.0.1" % port, "https://b.test:%d/" % port])
        check(rc == 0 and body == "hello from b.test\n", "curl 127.0.0.2 to b.test: %d %s %s"
              % (rc, body, err))
        rc, body, err = curl(["--interface", "127.0.0.2", "--cacert", ctx.pki.ca, "--resolve",
                              "a.test:%d:127.0.0.1" % port, "https://a.test:%d/" % port])
        check(rc != 0 and body == "", "curl 127.0.0.2 to a.test was let through: %d %s"
              % (rc, body))
        check("access denied" in err.lower() or "alert" in err.lower(),
              "curl 127.0.0.2 to a.test: %s" % err)
        # The alert byte by byte, in the record version of the client's hello (TLS 1.2-style
        # 0x0301 record from OpenSSL).
        hello = harness.client_hello("a.test")
        got = raw_tls(port, "127.0.0.2", hello)
        want = alert(struct.unpack(">H", hello[1:3])[0])
        check(got == want, "raw client 127.0.0.2 got %s, want %s" % (got.hex(), want.hex()))
        e = d.wait_log(lambda e: e.get("rule") == "upstream:secure:not_allowed",
                       "upstream refusal")
        check(e.get("outcome") == "denied" and e.get("client", "").startswith("127.0.0.2:")
              and e.get("sni") == "a.test", "log: %s" % e["_raw"])
        # 127.0.0.3: refused at accept; it reads the alert without sending a byte.
        got = raw_tls(port, "127.0.0.3")
        check(got == alert(0x0303), "127.0.0.3 got %s before sending, want %s"
              % (got.hex(), alert(0x0303).hex()))
        rc, body, err = curl(["--interface", "127.0.0.3", "--cacert", ctx.pki.ca, "--resolve",
                              "b.test:%d:127.0.0.1" % port, "https://b.test:%d/" % port])
        check(rc != 0 and body == "", "curl 127.0.0.3 was let through: %d %s" % (rc, body))
        e = d.wait_log(lambda e: e.get("rule") == "listener:tls:deny:127.0.0.3/32",
                       "listener refusal")
        check(e.get("outcome") == "denied" and e.get("bytes_in") == "0"
              and e.get("bytes_out") == "7", "log: %s" % e["_raw"])
        check(secure.accepts() == 2 and open_.accepts() == 1,
              "a refused client reached a backend: accepts %d, %d"
              % (secure.accepts(), open_.accepts()))
        n_listener = metric(aport, "sniroute_denied_total", rule="listener:tls:deny:127.0.0.3/32")
        n_upstream = metric(aport, "sniroute_denied_total", rule="upstream:secure:not_allowed")
        check(n_listener == 2 and n_upstream == 2,
              "sniroute_denied_total: listener %s, upstream %s; want 2, 2"
              % (n_listener, n_upstream))
        n = metric(aport, "sniroute_connections_closed_total", listener="tls", outcome="denied")
        check(n == 4, "closed{outcome=denied} = %s, want 4" % n)
        stop_clean(d)
        return "alert 49 at accept and after the hello; %d denials counted" % n
    finally:
        d.stop()
        secure.stop()
        open_.stop()


def read_response(s, deadline):
    """One HTTP/1.1 response with Content-Length from <s>: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise Fail("closed before a response head: %s" % harness.short(data))
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    return head, rest[:n]


def case_http(ctx):
    """protocol = http: upstream 'staff' allows 127.0.0.2; a refused request gets 403, after
    the response owed on its keep-alive connection."""
    staff = HttpBackend("staff")
    public = HttpBackend("public")
    text = ("[listener web]\nlisten = 127.0.0.1:0\nroutes = main\nprotocol = http\n"
            "[routes main]\nstaff.test = staff\npublic.test = 127.0.0.1:%d\n"
            "[upstream staff]\nserver = 127.0.0.1:%d\nallow = 127.0.0.2\n"
            % (public.port, staff.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "http", text)
    try:
        port = d.port("web")
        rc, body, err = curl(["--interface", "127.0.0.2", "-H", "Host: staff.test",
                              "http://127.0.0.1:%d/" % port])
        check(rc == 0 and body == "hello from staff\n", "curl 127.0.0.2: %d %s %s"
              % (rc, body, err))
        rc, body, err = curl(["--interface", "127.0.0.3", "-i", "-H", "Host: staff.test",
                              "http://127.0.0.1:%d/" % port])
        check(rc == 0 and body.startswith("HTTP/1.1 403 Forbidden")
              and "connection: close" in body.lower(), "curl 127.0.0.3: %d %s %s"
              % (rc, body, err))
        check(staff.counts() == (1, 1), "staff backend saw %s, want 1 connection, 1 request"
              % (staff.counts(),))
        # Keep-alive from 127.0.0.3: public first (answered), then staff (403, then close).
        s = socket.socket()
        s.bind(("127.0.0.3", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /1 HTTP/1.1\r\nHost: public.test\r\n\r\n")
        head, body = read_response(s, time.monotonic() + 10)
        check(head.startswith(b"HTTP/1.1 200") and body == b"hello from public\n",
              "first response: %s %s" % (head, body))
        s.sendall(b"GET /2 HTTP/1.1\r\nHost: staff.test\r\n\r\n")
        rest = harness.recv_all(s, time.monotonic() + 10)
        s.close()
        check(rest.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"Connection: close" in rest,
              "second response: %s" % harness.short(rest))
        # Pipelined: both heads at once; the first one's response still comes whole.
        s = socket.socket()
        s.bind(("127.0.0.3", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /1 HTTP/1.1\r\nHost: public.test\r\n\r\n"
                  b"GET /2 HTTP/1.1\r\nHost: staff.test\r\n\r\n")
        all_ = harness.recv_all(s, time.monotonic() + 10)
        s.close()
        check(all_.startswith(b"HTTP/1.1 200 OK\r\n") and b"hello from public\n" in all_
              and b"HTTP/1.1 403 Forbidden\r\n" in all_
              and all_.index(b"hello from public") < all_.index(b"403 Forbidden"),
              "pipelined: %s" % harness.short(all_, 300))
        check(staff.counts() == (1, 1), "a refused request reached staff: %s"
              % (staff.counts(),))
        deadline = time.monotonic() + 8
        while True:
            lines = [e for e in d.logs() if e.get("outcome") == "denied"]
            if len(lines) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        check(len(lines) == 3 and all(e.get("rule") == "upstream:staff:not_allowed"
                                      for e in lines), "denied lines: %s"
              % [e["_raw"] for e in lines])
        stop_clean(d)
        return "403 after the owed response, staff saw 1 request"
    finally:
        d.stop()
        staff.stop()
        public.stop()


def haproxy(tmp, name, body):
    path = os.path.join(tmp, name + ".cfg")
    with open(path, "w") as f:
        f.write("global\n    log stdout format raw local0\ndefaults\n    mode tcp\n"
                "    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n"
                + body)
    proc = harness.Proc(["haproxy", "-db", "-f", path], "haproxy(" + name + ")")
    time.sleep(0.5)
    check(proc.p.poll() is None, "haproxy %s did not start: %s" % (name, proc.tail("stderr")))
    return proc


def case_behind_haproxy(ctx):
    """client -> HAProxy send-proxy-v2 -> sniroute (accept; listener deny 127.0.0.3, upstream
    allow 127.0.0.2): the rules see the client the header names, not HAProxy."""
    if shutil.which("haproxy") is None:
        return "skipped: haproxy not installed"
    be = TlsBackend(ctx.pki, "a.test")
    sport = harness.free_port()
    text = ("[listener lb]\nlisten = 127.0.0.1:%d\nroutes = main\nproxy_protocol = accept\n"
            "trusted_proxies = 127.0.0.1\ndeny = 127.0.0.3\n"
            "[routes main]\na.test = secure\n"
            "[upstream secure]\nserver = 127.0.0.1:%d\nallow = 127.0.0.2\n" % (sport, be.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "lb", text)
    hport = harness.free_port()
    h = haproxy(ctx.tmp, "front",
                "frontend fe\n    bind 127.0.0.1:%d\n    default_backend be\n"
                "backend be\n    server s 127.0.0.1:%d send-proxy-v2\n" % (hport, sport))
    try:
        # 127.0.0.2: through, certificate checked by curl.
        rc, body, err = curl(["--interface", "127.0.0.2", "--cacert", ctx.pki.ca, "--resolve",
                              "a.test:%d:127.0.0.1" % hport, "https://a.test:%d/" % hport])
        check(rc == 0 and body == "hello from a.test\n", "curl 127.0.0.2 via haproxy: %d %s %s"
              % (rc, body, err))
        # 127.0.0.3: the listener's deny, once the header is read: the alert, nothing sent.
        got = raw_tls(hport, "127.0.0.3", harness.client_hello("a.test"))
        check(got == alert(0x0303), "127.0.0.3 via haproxy got %s" % got.hex())
        # 127.0.0.1 (HAProxy's own address is trusted, but as a client it is not allowed).
        hello = harness.client_hello("a.test")
        got = raw_tls(hport, "127.0.0.1", hello)
        check(got == alert(struct.unpack(">H", hello[1:3])[0]), "127.0.0.1 via haproxy got %s"
              % got.hex())
        check(be.accepts() == 1, "backend accepts %d, want 1" % be.accepts())
        d.wait_log(lambda e: e.get("rule") == "listener:lb:deny:127.0.0.3/32"
                   and e.get("client", "").startswith("127.0.0.3:"), "listener refusal")
        d.wait_log(lambda e: e.get("rule") == "upstream:secure:not_allowed"
                   and e.get("client", "").startswith("127.0.0.1:"), "upstream refusal")
        stop_clean(d)
        return "rules on the proxied client"
    finally:
        d.stop()
        h.stop()
        be.stop()


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        data = f.read()
    out, i = [], 0
    while i < len(data):
        n = struct.unpack(">H", data[i:i + 2])[0]
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


def case_quic(ctx):
    """protocol = quic, raw Initials ('quic.example') from 127.0.0.2/.3/.4: listener deny
    127.0.0.3, upstream allow 127.0.0.2."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.2)
    text = ("[sniroute]\nadmin = 127.0.0.1:0\n"
            "[listener h3]\nlisten = 127.0.0.1:0\nroutes = main\nprotocol = quic\n"
            "deny = 127.0.0.3\n[routes main]\nquic.example = q\n"
            "[upstream q]\nserver = 127.0.0.1:%d\nallow = 127.0.0.2\n" % sink.getsockname()[1])
    d = harness.Sniroute(ctx.binary, ctx.tmp, "quic", text)
    initial = fixture("gtlsclient-v1.bin")[0]

    def sink_count(wait):
        n = 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                sink.recvfrom(65535)
                n += 1
            except socket.timeout:
                pass
        return n

    try:
        aport = admin_port(d)
        port = d.port("h3")
        socks = {}
        for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            socks[src] = s
        socks["127.0.0.2"].sendto(initial, ("127.0.0.1", port))
        check(sink_count(1.0) == 1, "the allowed client's Initial did not reach the upstream")
        for src in ("127.0.0.3", "127.0.0.4"):
            socks[src].sendto(initial, ("127.0.0.1", port))
        d.wait_log(lambda e: e.get("rule") == "listener:h3:deny:127.0.0.3/32"
                   and e.get("outcome") == "denied", "QUIC listener refusal")
        d.wait_log(lambda e: e.get("rule") == "upstream:q:not_allowed"
                   and e.get("outcome") == "denied" and e.get("sni") == "quic.example",
                   "QUIC upstream refusal")
        # Retransmits of refused flows: dropped as refused, no new log line.
        mark = d.mark()
        before = metric(aport, "sniroute_quic_datagrams_dropped_total", listener="h3",
                        reason="refused")
        for src in ("127.0.0.3", "127.0.0.4"):
            socks[src].sendto(initial, ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after = metric(aport, "sniroute_quic_datagrams_dropped_total", listener="h3",
                           reason="refused")
            if after >= before + 2:
                break
            time.sleep(0.05)
        check(after == before + 2, "refused drops %s -> %s, want +2" % (before, after))
        check(sink_count(0.5) == 0, "a refused client's datagram reached the upstream")
        check(not d.logs(mark), "a retransmit was logged again: %s"
              % [e["_raw"] for e in d.logs(mark)])
        n = metric(aport, "sniroute_denied_total", rule="listener:h3:deny:127.0.0.3/32")
        check(n == 1, "sniroute_denied_total listener = %s, want 1 (the flow; its retransmit "
              "is a refused drop)" % n)
        for s in socks.values():
            s.close()
        stop_clean(d)
        return "refused flows dropped and remembered"
    finally:
        d.stop()
        sink.close()


def reload(d, text, start_line):
    with open(d.path, "w") as f:
        f.write(text)
    os.kill(d.pid, signal.SIGHUP)
    i, m = d.proc.wait_line("stderr", r"reloaded|reload failed", 10, start_line)
    check(m.group(0) == "reloaded", "reload: %s" % m.group(0))
    return i + 1


def case_reload(ctx):
    """A deny added by a reload refuses new connections from 127.0.0.3 but leaves its open
    one relaying; removing it lets 127.0.0.3 in again."""
    be = EchoBackend()
    base = ("[listener tls]\nlisten = 127.0.0.1:%d\nroutes = main\n%s"
            "[routes main]\ndefault = 127.0.0.1:%d\n")
    port = harness.free_port()
    d = harness.Sniroute(ctx.binary, ctx.tmp, "reload", base % (port, "", be.port))
    try:
        hello = harness.client_hello("r.test")
        s = socket.socket()
        s.bind(("127.0.0.3", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(hello)
        got = b""
        while len(got) < len(hello):
            got += s.recv(65536)
        check(got == hello, "echo before the reload")
        line = reload(d, base % (port, "deny = 127.0.0.3\n", be.port), 0)
        check(raw_tls(port, "127.0.0.3") == alert(0x0303), "new 127.0.0.3 connection not refused")
        s.sendall(b"still here")
        got = b""
        while len(got) < 10:
            got += s.recv(65536)
        check(got == b"still here", "the open connection stopped relaying: %s" % got)
        echoed = raw_tls(port, "127.0.0.2", hello)
        check(echoed == hello, "127.0.0.2 after the reload got %s" % harness.short(echoed))
        reload(d, base % (port, "", be.port), line)
        echoed = raw_tls(port, "127.0.0.3", hello)
        check(echoed == hello, "127.0.0.3 after the deny went: %s" % harness.short(echoed))
        s.close()
        stop_clean(d)
        return "open connection kept; rule on and off"
    finally:
        d.stop()
        be.stop()


def case_explain_from(ctx):
    path = os.path.join(ctx.tmp, "explain.ini")
    with open(path, "w") as f:
        f.write("[listener tls]\nlisten = 127.0.0.1:0\nroutes = main\ndeny = 203.0.113.0/24\n"
                "[routes main]\na.test = secure\n[upstream secure]\nserver = 127.0.0.1:1\n"
                "allow = 192.0.2.0/24\n")
    r = harness.run([ctx.binary, "explain", "-c", path, "--from", "192.0.2.9", "a.test"])
    out = harness.txt(r.stdout)
    check(r.returncode == 0 and "access: allowed" in out, "allowed: %d %s" % (r.returncode, out))
    r = harness.run([ctx.binary, "explain", "-c", path, "--from", "2001:db8::1", "a.test"])
    out = harness.txt(r.stdout)
    check(r.returncode == 1 and "access: denied, rule=upstream:secure:not_allowed" in out,
          "not allowed: %d %s" % (r.returncode, out))
    r = harness.run([ctx.binary, "explain", "-c", path, "--from", "203.0.113.5", "a.test"])
    out = harness.txt(r.stdout)
    check(r.returncode == 1 and "rule=listener:tls:deny:203.0.113.0/24" in out
          and "%s:4" % path in out, "denied: %d %s" % (r.returncode, out))
    r = harness.run([ctx.binary, "explain", "-c", path, "--from", "nope", "a.test"])
    check(r.returncode == 2, "bad address: %d" % r.returncode)
    r = harness.run([ctx.binary, "-t", "-c", path])
    check(r.returncode == 0, "sniroute -t: %d %s" % (r.returncode, harness.txt(r.stderr)))
    return "allowed, not allowed, denied, bad address"


CASES = [case_tls, case_http, case_behind_haproxy, case_quic, case_reload, case_explain_from]


def make_ctx(binary, tmp, args):
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    ctx.pki = harness.PKI(tmp)
    return ctx


if __name__ == "__main__":
    harness.run_suite(CASES, make_ctx=make_ctx)
