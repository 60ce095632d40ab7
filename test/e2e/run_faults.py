#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fault and abuse tests: the real sniroute daemon on loopback against backends that
refuse, stall, reset, black-hole, half-close first or speak first; a daemon out of file
descriptors (one worker, and waves of exhaustion with two and four); accept failing with
ENFILE or ENOBUFS; slowloris clients beside legitimate ones; hellos at and just over
max_hello_size; a flood of garbage and half-open connections.

    python3 test/e2e/run_faults.py --sniroute build/sniroute
    python3 test/e2e/run_faults.py --sniroute build/sniroute -k slowloris

Prints "PASS name", "FAIL name: why" or "SKIP name: why" per case (measured numbers follow
a PASS in brackets), then "N passed, M failed"; exits 0 only if nothing failed. Ports are
chosen by the OS; every wait has a timeout and every loop a bound; every process is ours
and is stopped by PID. Built on harness.py, like run_e2e.py."""

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

from harness import (PKI, BlackHole, CaptureBackend, EchoBackend, Fail, Proc,  # noqa: E402
                     Skip, Sniroute, SServer, _Acceptor, binary_has_asan, check,
                     client_hello, connect, dead_port, fd_kinds, free_port, inflate_hello,
                     nofile_limit,
                     peer_closed, raise_nofile, recv_all, reframe, short, sniroute_config,
                     wait_close)

ALERT_HANDSHAKE_FAILURE = bytes.fromhex("15030300020228")
MIB = 1 << 20

# One MiB of fixed random bytes; streams are this block repeated, read from any offset.
PATTERN = random.Random(4).randbytes(MIB)


def pattern_at(pos, n):
    """<n> bytes (at most to the end of the block) of the repeated PATTERN from <pos>."""
    off = pos % MIB
    return memoryview(PATTERN)[off:off + min(n, MIB - off)]


def pattern_digest(total):
    h = hashlib.sha256()
    pos = 0
    while pos < total:
        c = pattern_at(pos, total - pos)
        h.update(c)
        pos += len(c)
    return h.hexdigest()


def digest_to_eof(s, timeout=None):
    """Read <s> to its EOF (each read within <timeout> if given); (byte count, SHA-256)."""
    h = hashlib.sha256()
    n = 0
    if timeout is not None:
        s.settimeout(timeout)
    while True:
        b = s.recv(262144)
        if not b:
            return n, h.hexdigest()
        h.update(b)
        n += len(b)


def recv_n(s, n, timeout):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        check(left > 0, "wanted %d bytes, got %d within %ss" % (n, len(buf), timeout))
        s.settimeout(left)
        try:
            b = s.recv(min(262144, n - len(buf)))
        except socket.timeout:
            continue
        check(b != b"", "EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return bytes(buf)


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ---------------------------------------------------------------------------------------
# Backends for the faults (plain TCP on 127.0.0.1:0; each connection in its own thread)


class StallReader(_Acceptor):
    """Reads nothing until release(), then reads to EOF; results get (n, sha256) of
    everything after the first <skip> bytes (the hello)."""

    def __init__(self, skip):
        self.skip = skip
        self.released = threading.Event()
        super().__init__()

    def handle(self, conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.results.put(("accepted",))
        self.released.wait(60)
        data_hello = recv_n(conn, self.skip, 20)
        n, digest = digest_to_eof(conn, 30)
        self.results.put(("ok", n, digest, data_hello))


class FloodBackend(_Acceptor):
    """Reads the <hello_len>-byte hello, then sends the repeated PATTERN as fast as the
    connection takes it, up to <cap> bytes, until a send has blocked for <block_s>
    seconds; says so, waits for release(), then shuts down its write side and reads to
    EOF (or, with <reset>, closes with a reset instead). results: ("blocked"|"capped",
    sent), then ("ok", sent, digest)."""

    def __init__(self, hello_len, cap, block_s=2.0, reset=False):
        self.hello_len = hello_len
        self.cap = cap
        self.block_s = block_s
        self.reset = reset
        self.released = threading.Event()
        super().__init__()

    def handle(self, conn):
        # Read first: closing a socket with unread bytes sends a reset, which would throw
        # away whatever our own send queue still holds.
        recv_n(conn, self.hello_len, 10)
        conn.setblocking(False)
        h = hashlib.sha256()
        sent = 0
        deadline = time.monotonic() + 60
        state = "capped"
        while sent < self.cap and time.monotonic() < deadline:
            _, w, _ = select.select([], [conn], [], self.block_s)
            if not w:
                state = "blocked"
                break
            c = pattern_at(sent, min(262144, self.cap - sent))
            try:
                n = conn.send(c)
            except BlockingIOError:
                continue
            h.update(c[:n])
            sent += n
        self.results.put((state, sent))
        self.released.wait(60)
        if self.reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.results.put(("reset-sent", sent))
            return
        conn.setblocking(True)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(20)
        while conn.recv(65536):
            pass
        self.results.put(("ok", sent, h.hexdigest()))


class MidResetBackend(_Acceptor):
    """Echoes until it has received <after> bytes, then closes with a reset."""

    def __init__(self, after):
        self.after = after
        super().__init__()

    def handle(self, conn):
        conn.settimeout(20)
        n = 0
        while n < self.after:
            b = conn.recv(65536)
            if not b:
                self.results.put(("eof-early", n))
                return
            n += len(b)
            conn.sendall(b)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.results.put(("reset-sent", n))


class StreamBackend(_Acceptor):
    """Sends PATTERN and reads whatever comes, both without end (bounded by 30 s), and
    reports how the connection ended: ("reset", errno name), ("eof", received) or
    ("timeout",)."""

    def handle(self, conn):
        conn.setblocking(False)
        sent = 0
        received = 0
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                r, w, _ = select.select([conn], [conn], [], 0.5)
                if r:
                    b = conn.recv(262144)
                    if not b:
                        self.results.put(("eof", received))
                        return
                    received += len(b)
                if w:
                    try:
                        sent += conn.send(pattern_at(sent, 65536))
                    except BlockingIOError:
                        pass
        except (ConnectionResetError, BrokenPipeError) as e:
            self.results.put(("reset", type(e).__name__, received, sent))
            return
        self.results.put(("timeout",))


class HalfCloseFirstBackend(_Acceptor):
    """Reads the <hello_len>-byte hello, sends <reply> bytes of PATTERN, shuts down its
    write side first, then reads to EOF; results get ("ok", hello, n, digest) of what came
    after the hello."""

    def __init__(self, hello_len, reply):
        self.hello_len = hello_len
        self.reply = reply
        super().__init__()

    def handle(self, conn):
        conn.settimeout(20)
        hello = recv_n(conn, self.hello_len, 10)
        sent = 0
        while sent < self.reply:
            c = pattern_at(sent, self.reply - sent)
            conn.sendall(c)
            sent += len(c)
        conn.shutdown(socket.SHUT_WR)
        n, digest = digest_to_eof(conn)
        self.results.put(("ok", hello, n, digest))


BANNER = b"220 banner.test speaks first\r\n" + random.Random(5).randbytes(100000)


class SpeakFirstBackend(_Acceptor):
    """Sends BANNER the moment it accepts, before reading anything; then echoes until EOF.
    results get ("ok", everything received)."""

    def handle(self, conn):
        conn.settimeout(20)
        conn.sendall(BANNER)
        got = bytearray()
        while True:
            b = conn.recv(65536)
            if not b:
                break
            got += b
            conn.sendall(b)
        conn.shutdown(socket.SHUT_WR)
        self.results.put(("ok", bytes(got)))


# ---------------------------------------------------------------------------------------
# Shared set-up


class Ctx:
    pass


def start_daemon(ctx, name, settings, routes, preexec=None):
    d = Sniroute(ctx.sniroute, ctx.tmp, name, sniroute_config(
        settings + [("drain_timeout", "2s"), ("access_log", "stdout")],
        [("https", ["127.0.0.1:0"], "r", "default")], [("r", routes)]), 1, preexec)
    ctx.daemons.append(d)
    return d


def legit_backend(ctx):
    if "legit" not in ctx.backends:
        cert, key = ctx.pki.leaf("backend-legit", ["DNS:legit.test"])
        ctx.backends["legit"] = SServer(cert, key, "legit")
    return ctx.backends["legit"]


def legit_tls(ctx, port, timeout=10):
    """A legitimate client: Python ssl, full verification, GET to s_server -www, read to
    EOF. Returns the seconds it took; raises Fail (with the reason) otherwise."""
    c = ssl.create_default_context(cafile=ctx.pki.ca)
    t0 = time.monotonic()
    try:
        with connect(port, timeout=timeout) as raw:
            with c.wrap_socket(raw, server_hostname="legit.test") as s:
                cn = dict(x[0] for x in s.getpeercert()["subject"]).get("commonName")
                check(cn == "backend-legit", "legit client: certificate CN %s" % cn)
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                body = b""
                while time.monotonic() - t0 < timeout:
                    try:
                        b = s.recv(65536)
                    except (ssl.SSLError, OSError):
                        break
                    if not b:
                        break
                    body += b
                check(b"Ciphers" in body, "legit client: no -www page: %s" % short(body))
    except (OSError, ssl.SSLError) as e:
        raise Fail("legit client: %s: %s" % (type(e).__name__, e))
    return time.monotonic() - t0


def group_main(ctx):
    b = ctx.backends
    legit_backend(ctx)
    b["echo"] = EchoBackend()
    b["capture"] = CaptureBackend()
    b["midreset"] = MidResetBackend(MIB)
    b["stream"] = StreamBackend()
    b["banner"] = SpeakFirstBackend()
    ctx.hello_half = client_hello("halfclose.test")
    b["halfclose"] = HalfCloseFirstBackend(len(ctx.hello_half), MIB)
    ctx.dead_sock, ctx.dead_port = dead_port()
    try:
        ctx.blackhole = BlackHole()
        hole_port = ctx.blackhole.port
    except Skip as e:
        ctx.blackhole = None
        ctx.blackhole_skip = str(e)
        hole_port = ctx.dead_port
    ctx.main = start_daemon(ctx, "main", [
        ("hello_timeout", "5s"), ("connect_timeout", "1s"), ("idle_timeout", "1m"),
        ("max_hello_size", "16k")], [
        ("legit.test", "127.0.0.1:%d" % b["legit"].port),
        ("echo.test", "127.0.0.1:%d" % b["echo"].port),
        ("refused.test", "127.0.0.1:%d" % ctx.dead_port),
        ("midreset.test", "127.0.0.1:%d" % b["midreset"].port),
        ("stream.test", "127.0.0.1:%d" % b["stream"].port),
        ("blackhole.test", "127.0.0.1:%d" % hole_port),
        ("halfclose.test", "127.0.0.1:%d" % b["halfclose"].port),
        ("banner.test", "127.0.0.1:%d" % b["banner"].port),
        ("cap.test", "127.0.0.1:%d" % b["capture"].port),
        # RFC 6761: .invalid never resolves.
        ("nx.test", "nonexistent.invalid:443"),
    ])
    # Warm up: one relay through, so the buffer pool and the allocator have their
    # steady-state memory before any RSS baseline is taken.
    relay_echo(ctx.main.port(), 2 * MIB)


def relay_echo(port, size):
    hello = client_hello("echo.test")
    data = random.Random(size).randbytes(size)
    with connect(port, timeout=20) as s:
        t = threading.Thread(target=lambda: (s.sendall(hello + data),
                                             s.shutdown(socket.SHUT_WR)), daemon=True)
        t.start()
        got = recv_all(s, time.monotonic() + 20)
        t.join(10)
    check(got == hello + data, "echo through the daemon: %d bytes back, want %d"
          % (len(got), len(hello) + len(data)))


# ---------------------------------------------------------------------------------------
# Faults. Each returns a short string of measurements (or None) or raises Fail/Skip.


def case_backend_refuses(ctx):
    """Fails if the client gets a reset or any byte instead of a clean FIN, or the outcome
    is not connect_failed."""
    d = ctx.main
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(d.port()) as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("refused.test"))
        how, data = wait_close(s, 1 + 5)
    check(how == "eof" and data == b"", "refused upstream: client got %s after %s, want "
          "a clean EOF and no bytes" % (how, short(data)))
    e = d.wait_log_port(lport, "refused.test", start=log_mark)
    check(e.get("outcome") == "connect_failed", "refused upstream: %s" % e["_raw"])
    check(e.get("detail") == "ECONNREFUSED", "refused upstream: detail %s, want "
          "ECONNREFUSED" % e.get("detail"))
    return "detail=%s" % e.get("detail")


def case_backpressure_up(ctx):
    """The client pushes toward a backend that reads nothing. Fails if the client can
    hand over more than the socket buffers can hold (32 MiB) before its send blocks for
    2 s, if the daemon's RSS grows by 2 MiB or more meanwhile, or if, once the backend
    reads, any byte the client's kernel accepted is missing or changed."""
    stall = StallReader(0)
    ctx.extra.append(stall)
    # A daemon of its own, so no other case's connections move its memory.
    dd = start_daemon(ctx, "backpressure-up", [("idle_timeout", "1m")],
                      [("stall.test", "127.0.0.1:%d" % stall.port),
                       ("echo.test", "127.0.0.1:%d" % ctx.backends["echo"].port)])
    relay_echo(dd.port(), 2 * MIB)
    rss0 = dd.rss_kib()
    hello = client_hello("stall.test")
    stall.skip = len(hello)
    target = 256 * MIB
    h = hashlib.sha256()
    total = 0
    peak = rss0
    with connect(dd.port()) as s:
        s.sendall(hello)
        r = stall.next_result(5, "stall accept")
        check(r[0] == "accepted", "stall backend: %s" % (r,))
        s.setblocking(False)
        deadline = time.monotonic() + 40
        blocked_at = None
        while total < target and time.monotonic() < deadline:
            _, w, _ = select.select([], [s], [], 0.25)
            peak = max(peak, dd.rss_kib() or 0)
            if not w:
                if blocked_at is None:
                    blocked_at = time.monotonic()
                if time.monotonic() - blocked_at >= 2.0:
                    break
                continue
            blocked_at = None
            c = pattern_at(total, 256 * 1024)
            try:
                n = s.send(c)
            except BlockingIOError:
                continue
            h.update(c[:n])
            total += n
        check(total < 32 * MIB, "backpressure: the client handed over %d MiB of %d MiB "
              "while the backend read nothing; socket buffers hold a few MiB, the rest "
              "sits in the daemon" % (total >> 20, target >> 20))
        # Blocked: hold it there and watch the daemon's memory.
        for _ in range(8):
            time.sleep(0.25)
            peak = max(peak, dd.rss_kib() or 0)
        check(dd.alive(), "daemon exited under backpressure")
        grow = peak - rss0
        check(grow < 2048, "backpressure: daemon RSS grew by %d KiB (from %d KiB) while "
              "%d MiB were stuck" % (grow, rss0, total >> 20))
        stall.released.set()
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
        r = stall.next_result(30, "stall release")
        check(r[0] == "ok", "stall backend after release: %s" % (r,))
        check(r[1] == total and r[2] == h.hexdigest(),
              "backpressure: the backend got %d bytes, the client's kernel took %d%s"
              % (r[1], total, "" if r[1] != total else " (same count, different bytes)"))
    return "client blocked after %.1f MiB; RSS %d -> peak %d KiB (+%d KiB)" % (
        total / MIB, rss0, peak, peak - rss0)


