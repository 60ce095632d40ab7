#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests: the real sniroute daemon on loopback, between real TLS clients
(openssl s_client, curl, gnutls-cli, Python ssl) and real backends (openssl s_server,
Python ssl and plain-TCP servers), with certificates from a CA made for the run.

    python3 test/e2e/run_e2e.py --sniroute build/sniroute --example etc/sniroute.ini
    python3 test/e2e/run_e2e.py --sniroute build/sniroute -k route_   # only matching cases

Prints "PASS name", "FAIL name: why" or "SKIP name: why" per case, then "N passed, M failed";
exits 0 only if nothing failed. Each backend's certificate has its own CN (backend-exact,
backend-wild, backend-default, ...), so a wrong route fails an assertion. Ports are chosen
by the OS: backends bind port 0, sniroute listens on 127.0.0.1:0 and we read the port from
its "listening on" line. Every process here is started by us and stopped by PID."""

import argparse
import hashlib
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ALERT_UNRECOGNIZED_NAME, TS_RX, BulkBackend, CaptureBackend,  # noqa: E402
                     EchoBackend, Fail, HoldBackend, PKI, Proc, ResetBackend, Skip, SServer,
                     StallBackend, check, client_hello, conn_refused, connect, dead_port,
                     inflate_hello, parse_log_line, recv_all, reframe, reply_for, rss_kib,
                     run, short, stream_digest, tally_kernel_relay, tls_pump, txt, wait_close,
                     with_kernel_relay)

BULK_BYTES = 64 << 20
LISTEN_RX = re.compile(r"listening on (\[[^\]]+\]|[0-9.]+):(\d+) \(listener ([^)\s]+)\)")


# ---------------------------------------------------------------------------------------
# The daemon


class Daemon:
    """sniroute -c CONFIG in the foreground. Waits for one "listening on" line per
    listening socket; the access log is read from stdout."""

    def __init__(self, ctx, name, config, n_sockets):
        self.name = name
        self.stopped_status = None
        self.death_reported = False
        self.signalled = False
        self.path = os.path.join(ctx.tmp, name + ".ini")
        with open(self.path, "w") as f:
            f.write(with_kernel_relay(config))
        self.proc = Proc([ctx.sniroute, "-c", self.path], "sniroute(" + name + ")")
        ctx.daemons.append(self)
        self.addrs = {}
        idx = 0
        for _ in range(n_sockets):
            i, m = self.proc.wait_line("stderr", LISTEN_RX.pattern, 15, idx)
            idx = i + 1
            host = m.group(1).strip("[]")
            self.addrs.setdefault(m.group(3), []).append((host, int(m.group(2))))

    def port(self, listener="https", v6=False):
        for host, port in self.addrs.get(listener, []):
            if (":" in host) == v6:
                return port
        raise Fail("%s: no %s socket for listener %s in %s"
                   % (self.name, "IPv6" if v6 else "IPv4", listener, self.addrs))

    def mark(self):
        with self.proc.cond:
            return len(self.proc.lines["stdout"])

    def logs(self, start=0):
        with self.proc.cond:
            lines = list(self.proc.lines["stdout"][start:])
        return [parse_log_line(x) for x in lines if "outcome=" in x or "listener=" in x]

    def wait_log(self, pred, desc, start=0, timeout=8):
        """The first access-log line after <start> for which pred(entry) holds."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.logs(start):
                if pred(e):
                    return e
            if time.monotonic() > deadline:
                seen = [e["_raw"] for e in self.logs(start)][-6:]
                raise Fail("%s: no access-log line for %s within %ss; lines since: %s"
                           % (self.name, desc, timeout, seen or "(none)"))
            time.sleep(0.05)

    def wait_log_port(self, sock_port, desc, start=0, timeout=8):
        return self.wait_log(lambda e: e.get("client", "").endswith(":%d" % sock_port),
                             desc + " (client port %d)" % sock_port, start, timeout)

    def alive(self):
        return self.proc.alive()

    def term(self):
        self.signalled = True
        self.proc.p.send_signal(signal.SIGTERM)

    def stop(self):
        if self.stopped_status is None:
            self.stopped_status = self.proc.stop(signal.SIGTERM, timeout=15)
            tally_kernel_relay(self.name, self.proc.text("stderr"))
        return self.stopped_status


def expect_log(entry, **want):
    """Compare an access-log entry with <want>; a value may be a callable predicate."""
    bad = []
    for k, v in want.items():
        got = entry.get(k)
        ok = v(got) if callable(v) else got == str(v)
        if not ok:
            bad.append("%s=%s (want %s)" % (k, got, v.__doc__ if callable(v) else v))
    check(not bad, "access log: %s in line %r" % (", ".join(bad), entry["_raw"]))


def at_least(n):
    def f(v):
        return v is not None and v.isdigit() and int(v) >= n
    f.__doc__ = ">= %d" % n
    return f


def one_of(*values):
    def f(v):
        return v in values
    f.__doc__ = "one of " + "|".join(values)
    return f


def ends_with(suffix):
    def f(v):
        return v is not None and v.endswith(suffix)
    f.__doc__ = "...%s" % suffix
    return f


# ---------------------------------------------------------------------------------------
# Clients


def s_client(ctx, port, servername=None, verify_name=None, host="127.0.0.1", extra=()):
    argv = ["openssl", "s_client", "-connect", "%s:%d" % (host if ":" not in host else
                                                          "[%s]" % host, port),
            "-CAfile", ctx.pki.ca]
    argv += ["-servername", servername] if servername else ["-noservername"]
    if verify_name:
        argv += ["-verify_return_error", "-verify_hostname", verify_name]
    argv += list(extra)
    r = run(argv, timeout=20)
    return r.returncode, txt(r.stdout), txt(r.stderr)


def expect_s_client(ctx, port, servername, cn, verify_name=None, host="127.0.0.1"):
    rc, out, err = s_client(ctx, port, servername, verify_name or servername, host)
    m = re.search(r"^subject=.*?CN ?= ?([^,/\r\n]+)", out, re.M)
    seen = m.group(1).strip() if m else None
    check(seen == cn, "s_client -servername %s: certificate CN %s, want %s (rc %d, stderr: %s)"
          % (servername, seen, cn, rc, short(err.strip()[-300:], 300)))
    check("Verify return code: 0 (ok)" in out,
          "s_client -servername %s: verification failed: %s"
          % (servername, re.findall(r"Verify return code: .*", out)))
    check(rc == 0, "s_client -servername %s exited %d" % (servername, rc))


def curl(ctx, url, resolve=None):
    argv = ["curl", "-sS", "-v", "--max-time", "15", "--cacert", ctx.pki.ca]
    if resolve:
        argv += ["--resolve", resolve]
    argv.append(url)
    r = run(argv, timeout=25)
    return r.returncode, txt(r.stdout), txt(r.stderr)


