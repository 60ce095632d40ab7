#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The kernel relay (kernel_relay = sockmap, issue 14 part 2) through the real daemon: once a
connection is joined to the BPF sockhash the kernel moves its bytes, and everything the
worker's relay promises must still hold:

- bulk both ways at once, every byte checked (SHA-256), the access log's and /metrics'
  byte counts equal to the bytes moved, and sniroute_kernel_relayed_total counting the
  connection (so the case fails if the kernel path was not taken);
- half-close each way: the side that sends FIN first has every byte reach the other end
  before the FIN, and the other direction goes on to its own FIN; outcome ok;
- a reset on either side is passed on as a reset (client_reset, backend_reset);
- the idle timeout: a connection whose bytes only the kernel sees lives on while they move
  and is closed (idle_timeout) once they stop;
- the fallback: run without privileges (setpriv to nobody, no capabilities), kernel_relay
  = auto relays through the workers and says so in the log and /metrics; kernel_relay =
  sockmap refuses to start.

- backpressure: a client that reads nothing holds its backend back (the backend's socket
  is paused, sniroute_kernel_relay_pauses_total moves), a backend that reads nothing holds
  its client back (the connection goes to the worker's relay, or, when the backend's
  direction cannot follow, the client's alone), a FIN that comes while the backend's socket is paused still reaches the
  client after every byte, and a client that reads nothing until its upload is through
  gets it through a slow backend while its download waits; then everything arrives whole;
- bulk both ways through bench_loadgen and bench_backend (4 streams, self-describing
  blocks): nothing lost, reordered, mixed or corrupt.

Skips (exit 77) with the reason where the kernel or the privileges refuse the program.

    run_sockmap.py --sniroute build/sniroute [-k FILTER]
"""

import hashlib
import json
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import Fail, Skip, check, client_hello  # noqa: E402
from run_upgrade import Daemon, is_gone  # noqa: E402

NAME = "kernel.test"
MIB = 1 << 20
BLOCK = random.Random(14).randbytes(MIB)


def stream(n):
    """<n> bytes of the repeated BLOCK, in pieces."""
    left = n
    while left > 0:
        piece = BLOCK[:min(left, MIB)]
        yield piece
        left -= len(piece)


def digest(n, prefix=b""):
    h = hashlib.sha256(prefix)
    for p in stream(n):
        h.update(p)
    return h.hexdigest()


def send_stream(s, n):
    for p in stream(n):
        s.sendall(p)


def read_to_eof(s, limit, timeout):
    """(count, sha256 hex, how it ended: "eof" / "reset" / "timeout")."""
    h = hashlib.sha256()
    n = 0
    s.settimeout(timeout)
    try:
        while n <= limit:
            b = s.recv(MIB)
            if not b:
                return n, h.hexdigest(), "eof"
            h.update(b)
            n += len(b)
    except ConnectionResetError:
        return n, h.hexdigest(), "reset"
    except socket.timeout:
        return n, h.hexdigest(), "timeout"
    return n, h.hexdigest(), "too much"


def recv_exact(s, n, timeout=10):
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            raise Fail("EOF after %d of %d bytes" % (len(out), n))
        out += b
    return bytes(out)


class Backend(harness._Acceptor):
    """Plain TCP: each connection goes to the handler the case set (conn, results)."""

    handler = None

    def handle(self, conn):
        self.handler(conn, self.results)


def config(backend, aport, mode="sockmap", extra=()):
    settings = [("kernel_relay", mode), ("admin", "127.0.0.1:%d" % aport),
                ("connect_timeout", "2s"), ("drain_timeout", "5s")] + list(extra)
    return harness.sniroute_config(settings, [("https", ["127.0.0.1:0"], "main", "reject")],
                                   [("main", [(NAME, "127.0.0.1:%d" % backend.port)])])


def metrics(aport):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % aport, timeout=10) as r:
        return promtext.parse(r.read().decode(), lint=True)


class Setup:
    """A backend and a daemon with kernel_relay = sockmap (or <mode>); <upgradable>: the
    daemon is run_upgrade's, which follows binary upgrades (self.up)."""

    def __init__(self, ctx, name, mode="sockmap", extra=(), upgradable=False):
        self.backend = Backend()
        self.aport = harness.free_port()
        self.d = None
        self.up = None
        try:
            text = config(self.backend, self.aport, mode, extra)
            if upgradable:
                self.up = Daemon(ctx, name, text)
                self.d = self.up.d
            else:
                self.d = harness.Sniroute(ctx.binary, ctx.tmp, name, text)
        except Fail as e:
            err = ""
            self.backend.stop()
            if self.d is not None:
                err = self.d.proc.text("stderr")
            raise Fail("%s: %s" % (e, err))
        self.d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:%d" % self.aport, 10)

    def joined(self):
        return promtext.value(metrics(self.aport), "sniroute_kernel_relayed_total")

    def close(self):
        """Stop both; the daemon must exit 0 with no sanitizer report (ASan build)."""
        status = None
        if self.up is not None:
            self.up.stop()  # every process, by PID; checks the sanitizer and clean stops
            self.backend.stop()
            return
        if self.d is not None:
            status = self.d.stop()
        self.backend.stop()
        if self.d is not None:
            report = self.d.sanitizer_report()
            check(report is None, "sanitizer: %s" % report)
            check(status == 0, "the daemon exited with status %r" % status)


def joined_pair(st, client_port=None):
    """A client connected through the daemon, and the backend's socket of it, joined to
    the kernel path: the hello goes out, the backend answers, the client speaks again
    (the join waits for both directions to be idle with their queues read to the end),
    and the counter must move. Returns (client, backend socket, bytes each way so far)."""
    got = []
    ready = threading.Event()
    release = threading.Event()

    def handler(conn, results):
        got.append(conn)
        ready.set()
        release.wait(60)

    st.backend.handler = handler
    before = st.joined()
    c = socket.create_connection(("127.0.0.1", st.d.port()), timeout=10)
    hello = client_hello(NAME)
    c.sendall(hello)
    check(ready.wait(10), "the backend saw no connection")
    b = got[0]
    recv_exact(b, len(hello))
    b.sendall(b"S" * 1000)  # the backend's first flight
    recv_exact(c, 1000)
    c.sendall(b"C" * 100)  # the client's second flight
    recv_exact(b, 100)
    deadline = time.monotonic() + 5
    while st.joined() <= before:
        check(time.monotonic() < deadline, "the connection was not handed to the kernel "
              "(sniroute_kernel_relayed_total stayed at %s)" % before)
        time.sleep(0.02)
    st._release = release
    return c, b, len(hello) + 100, 1000


def probe(binary, tmp):
    """Skip unless the daemon here can load the program."""
    st = None
    try:
        ctx = type("Ctx", (), {"binary": binary, "tmp": tmp})()
        st = Setup(ctx, "probe")
    except Fail as e:
        if "cannot load the BPF program" in str(e):
            raise Skip("the kernel or the privileges refuse the sockmap program: %s"
                       % str(e).split("cannot load the BPF program:", 1)[1].split("\n")[0])
        raise
    finally:
        if st is not None:
            st.close()


def case_bulk_both_ways(ctx):
    """64 MiB each way at once through a joined connection: every byte checked, the log
    line and /metrics count exactly what moved, and the path is the kernel's."""
    st = Setup(ctx, "bulk")
    try:
        n = 64 * MIB
        check(promtext.value(metrics(st.aport), "sniroute_relay_path", path="sockmap") == 1,
              "/metrics does not say sockmap")
        check("relay path: sockmap" in st.d.proc.text("stderr"), "the log does not say sockmap")
        mark = st.d.mark()
        c, b, sent_in, sent_out = joined_pair(st)
        res = {}

        def backend_side():
            t = threading.Thread(target=lambda: (send_stream(b, n), b.shutdown(socket.SHUT_WR)))
            t.start()
            res["b"] = read_to_eof(b, n, 30)
            t.join(30)

        bt = threading.Thread(target=backend_side)
        bt.start()
        ct = threading.Thread(target=lambda: (send_stream(c, n), c.shutdown(socket.SHUT_WR)))
        ct.start()
        got = read_to_eof(c, n, 30)
        ct.join(30)
        bt.join(30)
        st._release.set()
        check(got == (n, digest(n), "eof"), "client got %d bytes (%s), sha %s"
              % (got[0], got[2], "ok" if got[1] == digest(n) else "differs"))
        check(res.get("b") == (n, digest(n), "eof"), "backend got %r" % (res.get("b"),))
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the bulk connection", mark)
        check(e["outcome"] == "ok", "outcome %s (%s)" % (e["outcome"], e.get("detail")))
        check(int(e["bytes_in"]) == sent_in + n and int(e["bytes_out"]) == sent_out + n,
              "log bytes_in=%s bytes_out=%s, moved %d and %d"
              % (e["bytes_in"], e["bytes_out"], sent_in + n, sent_out + n))
        m = metrics(st.aport)
        bi = promtext.value(m, "sniroute_bytes_in_total", listener="https")
        bo = promtext.value(m, "sniroute_bytes_out_total", listener="https")
        check(bi == sent_in + n and bo == sent_out + n,
              "/metrics bytes in %s out %s, moved %d and %d" % (bi, bo, sent_in + n,
                                                                 sent_out + n))
        c.close()
        b.close()
        return "2 x %d MiB, counts exact" % (n // MIB)
    finally:
        st.close()


def case_hello_and_bulk_in_one_write(ctx):
    """The client sends its hello and 32 MiB in one write, so the daemon's first read
    ends inside a segment the kernel path must not send again: the backend gets exactly
    what was sent (a segment read in part and then handed to the program whole would
    arrive twice), and the connection still joins the kernel path."""
    st = Setup(ctx, "onewrite")
    try:
        n = 32 * MIB
        res = {}

        def handler(conn, results):
            res["b"] = read_to_eof(conn, len(hello) + n, 30)
            send_stream(conn, n)
            conn.shutdown(socket.SHUT_WR)

        st.backend.handler = handler
        before = st.joined()
        hello = client_hello(NAME)
        c = socket.create_connection(("127.0.0.1", st.d.port()), timeout=10)
        c.sendall(hello + bytes(next(stream(MIB))))
        send_stream(c, n - MIB)
        c.shutdown(socket.SHUT_WR)
        got = read_to_eof(c, n, 30)
        c.close()
        check(res.get("b") is not None and res["b"][:2] == (len(hello) + n, digest(n, hello)),
              "backend got %s bytes (sent %d), sha %s" % (
                  res.get("b", (None,))[0], len(hello) + n,
                  "ok" if res.get("b", (0, ""))[1] == digest(n, hello) else "differs"))
        check(got == (n, digest(n), "eof"), "client got %d bytes (%s)" % (got[0], got[2]))
        check(st.joined() > before, "the connection never joined the kernel path")
        return "%d MiB each way" % (n // MIB)
    finally:
        st.close()


def sockstat_tcp_pages():
    """The kernel's TCP memory in pages (/proc/net/sockstat, "TCP: ... mem N")."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                words = line.split()
                return int(words[words.index("mem") + 1])
    return None


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return None


# A reader that stops may let the backend push this much into sniroute and the sockets on
# the way (their buffers autotune to a few MiB each, plus what the program lets wait on a
# peer) but not more: without backpressure the kernel takes 1 GiB in about 2 s.
STALL_MAX = 64 * MIB


def pauses(st):
    return promtext.value(metrics(st.aport), "sniroute_kernel_relay_pauses_total")


def splits(st):
    return promtext.value(metrics(st.aport), "sniroute_kernel_relay_splits_total")


def push_for(sock, seconds, n=1 << 30):
    """Send up to <n> bytes of the stream on <sock> (non-blocking) for <seconds>; returns
    how many went."""
    pushed = 0
    sock.setblocking(False)
    gen = stream(n)
    piece = memoryview(next(gen))
    end = time.monotonic() + seconds
    while pushed < n and time.monotonic() < end:
        try:
            k = sock.send(piece)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        pushed += k
        piece = piece[k:]
        if not piece and pushed < n:
            piece = memoryview(next(gen))
    sock.setblocking(True)
    return pushed


def stall(ctx, name, client_reads):
    """One side reads nothing for 4 s while the other tries to send 1 GiB: the sender
    gets at most STALL_MAX through and the kernel's available memory does not fall by
    more than twice that; then the reader reads, and the whole 128 MiB stream arrives in
    order, then EOF."""
    st = Setup(ctx, name)
    try:
        mark = st.d.mark()
        c, b, sent_in, sent_out = joined_pair(st)
        sender, reader = (b, c) if client_reads else (c, b)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        p0 = pauses(st)
        mem0 = mem_available_kib()
        stalled = push_for(sender, 4)
        mem1 = mem_available_kib()
        check(stalled < STALL_MAX, "%s pushed %d MiB in 4 s while the other end read nothing "
              "(no backpressure)" % ("the backend" if client_reads else "the client",
                                     stalled // MIB))
        used = (mem0 - mem1) * 1024
        check(used < STALL_MAX * 2, "available memory fell by %d MiB while stalled"
              % (used // MIB))
        check(pauses(st) > p0, "sniroute_kernel_relay_pauses_total did not move")
        total = 128 * MIB
        rest = threading.Thread(target=lambda: (send_rest(sender, stalled, total),
                                                sender.shutdown(socket.SHUT_WR)), daemon=True)
        rest.start()
        got = read_to_eof(reader, total, 30)
        rest.join(30)
        check(got == (total, digest(total), "eof"), "after the stall %d of %d bytes arrived "
              "(%s), sha %s" % (got[0], total, got[2],
                                "ok" if got[1] == digest(total) else "differs"))
        reader.shutdown(socket.SHUT_WR)
        st._release.set()
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the stalled connection", mark)
        moved = int(e["bytes_out"]) - sent_out if client_reads else int(e["bytes_in"]) - sent_in
        check(e["outcome"] == "ok" and moved == total,
              "outcome %s, %d bytes counted of %d" % (e["outcome"], moved, total))
        c.close()
        b.close()
        return ("stalled at %.1f MiB, MemAvailable %+.1f MiB; then %d MiB whole"
                % (stalled / MIB, -used / MIB, total // MIB))
    finally:
        st.close()


# A reader that stops may let the sender push this much into sniroute and the sockets on
# the way (their buffers autotune to a few MiB each, plus the 4 MiB the program lets wait
# on a peer before the socket is paused) but not more: without backpressure the kernel
# took 1 GiB in about 2 s. The worker's splice relay stops at 10-12 MiB here.
STALL_MAX = 64 * MIB


def case_backpressure_slow_client(ctx):
    """The client reads nothing: the backend's socket is paused (its bytes wait in it, TCP
    closes the window), resumed once the client reads."""
    return stall(ctx, "bp_client", client_reads=True)


def case_backpressure_slow_backend(ctx):
    """The backend reads nothing: the client's socket is paused and, once what waited on
    the backend has gone, the connection goes to the worker's relay."""
    return stall(ctx, "bp_backend", client_reads=False)


def case_fin_while_paused(ctx):
    """The backend sends 64 MiB and its FIN while the client reads nothing (its socket is
    paused with the FIN behind the bytes): the client still gets every byte, then EOF."""
    st = Setup(ctx, "fin_paused")
    try:
        mark = st.d.mark()
        c, b, sent_in, sent_out = joined_pair(st)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        n = 64 * MIB
        p0 = pauses(st)
        t = threading.Thread(target=lambda: (send_stream(b, n), b.shutdown(socket.SHUT_WR)),
                             daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while pauses(st) == p0:
            check(time.monotonic() < deadline, "the backend's socket was never paused")
            time.sleep(0.05)
        time.sleep(1)  # the FIN reaches the paused socket
        got = read_to_eof(c, n, 30)
        t.join(30)
        st._release.set()
        check(got == (n, digest(n), "eof"), "the client got %d of %d bytes (%s), sha %s"
              % (got[0], n, got[2], "ok" if got[1] == digest(n) else "differs"))
        c.shutdown(socket.SHUT_WR)
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the connection", mark)
        check(e["outcome"] == "ok" and int(e["bytes_out"]) == sent_out + n,
              "outcome %s bytes_out %s" % (e["outcome"], e["bytes_out"]))
        c.close()
        b.close()
        return "%d MiB and FIN behind a paused socket, all delivered" % (n // MIB)
    finally:
        st.close()


def slow_reader_fast_sender(sock, n_out, read_every, read_piece, seconds, n_in=None):
    """The backend of case_upload_behind_unread_download: sends <n_out> bytes of the stream
    as fast as the socket takes them while reading at most <read_piece> bytes every
    <read_every> s, until the client's EOF (or <n_in> bytes read) and the last byte sent,
    or <seconds>. Returns (bytes read, sha256 hex of them, bytes sent, whether both
    ended)."""
    h = hashlib.sha256()
    got = sent = 0
    eof = False
    gen = stream(n_out)
    piece = memoryview(b"")
    sock.setblocking(False)
    next_read = time.monotonic()
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (eof and sent == n_out):
        now = time.monotonic()
        want_w = sent < n_out
        r, w, _ = select.select([sock] if not eof and now >= next_read else [],
                                [sock] if want_w else [],
                                [], max(0.0, min(0.05, next_read - now)))
        if r:
            b = sock.recv(read_piece)
            if not b:
                eof = True
            else:
                h.update(b)
                got += len(b)
                eof = n_in is not None and got >= n_in
                next_read = time.monotonic() + read_every
        if w:
            if not piece:
                piece = memoryview(next(gen))
            try:
                k = sock.send(piece)
                sent += k
                piece = piece[k:]
            except BlockingIOError:
                pass
    sock.setblocking(True)
    return got, h.hexdigest(), sent, eof and sent == n_out


def case_upload_behind_unread_download(ctx):
    """A client that reads nothing until its upload is done, and a backend that sends a
    lot first and reads slowly: the download waits on the client (the backend's socket is
    paused), the upload waits on the backend (the client's socket is paused). A direct
    connection finishes (the upload goes at the backend's pace, then the client reads);
    through the kernel path the client's direction must go on without the other, which
    cannot move until the client reads. Both streams arrive whole, the log counts them."""
    st = Setup(ctx, "unread_download")
    try:
        mark = st.d.mark()
        c, b, sent_in, sent_out = joined_pair(st)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        n_up, n_down = 48 * MIB, 32 * MIB
        p0, s0 = pauses(st), splits(st)
        result = []
        t = threading.Thread(target=lambda: (result.append(
            slow_reader_fast_sender(b, n_down, 0.01, 256 * 1024, 60)),
            b.shutdown(socket.SHUT_WR)), daemon=True)
        t.start()
        c.settimeout(30)
        t0 = time.monotonic()
        try:
            send_stream(c, n_up)
        except socket.timeout:
            raise Fail("the upload stalled: the backend's unread bytes on the client held "
                       "the client's direction back (%d kernel relay pauses)"
                       % (pauses(st) - p0))
        c.shutdown(socket.SHUT_WR)
        up_s = time.monotonic() - t0
        got = read_to_eof(c, n_down, 30)
        t.join(60)
        st._release.set()
        check(result and result[0][3], "the backend did not finish: %r" % (result,))
        check(result[0][:2] == (n_up, digest(n_up)), "the backend got %d of %d bytes, sha %s"
              % (result[0][0], n_up, "ok" if result[0][1] == digest(n_up) else "differs"))
        check(got == (n_down, digest(n_down), "eof"), "the client got %d of %d bytes (%s), "
              "sha %s" % (got[0], n_down, got[2], "ok" if got[1] == digest(n_down) else
                          "differs"))
        check(pauses(st) - p0 >= 2, "only %d pauses: the case did not back both ways up"
              % (pauses(st) - p0))
        check(splits(st) - s0 == 1, "sniroute_kernel_relay_splits_total moved by %d, not 1"
              % (splits(st) - s0))
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the connection", mark)
        check(e["outcome"] == "ok" and int(e["bytes_in"]) == sent_in + n_up and
              int(e["bytes_out"]) == sent_out + n_down,
              "outcome %s, bytes_in %s bytes_out %s" % (e["outcome"], e["bytes_in"],
                                                       e["bytes_out"]))
        c.close()
        b.close()
        return ("%d MiB up at the backend's pace (%.1f s) with %d MiB waiting on the client; "
                "%d pauses" % (n_up // MIB, up_s, n_down // MIB, pauses(st) - p0))
    finally:
        st.close()


def case_handover_after_split(ctx):
    """A split connection (the client's direction with the worker, the backend's in the
    kernel: the client uploads 48 MiB through a slow backend without reading the 12 MiB
    the backend sent first) goes to the new process of a binary upgrade once it is quiet, and
    the new process relays the rest both ways: every byte arrives, one log line (the new
    process's) counts them all."""
    st = Setup(ctx, "split_handover", upgradable=True)
    try:
        c, b, sent_in, sent_out = joined_pair(st)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # The upload is far more than the sockets can buffer while the client's socket is
        # paused: it cannot finish (and the client read the 12 MiB, which would let the
        # connection leave whole) unless the connection splits.
        n_pre, n_up, n_down, n_last = 12 * MIB, 48 * MIB, 8 * MIB, MIB
        s0 = splits(st)
        result = []
        t = threading.Thread(target=lambda: result.append(
            slow_reader_fast_sender(b, n_pre, 0.01, 256 * 1024, 30, n_in=n_up)), daemon=True)
        t.start()
        c.settimeout(30)
        send_stream(c, n_up)
        pre = recv_exact(c, n_pre, 30)
        t.join(30)
        check(hashlib.sha256(pre).hexdigest() == digest(n_pre), "the first download differs")
        check(result and result[0][:2] == (n_up, digest(n_up)),
              "before the upgrade the backend got %r of %d bytes" % (result[:1], n_up))
        check(splits(st) - s0 == 1, "sniroute_kernel_relay_splits_total moved by %d, not 1"
              % (splits(st) - s0))
        mark = st.d.mark()
        old = st.up.pid
        st.up.upgrade()
        deadline = time.monotonic() + 10
        while not is_gone(old):
            check(time.monotonic() < deadline, "the old pid %d still runs 10 s after the "
                  "upgrade" % old)
            time.sleep(0.05)
        adopted = promtext.value(metrics(st.aport), "sniroute_connections_adopted_total",
                                 listener="https")
        check(adopted == 1, "the new pid adopted %s connections, not 1" % adopted)
        # The rest goes through the new process: a download, then a last upload.
        t = threading.Thread(target=lambda: (send_stream(b, n_down),
                                             b.shutdown(socket.SHUT_WR)), daemon=True)
        t.start()
        got = read_to_eof(c, n_down, 30)
        t.join(30)
        check(got == (n_down, digest(n_down), "eof"), "after the upgrade the client got %d of "
              "%d bytes (%s)" % (got[0], n_down, got[2]))
        send_stream(c, n_last)
        c.shutdown(socket.SHUT_WR)
        back = read_to_eof(b, n_last, 30)
        check(back == (n_last, digest(n_last), "eof"), "after the upgrade the backend got %d "
              "of %d bytes (%s)" % (back[0], n_last, back[2]))
        st._release.set()
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the connection", mark)
        check(e["outcome"] == "ok" and int(e["bytes_in"]) == sent_in + n_up + n_last and
              int(e["bytes_out"]) == sent_out + n_pre + n_down,
              "outcome %s, bytes_in %s bytes_out %s" % (e["outcome"], e["bytes_in"],
                                                       e["bytes_out"]))
        lines = [x for x in st.d.logs() if x.get("sni") == NAME]
        check(len(lines) == 1, "%d log lines for the connection: %s"
              % (len(lines), [x["_raw"] for x in lines]))
        c.close()
        b.close()
        return ("split in %d MiB up behind %d MiB down, handed to the new pid, then %d MiB "
                "down and %d MiB up through it, one log line"
                % (n_up // MIB, n_pre // MIB, n_down // MIB, n_last // MIB))
    finally:
        st.close()


class LoadgenRig:
    """bench_loadgen and bench_backend (built next to the daemon) with a daemon relaying
    through the kernel path between them; leaving the with-block stops both and checks the
    daemon's exit."""

    def __init__(self, ctx, name):
        bindir = os.path.dirname(os.path.abspath(ctx.binary))
        self.loadgen = os.path.join(bindir, "bench_loadgen")
        backend_bin = os.path.join(bindir, "bench_backend")
        self.hello = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                                  "hello", "curl.bin")
        if not (os.path.exists(self.loadgen) and os.path.exists(backend_bin)):
            raise Skip("bench_loadgen/bench_backend not built next to %s" % ctx.binary)
        bport = harness.free_port()
        self.be = harness.Proc([backend_bin, "-l", "127.0.0.1:%d" % bport, "-f", self.hello],
                               "bench_backend")
        self.aport = harness.free_port()
        self.d = None
        try:
            time.sleep(0.3)
            settings = [("kernel_relay", "sockmap"), ("admin", "127.0.0.1:%d" % self.aport),
                        ("access_log", "off"), ("idle_timeout", "1h"),
                        ("drain_timeout", "5s")]
            self.d = harness.Sniroute(ctx.binary, ctx.tmp, name, harness.sniroute_config(
                settings, [("https", ["127.0.0.1:0"], "main", "reject")],
                [("main", [("curl.example", "127.0.0.1:%d" % bport)])]))
            self.d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:%d" % self.aport, 10)
        except BaseException:
            self.stop(check_exit=False)
            raise

    def run(self, mode, *args):
        """bench_loadgen <mode> <args> through the daemon: its JSON result."""
        r = subprocess.run([self.loadgen, mode, "-a", "127.0.0.1:%d" % self.d.port(), "-f",
                            self.hello] + list(args), capture_output=True, text=True,
                           timeout=120)
        check(r.returncode == 0, "bench_loadgen failed: %s" % r.stderr[-500:])
        return json.loads(r.stdout.strip().splitlines()[-1])

    def metric(self, name):
        return promtext.value(metrics(self.aport), name)

    def stop(self, check_exit=True):
        status = self.d.stop() if self.d is not None else None
        self.be.stop()
        if self.d is not None and check_exit:
            report = self.d.sanitizer_report()
            check(report is None, "sanitizer: %s" % report)
            check(status == 0, "the daemon exited with status %r" % status)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(check_exit=exc_type is None)
        return False


def case_bulk_loadgen(ctx):
    """bench_loadgen bulk (4 streams both ways for 3 s, every 16-byte block tagged with
    its connection and index, checked at both ends) through the kernel path: nothing lost,
    reordered, mixed or corrupt, every stream's tail there. This load pauses sockets, and
    the earlier pause designs corrupted it; Python's single stream did not show that."""
    with LoadgenRig(ctx, "bulk_loadgen") as rig:
        # A connection joins the kernel path once the worker finds both directions idle;
        # a stream that never lets up stays with the worker: run again (at most 3 times)
        # until some did, so that the kernel path is what was checked.
        for _ in range(3):
            res = rig.run("bulk", "-n", "4", "-t", "3", "-T", "60", "-L", "sockmap")
            bad = {k: res[k] for k in ("lost", "reordered", "mixed", "corrupt", "no_trailer",
                                       "unconfirmed") if res[k] != 0}
            check(not bad and res["completed"] == 4, "bulk through the kernel path: %s (%s)"
                  % (bad, json.dumps(res)[-300:]))
            joined = rig.metric("sniroute_kernel_relayed_total")
            n_paused = rig.metric("sniroute_kernel_relay_pauses_total")
            if joined >= 1:
                break
        check(joined >= 1, "no connection joined the kernel path in 3 runs")
        return "up %.2f / down %.2f Gbit/s, all blocks whole, %d pauses" % (
            res["up_gbps"], res["down_gbps"], n_paused)


def case_integrity_loadgen(ctx):
    """bench_loadgen integrity: 4 rounds of 1,000 connections at once, each sending 64 KiB
    both ways and then its FIN, the backend answering with what it received: every
    connection completes and every byte arrives. A FIN was once passed on before the last
    bytes the kernel had not yet run through the program (they waited for the stream
    parser's work item): the kernel's push then failed with EPIPE and reset the connection,
    about 1 in 1,000 kernel-relayed ones. How many join the kernel path depends on timing
    (a connection joins once the worker finds both directions idle after its first read):
    most in the sanitizer build and a Release build, a few dozen in RelWithDebInfo."""
    n = 1000
    if harness.raise_nofile() < 2 * n + 100:
        raise Skip("RLIMIT_NOFILE too low for %d connections" % n)
    with LoadgenRig(ctx, "integrity_loadgen") as rig:
        for _ in range(4):
            res = rig.run("integrity", "-n", str(n), "-b", "65536", "-T", "60")
            bad = {k: res[k] for k in ("connect_errors", "reply_errors", "resets", "lost",
                                       "reordered", "mixed", "corrupt", "no_trailer",
                                       "unconfirmed") if res[k] != 0}
            check(not bad and res["completed"] == n, "integrity through the kernel path: %s (%s)"
                  % (bad, json.dumps(res)[-300:]))
        joined = rig.metric("sniroute_kernel_relayed_total")
        check(joined >= 1, "no connection of %d joined the kernel path" % (4 * n))
        return "%d connections, %d through the kernel path, every byte there" % (4 * n, joined)


def send_rest(s, start, total):
    """The stream's bytes from <start> to <total>."""
    pos = start
    while pos < total:
        off = pos % MIB
        piece = BLOCK[off:off + min(MIB - off, total - pos)]
        s.sendall(piece)
        pos += len(piece)


def case_after_dropping_root(ctx):
    """user = nobody: the program is loaded as root before the drop, and the workers still
    join connections afterwards (map updates need no capability)."""
    if os.geteuid() != 0:
        raise Skip("not root")
    st = Setup(ctx, "dropped", extra=[("user", "nobody")])
    try:
        c, b, _, _ = joined_pair(st)
        b.sendall(b"z" * 100000)
        recv_exact(c, 100000)
        st._release.set()
        c.close()
        b.close()
        return "joined as nobody"
    finally:
        st.close()


def half_close(ctx, name, client_first):
    st = Setup(ctx, name)
    try:
        n = 16 * MIB
        mark = st.d.mark()
        c, b, sent_in, sent_out = joined_pair(st)
        first, second = (c, b) if client_first else (b, c)
        t = threading.Thread(target=lambda: (send_stream(first, n),
                                             first.shutdown(socket.SHUT_WR)))
        t.start()
        got = read_to_eof(second, n, 30)
        t.join(30)
        check(got == (n, digest(n), "eof"), "%s sent %d bytes and FIN; the other end got %d "
              "(%s, sha %s)" % ("client" if client_first else "backend", n, got[0], got[2],
                                "ok" if got[1] == digest(n) else "differs"))
        # The other direction is still open: it goes on, then ends with its own FIN.
        t = threading.Thread(target=lambda: (send_stream(second, n),
                                             second.shutdown(socket.SHUT_WR)))
        t.start()
        got = read_to_eof(first, n, 30)
        t.join(30)
        st._release.set()
        check(got == (n, digest(n), "eof"), "the reply after the half-close: %d bytes (%s)"
              % (got[0], got[2]))
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the half-closed connection", mark)
        check(e["outcome"] == "ok", "outcome %s (%s)" % (e["outcome"], e.get("detail")))
        check(int(e["bytes_in"]) == sent_in + n and int(e["bytes_out"]) == sent_out + n,
              "log bytes_in=%s bytes_out=%s" % (e["bytes_in"], e["bytes_out"]))
        c.close()
        b.close()
        return "%d MiB then FIN, then %d MiB back then FIN" % (n // MIB, n // MIB)
    finally:
        st.close()


def case_half_close_client_first(ctx):
    """The client sends 16 MiB and FIN: the backend gets all of it, then EOF; its answer
    (16 MiB and FIN) still reaches the client whole."""
    return half_close(ctx, "hc_client", True)


def case_half_close_backend_first(ctx):
    """The same with the backend sending first."""
    return half_close(ctx, "hc_backend", False)


def reset(ctx, name, client_resets):
    st = Setup(ctx, name)
    try:
        mark = st.d.mark()
        c, b, _, _ = joined_pair(st)
        who, other = (c, b) if client_resets else (b, c)
        who.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        who.close()
        got = read_to_eof(other, MIB, 10)
        st._release.set()
        check(got[2] == "reset", "the other side saw %s, not a reset" % got[2])
        want = "client_reset" if client_resets else "backend_reset"
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the reset connection", mark)
        check(e["outcome"] == want, "outcome %s, want %s" % (e["outcome"], want))
        other.close()
        return want
    finally:
        st.close()


def case_reset_client(ctx):
    """The client resets a joined connection: the backend gets a reset (client_reset)."""
    return reset(ctx, "rst_client", True)


def case_reset_backend(ctx):
    """The backend resets: the client gets a reset (backend_reset)."""
    return reset(ctx, "rst_backend", False)


def case_idle_timeout(ctx):
    """idle_timeout = 1500ms: bytes every 300 ms for 4 s (which only the kernel sees) keep
    the connection open; once they stop it is closed with idle_timeout."""
    st = Setup(ctx, "idle", extra=[("idle_timeout", "1500ms")])
    try:
        mark = st.d.mark()
        c, b, sent_in, sent_out = joined_pair(st)
        moved = 0
        t_end = time.monotonic() + 4
        while time.monotonic() < t_end:
            try:
                c.sendall(b"x" * 1000)
                recv_exact(b, 1000)
                b.sendall(b"y" * 1000)
                recv_exact(c, 1000)
            except Fail as e:
                raise Fail("after %d bytes each way: %s; log: %s"
                           % (moved, e, [x["_raw"] for x in st.d.logs(mark)]))
            moved += 1000
            time.sleep(0.3)
        check(not st.d.logs(mark), "closed while bytes moved: %s" % st.d.logs(mark))
        t0 = time.monotonic()
        e = st.d.wait_log(lambda e: e.get("sni") == NAME, "the idle connection", mark, 10)
        quiet = time.monotonic() - t0
        st._release.set()
        check(e["outcome"] == "idle_timeout", "outcome %s" % e["outcome"])
        check(int(e["bytes_in"]) == sent_in + moved and int(e["bytes_out"]) == sent_out + moved,
              "log bytes_in=%s bytes_out=%s, moved %d each way after the join"
              % (e["bytes_in"], e["bytes_out"], moved))
        c.close()
        b.close()
        return "closed %.1fs after the last byte" % quiet
    finally:
        st.close()


def unprivileged(ctx, name, mode):
    """A daemon run as nobody without capabilities: (Sniroute or None, stderr)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise Skip("setpriv (util-linux) is not installed")
    if os.geteuid() != 0:
        raise Skip("not root: cannot switch to nobody")
    backend = Backend()
    aport = harness.free_port()
    path = os.path.join(ctx.tmp, name + ".ini")
    with open(path, "w") as f:
        f.write(config(backend, aport, mode))
    os.chmod(path, 0o644)
    argv = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", ctx.binary, "-c", path]
    return backend, aport, argv


def case_unprivileged_falls_back(ctx):
    """As nobody with no capabilities, kernel_relay = auto relays in the workers (splice),
    and says so in the log and /metrics; a transfer through it is whole."""
    backend, aport, argv = unprivileged(ctx, "unpriv_auto", "auto")
    proc = harness.Proc(argv, "sniroute(unprivileged)")
    try:
        _, m = proc.wait_line("stderr", harness.LISTEN_RX.pattern, 15)
        port = int(m.group(2))
        text = proc.text("stderr")
        check("relay path: splice (kernel_relay = auto: cannot load the BPF program" in text,
              "the log does not say splice: %s" % text)
        proc.wait_line("stderr", r"admin on 127\.0\.0\.1:%d" % aport, 10)
        mm = metrics(aport)
        check(promtext.value(mm, "sniroute_relay_path", path="splice") == 1 and
              promtext.value(mm, "sniroute_relay_path", path="sockmap") == 0,
              "/metrics does not say splice")

        def handler(conn, results):
            data = harness.recv_all(conn, deadline=time.monotonic() + 20)
            conn.sendall(hashlib.sha256(data).hexdigest().encode())
            conn.shutdown(socket.SHUT_WR)

        backend.handler = handler
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        hello = client_hello(NAME)
        c.sendall(hello)
        send_stream(c, 8 * MIB)
        c.shutdown(socket.SHUT_WR)
        got = harness.recv_all(c, deadline=time.monotonic() + 20)
        c.close()
        check(got == digest(8 * MIB, hello).encode(), "the backend got other bytes: %r"
              % got[:80])
        return text.split("relay path: ", 1)[1].split("\n", 1)[0]
    finally:
        proc.stop(harness.signal.SIGTERM, timeout=15)
        backend.stop()


def case_unprivileged_sockmap_refuses(ctx):
    """As nobody with no capabilities, kernel_relay = sockmap refuses to start, saying why."""
    backend, _, argv = unprivileged(ctx, "unpriv_sockmap", "sockmap")
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        check(r.returncode != 0, "started anyway (exit %d)" % r.returncode)
        check("kernel_relay = sockmap: cannot load the BPF program" in r.stderr,
              "stderr: %s" % r.stderr[-400:])
        return r.stderr.strip().splitlines()[-1]
    finally:
        backend.stop()


CASES = [case_bulk_both_ways, case_hello_and_bulk_in_one_write, case_after_dropping_root, case_half_close_client_first, case_half_close_backend_first,
         case_reset_client, case_reset_backend, case_idle_timeout, case_unprivileged_falls_back,
         case_unprivileged_sockmap_refuses, case_backpressure_slow_client,
         case_backpressure_slow_backend, case_fin_while_paused,
         case_upload_behind_unread_download, case_handover_after_split, case_bulk_loadgen,
         case_integrity_loadgen]


def make_ctx(binary, tmp, args):
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    try:
        probe(binary, tmp)
    except Skip as e:
        print("SKIP sockmap: %s" % e)
        sys.exit(77)
    return ctx


if __name__ == "__main__":
    harness.run_suite(CASES, make_ctx)