def case_backpressure_down(ctx):
    """The backend pushes toward a client that reads nothing. Fails if the backend's send
    does not block within 256 MiB, if the daemon's RSS grows by 2 MiB or more meanwhile,
    or if the client, reading at last, gets other bytes than the backend sent."""
    hello = client_hello("flood.test")
    flood = FloodBackend(len(hello), 256 * MIB)
    ctx.extra.append(flood)
    dd = start_daemon(ctx, "backpressure-down", [("idle_timeout", "1m")],
                      [("flood.test", "127.0.0.1:%d" % flood.port),
                       ("echo.test", "127.0.0.1:%d" % ctx.backends["echo"].port)])
    relay_echo(dd.port(), 2 * MIB)
    rss0 = dd.rss_kib()
    peak = rss0
    with connect(dd.port(), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(hello)
        deadline = time.monotonic() + 45
        r = None
        while r is None and time.monotonic() < deadline:
            peak = max(peak, dd.rss_kib() or 0)
            try:
                r = flood.results.get(timeout=0.25)
            except Exception:
                r = None
        check(r is not None, "flood backend: no word within 45s")
        check(r[0] == "blocked", "backpressure: the backend sent all %d MiB to a client "
              "that reads nothing (%s)" % (r[1] >> 20, r))
        sent_when_blocked = r[1]
        for _ in range(8):
            time.sleep(0.25)
            peak = max(peak, dd.rss_kib() or 0)
        check(dd.alive(), "daemon exited under backpressure")
        grow = peak - rss0
        check(grow < 2048, "backpressure: daemon RSS grew by %d KiB while %d MiB were "
              "stuck" % (grow, sent_when_blocked >> 20))
        flood.released.set()
        n, digest = digest_to_eof(s, 20)
        s.close()
    r = flood.next_result(10, "flood end")
    check(r[0] == "ok" and n == r[1] and digest == r[2],
          "backpressure: the client read %d bytes, the backend sent %s" % (n, r))
    return "backend blocked after %.1f MiB; RSS %d -> peak %d KiB (+%d KiB)" % (
        sent_when_blocked / MIB, rss0, peak, peak - rss0)


def case_backend_reset_midstream(ctx):
    """Bytes flow both ways, then the backend resets while the client is still sending.
    Fails if the client sees a clean EOF (or nothing within 10 s) instead of a reset, or
    the outcome is not backend_reset."""
    d = ctx.main
    be = ctx.backends["midreset"]
    be.drain_results()
    hello = client_hello("midreset.test")
    out = hello + bytes(8 * MIB)
    sent = 0
    echoed = 0
    how = None
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(d.port()) as s:
        lport = s.getsockname()[1]
        s.setblocking(False)
        deadline = time.monotonic() + 10
        while how is None and time.monotonic() < deadline:
            r, w, _ = select.select([s], [s] if sent < len(out) else [], [], 0.5)
            try:
                if r:
                    b = s.recv(262144)
                    if not b:
                        how = "eof"
                        break
                    echoed += len(b)
                if w:
                    sent += s.send(out[sent:sent + 65536])
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError) as e:
                how = "reset (%s)" % type(e).__name__
    r = be.next_result(5, "midreset")
    check(r[0] == "reset-sent", "backend: %s" % (r,))
    check(how is not None and how.startswith("reset"),
          "backend reset mid-stream: the client saw %s after %d bytes echoed, want a reset"
          % (how or "nothing within 10s", echoed))
    # Mid-stream is proven on the backend's side (it echoed a whole MiB before its reset).
    # How much of that echo the client reads first is up to its kernel: a reset may
    # overtake data the client has not read yet, relayed or not.
    check(r[1] >= MIB, "the backend reset after only %d bytes" % r[1])
    e = d.wait_log_port(lport, "backend reset mid-stream", start=log_mark)
    check(e.get("outcome") == "backend_reset", "backend reset mid-stream: %s" % e["_raw"])
    return "client saw %s after %.1f MiB echoed; detail=%s" % (how, echoed / MIB,
                                                              e.get("detail"))