def expect_curl(ctx, name, port, cn, addr="127.0.0.1"):
    if name is None:
        url = "https://%s:%d/" % (addr if ":" not in addr else "[%s]" % addr, port)
        resolve = None
    else:
        url = "https://%s:%d/" % (name, port)
        resolve = "%s:%d:%s" % (name, port, addr if ":" not in addr else "[%s]" % addr)
    rc, out, err = curl(ctx, url, resolve)
    m = re.search(r"subject: .*?CN ?= ?([^,/\r\n]+)", err)
    seen = m.group(1).strip() if m else None
    check(rc == 0, "curl %s: exit %d: %s" % (url, rc,
                                             [x for x in err.splitlines() if "curl:" in x]))
    check(seen == cn, "curl %s: certificate CN %s, want %s" % (url, seen, cn))
    check("Ciphers" in out, "curl %s: no s_server -www page in the body: %s" % (url, short(out)))


def py_tls(ctx, port, name, cn, host="127.0.0.1"):
    """Python ssl client: full verification (chain and host name) and a GET to s_server -www."""
    c = ssl.create_default_context(cafile=ctx.pki.ca)
    if name is None:
        c.check_hostname = False
    with connect(port, host) as raw:
        with c.wrap_socket(raw, server_hostname=name) as s:
            got = dict(x[0] for x in s.getpeercert()["subject"]).get("commonName")
            check(got == cn, "Python ssl to %s: certificate CN %s, want %s" % (name, got, cn))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            body = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    b = s.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not b:
                    break
                body += b
            check(b"Ciphers" in body, "Python ssl to %s: no -www page: %s" % (name, short(body)))


def raw_exchange(port, data, host="127.0.0.1", timeout=10):
    """Send <data> (a ClientHello and maybe more), shut down our write side, read to EOF.
    Returns (local_port, reply)."""
    with connect(port, host) as s:
        lport = s.getsockname()[1]
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            reply = recv_all(s, time.monotonic() + timeout)
        except ConnectionResetError:
            raise Fail("connection reset instead of a reply and EOF")
    return lport, reply


# ---------------------------------------------------------------------------------------
# Groups: each sets up a daemon (and what it needs) shared by its cases


class Ctx:
    pass


def config(settings, listeners, routes):
    out = ["; written by test/e2e/run_e2e.py", "[sniroute]"]
    out += ["%s = %s" % kv for kv in settings]
    for name, listens, rname, no_sni in listeners:
        out += ["", "[listener %s]" % name]
        out += ["listen = %s" % a for a in listens]
        out += ["routes = %s" % rname, "no_sni = %s" % no_sni]
    for rname, entries in routes:
        out += ["", "[routes %s]" % rname]
        out += ["%s = %s" % kv for kv in entries]
    return "\n".join(out) + "\n"


def main_routes(ctx):
    b = ctx.backends
    return [
        ("example.com", "127.0.0.1:%d" % b["exact"].port),
        ("*.example.com", "127.0.0.1:%d" % b["wild"].port),
        ("*.cap.example.com", "127.0.0.1:%d" % b["capture"].port),
        ("half.test", "127.0.0.1:%d" % b["capture"].port),
        ("bulk.test", "127.0.0.1:%d" % b["bulk"].port),
        ("echo.test", "127.0.0.1:%d" % b["echo"].port),
        ("dead.test", "127.0.0.1:%d" % ctx.dead_port),
        ("reset.test", "127.0.0.1:%d" % b["reset"].port),
        # .invalid never resolves (RFC 6761); the failure may be quick or take up to
        # connect_timeout, depending on the machine's resolver.
        ("nx.test", "nx.invalid:443"),
        ("stall.test", "127.0.0.1:%d" % b["stall"].port),
        # A name, resolved by the daemon; s_server listens on 127.0.0.1 only, so when
        # localhost also gives ::1 the daemon must go on to the next address.
        ("default", "localhost:%d" % b["default"].port),
    ]


def setup_backends(ctx):
    pki = ctx.pki
    b = ctx.backends
    c = pki.leaf("backend-exact", ["DNS:example.com"])
    b["exact"] = SServer(c[0], c[1], "exact")
    c = pki.leaf("backend-wild", ["DNS:*.example.com", "DNS:x.y.example.com"])
    b["wild"] = SServer(c[0], c[1], "wild")
    c = pki.leaf("backend-default", ["DNS:other.test", "DNS:localhost", "IP:127.0.0.1",
                                     "IP:::1"])
    b["default"] = SServer(c[0], c[1], "default")
    c = pki.leaf("backend-bulk", ["DNS:bulk.test"])
    b["bulk"] = BulkBackend(c[0], c[1], BULK_BYTES, seed=2)
    b["capture"] = CaptureBackend()
    b["echo"] = EchoBackend()
    b["hold"] = HoldBackend()
    b["reset"] = ResetBackend()
    b["stall"] = StallBackend()
    ctx.dead_sock, ctx.dead_port = dead_port()


def group_main(ctx):
    try:
        fams = {a[0] for a in socket.getaddrinfo("localhost", 443, type=socket.SOCK_STREAM)}
    except OSError:
        fams = set()
    if len(fams) < 2:
        ctx.notes.append("localhost resolves to one address family here, so the default "
                         "route (localhost:PORT) does not exercise trying each address")
    ctx.main = Daemon(ctx, "main", config(
        [("hello_timeout", "5s"), ("connect_timeout", "2s"), ("idle_timeout", "1m"),
         ("drain_timeout", "2s"), ("max_hello_size", "16k"), ("access_log", "stdout")],
        [("https", ["127.0.0.1:0"], "main", "default"),
         ("strict", ["127.0.0.1:0"], "main", "reject")],
        [("main", main_routes(ctx))]), 2)


def group_nodefault(ctx):
    b = ctx.backends
    ctx.nodef = Daemon(ctx, "nodefault", config(
        [("hello_timeout", "1s"), ("connect_timeout", "2s"), ("drain_timeout", "2s"),
         ("access_log", "stdout")],
        [("https", ["127.0.0.1:0"], "nodef", "default")],
        [("nodef", [("example.com", "127.0.0.1:%d" % b["exact"].port),
                    ("echo.test", "127.0.0.1:%d" % b["echo"].port)])]), 1)


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def group_ipv6(ctx):
    if not have_ipv6():
        raise Skip("::1 is not available on this machine")
    b = ctx.backends
    ctx.v6 = Daemon(ctx, "ipv6", config(
        [("drain_timeout", "2s"), ("access_log", "stdout")],
        [("https", ["[::1]:0", "127.0.0.1:0"], "r", "default")],
        [("r", [("example.com", "127.0.0.1:%d" % b["exact"].port),
                ("default", "127.0.0.1:%d" % b["default"].port)])]), 2)


# ---------------------------------------------------------------------------------------
# Cases. Each raises Fail (or Skip); returning means PASS.


def case_config_check_example(ctx):
    check(os.path.isfile(ctx.example), "example config %s does not exist" % ctx.example)
    r = run([ctx.sniroute, "-t", "-c", ctx.example], timeout=20)
    check(r.returncode == 0, "-t on %s exited %d: %s" % (ctx.example, r.returncode,
                                                       txt(r.stderr).strip()))
    both = txt(r.stdout) + txt(r.stderr)
    check("ok" in both, "-t on %s printed no 'ok': %r" % (ctx.example, both))


