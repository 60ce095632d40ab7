#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`sniroute selftest --quic` against real UDP peers on loopback: Debian's ngtcp2 server
(`gtlsserver`, our own throwaway CA's certificate) must be reached by every case, with and
without address validation (Retry), and must log the CONNECTION_CLOSE each reached case ends
with; an ALPN it does not take is a miss with the TLS alert it closes with. Peers that are
not QUIC servers are misses, each told apart: a socket that reads and ignores (no answer,
what sniroute gives an unrouted name), a closed port (ICMP), an echo (our own datagrams,
not for our connection). Every datagram selftest sends goes to HOST:PORT, at 1200 bytes or
more, a bounded number of times. Through the daemon: added once it has QUIC listeners.

    run_selftest_quic.py --sniroute build/sniroute
"""

import os
import re
import shutil
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Fail, check  # noqa: E402

CASES = ["plain", "two_datagrams", "reordered", "coalesced", "v2"]
# The first flight of each case: bytes and datagrams.
SHAPES = {"plain": (1200, 1), "two_datagrams": (2400, 2), "reordered": (2400, 2),
          "coalesced": (1200, 1), "v2": (1200, 1)}
ROW_RX = re.compile(r"^(\w+)\s+(\d+)\s+(\d+)\s+(.+?)\s+(\d+)$")
# ngtcp2 0.12 (Debian 12) speaks v1 and answers v2 with Version Negotiation; later ones
# speak v2 (RFC 9369) too. Either way a QUIC server was reached.
V2_REACHED = r"reached \(ServerHello\)|reached \(Version Negotiation: v1( \S+)*\)"


def make_ctx(binary, tmp, args):
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    ctx.pki = harness.PKI(tmp)
    ctx.cert, ctx.key = ctx.pki.leaf("a.test", ["DNS:a.test"])
    ctx.htdocs = os.path.join(tmp, "htdocs")
    os.makedirs(ctx.htdocs)
    return ctx


def udp_port_of(pid, family, timeout=10):
    """The port of the UDP socket process <pid> has bound, read from /proc (gtlsserver takes
    port 0 but does not say which port it got)."""
    table = "/proc/net/udp" if family == socket.AF_INET else "/proc/net/udp6"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                m = re.match(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
                if m:
                    inodes.add(m.group(1))
        except OSError:
            pass
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[9] in inodes:
                    return int(cols[1].split(":")[1], 16)
        time.sleep(0.05)
    raise Fail("gtlsserver (pid %d) bound no UDP socket within %ds" % (pid, timeout))


class Gtlsserver:
    """ngtcp2's example HTTP/3 server on <host>, port chosen by the OS; it answers any SNI.
    <validate>: -V, a Retry for every new connection. Not quiet: its log shows the frames
    it receives."""

    def __init__(self, ctx, host="127.0.0.1", validate=False):
        argv = ["gtlsserver", "--no-quic-dump", "--no-http-dump", "-d", ctx.htdocs]
        if validate:
            argv.append("-V")
        argv += [host, "0", ctx.key, ctx.cert]
        self.proc = harness.Proc(argv, "gtlsserver", cwd=ctx.tmp)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.port = udp_port_of(self.proc.pid, family)
        self.target = ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)

    def count(self, pattern):
        return len(re.findall(pattern, self.proc.text("stdout") + self.proc.text("stderr")))


class UdpPeer:
    """A UDP socket on 127.0.0.1 that records every datagram (length, source) and, if
    <echo>, sends it back to where it came from."""

    def __init__(self, echo=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.echo = echo
        self.got = []
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.got.append((len(data), addr))
            if self.echo:
                self.sock.sendto(data, addr)

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def selftest(ctx, *args):
    """Run `sniroute selftest --quic ARGS`: (exit status, {case: (bytes, dgrams, result)},
    text)."""
    r = harness.run([ctx.binary, "selftest", "--quic"] + list(args), timeout=90)
    out = harness.txt(r.stdout)
    for mark in harness.SANITIZER_MARKS:  # exit 1 is also a miss: look, do not assume
        check(mark not in harness.txt(r.stderr), "selftest %s: %s" % (args, harness.txt(r.stderr)))
    rows = {}
    for line in out.splitlines():
        m = ROW_RX.match(line)
        if m and m.group(1) in CASES:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4))
    return r.returncode, rows, out + harness.txt(r.stderr)


def expect_rows(rows, out, want, cases=CASES):
    """Exactly <cases> ran, each of the shape it promises, and each result matches
    <want>[case] (a regex; default: a ServerHello)."""
    check(sorted(rows) == sorted(cases), "cases %s in:\n%s" % (sorted(rows), out))
    for case in cases:
        check(rows[case][:2] == SHAPES[case], "%s: %s bytes/datagrams, want %s\n%s"
              % (case, rows[case][:2], SHAPES[case], out))
        pat = want.get(case, r"reached \(ServerHello\)")
        check(re.fullmatch(pat, rows[case][2]), "%s: %r, want %s\n%s"
              % (case, rows[case][2], pat, out))


def case_usage(ctx):
    """--help shows --quic; bad arguments exit 2, and each mode knows only its own cases."""
    r = harness.run([ctx.binary, "--help"])
    check(r.returncode == 0 and b"selftest --quic" in r.stdout, "--help: %r" % r.stdout)
    for args in (["--quic"], ["--quic", "127.0.0.1:1"],
                 ["--quic", "--only", "bytewise", "127.0.0.1:1", "a.test"],
                 ["--only", "two_datagrams", "127.0.0.1:1", "a.test"],
                 ["--quic", "--only", "plain,nope", "127.0.0.1:1", "a.test"],
                 ["--quic", "--alpn", "h3,,x", "127.0.0.1:1", "a.test"],
                 ["--quic", "--timeout", "0", "127.0.0.1:1", "a.test"],
                 ["--quic", "127.0.0.1:1", "bad..name"]):
        r = harness.run([ctx.binary, "selftest"] + args)
        check(r.returncode == 2, "selftest %s: exit %d, want 2" % (args, r.returncode))
    r = harness.run([ctx.binary, "selftest", "--quic", "--only", "nope", "127.0.0.1:1", "a.test"])
    for case in CASES:
        check(case.encode() in r.stderr, "usage does not list %s: %r" % (case, r.stderr))


def case_direct_to_gtlsserver(ctx):
    """Every case reaches gtlsserver, which logs each connection's hello and the
    CONNECTION_CLOSE selftest ends it with."""
    srv = Gtlsserver(ctx)
    rc, rows, out = selftest(ctx, "--timeout", "5s", srv.target, "a.test")
    # ngtcp2 0.12 answers a first Initial without the start of the hello with a Retry.
    expect_rows(rows, out, {"reordered": r"reached \(ServerHello( after Retry)?\)",
                            "v2": V2_REACHED})
    check(rc == 0, "exit %d\n%s" % (rc, out))
    check("5 of 5 cases reached a QUIC server" in out, out)
    n_sh = sum(1 for c in CASES if rows[c][2].startswith("reached (ServerHello"))
    deadline = time.monotonic() + 5
    while srv.count(r"Initial CONNECTION_CLOSE\(0x1c\) error_code=NO_ERROR") < n_sh \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    closes = srv.count(r"Initial CONNECTION_CLOSE\(0x1c\) error_code=NO_ERROR")
    check(closes == n_sh, "gtlsserver saw %d CONNECTION_CLOSE, want %d" % (closes, n_sh))
    check(srv.count(r"initial_source_connection_id=") >= n_sh, "no transport parameters logged")
    return "v2: %s" % rows["v2"][2]


def case_alpn_refused(ctx):
    """An ALPN the server does not take: it closes with TLS alert 120; a miss, exit 1."""
    srv = Gtlsserver(ctx)
    rc, rows, out = selftest(ctx, "--alpn", "nope", "--only", "plain,two_datagrams", srv.target,
                             "a.test")
    expect_rows(rows, out, {c: r"close: alert 120 no_application_protocol.*" for c in CASES},
                cases=["plain", "two_datagrams"])
    check(rc == 1, "exit %d, want 1\n%s" % (rc, out))
    check("--alpn" in out.split("cases reached")[1], "no ALPN hint in:\n%s" % out)
    rc, rows, out = selftest(ctx, "--alpn", "nope,h3", "--only", "coalesced", srv.target, "a.test")
    expect_rows(rows, out, {}, cases=["coalesced"])
    check(rc == 0, "exit %d\n%s" % (rc, out))


def case_retry(ctx):
    """gtlsserver -V sends a Retry to every new connection: each case follows it with the
    token and reaches the ServerHello; the server validates each token."""
    srv = Gtlsserver(ctx, validate=True)
    rc, rows, out = selftest(ctx, srv.target, "a.test")
    after = r"reached \(ServerHello after Retry\)"
    expect_rows(rows, out, {"plain": after, "two_datagrams": after, "reordered": after,
                            "coalesced": after, "v2": V2_REACHED})
    check(rc == 0, "exit %d\n%s" % (rc, out))
    ok = srv.count(r"Token was successfully validated")
    check(ok >= 4, "gtlsserver validated %d tokens, want 4 or more" % ok)


def case_silent(ctx):
    """A UDP socket that reads and ignores: every case is a miss (no answer), exit 1, with
    the hint that this is what an unrouted name gets. Every datagram went to that port, from a
    socket per case, 1200 bytes or more, at most three copies of each flight."""
    peer = UdpPeer()
    try:
        rc, rows, out = selftest(ctx, "--timeout", "300ms", "127.0.0.1:%d" % peer.port, "a.test")
    finally:
        time.sleep(0.2)
        peer.stop()
    expect_rows(rows, out, {c: r"no answer" for c in CASES})
    check(rc == 1, "exit %d, want 1\n%s" % (rc, out))
    check("0 of 5 cases reached" in out and "does not route" in out, out)
    flights = sum(SHAPES[c][1] for c in CASES)
    check(flights <= len(peer.got) <= 3 * flights, "%d datagrams for %d per flight"
          % (len(peer.got), flights))
    check(all(n >= 1200 for n, _ in peer.got), "a datagram under 1200 bytes: %s" % peer.got)
    sources = {a for _, a in peer.got}
    check(len(sources) <= len(CASES) and all(h == "127.0.0.1" for h, _ in sources),
          "sources %s for %d cases" % (sorted(sources), len(CASES)))


def case_refused(ctx):
    """Nothing bound to the port: ICMP port unreachable, a miss each, exit 1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, rows, out = selftest(ctx, "--timeout", "2s", "127.0.0.1:%d" % port, "a.test")
    expect_rows(rows, out, {c: r"refused \(ICMP port unreachable\)" for c in CASES})
    check(rc == 1 and "nothing listens" in out, "exit %d\n%s" % (rc, out))


def case_echo(ctx):
    """A UDP echo: our own Initials come back, addressed to our DCID, not to us: ignored,
    not counted as reached."""
    peer = UdpPeer(echo=True)
    try:
        rc, rows, out = selftest(ctx, "--timeout", "300ms", "--only", "plain,coalesced",
                                 "127.0.0.1:%d" % peer.port, "a.test")
    finally:
        peer.stop()
    expect_rows(rows, out, {c: r"no answer \(\d+ ignored: addressed to another connection ID\)"
                            for c in CASES}, cases=["plain", "coalesced"])
    check(rc == 1 and "none for our connection" in out, "exit %d\n%s" % (rc, out))


def case_ipv6_literal(ctx):
    """[::1]:PORT straight at a gtlsserver on IPv6 loopback (skipped where there is none)."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
    except OSError:
        return "no IPv6 loopback: skipped"
    srv = Gtlsserver(ctx, host="::1")
    rc, rows, out = selftest(ctx, "--only", "plain,two_datagrams", srv.target, "a.test")
    expect_rows(rows, out, {}, cases=["plain", "two_datagrams"])
    check(rc == 0, "exit %d\n%s" % (rc, out))


if __name__ == "__main__":
    if shutil.which("gtlsserver") is None:
        print("SKIP selftest_quic: gtlsserver (Debian ngtcp2-server) is not installed")
        sys.exit(77)
    harness.run_suite([case_usage, case_direct_to_gtlsserver, case_alpn_refused, case_retry,
                       case_silent, case_refused, case_echo, case_ipv6_literal],
                      make_ctx=make_ctx)