def case_backend_reset_while_stalled(ctx):
    """The backend fills every buffer toward a client that is not reading, then resets;
    only then does the client read. Fails unless the client's reading ends in a reset
    (a clean EOF would pass a truncated stream off as complete) and the outcome is
    backend_reset. The relay before splice (libuv's uv_read_start) failed this: libuv
    turns POLLHUP after a short read into UV_EOF, so the RST went on as a FIN."""
    hello = client_hello("flood.test")
    flood = FloodBackend(len(hello), 64 * MIB, block_s=1.0, reset=True)
    ctx.extra.append(flood)
    dd = start_daemon(ctx, "reset-stalled", [("idle_timeout", "1m")],
                      [("flood.test", "127.0.0.1:%d" % flood.port)])
    log_mark = dd.mark()  # a reused client port must not match an older line
    with connect(dd.port(), timeout=20) as s:
        lport = s.getsockname()[1]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(hello)
        r = flood.next_result(30, "flood blocked")
        check(r[0] == "blocked", "the backend was never blocked: %s" % (r,))
        flood.released.set()
        r = flood.next_result(10, "flood reset")
        check(r[0] == "reset-sent", "backend: %s" % (r,))
        time.sleep(0.5)  # the RST reaches the daemon while it has bytes queued both ways
        n = 0
        how = None
        s.settimeout(10)
        try:
            while True:
                b = s.recv(262144)
                if not b:
                    how = "eof"
                    break
                n += len(b)
        except ConnectionResetError:
            how = "reset"
        except socket.timeout:
            how = "nothing within 10s"
    check(how == "reset", "backend reset while stalled: the client read %d bytes then %s, "
          "want a reset" % (n, how))
    e = dd.wait_log_port(lport, "backend reset while stalled", start=log_mark)
    check(e.get("outcome") == "backend_reset", "backend reset while stalled: %s" % e["_raw"])
    return "client read %.1f MiB then a reset; detail=%s" % (n / MIB, e.get("detail"))


def case_backend_blackhole(ctx):
    """The upstream's SYNs go unanswered. Fails if the client is not closed cleanly (FIN,
    no bytes) within connect_timeout (1 s) + 3 s, or the outcome is not connect_timeout."""
    if ctx.blackhole is None:
        raise Skip(ctx.blackhole_skip)
    check(ctx.blackhole.probe(0.3) == "pending", "test bug: the black hole answers")
    d = ctx.main
    t0 = time.monotonic()
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(d.port()) as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("blackhole.test"))
        how, data = wait_close(s, 1 + 3)
    took = time.monotonic() - t0
    check(how == "eof" and data == b"", "black hole: client got %s after %s, want a clean "
          "EOF and no bytes" % (how, short(data)))
    e = d.wait_log_port(lport, "blackhole.test", start=log_mark)
    check(e.get("outcome") == "connect_timeout", "black hole: %s" % e["_raw"])
    check(d.alive(), "daemon exited after a connect timeout")
    return "closed after %.2fs, duration_ms=%s" % (took, e.get("duration_ms"))


def case_client_reset_midstream(ctx):
    """Bytes flow both ways, then the client resets. Fails if the backend sees a clean EOF
    or nothing (instead of ECONNRESET/EPIPE), or the outcome is not client_reset."""
    d = ctx.main
    be = ctx.backends["stream"]
    be.drain_results()
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(d.port()) as s:
        lport = s.getsockname()[1]
        s.sendall(client_hello("stream.test") + bytes(256 * 1024))
        got = recv_n(s, 512 * 1024, 10)
        check(len(got) == 512 * 1024, "no stream from the backend")
        rst_close(s)
    r = be.next_result(10, "client reset mid-stream")
    check(r[0] == "reset", "client reset mid-stream: the backend saw %s, want a reset"
          % (r,))
    e = d.wait_log_port(lport, "client reset mid-stream", start=log_mark)
    check(e.get("outcome") == "client_reset", "client reset mid-stream: %s" % e["_raw"])
    return "backend saw %s after receiving %d bytes" % (r[1], r[2])