def case_config_check_bad(ctx):
    path = os.path.join(ctx.tmp, "bad.ini")
    lines = [
        "[sniroute]",                          # 1
        "hello_timeout = 5s",                  # 2
        "frobnicate = yes",                    # 3 unknown key
        "[listener https]",                    # 4
        "listen = 127.0.0.1:99999",            # 5 bad port
        "routes = main",                       # 6
        "[routes main]",                       # 7
        "example.com = 127.0.0.1:9001",        # 8
        "EXAMPLE.com. = 127.0.0.1:9002",       # 9 duplicate (after normalizing)
        "a.*.example.com = 127.0.0.1:9003",    # 10 bad wildcard
        "b.example.com = 127.0.0.1:notaport",  # 11 bad address
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = run([ctx.sniroute, "-t", "-c", path], timeout=20)
    err = txt(r.stderr)
    check(r.returncode == 1, "-t on a bad config exited %d (want 1); stderr: %s"
          % (r.returncode, short(err, 400)))
    got = set()
    for line in err.splitlines():
        m = re.match(re.escape(path) + r":(\d+): \S", line)
        if m:
            got.add(int(m.group(1)))
    want = {3, 5, 9, 10, 11}
    check(want <= got, "-t: want FILE:LINE: lines for lines %s, got lines %s; stderr: %s"
          % (sorted(want), sorted(got), short(err, 600)))
    check(got <= want, "-t: complaints about good lines %s; stderr: %s"
          % (sorted(got - want), short(err, 600)))


def case_bad_config_does_not_start(ctx):
    """A bad config, or a listener that cannot bind, never leaves a half-working daemon."""
    path = os.path.join(ctx.tmp, "bad-run.ini")
    with open(path, "w") as f:
        f.write("[sniroute]\nfrobnicate = yes\n[listener https]\nlisten = 127.0.0.1:0\n"
                "routes = r\n[routes r]\nexample.com = 127.0.0.1:9\n")
    p = Proc([ctx.sniroute, "-c", path], "sniroute(bad-run)")
    status = p.wait_exit(10)
    p.stop()
    check(status not in (None, 0), "-c with a bad config: exit status %s, want non-zero"
          % status)
    check("listening on" not in p.text("stderr"), "-c with a bad config listened: %s"
          % p.tail("stderr"))
    # The second address is taken (our own listening backend): the whole daemon must go.
    busy = ctx.backends["echo"].port
    path = os.path.join(ctx.tmp, "busy.ini")
    with open(path, "w") as f:
        f.write(config([("access_log", "stdout")],
                       [("https", ["127.0.0.1:0", "127.0.0.1:%d" % busy], "r", "default")],
                       [("r", [("example.com", "127.0.0.1:9")])]))
    p = Proc([ctx.sniroute, "-c", path], "sniroute(busy)")
    status = p.wait_exit(10)
    p.stop()
    check(status not in (None, 0), "listen address in use: exit status %s, want non-zero "
          "(a daemon with one of two sockets is half-working); stderr: %s"
          % (status, p.tail("stderr")))


def case_config_check_generated(ctx):
    r = run([ctx.sniroute, "-t", "-c", ctx.main.path], timeout=20)
    check(r.returncode == 0, "-t on the suite's own config exited %d: %s"
          % (r.returncode, txt(r.stderr).strip()))


def case_route_exact(ctx):
    port = ctx.main.port()
    m = ctx.main.mark()
    expect_s_client(ctx, port, "example.com", "backend-exact")
    expect_curl(ctx, "example.com", port, "backend-exact")
    py_tls(ctx, port, "example.com", "backend-exact")
    rc, out, err = s_client(ctx, port, "example.com", "example.com", extra=["-tls1_2"])
    check(rc == 0 and "CN = backend-exact" in out and "TLSv1.2" in out,
          "s_client -tls1_2 -servername example.com: rc %d, %s" % (
              rc, re.findall(r"^(?:subject=.*|Protocol *:.*)$", out, re.M)))
    e = ctx.main.wait_log(lambda e: e.get("sni") == "example.com", "sni=example.com", m)
    expect_log(e, listener="https", route="exact",
               upstream="127.0.0.1:%d" % ctx.backends["exact"].port, outcome="ok",
               bytes_in=at_least(100), bytes_out=at_least(300))


def case_route_exact_case_and_dot(ctx):
    port = ctx.main.port()
    expect_s_client(ctx, port, "EXAMPLE.com.", "backend-exact", verify_name="example.com")
    expect_s_client(ctx, port, "Example.COM", "backend-exact", verify_name="example.com")
    expect_curl(ctx, "EXAMPLE.com", port, "backend-exact")


def case_route_wildcard(ctx):
    port = ctx.main.port()
    m = ctx.main.mark()
    expect_s_client(ctx, port, "a.example.com", "backend-wild")
    expect_curl(ctx, "a.example.com", port, "backend-wild")
    py_tls(ctx, port, "a.example.com", "backend-wild")
    e = ctx.main.wait_log(lambda e: e.get("sni") == "a.example.com", "sni=a.example.com", m)
    expect_log(e, route="wildcard", upstream="127.0.0.1:%d" % ctx.backends["wild"].port,
               outcome="ok")


def case_route_wildcard_deep(ctx):
    port = ctx.main.port()
    expect_s_client(ctx, port, "x.y.example.com", "backend-wild")
    expect_curl(ctx, "x.y.example.com", port, "backend-wild")


def case_route_wildcard_gnutls(ctx):
    if not shutil.which("gnutls-cli"):
        raise Skip("gnutls-cli not installed (apt-get install gnutls-bin)")
    port = ctx.main.port()
    r = run(["gnutls-cli", "--x509cafile", ctx.pki.ca, "-p", str(port), "--sni-hostname",
             "b.example.com", "--verify-hostname", "b.example.com", "127.0.0.1"], timeout=20)
    out = txt(r.stdout)
    check(r.returncode == 0, "gnutls-cli exited %d: %s" % (r.returncode,
                                                           short(txt(r.stderr), 300)))
    check("Handshake was completed" in out, "gnutls-cli: no completed handshake")
    m = re.search(r"subject `CN=([^',]+)", out)
    check(m and m.group(1) == "backend-wild", "gnutls-cli: certificate CN %s, want "
          "backend-wild" % (m.group(1) if m else None))


def case_route_wildcard_longest(ctx):
    """*.cap.example.com (capture backend) beats *.example.com (s_server wild)."""
    port = ctx.main.port()
    cap = ctx.backends["capture"]
    cap.drain_results()
    hello = client_hello("z.cap.example.com")
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    lport, reply = raw_exchange(port, hello + b"after")
    try:
        r = cap.next_result(5, "z.cap.example.com")
    except Fail as e:
        raise Fail("%s; routed elsewhere? the client got %s; log: %s" % (
            e, short(reply), [x["_raw"] for x in ctx.main.logs()
                              if x.get("client", "").endswith(":%d" % lport)]))
    check(r[0] == "ok" and r[1] == hello + b"after",
          "z.cap.example.com: the *.cap.example.com backend got %s" % short(str(r)))
    check(reply == r[2], "z.cap.example.com: reply differs (%d bytes, want %d)"
          % (len(reply), len(r[2])))
    e = ctx.main.wait_log_port(lport, "z.cap.example.com", start=log_mark)
    expect_log(e, sni="z.cap.example.com", route="wildcard",
               upstream="127.0.0.1:%d" % cap.port)


def case_route_default(ctx):
    port = ctx.main.port()
    m = ctx.main.mark()
    expect_s_client(ctx, port, "other.test", "backend-default")
    expect_curl(ctx, "other.test", port, "backend-default")
    e = ctx.main.wait_log(lambda e: e.get("sni") == "other.test", "sni=other.test", m)
    expect_log(e, route="default", outcome="ok",
               upstream=ends_with(":%d" % ctx.backends["default"].port))


def case_route_no_sni(ctx):
    port = ctx.main.port()
    m = ctx.main.mark()
    rc, out, err = s_client(ctx, port, None, None, extra=["-verify_ip", "127.0.0.1",
                                                          "-verify_return_error"])
    mm = re.search(r"^subject=.*?CN ?= ?([^,/\r\n]+)", out, re.M)
    check(mm and mm.group(1).strip() == "backend-default",
          "s_client -noservername: certificate CN %s, want backend-default (rc %d, %s)"
          % (mm.group(1) if mm else None, rc, short(err.strip()[-200:], 200)))
    check("Verify return code: 0 (ok)" in out, "s_client -noservername: not verified")
    expect_curl(ctx, None, port, "backend-default")  # curl sends no SNI to an IP literal
    py_tls(ctx, port, None, "backend-default")
    e = ctx.main.wait_log(lambda e: e.get("sni") in ("-", "", None) and "route" in e,
                          "sni=-", m)
    expect_log(e, sni="-", route="default", outcome="ok")


def case_no_sni_reject(ctx):
    port = ctx.main.port("strict")
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    lport, reply = raw_exchange(port, client_hello(None))
    # The brief says "alert then close" without naming the alert for a hello that names
    # nothing: any fatal alert record passes, and the one seen is printed.
    check(len(reply) == 7 and reply[:6] == ALERT_UNRECOGNIZED_NAME[:6],
          "no_sni=reject: want a fatal alert record 15 03 03 00 02 02 XX then EOF, got %s"
          % (reply.hex() or "nothing"))
    ctx.notes.append("no_sni=reject sends alert %d%s" % (
        reply[6], "" if reply[6] == 112 else " (unknown name with no default sends 112)"))
    e = ctx.main.wait_log_port(lport, "no-SNI reject", start=log_mark)
    expect_log(e, listener="strict", sni="-", route="none",
               outcome=one_of("no_route", "no_sni"))
    rc, out, err = s_client(ctx, port, None)
    check(rc != 0 and "alert number %d" % reply[6] in err,
          "s_client -noservername on a no_sni=reject listener: rc %d, want alert number %d "
          "in stderr: %s" % (rc, reply[6], short(err, 300)))
    # A hello with a name still routes on that listener.
    expect_s_client(ctx, port, "example.com", "backend-exact")


def case_unknown_name_alert(ctx):
    port = ctx.nodef.port()
    m = ctx.nodef.mark()
    lport, reply = raw_exchange(port, client_hello("nope.test"))
    check(reply == ALERT_UNRECOGNIZED_NAME,
          "unknown name: want exactly %s then EOF, got %s"
          % (ALERT_UNRECOGNIZED_NAME.hex(), reply.hex() or "nothing"))
    e = ctx.nodef.wait_log_port(lport, "nope.test", m)
    expect_log(e, sni="nope.test", route="none", upstream="-", outcome="no_route")
    # Without shutting down our side first: the alert, then EOF (not a reset).
    with connect(port) as s:
        s.sendall(client_hello("nope2.test"))
        how, data = wait_close(s, 8)
        check(how == "eof" and data == ALERT_UNRECOGNIZED_NAME,
              "unknown name (write side open): %s after %s" % (how, data.hex() or "nothing"))
    # No SNI and no default: refused the same way.
    lport, reply = raw_exchange(port, client_hello(None))
    check(reply == ALERT_UNRECOGNIZED_NAME,
          "no SNI without default: want the alert, got %s" % (reply.hex() or "nothing"))


def case_unknown_name_clients(ctx):
    port = ctx.nodef.port()
    rc, out, err = s_client(ctx, port, "nope.test")
    check(rc != 0 and ("unrecognized name" in err or "alert number 112" in err),
          "s_client nope.test: rc %d, want alert 112; stderr %s" % (rc, short(err, 300)))
    rc, out, err = curl(ctx, "https://nope.test:%d/" % port, "nope.test:%d:127.0.0.1" % port)
    check(rc != 0 and "unrecognized name" in err,
          "curl nope.test: rc %d, want failure naming 'unrecognized name': %s"
          % (rc, [x for x in err.splitlines() if "curl:" in x or "alert" in x]))
    expect_s_client(ctx, port, "example.com", "backend-exact")


def case_bulk_64mib(ctx):
    port = ctx.main.port()
    bulk = ctx.backends["bulk"]
    bulk.drain_results()
    c = ssl.create_default_context(cafile=ctx.pki.ca)
    want_up = stream_digest(1, BULK_BYTES)
    want_down = stream_digest(2, BULK_BYTES)
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    s = connect(port)
    lport = s.getsockname()[1]
    try:
        p = tls_pump(s, c, False, "bulk.test", 1, BULK_BYTES, 60)
    finally:
        s.close()
    check(p.peer_cn == "backend-bulk", "bulk: certificate CN %s" % p.peer_cn)
    r = bulk.next_result(30, "bulk")
    check(r[0] == "ok", "bulk: backend failed: %s" % (r,))
    _, b_recv, b_recv_hash, b_sent, _ = r
    check(p.received == BULK_BYTES, "bulk: client received %d bytes, want %d"
          % (p.received, BULK_BYTES))
    check(p.recv_hash.hexdigest() == want_down, "bulk: backend->client SHA-256 differs")
    check(b_recv == BULK_BYTES, "bulk: backend received %d bytes, want %d"
          % (b_recv, BULK_BYTES))
    check(b_recv_hash == want_up, "bulk: client->backend SHA-256 differs")
    e = ctx.main.wait_log_port(lport, "bulk", start=log_mark)
    expect_log(e, sni="bulk.test", route="exact", outcome="ok",
               bytes_in=at_least(BULK_BYTES), bytes_out=at_least(BULK_BYTES))


def case_half_close(ctx):
    port = ctx.main.port()
    cap = ctx.backends["capture"]
    cap.drain_results()
    hello = client_hello("half.test")
    payload = random.Random(7).randbytes(200000)
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    with connect(port) as s:
        lport = s.getsockname()[1]
        s.sendall(hello + payload)
        s.shutdown(socket.SHUT_WR)
        try:
            reply = recv_all(s, time.monotonic() + 15)
        except ConnectionResetError:
            raise Fail("half-close: client got a reset instead of the reply")
    r = cap.next_result(10, "half-close")
    check(r[0] == "ok", "half-close: backend: %s" % (r,))
    got = r[1]
    check(got[:len(hello)] == hello, "half-close: backend did not get the hello byte for "
          "byte: %s" % short(got[:64]))
    check(got == hello + payload, "half-close: backend got %d bytes, want %d (sha %s)"
          % (len(got), len(hello) + len(payload), hashlib.sha256(got).hexdigest()[:12]))
    want = reply_for(hello + payload)
    check(reply == want, "half-close: client got %d reply bytes after its shutdown, want %d"
          % (len(reply), len(want)))
    e = ctx.main.wait_log_port(lport, "half-close", start=log_mark)
    expect_log(e, sni="half.test", route="exact", outcome="ok",
               bytes_in=len(hello) + len(payload), bytes_out=len(want))


def case_dead_backend(ctx):
    port = ctx.main.port()
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    with connect(port) as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("dead.test"))
        how, data = wait_close(s, 2 + 5)  # connect_timeout is 2s
    check(how == "eof", "dead backend: client got a %s (after %s), want a clean EOF"
          % (how, short(data)))
    check(data == b"", "dead backend: client got bytes before EOF: %s" % short(data))
    e = ctx.main.wait_log_port(lport, "dead.test", start=log_mark)
    expect_log(e, sni="dead.test", route="exact", outcome="connect_failed")
    check(ctx.main.alive(), "daemon exited after a dead backend")
    expect_s_client(ctx, port, "example.com", "backend-exact")