def case_client_reset_during_hello(ctx):
    """40 clients send the first 100 bytes of a hello and reset at once; 40 reset without
    sending anything. Fails unless every one is logged outcome=client_reset: the README
    keeps "incomplete" for a client that closed (FIN) before its hello was complete. With
    libuv 1.44 the first kind is logged incomplete/EOF: uv__stream_io turns POLLHUP after
    a short read into UV_EOF without reading the error."""
    d = ctx.main
    hello = client_hello("echo.test")
    ports = {}
    m = d.mark()
    for i in range(80):
        s = connect(d.port())
        ports[s.getsockname()[1]] = "partial hello" if i % 2 == 0 else "no bytes"
        if i % 2 == 0:
            s.sendall(hello[:100])
        rst_close(s)
    got = d.wait_log_count(len(ports), m, timeout=10)
    seen = {}
    wrong = []
    for e in got:
        # A client reset before the daemon asks for its address is logged as client=-.
        p = e.get("client", "-").rsplit(":", 1)[-1]
        what = ports.get(int(p), "?") if p.isdigit() else "client=-"
        key = "%s: %s/%s" % (what, e.get("outcome"), e.get("detail"))
        seen[key] = seen.get(key, 0) + 1
        if e.get("outcome") != "client_reset":
            wrong.append(e["_raw"])
    check(len(got) == len(ports), "%d of %d resets logged within 10s: %s"
          % (len(got), len(ports), seen))
    check(not wrong, "client resets during the hello logged as %s; e.g. %s"
          % (seen, wrong[0] if wrong else ""))
    return ", ".join("%s x%d" % kv for kv in sorted(seen.items()))


def case_backend_half_close_first(ctx):
    """run_e2e.py covers the client shutting down first; here the backend does: it sends
    1 MiB and its FIN, and only after the client has read that EOF does the client send
    4 MiB more. Fails if any of those bytes is lost or changed, if the client's data is
    cut off by the backend's FIN, or if the outcome is not ok."""
    d = ctx.main
    be = ctx.backends["halfclose"]
    be.drain_results()
    hello = ctx.hello_half
    more = 4 * MIB
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(d.port(), timeout=20) as s:
        lport = s.getsockname()[1]
        s.sendall(hello)
        h = hashlib.sha256()
        n = 0
        deadline = time.monotonic() + 15
        while True:
            check(time.monotonic() < deadline, "half-close: no EOF from the backend")
            b = s.recv(262144)
            if not b:
                break
            h.update(b)
            n += len(b)
        check(n == MIB and h.hexdigest() == pattern_digest(MIB),
              "half-close: client got %d bytes before the backend's EOF, want %d" % (n, MIB))
        try:
            pos = 0
            while pos < more:
                c = pattern_at(pos, more - pos)
                s.sendall(c)
                pos += len(c)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise Fail("half-close: sending after the backend's FIN failed after %d "
                       "bytes: %s" % (pos, e))
        how, data = wait_close(s, 10)
        check(how == "eof" and data == b"", "half-close: end %s after %s" % (how,
                                                                           short(data)))
    r = be.next_result(10, "half-close")
    check(r[0] == "ok", "half-close backend: %s" % (r,))
    check(r[1] == hello, "half-close: the backend's hello differs")
    check(r[2] == more and r[3] == pattern_digest(more),
          "half-close: the backend got %d bytes after its FIN, want %d%s"
          % (r[2], more, "" if r[2] != more else " (different bytes)"))
    e = d.wait_log_port(lport, "half-close", start=log_mark)
    check(e.get("outcome") == "ok" and e.get("bytes_in") == str(len(hello) + more)
          and e.get("bytes_out") == str(MIB), "half-close: %s" % e["_raw"])


def case_dns_unresolvable(ctx):
    """8 clients at once route to nonexistent.invalid while a legitimate client routes.
    Fails if any of the 8 gets a reset or bytes instead of a clean EOF within
    connect_timeout + 8 s, if an outcome is not resolve_failed (connect_timeout is allowed
    too: a resolver that hangs on .invalid is cut by connect_timeout), or if the
    legitimate client fails meanwhile."""
    d = ctx.main
    socks = []
    m = d.mark()
    try:
        for _ in range(8):
            s = connect(d.port())
            s.sendall(client_hello("nx.test"))
            socks.append(s)
        legit_tls(ctx, d.port())
        ends = [wait_close(s, 1 + 8) for s in socks]
        ports = [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    bad = [(how, short(data)) for how, data in ends if how != "eof" or data]
    check(not bad, "unresolvable upstream: %d of 8 clients not closed cleanly: %s"
          % (len(bad), bad[:2]))
    outcomes = {}
    for p in ports:
        e = d.wait_log_port(p, "nx.test", m)
        key = "%s/%s" % (e.get("outcome"), e.get("detail"))
        outcomes[key] = outcomes.get(key, 0) + 1
        check(e.get("outcome") in ("resolve_failed", "connect_timeout"),
              "unresolvable upstream: %s" % e["_raw"])
    return ", ".join("%s x%d" % kv for kv in sorted(outcomes.items()))


def fill_idle(d, n, settle=1.0):
    """Open <n> idle connections to <d> (each sends nothing); after <settle> s, count
    those the daemon closed at once (out of descriptors: libuv accepts and closes them).
    Returns (sockets, number kept open)."""
    socks = []
    try:
        for _ in range(n):
            socks.append(connect(d.port(), timeout=5))
    except OSError:
        for s in socks:
            s.close()
        raise
    time.sleep(settle)
    closed = sum(1 for s in socks if peer_closed(s) in ("eof", "reset"))
    return socks, len(socks) - closed


def close_idle(d, socks, kept):
    """Close idle connections and wait until the daemon has logged the <kept> it held
    (each ends "incomplete"), so their descriptors are free again."""
    m = d.mark()
    for s in socks:
        s.close()
    got = d.wait_log_count(kept, m, timeout=10)
    check(len(got) >= kept, "after closing %d idle clients the daemon logged %d lines"
          % (kept, len(got)))


def echo_concurrently(port, n, size, timeout=30):
    """<n> connections through echo.test at once, each sending <size> random bytes while
    reading the echo; returns a list of problems (empty if all came back intact)."""
    errors = []

    def one(i):
        try:
            hello = client_hello("echo.test")
            data = random.Random(i).randbytes(size)
            with connect(port, timeout=timeout) as s:
                t = threading.Thread(target=lambda: (s.sendall(hello + data),
                                                     s.shutdown(socket.SHUT_WR)),
                                     daemon=True)
                t.start()
                got = recv_all(s, time.monotonic() + timeout)
                t.join(timeout)
            if got != hello + data:
                errors.append("connection %d: %d bytes back, want %d" % (
                    i, len(got), len(hello) + len(data)))
        except Exception as e:
            errors.append("connection %d: %s: %s" % (i, type(e).__name__, e))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return errors


def case_fd_exhaustion(ctx):
    """sniroute under RLIMIT_NOFILE 64, then twice as many idle clients. Fails if the
    daemon dies; if it uses more than 25% of a CPU over 2 s while exhausted (a spin on the
    listening socket uses all of it); if a client connecting meanwhile is left hanging
    instead of being closed within 5 s; if relays already open stop moving bytes intact
    while no descriptor is free (no pipe can be had then); if, after a burst of 8
    concurrent relays has come and gone, the daemon can hold fewer idle clients than
    before (descriptors kept back while idle); or if a legitimate client and 20 raw
    hellos are not routed normally at the end."""
    limit = 64
    cap = ctx.backends["capture"]
    d = start_daemon(ctx, "fd64", [("hello_timeout", "30s"), ("connect_timeout", "2s")],
                     [("legit.test", "127.0.0.1:%d" % legit_backend(ctx).port),
                      ("cap.test", "127.0.0.1:%d" % cap.port),
                      ("echo.test", "127.0.0.1:%d" % ctx.backends["echo"].port)],
                     preexec=nofile_limit(limit))
    with open("/proc/%d/limits" % d.pid) as f:
        lim = re.search(r"Max open files\s+(\d+)", f.read())
    check(lim and int(lim.group(1)) == limit, "test bug: daemon's NOFILE limit is %s"
          % (lim and lim.group(1)))
    fds_start = d.n_fds()
    legit_tls(ctx, d.port())
    keepers = []
    idle = []
    try:
        for i in range(3):
            k = connect(d.port(), timeout=10)
            keepers.append(k)
            h = client_hello("echo.test")
            k.sendall(h)
            check(recv_n(k, len(h), 10) == h, "keeper %d: no echo of the hello" % i)
        idle, kept1 = fill_idle(d, 2 * limit)
        fds_full = d.n_fds()
        check(kept1 < len(idle), "test bug: %d idle connections did not exhaust %d "
              "descriptors (daemon holds %s)" % (len(idle), limit, fds_full))
        # Exhausted: measure CPU for 2 s while new clients keep knocking.
        cpu0 = d.cpu_seconds()
        t0 = time.monotonic()
        knockers = []
        while time.monotonic() - t0 < 2.0:
            knockers.append(connect(d.port(), timeout=5))
            time.sleep(0.25)
        cpu = d.cpu_seconds() - cpu0
        wall = time.monotonic() - t0
        check(d.alive(), "daemon exited when out of descriptors: %s" % d.proc.tail("stderr"))
        check(cpu < 0.25 * wall, "out of descriptors: the daemon used %.2fs of CPU in %.1fs "
              "(a spin?)" % (cpu, wall))
        hanging = 0
        for k in knockers:
            try:
                wait_close(k, 5)
            except Fail:
                hanging += 1
            k.close()
        check(hanging == 0, "out of descriptors: %d of %d clients connecting meanwhile were "
              "neither served nor closed within 5s" % (hanging, len(knockers)))
        # Relays already open keep moving bytes, though no pipe can be had now.
        for i, k in enumerate(keepers):
            data = random.Random(50 + i).randbytes(MIB)
            t = threading.Thread(target=k.sendall, args=(data,), daemon=True)
            t.start()
            try:
                got = recv_n(k, len(data), 20)
            except (Fail, OSError) as e:
                raise Fail("out of descriptors: relay %d open since before broke: %s" % (i, e))
            t.join(10)
            check(got == data, "out of descriptors: relay %d echoed other bytes" % i)
        close_idle(d, idle, kept1)
        idle = []
        # A burst of relays that come and go; then the same exhaustion again.
        errors = echo_concurrently(d.port(), 8, 4 * MIB)
        check(not errors, "8 concurrent relays at RLIMIT_NOFILE %d: %d failed; first: %s"
              % (limit, len(errors), errors[:1]))
        time.sleep(0.5)
        fds_after_burst = d.n_fds()
        kinds = fd_kinds(d.pid)
        idle, kept2 = fill_idle(d, 2 * limit)
        close_idle(d, idle, kept2)
        idle = []
        check(kept2 >= kept1 - 2, "out of descriptors: after 8 relays came and went the "
              "daemon held %d idle clients, before them %d; with 3 relays open and no "
              "other client it keeps %d descriptors (%s; %d at start, stdout and stderr "
              "are 2 pipes)" % (kept2, kept1, fds_after_burst, kinds, fds_start))
    finally:
        for s in idle + keepers:
            s.close()
    legit_tls(ctx, d.port())
    for i in range(20):
        cap.drain_results()
        hello = client_hello("cap.test")
        with connect(d.port()) as s:
            s.sendall(hello + b"n%d" % i)
            s.shutdown(socket.SHUT_WR)
            reply = recv_all(s, time.monotonic() + 10)
        r = cap.next_result(5, "after exhaustion")
        check(r[1] == hello + b"n%d" % i and reply == r[2],
              "after exhaustion, hello %d: not relayed intact" % i)
    check(d.alive(), "daemon exited")
    return ("idle clients held: %d, after a relay burst %d; fds at start %d, exhausted %d, "
            "idle after burst %d; CPU while exhausted %.2fs in %.1fs"
            % (kept1, kept2, fds_start, fds_full, fds_after_burst, cpu, wall))



def settle_knockers(knockers, hello, timeout):
    """Each knocker sends <hello> to the echo route and must either get it back (served)
    or see the daemon close it (EOF or reset, before or after sending), all within
    <timeout> s. Returns (served, closed, hanging)."""
    served = closed = 0
    pending = {}
    for k in knockers:
        try:
            k.sendall(hello)
            pending[k] = b""
        except OSError:
            closed += 1
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending), [], [], 0.1)
        for k in ready:
            try:
                b = k.recv(65536)
            except OSError:
                b = b""
            if not b:
                closed += 1
                del pending[k]
                continue
            pending[k] += b
            if len(pending[k]) >= len(hello):
                served += pending[k] == hello
                del pending[k]
    return served, closed, len(pending)


def case_fd_exhaustion_workers(ctx, waves=5):
    """workers = 2, then workers = 4, under RLIMIT_NOFILE 64: waves of idle clients that
    exhaust the descriptors, new clients knocking while they are held, then a release;
    <waves> waves (about 9 s) per worker count. A worker that lends its spare descriptor to shed
    what waits can lose it to another thread; without one, a level-triggered listener that
    cannot accept must not wake the loop again and again. Fails if the daemon uses more
    than 5% of one core while exhausted, if a client that knocked while exhausted is
    neither served nor closed within 5 s of the release, if a fresh client is not routed
    after each release, or if the daemon dies."""
    limit = 64
    echo = EchoBackend()
    ctx.extra.append(echo)
    hello = client_hello("echo.test")
    out = []
    for workers in (2, 4):
        port = free_port()
        d = Sniroute(ctx.sniroute, ctx.tmp, "fd64w%d" % workers, sniroute_config(
            [("workers", str(workers)), ("hello_timeout", "30s"), ("connect_timeout", "2s"),
             ("drain_timeout", "2s"), ("access_log", "stdout")],
            [("https", ["127.0.0.1:%d" % port], "r", "default")],
            [("r", [("echo.test", "127.0.0.1:%d" % echo.port)])]),
            workers, nofile_limit(limit))
        ctx.daemons.append(d)
        fds_idle = d.n_fds()
        cpu_sat = wall_sat = 0.0
        n_served = n_closed = n_waves = 0
        while n_waves < waves:
            n_waves += 1
            fillers = []
            knockers = []
            try:
                for _ in range(2 * limit):
                    fillers.append(connect(port, timeout=5))
                time.sleep(0.3)
                fds_max = 0
                cpu0 = d.cpu_seconds()
                t0 = time.monotonic()
                while time.monotonic() - t0 < 1.5:
                    knockers.append(connect(port, timeout=5))
                    fds_max = max(fds_max, d.n_fds() or 0)
                    time.sleep(0.15)
                cpu_sat += d.cpu_seconds() - cpu0
                wall_sat += time.monotonic() - t0
                check(fds_max >= limit - 1, "test bug: wave %d: %d idle clients left the "
                      "daemon at most %d descriptors, not exhausted"
                      % (n_waves, len(fillers), fds_max))
                check(d.alive(), "daemon exited when out of descriptors: %s"
                      % d.proc.tail("stderr"))
                check(cpu_sat < 0.05 * wall_sat,
                      "workers = %d, wave %d: out of descriptors, the daemon used %.2fs of CPU "
                      "in %.1fs (a spin?)" % (workers, n_waves, cpu_sat, wall_sat))
                for f in fillers:
                    f.close()
                fillers = []
                served, closed, hanging = settle_knockers(knockers, hello, 5)
                n_served += served
                n_closed += closed
                check(hanging == 0, "workers = %d, wave %d: %d of %d clients that knocked "
                      "while out of descriptors were neither served nor closed within 5s of "
                      "the release" % (workers, n_waves, hanging, len(knockers)))
                for s in knockers:
                    s.close()
                knockers = []
                # Descriptors free up: the daemon is back to what it held before the wave
                # (a kept pipe per worker aside) and stays there for longer than a pause.
                t0 = time.monotonic()
                t_low = None
                while t_low is None or time.monotonic() - t_low < 0.3:
                    fds = d.n_fds() or 0
                    t_low = (t_low or time.monotonic()) if fds <= fds_idle + 2 * workers else None
                    check(time.monotonic() - t0 < 10, "workers = %d, wave %d: 10s after the "
                          "release the daemon still holds %d descriptors (%d before)"
                          % (workers, n_waves, fds, fds_idle))
                    time.sleep(0.05)
                # Fresh clients from several source ports, so every worker's socket is
                # likely asked: each must be routed.
                for i in range(8):
                    with connect(port, timeout=5) as s:
                        s.sendall(hello)
                        try:
                            got = recv_n(s, len(hello), 5)
                        except (Fail, OSError) as e:
                            raise Fail("workers = %d, wave %d: fresh client %d after the "
                                       "release was not routed: %s" % (workers, n_waves, i, e))
                        check(got == hello, "workers = %d, wave %d: fresh client %d: other "
                              "bytes back" % (workers, n_waves, i))
            finally:
                for s in fillers + knockers:
                    s.close()
        out.append("workers=%d: %d waves, CPU while exhausted %.2fs in %.1fs, knockers "
                   "served %d closed %d" % (workers, n_waves, cpu_sat, wall_sat, n_served,
                                            n_closed))
        d.stop()
        check(d.stopped_status == 0, "workers = %d: exit status %s; stderr: %s"
              % (workers, d.stopped_status, d.proc.tail("stderr", 3)))
    return "; ".join(out)