def case_resolve_failed(ctx):
    port = ctx.main.port()
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    with connect(port) as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("nx.test"))
        how, data = wait_close(s, 2 + 8)  # connect_timeout is 2s
    check(how == "eof" and data == b"", "unresolvable upstream: client got %s after %s, "
          "want a clean EOF" % (how, short(data)))
    e = ctx.main.wait_log_port(lport, "nx.test", start=log_mark)
    expect_log(e, sni="nx.test", route="exact",
               outcome=one_of("resolve_failed", "connect_timeout"))
    check(ctx.main.alive(), "daemon exited after an unresolvable upstream")


def case_access_log_file_and_sigint(ctx):
    """access_log = PATH writes there (and nothing to stdout); SIGINT drains like SIGTERM."""
    b = ctx.backends
    path = os.path.join(ctx.tmp, "access.log")
    d = Daemon(ctx, "logfile", config(
        [("drain_timeout", "5s"), ("access_log", path)],
        [("https", ["127.0.0.1:0"], "r", "default")],
        [("r", [("half.test", "127.0.0.1:%d" % b["capture"].port)])]), 1)
    lport, reply = raw_exchange(d.port(), client_hello("half.test") + b"x")
    check(reply.startswith(b"GOT "), "logfile daemon: no reply: %s" % short(reply))
    deadline = time.monotonic() + 8
    lines = []
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = [parse_log_line(x) for x in f.read().splitlines() if x.strip()]
        if any(e.get("client", "").endswith(":%d" % lport) for e in lines):
            break
        time.sleep(0.05)
    mine = [e for e in lines if e.get("client", "").endswith(":%d" % lport)]
    check(mine, "access_log = %s: no line for client port %d; file has %d line(s)"
          % (path, lport, len(lines)))
    expect_log(mine[0], sni="half.test", route="exact", outcome="ok")
    d.signalled = True
    d.proc.p.send_signal(signal.SIGINT)
    status = d.proc.wait_exit(10)
    check(status == 0, "SIGINT with no open connection: exit status %s (want 0 within 10s)"
          % status)
    d.stopped_status = status
    check(d.logs() == [], "access_log = PATH but stdout has log lines: %s"
          % [e["_raw"] for e in d.logs()][:2])