# (audit arch, accept4's number) for a seccomp filter, by machine
SECCOMP_ACCEPT4 = {"x86_64": (0xC000003E, 288), "aarch64": (0xC00000B7, 242)}


def accept4_fails(err):
    """A preexec: a seccomp filter makes every accept4 of the child fail with <err>, as
    the kernel does when the system's file table is full (ENFILE) or memory is short
    (ENOBUFS, ENOMEM), which no test can arrange for real."""
    import ctypes
    import platform
    arch, nr = SECCOMP_ACCEPT4[platform.machine()]

    def f():
        class Insn(ctypes.Structure):
            _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                        ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

        ld_abs, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K
        code = [(ld_abs, 0, 0, 4),           # seccomp_data.arch
                (jeq, 0, 3, arch),           # another ABI: allow
                (ld_abs, 0, 0, 0),           # seccomp_data.nr
                (jeq, 0, 1, nr),
                (ret, 0, 0, 0x00050000 | err),  # SECCOMP_RET_ERRNO
                (ret, 0, 0, 0x7FFF0000)]        # SECCOMP_RET_ALLOW
        insns = (Insn * len(code))(*[Insn(*c) for c in code])
        prog = Prog(len(code), insns)
        libc = ctypes.CDLL(None, use_errno=True)
        # PR_SET_NO_NEW_PRIVS, then PR_SET_SECCOMP with SECCOMP_MODE_FILTER
        if (libc.prctl(38, 1, 0, 0, 0) != 0 or
                libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0):
            os.write(2, b"seccomp filter refused\n")
            os._exit(127)
    return f


def case_accept_fails(ctx):
    """accept fails for every connection, with ENOBUFS, then ENFILE (a seccomp filter
    says so), while 20 clients wait: fails if the daemon dies, if it uses more than 5% of
    one core over 2 s (a level-triggered listener that cannot accept wakes the loop again
    at once), or if it logs more than 4 notices about it in that time."""
    import errno
    import platform
    if platform.machine() not in SECCOMP_ACCEPT4:
        raise Skip("no seccomp numbers for %s" % platform.machine())
    out = []
    for name in ("ENOBUFS", "ENFILE"):
        d = start_daemon(ctx, "accept_" + name.lower(), [], [("echo.test", "127.0.0.1:1")],
                         preexec=accept4_fails(getattr(errno, name)))
        waiting = []
        try:
            for _ in range(20):
                waiting.append(connect(d.port(), timeout=5))
            time.sleep(0.2)
            cpu0 = d.cpu_seconds()
            t0 = time.monotonic()
            time.sleep(2.0)
            cpu = d.cpu_seconds() - cpu0
            wall = time.monotonic() - t0
            check(d.alive(), "accept failing with %s: the daemon exited: %s"
                  % (name, d.proc.tail("stderr")))
            check(cpu < 0.05 * wall, "accept failing with %s: the daemon used %.2fs of CPU "
                  "in %.1fs (a spin?)" % (name, cpu, wall))
            notices = [x for x in d.proc.text("stderr").splitlines() if "accept on" in x]
            check(1 <= len(notices) <= 4, "accept failing with %s: %d notices in %.1fs; "
                  "last: %s" % (name, len(notices), wall, notices[-1:]))
            out.append("%s: CPU %.2fs in %.1fs, %d notice(s)" % (name, cpu, wall,
                                                                 len(notices)))
        finally:
            for s in waiting:
                s.close()
        check(d.stop() == 0, "accept failing with %s: exit status %s; stderr: %s"
              % (name, d.stopped_status, d.proc.tail("stderr", 3)))
    return "; ".join(out)


def case_upstream_speaks_first(ctx):
    """The backend sends a 100 KB banner on accept, before reading. Fails if the client
    does not get the banner byte for byte, if the backend does not get the hello byte for
    byte, or if the connection does not then echo and end cleanly."""
    d = ctx.main
    be = ctx.backends["banner"]
    be.drain_results()
    hello = client_hello("banner.test")
    log_mark = d.mark()  # a reused client port must not match an older line
    with connect(d.port()) as s:
        lport = s.getsockname()[1]
        s.sendall(hello)
        got = recv_n(s, len(BANNER), 10)
        check(got == BANNER, "speaks first: the client got %s, want the %d-byte banner"
              % (short(got), len(BANNER)))
        echo = recv_n(s, len(hello), 10)
        check(echo == hello, "speaks first: the backend's echo is not the hello")
        s.sendall(b"after-banner")
        check(recv_n(s, 12, 10) == b"after-banner", "speaks first: no echo")
        s.shutdown(socket.SHUT_WR)
        how, data = wait_close(s, 10)
        check(how == "eof" and data == b"", "speaks first: end %s %s" % (how, short(data)))
    r = be.next_result(5, "speaks first")
    check(r == ("ok", hello + b"after-banner"), "speaks first: backend got %s"
          % short(str(r)))
    e = d.wait_log_port(lport, "speaks first", start=log_mark)
    check(e.get("outcome") == "ok", "speaks first: %s" % e["_raw"])


# ---------------------------------------------------------------------------------------
# Abuse


def hello_of_size(sni, total, cuts=0):
    """A well-formed hello of exactly <total> bytes (record headers included), padded
    with an ignorable extension, in 1 + <cuts> records."""
    base = client_hello(sni)
    pad = total - len(base) - 4 - 5 * cuts
    h = inflate_hello(base, pad)
    check(len(h) == total - 5 * cuts, "test bug: %d-byte hello" % len(h))
    if cuts:
        body = len(h) - 5
        h = reframe(h, [body * (i + 1) // (cuts + 1) for i in range(cuts)])
    check(len(h) == total, "test bug: %d-byte hello, want %d" % (len(h), total))
    return h


def case_hello_at_cap(ctx):
    """max_hello_size is 16k (16384). A hello of exactly 16384 bytes, in one record and in
    three, followed by more bytes in the same write: fails unless the backend gets the
    hello and the bytes after it unchanged and the outcome is ok."""
    d = ctx.main
    cap = ctx.backends["capture"]
    for cuts in (0, 2):
        cap.drain_results()
        h = hello_of_size("cap.test", 16384, cuts)
        log_mark = d.mark()  # a reused client port must not match an older line
        with connect(d.port()) as s:
            lport = s.getsockname()[1]
            s.sendall(h + b"after-the-hello")
            s.shutdown(socket.SHUT_WR)
            reply = recv_all(s, time.monotonic() + 10)
        r = cap.next_result(5, "hello at the cap")
        check(r[0] == "ok" and r[1] == h + b"after-the-hello",
              "16384-byte hello in %d record(s): the backend got %d bytes, want %d"
              % (cuts + 1, len(r[1]) if len(r) > 1 else -1, len(h) + 15))
        check(reply == r[2], "hello at the cap: reply differs")
        e = d.wait_log_port(lport, "hello at the cap", start=log_mark)
        check(e.get("outcome") == "ok" and e.get("bytes_in") == str(len(h) + 15),
              "hello at the cap: %s" % e["_raw"])


def case_hello_over_cap(ctx):
    """A well-formed hello of 16385 bytes (one over max_hello_size), in one record and in
    three: fails unless the client gets exactly the handshake_failure alert
    (15 03 03 00 02 02 28) and then a clean EOF, and the outcome is too_large."""
    d = ctx.main
    cap = ctx.backends["capture"]
    cap.drain_results()
    for cuts in (0, 2):
        h = hello_of_size("cap.test", 16385, cuts)
        log_mark = d.mark()  # a reused client port must not match an older line
        with connect(d.port()) as s:
            lport = s.getsockname()[1]
            try:
                s.sendall(h)
            except (BrokenPipeError, ConnectionResetError):
                pass
            how, data = wait_close(s, 2 + 5)
        check(how == "eof" and data == ALERT_HANDSHAKE_FAILURE,
              "16385-byte hello in %d record(s): client got %s then %s, want %s then EOF"
              % (cuts + 1, data.hex() or "nothing", how, ALERT_HANDSHAKE_FAILURE.hex()))
        e = d.wait_log_port(lport, "hello over the cap", start=log_mark)
        check(e.get("outcome") == "too_large", "hello over the cap: %s" % e["_raw"])
    check(cap.results.empty(), "a hello over the cap reached the backend")


class Slowloris:
    """<n> clients, each sending the next byte of a real ClientHello about once a second
    from one thread; a client the daemon closes is replaced. Bounded by stop() and by
    <max_s>."""

    def __init__(self, port, n, max_s):
        self.port = port
        self.n = n
        self.max_s = max_s
        self.hello = client_hello("slow.test")
        self.stopping = threading.Event()
        self.reconnects = 0
        self.connect_errors = 0
        self.bytes_sent = 0
        self.open_now = 0
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _new(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(("127.0.0.1", self.port))
        if err not in (0, 115):  # EINPROGRESS
            s.close()
            self.connect_errors += 1
            return None
        return [s, 0]

    def _run(self):
        slots = []
        try:
            end = time.monotonic() + self.max_s
            # Connect in 10 batches over a second, so the daemon's accept queue is not
            # the thing under test.
            for i in range(10):
                slots += [self._new() for _ in range(self.n // 10)]
                time.sleep(0.1)
            tick = 0
            while not self.stopping.is_set() and time.monotonic() < end:
                # One tenth of the clients per 100 ms: each sends once a second.
                for j in range(tick % 10, len(slots), 10):
                    c = slots[j]
                    if c is None:
                        slots[j] = self._new()
                        self.reconnects += 1
                        continue
                    try:
                        n = c[0].send(self.hello[c[1] % len(self.hello):][:1])
                        c[1] += n
                        self.bytes_sent += n
                    except BlockingIOError:
                        pass
                    except OSError:
                        c[0].close()
                        slots[j] = self._new()
                        self.reconnects += 1
                self.open_now = sum(1 for c in slots if c is not None)
                tick += 1
                time.sleep(0.1)
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            for c in slots:
                if c is not None:
                    c[0].close()

    def stop(self):
        self.stopping.set()
        self.thread.join(15)


def case_slowloris(ctx):
    """1,500 clients each dribble a hello one byte a second (hello_timeout 4 s, so they
    are cut and come back) while legitimate TLS clients connect one after another for
    about 7 s. Fails if any legitimate client fails (100% expected), if fewer than 10
    legitimate clients ran, or if the daemon never held 1,000 slow clients at once (the
    load did not happen, so the test proves nothing)."""
    raise_nofile()
    n = 1500
    d = start_daemon(ctx, "slowloris", [("hello_timeout", "4s"), ("connect_timeout", "2s")],
                     [("legit.test", "127.0.0.1:%d" % legit_backend(ctx).port)],
                     preexec=nofile_limit(None))
    legit_tls(ctx, d.port())
    m = d.mark()
    slow = Slowloris(d.port(), n, 30)
    lat = []
    fails = []
    max_fds = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:  # let the slow clients pile up
            max_fds = max(max_fds, d.n_fds() or 0)
            time.sleep(0.2)
        t1 = time.monotonic()
        while time.monotonic() - t1 < 7.0 and len(lat) + len(fails) < 200:
            try:
                lat.append(legit_tls(ctx, d.port()))
            except Fail as e:
                fails.append(str(e))
            max_fds = max(max_fds, d.n_fds() or 0)
            time.sleep(0.05)
    finally:
        slow.stop()
    check(slow.error is None, "test bug: slowloris driver: %s" % slow.error)
    check(d.alive(), "daemon exited under slowloris")
    check(max_fds >= 1000, "the daemon held at most %d descriptors: the slowloris load "
          "(%d clients) never reached it" % (max_fds, n))
    total = len(lat) + len(fails)
    check(total >= 10, "only %d legitimate clients ran" % total)
    check(not fails, "slowloris: %d of %d legitimate clients failed; first: %s"
          % (len(fails), total, fails[0] if fails else ""))
    lat.sort()
    timeouts = sum(1 for e in d.logs(m) if e.get("outcome") == "hello_timeout")
    return ("legit %d/%d ok (100%%), latency p50 %.0f ms p95 %.0f ms max %.0f ms; "
            "daemon held up to %d fds; slow bytes %d, reconnects %d, hello_timeouts %d"
            % (len(lat), total, 1000 * lat[len(lat) // 2],
               1000 * lat[min(len(lat) - 1, int(len(lat) * 0.95))], 1000 * lat[-1],
               max_fds, slow.bytes_sent, slow.reconnects, timeouts))


def garbage_batch(port, start, count, held, hello, deadline):
    """Connections <start>..<start+count> of the flood, kind chosen by index: random
    bytes then close; connect and close; connect and reset; part of a hello then reset;
    connect and say nothing (kept open in <held>, at most 400). Returns how many made."""
    made = 0
    rng = random.Random(start)
    for i in range(start, start + count):
        if time.monotonic() > deadline:
            break
        kind = i % 5
        try:
            s = connect(port, timeout=5)
        except OSError:
            continue
        made += 1
        try:
            if kind == 0:
                s.sendall(rng.randbytes(rng.randrange(1, 600)))
                s.close()
            elif kind == 1:
                s.close()
            elif kind == 2:
                rst_close(s)
            elif kind == 3:
                s.sendall(hello[:rng.randrange(1, len(hello))])
                rst_close(s)
            elif len(held) < 400:
                held.append(s)
            else:
                s.close()
        except OSError:
            s.close()
    return made


GARBAGE_OUTCOMES = {"not_tls", "malformed", "incomplete", "client_reset", "hello_timeout",
                    "too_large"}


def case_garbage_flood(ctx):
    """5,000 garbage, reset and half-open (silent) connections as fast as 4 threads make
    them (bounded by 30 s). Fails if the daemon dies; if a flood connection is logged
    with an outcome other than a refusal; if some connection is never logged (within
    20 s); if the daemon keeps descriptors afterwards; if its RSS does not come back within
    8 MiB of the baseline (not asserted under ASan, whose quarantine keeps freed memory);
    or if a legitimate client is not routed afterwards."""
    d = start_daemon(ctx, "garbage", [("hello_timeout", "2s"), ("connect_timeout", "2s")],
                     [("legit.test", "127.0.0.1:%d" % legit_backend(ctx).port)],
                     preexec=nofile_limit(None))
    port = d.port()
    hello = client_hello("legit.test")
    held = []
    # Warm up with a small flood of the same kinds, so the baseline includes the
    # allocator's steady state.
    garbage_batch(port, 10**6, 200, [], hello, time.monotonic() + 10)
    legit_tls(ctx, port)
    d.wait_log_count(1, d.mark(), timeout=1)
    time.sleep(2.5)  # the warm-up's partial hellos time out (2 s)
    rss0 = d.rss_kib()
    fds0 = d.n_fds()
    m = d.mark()
    n = 5000
    counts = [0] * 4
    deadline = time.monotonic() + 30
    t0 = time.monotonic()
    peak = rss0

    def worker(k):
        counts[k] = garbage_batch(port, k * (n // 4), n // 4, held, hello, deadline)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline + 5:
        peak = max(peak, d.rss_kib() or 0)
        time.sleep(0.1)
    flood_s = time.monotonic() - t0
    made = sum(counts)
    check(made >= n * 0.95, "the flood made only %d of %d connections" % (made, n))
    peak = max(peak, d.rss_kib() or 0)
    n_held = len(held)
    for s in held:
        s.close()
    check(d.alive(), "daemon exited under the flood: %s" % d.proc.tail("stderr"))
    got = d.wait_log_count(made, m, timeout=20)
    hist = {}
    for e in got:
        hist[e.get("outcome")] = hist.get(e.get("outcome"), 0) + 1
    odd = [e["_raw"] for e in got if e.get("outcome") not in GARBAGE_OUTCOMES]
    check(not odd, "flood: %d connections with unexpected outcomes, first: %s"
          % (len(odd), odd[:1]))
    check(len(got) == made, "flood: %d connections made, %d access-log lines after 20s "
          "(%s)" % (made, len(got), hist))
    fds1 = None
    end = time.monotonic() + 5
    while time.monotonic() < end:
        fds1 = d.n_fds()
        if fds1 <= fds0:
            break
        time.sleep(0.1)
    check(fds1 <= fds0, "flood: the daemon holds %d descriptors after, %d before"
          % (fds1, fds0))
    legit_tls(ctx, port)
    time.sleep(0.5)
    rss1 = d.rss_kib()
    grow = rss1 - rss0
    if ctx.is_asan:
        ctx.notes.append("garbage_flood: RSS %d -> %d KiB (+%d) under ASan, not asserted"
                         % (rss0, rss1, grow))
    else:
        check(grow < 8 * 1024, "flood: daemon RSS %d KiB before, %d KiB after (+%d KiB)"
              % (rss0, rss1, grow))
    return ("%d connections in %.1fs (%d held silent); outcomes %s; RSS %d -> peak %d -> "
            "after %d KiB; fds %d -> %d"
            % (made, flood_s, n_held, ", ".join("%s %d" % kv for kv in sorted(hist.items())),
               rss0, peak, rss1, fds0, fds1))


def case_daemons_exit_cleanly(ctx):
    """SIGTERM every daemon of this run: fails unless each exits 0 and its stderr has no
    sanitizer report."""
    problems = []
    for d in ctx.daemons:
        status = d.stop()
        if status != 0:
            problems.append("%s exited %s; stderr: %s" % (d.name, status,
                                                         d.proc.tail("stderr", 3)))
        rep = d.sanitizer_report()
        if rep:
            problems.append("%s: %s" % (d.name, short(rep, 400)))
    check(not problems, "; ".join(problems))
    return "%d daemons" % len(ctx.daemons)


CASES = [
    ("backend_refuses", "main", case_backend_refuses),
    ("backpressure_up", "main", case_backpressure_up),
    ("backpressure_down", "main", case_backpressure_down),
    ("backend_reset_midstream", "main", case_backend_reset_midstream),
    ("backend_reset_while_stalled", "main", case_backend_reset_while_stalled),
    ("backend_blackhole", "main", case_backend_blackhole),
    ("client_reset_midstream", "main", case_client_reset_midstream),
    ("client_reset_during_hello", "main", case_client_reset_during_hello),
    ("backend_half_close_first", "main", case_backend_half_close_first),
    ("dns_unresolvable", "main", case_dns_unresolvable),
    ("fd_exhaustion", "main", case_fd_exhaustion),
    ("fd_exhaustion_workers", None, case_fd_exhaustion_workers),
    ("accept_fails", None, case_accept_fails),
    ("upstream_speaks_first", "main", case_upstream_speaks_first),
    ("hello_at_cap", "main", case_hello_at_cap),
    ("hello_over_cap", "main", case_hello_over_cap),
    ("slowloris", None, case_slowloris),
    ("garbage_flood", None, case_garbage_flood),
    ("daemons_exit_cleanly", None, case_daemons_exit_cleanly),
]


def where(exc):
    """An unexpected exception as one line, with the innermost frames in this suite."""
    here = os.path.dirname(os.path.abspath(__file__))
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) == here]
    at = " <- ".join("%s:%d %s" % (os.path.basename(f.filename), f.lineno, f.name)
                     for f in reversed(frames[-3:]))
    return "%s: %s (at %s)" % (type(exc).__name__, exc, at)


def deaths(ctx):
    out = ""
    for d in ctx.daemons:
        rc = d.proc.p.poll()
        if rc is not None and d.stopped_status is None and d not in ctx.reported:
            ctx.reported.append(d)
            out += " [%s died unasked, status %s; stderr: %s]" % (d.name, rc,
                                                                  d.proc.tail("stderr", 5))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sniroute", required=True, help="the daemon binary")
    ap.add_argument("-k", dest="only", default=None, help="run only cases containing this")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (prints it)")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    ctx = Ctx()
    ctx.sniroute = os.path.abspath(args.sniroute)
    ctx.tmp = tempfile.mkdtemp(prefix="sniroute-faults-")
    ctx.daemons = []
    ctx.backends = {}
    ctx.extra = []
    ctx.notes = []
    ctx.reported = []
    ctx.blackhole = None
    ctx.dead_sock = None
    ctx.is_asan = binary_has_asan(ctx.sniroute)
    passed = failed = skipped = 0
    setup_error = None
    t_start = time.monotonic()
    try:
        if not os.access(ctx.sniroute, os.X_OK):
            print("FAIL setup: %s is not an executable file" % ctx.sniroute, flush=True)
            print("0 passed, 1 failed", flush=True)
            return 1
        ctx.pki = PKI(ctx.tmp)
        main_ready = False
        for name, group, fn in CASES:
            if args.only and args.only not in name:
                continue
            t0 = time.monotonic()
            try:
                if group == "main" and not main_ready:
                    if setup_error is None:
                        try:
                            group_main(ctx)
                            main_ready = True
                        except Exception as e:
                            setup_error = e if isinstance(e, (Fail, Skip)) else Fail(where(e))
                    if setup_error is not None:
                        raise type(setup_error)("setup: %s" % setup_error)
                info = fn(ctx)
                print("PASS %s (%.1fs)%s" % (name, time.monotonic() - t0,
                                             " [%s]" % info if info else ""), flush=True)
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
        for b in list(ctx.backends.values()) + ctx.extra:
            try:
                if hasattr(b, "released"):
                    b.released.set()
                b.stop()
            except Exception:
                pass
        if ctx.blackhole is not None:
            ctx.blackhole.close()
        if ctx.dead_sock is not None:
            ctx.dead_sock.close()
        Proc.stop_all()
        if args.keep:
            print("# kept %s" % ctx.tmp, flush=True)
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    for n in ctx.notes:
        print("# note: %s" % n, flush=True)
    print("# %s%.0fs in all" % ("%d skipped; " % skipped if skipped else "",
                                time.monotonic() - t_start), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