def case_dribble_hello(ctx):
    port = ctx.main.port()
    cap = ctx.backends["capture"]
    cap.drain_results()
    hello = client_hello("half.test")
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    with connect(port) as s:
        lport = s.getsockname()[1]
        for i in range(len(hello)):
            s.send(hello[i:i + 1])
            time.sleep(0.0015)
        s.sendall(b"tail")
        s.shutdown(socket.SHUT_WR)
        reply = recv_all(s, time.monotonic() + 15)
    r = cap.next_result(10, "dribble")
    check(r[0] == "ok" and r[1] == hello + b"tail",
          "dribble: backend got %s, want the %d-byte hello + 'tail' byte for byte"
          % (short(r[1] if len(r) > 1 else str(r)), len(hello)))
    check(reply == r[2], "dribble: reply differs")
    e = ctx.main.wait_log_port(lport, "dribble", start=log_mark)
    expect_log(e, sni="half.test", outcome="ok", bytes_in=len(hello) + 4)


def case_hello_split_records(ctx):
    port = ctx.main.port()
    cap = ctx.backends["capture"]
    hello = client_hello("half.test")
    body_len = len(hello) - 5
    name_at = hello.index(b"half.test") - 5
    for pad, what in [(12000, "12 KB hello in one record"),
                      (15000, "15.5 KB hello, just under max_hello_size")]:
        cap.drain_results()
        big = inflate_hello(client_hello("half.test"), pad)
        check(len(big) <= 16384, "test bug: %d-byte hello over the cap" % len(big))
        lport, reply = raw_exchange(port, big + b"y")
        r = cap.next_result(10, what)
        check(r[0] == "ok" and r[1] == big + b"y",
              "%s: backend got %s, want the hello byte for byte"
              % (what, short(r[1] if len(r) > 1 else str(r))))
    for what, cuts in [("middle", [body_len // 2]),
                       ("inside the name", [name_at + 4]),
                       ("inside the handshake header", [2]),
                       ("five records", [1, 40, name_at + 2, name_at + 7])]:
        cap.drain_results()
        framed = reframe(hello, cuts)
        lport, reply = raw_exchange(port, framed + b"x")
        r = cap.next_result(10, "split " + what)
        check(r[0] == "ok" and r[1] == framed + b"x",
              "hello split %s: backend got %s, want the re-framed hello byte for byte"
              % (what, short(r[1] if len(r) > 1 else str(r))))
        check(reply == r[2], "hello split %s: reply differs" % what)


def case_bad_clients(ctx):
    """Slow, not TLS, garbage, too large: each closed; a relaying connection kept open
    across them still works; the daemon stays up."""
    d = ctx.nodef
    port = d.port()
    m = d.mark()
    keeper = connect(port)
    try:
        hello = client_hello("echo.test")
        keeper.sendall(hello)
        got = recv_all_n(keeper, len(hello), 10)
        check(got == hello, "keeper: echo backend did not echo the hello")
        ping(keeper, b"before")

        outcomes = {}
        # Slow: part of a hello, then nothing past hello_timeout (1s).
        with connect(port) as s:
            lp = s.getsockname()[1]
            s.sendall(hello[:20])
            how, data = wait_close(s, 1 + 6)
            check(data == b"", "slow client: got bytes %s" % short(data))
            outcomes["slow"] = (lp, how, "hello_timeout")
        # Incomplete: half a hello, then EOF.
        with connect(port) as s:
            lp = s.getsockname()[1]
            s.sendall(hello[:len(hello) // 2])
            s.shutdown(socket.SHUT_WR)
            how, data = wait_close(s, 6)
            check(data == b"", "incomplete hello: got bytes %s" % short(data))
            outcomes["incomplete"] = (lp, how, "incomplete")
        # Connect and close at once.
        connect(port).close()
        # Not TLS.
        with connect(port) as s:
            lp = s.getsockname()[1]
            s.sendall(b"SSH-2.0-x\r\n")
            how, data = wait_close(s, 6)
            check(data == b"", "not TLS: got bytes %s" % short(data))
            outcomes["not_tls"] = (lp, how, "not_tls")
        # Garbage after a plausible record header: handshake type server_hello.
        with connect(port) as s:
            lp = s.getsockname()[1]
            bad = bytearray(hello)
            bad[5] = 2
            s.sendall(bytes(bad))
            how, data = wait_close(s, 6)
            outcomes["wrong_type"] = (lp, how, "malformed")
        # A hello whose SNI length overruns its extension.
        with connect(port) as s:
            lp = s.getsockname()[1]
            bad = bytearray(hello)
            i = hello.index(b"echo.test")
            struct.pack_into(">H", bad, i - 2, 200)  # host_name length: 9 -> 200
            s.sendall(bytes(bad))
            how, data = wait_close(s, 6)
            outcomes["bad_length"] = (lp, how, "malformed")
        # Random bytes.
        with connect(port) as s:
            lp = s.getsockname()[1]
            s.sendall(random.Random(3).randbytes(300))
            how, data = wait_close(s, 6)
            outcomes["random"] = (lp, how, "not_tls")
        # Too large: a well-formed hello of ~20 KiB, its name after a 20000-byte
        # extension (max_hello_size is 16k).
        with connect(port) as s:
            lp = s.getsockname()[1]
            big = inflate_hello(client_hello("echo.test"), 20000)
            try:
                s.sendall(big)
            except (BrokenPipeError, ConnectionResetError):
                pass
            how, data = wait_close(s, 6)
            outcomes["too_large"] = (lp, how, "too_large")

        check(d.alive(), "daemon exited during the bad clients")
        ping(keeper, b"after")
        expect_s_client(ctx, port, "example.com", "backend-exact")
        problems = []
        for what, (lp, how, want) in outcomes.items():
            e = d.wait_log_port(lp, what, m)
            if e.get("outcome") != want:
                problems.append("%s: outcome=%s (want %s)" % (what, e.get("outcome"), want))
        check(not problems, "access log: " + "; ".join(problems))
        keeper.shutdown(socket.SHUT_WR)
        rest = recv_all(keeper, time.monotonic() + 10)
        check(rest == b"", "keeper: unexpected bytes at the end: %s" % short(rest))
    finally:
        keeper.close()


def recv_all_n(s, n, timeout):
    deadline = time.monotonic() + timeout
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        check(left > 0, "wanted %d bytes, got %d in %ss" % (n, len(buf), timeout))
        s.settimeout(left)
        try:
            b = s.recv(n - len(buf))
        except socket.timeout:
            continue
        check(b != b"", "EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return buf


def ping(s, tag):
    msg = b"ping-" + tag + b"-" + os.urandom(8).hex().encode()
    s.sendall(msg)
    try:
        got = recv_all_n(s, len(msg), 10)
    except (ConnectionResetError, Fail) as e:
        raise Fail("relaying connection broken (%s): %s" % (tag.decode(), e))
    check(got == msg, "relaying connection (%s): echoed %s, want %s" % (tag.decode(), got, msg))


def case_ipv6(ctx):
    d = ctx.v6
    p6 = d.port(v6=True)
    p4 = d.port(v6=False)
    expect_s_client(ctx, p6, "example.com", "backend-exact", host="::1")
    expect_curl(ctx, "example.com", p6, "backend-exact", addr="::1")
    expect_curl(ctx, None, p6, "backend-default", addr="::1")
    expect_s_client(ctx, p4, "example.com", "backend-exact")
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(p6, "::1") as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("example.com"))
        s.shutdown(socket.SHUT_WR)
        recv_all(s, time.monotonic() + 10)
    e = d.wait_log_port(lport, "IPv6 client", start=log_mark)
    check(e.get("client", "").startswith("[::1]:"), "IPv6 client logged as %s, want [::1]:PORT"
          % e.get("client"))


def case_concurrent_connections(ctx):
    """48 connections relaying at once, each its own random bytes, all echoed intact."""
    port = ctx.main.port()
    n = 48
    size = 256 * 1024
    errors = []
    lock = threading.Lock()

    def one(i):
        try:
            data = random.Random(100 + i).randbytes(size)
            hello = client_hello("echo.test")
            with connect(port, timeout=30) as s:
                sender = threading.Thread(target=lambda: (s.sendall(hello + data),
                                                          s.shutdown(socket.SHUT_WR)))
                sender.start()
                got = recv_all(s, time.monotonic() + 60)
                sender.join(30)
            if got != hello + data:
                raise Fail("echoed %d bytes, want %d (first difference at %s)"
                           % (len(got), len(hello) + len(data),
                              next((k for k, (a, b) in enumerate(zip(got, hello + data))
                                    if a != b), min(len(got), len(hello) + len(data)))))
        except Exception as e:
            with lock:
                errors.append("connection %d: %s: %s" % (i, type(e).__name__, e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    check(not any(t.is_alive() for t in threads), "concurrent: connections still running")
    check(not errors, "concurrent: %d of %d failed; first: %s" % (len(errors), n, errors[0]
                                                                   if errors else ""))
    check(ctx.main.alive(), "daemon exited during concurrent connections")


def case_reset_propagation(ctx):
    port = ctx.main.port()
    echo = ctx.backends["echo"]
    echo.drain_results()
    # Client resets: the backend must see a reset, not a clean EOF.
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    s = connect(port)
    lport = s.getsockname()[1]
    hello = client_hello("echo.test")
    s.sendall(hello)
    check(recv_all_n(s, len(hello), 10) == hello, "reset: no echo of the hello")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    while True:
        r = echo.next_result(10, "client reset")
        # A connection of an earlier case may finish late: skip results that are not this
        # connection's (it sent only the hello).
        if r[0] != "ok" or r[1] == len(hello):
            break
    check(r[0] == "reset", "client reset: the backend saw %s, want a reset" % (r,))
    e = ctx.main.wait_log_port(lport, "client reset", start=log_mark)
    expect_log(e, sni="echo.test", outcome="client_reset")
    # Backend resets: the client must see a reset, not a clean EOF.
    log_mark = ctx.main.mark()  # a reused client port must not match an older line
    with connect(port) as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("reset.test"))
        how, data = wait_close(s, 10)
        check(how == "reset", "backend reset: the client saw %s (after %s), want a reset"
              % (how, short(data)))
    e = ctx.main.wait_log_port(lport, "backend reset", start=log_mark)
    expect_log(e, sni="reset.test", outcome="backend_reset")
    check(ctx.main.alive(), "daemon exited after resets")


def case_backpressure(ctx):
    """A client pushing into a backend that never reads must block once the socket
    buffers are full: the daemon may not buffer what the backend does not take."""
    port = ctx.main.port()
    stall = ctx.backends["stall"]
    pid = ctx.main.proc.pid
    rss0 = rss_kib(pid)
    limit = 64 << 20
    with connect(port) as s:
        s.sendall(client_hello("stall.test"))
        s.setblocking(False)
        chunk = bytes(256 * 1024)
        total = 0
        deadline = time.monotonic() + 30
        while total < limit and time.monotonic() < deadline:
            _, w, _ = select.select([], [s], [], 1.0)
            if not w:
                break  # blocked for a second: backpressure reached the client
            try:
                total += s.send(chunk)
            except BlockingIOError:
                continue
        rss1 = rss_kib(pid)
        stall.release()
    check(total < 40 << 20, "backpressure: the router took %d MiB from the client while "
          "the backend read nothing (socket buffers explain a few MiB)" % (total >> 20))
    if rss0 and rss1:
        check(rss1 - rss0 < 32 * 1024, "backpressure: daemon RSS grew by %d MiB"
              % ((rss1 - rss0) >> 10))


def case_idle_timeout(ctx):
    b = ctx.backends
    d = Daemon(ctx, "idle", config(
        [("idle_timeout", "1s"), ("drain_timeout", "1s"), ("access_log", "stdout")],
        [("https", ["127.0.0.1:0"], "r", "default")],
        [("r", [("hold.test", "127.0.0.1:%d" % b["hold"].port)])]), 1)
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(d.port()) as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("hold.test"))
        how, data = wait_close(s, 1 + 8)
    e = d.wait_log_port(lport, "idle connection", start=log_mark)
    expect_log(e, sni="hold.test", outcome="idle_timeout")


def case_sigterm_drain(ctx):
    b = ctx.backends
    d = Daemon(ctx, "drain", config(
        [("drain_timeout", "20s"), ("access_log", "stdout")],
        [("https", ["127.0.0.1:0"], "r", "default")],
        [("r", [("echo.test", "127.0.0.1:%d" % b["echo"].port)])]), 1)
    port = d.port()
    log_mark = d.mark()  # a reused client port must not match an older line
    s = connect(port)
    try:
        lport = s.getsockname()[1]
        hello = client_hello("echo.test")
        s.sendall(hello)
        check(recv_all_n(s, len(hello), 10) == hello, "drain: no echo of the hello")
        ping(s, b"before-term")
        d.term()
        deadline = time.monotonic() + 5
        while not conn_refused(port):
            check(time.monotonic() < deadline,
                  "drain: new connections still accepted 5s after SIGTERM")
            time.sleep(0.1)
        check(d.alive(), "drain: daemon exited (status %s) with a connection open"
              % d.proc.p.returncode)
        ping(s, b"during-drain")
        s.shutdown(socket.SHUT_WR)
        rest = recv_all(s, time.monotonic() + 10)
        check(rest == b"", "drain: unexpected bytes %s" % short(rest))
    finally:
        s.close()
    t0 = time.monotonic()
    status = d.proc.wait_exit(15)
    check(status is not None, "drain: daemon still running 15s after its last connection "
          "closed (drain_timeout 20s)")
    took = time.monotonic() - t0
    check(status == 0, "drain: exit status %s; stderr: %s" % (status, d.proc.tail("stderr")))
    check(took < 10, "drain: exited %.1fs after the last connection closed, i.e. waited "
          "for drain_timeout instead of the connection" % took)
    d.stopped_status = status
    e = d.wait_log_port(lport, "drained connection", start=log_mark, timeout=2)
    expect_log(e, sni="echo.test", outcome="ok")


def case_drain_timeout_expires(ctx):
    b = ctx.backends
    d = Daemon(ctx, "drain-expire", config(
        [("drain_timeout", "1s"), ("access_log", "stdout")],
        [("https", ["127.0.0.1:0"], "r", "default")],
        [("r", [("hold.test", "127.0.0.1:%d" % b["hold"].port)])]), 1)
    log_mark = d.mark()  # a reused client port must not match an older line
    s = connect(d.port())
    try:
        lport = s.getsockname()[1]
        s.sendall(client_hello("hold.test"))
        time.sleep(0.3)
        d.term()
        how, data = wait_close(s, 1 + 8)
        status = d.proc.wait_exit(10)
        check(status is not None, "drain_timeout 1s: daemon still running 10s later")
        check(status == 0, "drain_timeout 1s: exit status %s; stderr: %s"
              % (status, d.proc.tail("stderr")))
        d.stopped_status = status
    finally:
        s.close()
    e = d.wait_log_port(lport, "connection cut by drain_timeout", start=log_mark, timeout=2)
    expect_log(e, sni="hold.test", outcome="drained")


def case_second_signal(ctx):
    """A second SIGTERM during the drain ends the open connections at once."""
    b = ctx.backends
    d = Daemon(ctx, "second-signal", config(
        [("drain_timeout", "60s"), ("access_log", "stdout")],
        [("https", ["127.0.0.1:0"], "r", "default")],
        [("r", [("hold.test", "127.0.0.1:%d" % b["hold"].port)])]), 1)
    s = connect(d.port())
    try:
        s.sendall(client_hello("hold.test"))
        time.sleep(0.3)
        d.term()
        time.sleep(0.5)
        check(d.alive(), "second signal: daemon exited on the first SIGTERM with a "
              "connection open (drain_timeout 60s)")
        d.term()
        status = d.proc.wait_exit(8)
        check(status is not None, "second signal: daemon still running 8s after the second "
              "SIGTERM")
        check(status == 0, "second signal: exit status %s" % status)
        d.stopped_status = status
        how, data = wait_close(s, 5)
    finally:
        s.close()


def case_peek(ctx):
    path = os.path.join(ctx.tmp, "hello.bin")
    with open(path, "wb") as f:
        f.write(client_hello("peek.example.com", alpn=["h2", "http/1.1"]))
    r = run([ctx.sniroute, "peek", path], timeout=10)
    out = txt(r.stdout)
    check(r.returncode == 0, "peek FILE exited %d: %s" % (r.returncode, short(txt(r.stderr))))
    check("peek.example.com" in out and "h2" in out,
          "peek: SNI or ALPN missing from %s" % short(out, 300))
    with open(path, "rb") as f:
        r = run([ctx.sniroute, "peek"], input=f.read(), timeout=10)
    check(r.returncode == 0 and "peek.example.com" in txt(r.stdout),
          "peek from stdin: exit %d, %s" % (r.returncode, short(txt(r.stdout))))
    r = run([ctx.sniroute, "peek", "-"], input=b"SSH-2.0-x\r\n", timeout=10)
    check(r.returncode == 1, "peek on not-TLS exited %d, want 1" % r.returncode)


def case_access_log_format(ctx):
    problems = []
    n = 0
    for d in ctx.daemons:
        for e in d.logs():
            n += 1
            if not TS_RX.match(e.get("_ts", "")):
                problems.append("bad timestamp: %r" % e["_raw"])
            for k in ("listener", "client", "sni", "route", "upstream", "bytes_in",
                      "bytes_out", "duration_ms", "outcome"):
                if k not in e:
                    problems.append("no %s= in %r" % (k, e["_raw"]))
            for k in ("bytes_in", "bytes_out", "duration_ms"):
                if k in e and not e[k].isdigit():
                    problems.append("%s not a number in %r" % (k, e["_raw"]))
    check(n > 0, "no access-log lines at all on stdout")
    check(not problems, "%d problems, first: %s" % (len(problems), "; ".join(problems[:3])))


def case_daemons_exit_cleanly(ctx):
    """SIGTERM every daemon: exit 0, no sanitizer report on stderr."""
    problems = []
    for d in ctx.daemons:
        status = d.stop()
        err = d.proc.text("stderr")
        if status != 0:
            problems.append("%s exited %s" % (d.name, status))
        for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if pat in err:
                i = err.index(pat)
                problems.append("%s: %s" % (d.name, short(err[i:i + 300], 300)))
    check(not problems, "; ".join(problems))


# (name, group, function). A group's setup runs once, before its first case.
CASES = [
    ("config_check_example", None, case_config_check_example),
    ("config_check_bad", None, case_config_check_bad),
    ("bad_config_does_not_start", "backends", case_bad_config_does_not_start),
    ("config_check_generated", "main", case_config_check_generated),
    ("route_exact", "main", case_route_exact),
    ("route_exact_case_and_dot", "main", case_route_exact_case_and_dot),
    ("route_wildcard", "main", case_route_wildcard),
    ("route_wildcard_deep", "main", case_route_wildcard_deep),
    ("route_wildcard_gnutls", "main", case_route_wildcard_gnutls),
    ("route_wildcard_longest", "main", case_route_wildcard_longest),
    ("route_default", "main", case_route_default),
    ("route_no_sni", "main", case_route_no_sni),
    ("no_sni_reject", "main", case_no_sni_reject),
    ("unknown_name_alert", "nodefault", case_unknown_name_alert),
    ("unknown_name_clients", "nodefault", case_unknown_name_clients),
    ("bulk_64mib", "main", case_bulk_64mib),
    ("half_close", "main", case_half_close),
    ("dead_backend", "main", case_dead_backend),
    ("resolve_failed", "main", case_resolve_failed),
    ("dribble_hello", "main", case_dribble_hello),
    ("hello_split_records", "main", case_hello_split_records),
    ("bad_clients", "nodefault", case_bad_clients),
    ("concurrent_connections", "main", case_concurrent_connections),
    ("reset_propagation", "main", case_reset_propagation),
    ("backpressure", "main", case_backpressure),
    ("idle_timeout", "backends", case_idle_timeout),
    ("access_log_file_and_sigint", "backends", case_access_log_file_and_sigint),
    ("ipv6", "ipv6", case_ipv6),
    ("sigterm_drain", "backends", case_sigterm_drain),
    ("drain_timeout_expires", "backends", case_drain_timeout_expires),
    ("second_signal", "backends", case_second_signal),
    ("peek", None, case_peek),
    ("access_log_format", None, case_access_log_format),
    ("daemons_exit_cleanly", None, case_daemons_exit_cleanly),
]

GROUPS = {"backends": setup_backends, "main": group_main, "nodefault": group_nodefault,
          "ipv6": group_ipv6}
NEEDS = {"main": ["backends"], "nodefault": ["backends"], "ipv6": ["backends"],
         "backends": []}


def ensure_group(ctx, g, state):
    """Run group <g>'s setup (and what it needs) once; re-raise its failure each time."""
    for dep in NEEDS.get(g, []):
        ensure_group(ctx, dep, state)
    if g not in state:
        try:
            GROUPS[g](ctx)
            state[g] = None
        except (Fail, Skip) as e:
            state[g] = e
        except Exception as e:
            state[g] = Fail("setup %s: %s" % (g, traceback.format_exc(limit=3).strip()))
            del e
    if state[g] is not None:
        err = state[g]
        raise type(err)("setup of %s: %s" % (g, err))


def where(exc):
    """An unexpected exception as one line: type, message, and the innermost frames in
    this suite's own files (a reset or timeout inside a helper names the case's line)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) == os.path.dirname(
                  os.path.abspath(__file__))]
    at = " <- ".join("%s:%d %s" % (os.path.basename(f.filename), f.lineno, f.name)
                     for f in reversed(frames[-3:]))
    return "%s: %s (at %s)" % (type(exc).__name__, exc, at)


def deaths(ctx):
    """Daemons that died on their own since the last report, said once each."""
    out = ""
    for d in ctx.daemons:
        rc = d.proc.p.poll()
        if (rc is not None and d.stopped_status is None and not d.signalled
                and not d.death_reported):
            d.death_reported = True
            out += " [%s died unasked, status %s; stderr: %s]" % (d.name, rc,
                                                                  d.proc.tail("stderr", 5))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sniroute", required=True, help="the daemon binary")
    ap.add_argument("--example", default=None, help="etc/sniroute.ini, checked with -t")
    ap.add_argument("-k", dest="only", default=None, help="run only cases containing this")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (prints it)")
    args = ap.parse_args()

    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the finally below stops what we started.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    ctx = Ctx()
    ctx.sniroute = os.path.abspath(args.sniroute)
    here = os.path.dirname(os.path.abspath(__file__))
    ctx.example = os.path.abspath(args.example or os.path.join(here, "..", "..", "etc",
                                                               "sniroute.ini"))
    ctx.tmp = tempfile.mkdtemp(prefix="sniroute-e2e-")
    ctx.daemons = []
    ctx.backends = {}
    ctx.notes = []
    passed = failed = skipped = 0
    state = {}
    t_start = time.monotonic()
    try:
        if not os.access(ctx.sniroute, os.X_OK):
            print("FAIL setup: %s is not an executable file" % ctx.sniroute, flush=True)
            print("0 passed, 1 failed", flush=True)
            return 1
        ctx.pki = PKI(ctx.tmp)
        for name, group, fn in CASES:
            if args.only and args.only not in name:
                continue
            t0 = time.monotonic()
            try:
                if group:
                    ensure_group(ctx, group, state)
                fn(ctx)
                print("PASS %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
                passed += 1
            except Skip as e:
                print("SKIP %s: %s" % (name, e), flush=True)
                skipped += 1
            except Fail as e:
                print("FAIL %s: %s%s" % (name, e, deaths(ctx)), flush=True)
                failed += 1
            except Exception as e:
                print("FAIL %s: %s%s" % (name, where(e), deaths(ctx)), flush=True)
                failed += 1
    finally:
        for d in ctx.daemons:
            try:
                d.stop()
            except Exception:
                pass
        for b in ctx.backends.values():
            try:
                b.stop()
            except Exception:
                pass
        if getattr(ctx, "dead_sock", None):
            ctx.dead_sock.close()
        Proc.stop_all()
        if args.keep:
            print("# kept %s" % ctx.tmp, flush=True)
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    for n in ctx.notes:
        print("# note: %s" % n, flush=True)
    if skipped:
        print("# %d skipped; %.0fs in all" % (skipped, time.monotonic() - t_start), flush=True)
    else:
        print("# %.0fs in all" % (time.monotonic() - t_start), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
