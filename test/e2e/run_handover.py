#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Binary upgrade with the connection handover (issue 7 part 3): after SIGUSR2 the old
process hands its idle established connections to the new one (SCM_RIGHTS) instead of
draining them, so long-lived streams do not pin old processes. Through the real daemon
with drain_timeout = 60s:

- long-lived echo streams, idle between bursts of random bytes (every byte echoed and
  checked), plus one stream pumping bulk data right across each upgrade, live through
  three upgrades while clients connect back to back; every old process must exit within
  seconds (not after drain_timeout), the newest process's /metrics must count the streams
  as adopted, and each stream must get exactly one access-log line, at its end, from the
  newest process (the only one still running then), with its exact byte totals;
  workers = 1 and workers = 2;
- an HTTP-tracked keep-alive connection (protocol = http) is not handed over: it keeps
  the old process running and is still served by it, while an idle TLS-listener stream
  beside it moves on;
- the new process dies while the old one holds a busy connection: the old one keeps it
  and relays it to its end.

    run_handover.py --sniroute build/sniroute [-k FILTER]
"""

import array
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import CaptureBackend, EchoBackend, Fail, check  # noqa: E402
from run_upgrade import (ECHO_NAME, HELLO_NAME, Daemon, Load, free_port, is_gone,  # noqa: E402
                         recv_exact)

# The drain the old processes would sit out without the handover.
DRAIN_S = 60
# How long an old process may take to exit after its upgrade: it hands over what is idle
# at once and re-checks busy connections every 100 ms; generous for a loaded machine and
# the sanitizer build, and far below DRAIN_S.
OLD_EXIT_S = 10


class GateBackend(harness._Acceptor):
    """Plain TCP with a small receive buffer: accepts and reads nothing until release(),
    then echoes everything until EOF. A client that sends much before the release keeps
    sniroute's client-to-backend direction busy (bytes in flight, backpressure) for as long
    as the gate is shut."""

    def __init__(self):
        self.released = threading.Event()
        super().__init__()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)

    def handle(self, conn):
        self.results.put(("accepted",))
        self.released.wait(60)
        conn.settimeout(60)
        while True:
            b = conn.recv(65536)
            if not b:
                break
            conn.sendall(b)
        conn.shutdown(socket.SHUT_WR)
        self.results.put(("ok",))

    def release(self):
        self.released.set()


GATE_NAME = "gate.test"


# --kernel-relay MODE: every daemon runs with kernel_relay = MODE (the streams then move
# from the kernel path, through its leave, to the new process).
KERNEL_RELAY = None


def config(port, aport, capture, echo, workers=1, web_port=None, gate=None):
    text = ("[sniroute]\nhello_timeout = 5s\nconnect_timeout = 2s\ndrain_timeout = %ds\n"
            "workers = %d\nadmin = 127.0.0.1:%d\n"
            % (DRAIN_S, workers, aport))
    if KERNEL_RELAY is not None:
        text += "kernel_relay = %s\n" % KERNEL_RELAY
    text += "[listener https]\nlisten = 127.0.0.1:%d\nroutes = main\n" % port
    if web_port is not None:
        text += "[listener web]\nlisten = 127.0.0.1:%d\nprotocol = http\nroutes = main\n" % web_port
    text += ("[routes main]\n%s = 127.0.0.1:%d\n%s = 127.0.0.1:%d\n"
             % (HELLO_NAME, capture.port, ECHO_NAME, echo.port))
    if gate is not None:
        text += "%s = 127.0.0.1:%d\n" % (GATE_NAME, gate.port)
    return text


def metrics(aport):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % aport, timeout=10) as r:
        return promtext.parse(r.read().decode(), lint=True)


def adopted(aport, listener):
    return promtext.value(metrics(aport), "sniroute_connections_adopted_total",
                          listener=listener)


class Stream:
    """One long-lived echo connection through the https listener: the hello, then bursts of
    random bytes, each echoed back whole and checked before the next. Counts what the
    access log must say at the end."""

    def __init__(self, port, seed):
        self.rng = random.Random(seed)
        self.s = harness.connect(port, timeout=20)
        self.port = self.s.getsockname()[1]
        hello = harness.client_hello(ECHO_NAME)
        self.s.sendall(hello)
        check(recv_exact(self.s, len(hello)) == hello, "stream %d: hello not echoed" % self.port)
        self.n_in = self.n_out = len(hello)
        self.t_open = time.monotonic()

    def burst(self):
        chunk = self.rng.randbytes(self.rng.randint(1, 16384))
        self.s.sendall(chunk)
        got = recv_exact(self.s, len(chunk))
        check(got == chunk, "stream %d: echoed bytes differ after %d bytes"
              % (self.port, self.n_in))
        self.n_in += len(chunk)
        self.n_out += len(chunk)

    def close(self):
        self.s.shutdown(socket.SHUT_WR)
        rest = harness.recv_all(self.s, time.monotonic() + 20)
        check(rest == b"", "stream %d: %d unexpected bytes at the end" % (self.port, len(rest)))
        self.s.close()


class BulkStream(Stream):
    """A Stream that can also pump: a writer thread sends 64 KiB blocks of a seeded random
    sequence back to back for a while, this thread reads the echo at once and compares it
    with the same sequence, byte for byte."""

    def __init__(self, port, seed):
        super().__init__(port, seed)
        self.seed = seed * 7919
        self.n_bursts = 0

    def pump(self, seconds):
        self.n_bursts += 1
        seed = (self.seed, self.n_bursts)
        sent = [0, None]

        def writer():
            rng = random.Random(repr(seed))
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    block = rng.randbytes(65536)
                    self.s.sendall(block)
                    sent[0] += len(block)
            except OSError as e:
                sent[1] = e

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        rng = random.Random(repr(seed))
        expect = b""
        got = 0
        deadline = time.monotonic() + seconds + 30
        while t.is_alive() or got < sent[0]:
            # Short waits: the writer may still be running when its last bytes are back.
            if not select.select([self.s], [], [], 0.2)[0]:
                check(time.monotonic() < deadline, "bulk stream %d: %d of %s bytes echoed"
                      % (self.port, got, sent[0] if not t.is_alive() else "more"))
                continue
            data = self.s.recv(262144)
            if not data:
                raise Fail("bulk stream %d: EOF after %d bytes echoed" % (self.port, got))
            while len(expect) < len(data):
                expect += rng.randbytes(65536)
            check(data == expect[:len(data)],
                  "bulk stream %d: echoed bytes differ at %d" % (self.port, got))
            expect = expect[len(data):]
            got += len(data)
        t.join()
        if sent[1] is not None:
            raise Fail("bulk stream %d: send failed: %r" % (self.port, sent[1]))
        check(got == sent[0], "bulk stream %d: %d sent, %d echoed" % (self.port, sent[0], got))
        self.n_in += got
        self.n_out += got
        return got


def idle_bursts(streams, stop, errors):
    """Each stream in turn: a burst now and then, idle in between (thread body)."""
    rng = random.Random(1)
    try:
        while not stop.is_set():
            rng.choice(streams).burst()
            stop.wait(rng.uniform(0.02, 0.15))
    except (OSError, Fail) as e:
        errors.append("idle stream: %r" % e)


def wait_gone(pid, timeout):
    """Seconds until <pid> exited; Fail after <timeout>."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if is_gone(pid):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise Fail("old pid %d still running %ss after its upgrade (drain_timeout is %ds): its "
               "connections were not handed over" % (pid, timeout, DRAIN_S))


def check_log_lines(d, streams):
    """Exactly one access-log line per stream, with its totals and outcome ok."""
    for s in streams:
        lines = [e for e in d.d.logs() if e.get("client", "").endswith(":%d" % s.port)]
        if not lines:
            d.d.wait_log_port(s.port, "stream", timeout=10)
            lines = [e for e in d.d.logs() if e.get("client", "").endswith(":%d" % s.port)]
        check(len(lines) == 1, "stream %d: %d access-log lines: %s"
              % (s.port, len(lines), [e["_raw"] for e in lines]))
        e = lines[0]
        check(e.get("outcome") == "ok" and int(e["bytes_in"]) == s.n_in and
              int(e["bytes_out"]) == s.n_out and e.get("sni") == ECHO_NAME and
              e.get("listener") == "https" and e.get("route") == "exact",
              "stream %d: expected ok, bytes_in=%d bytes_out=%d; got %s"
              % (s.port, s.n_in, s.n_out, e["_raw"]))
        # The duration runs from the accept in the first process.
        check(int(e["duration_ms"]) >= int((s.t_close - s.t_open) * 1000) - 200,
              "stream %d: duration_ms %s, but it was open %.1fs"
              % (s.port, e["duration_ms"], s.t_close - s.t_open))


def run_streams(ctx, name, workers, n_upgrades=3):
    capture, echo = CaptureBackend(), EchoBackend()
    port, aport = free_port(), free_port()
    d = Daemon(ctx, name, config(port, aport, capture, echo, workers), n_sockets=workers)
    load = None
    stop = threading.Event()
    errors = []
    streams = []
    try:
        streams = [Stream(port, i) for i in range(4)]
        bulk = BulkStream(port, 99)
        bulk.pump(0.2)
        everyone = streams + [bulk]
        bursts = threading.Thread(target=idle_bursts, args=(streams, stop, errors), daemon=True)
        bursts.start()
        load = Load(port, n_clients=2, n_streams=2, stream_s=1.5)
        exits = []
        pumped = 0
        for i in range(n_upgrades):
            # The bulk stream pumps right across the upgrade: it moves once it is idle
            # for a moment (between two reads) or when the pump is over.
            result = []
            t = threading.Thread(target=lambda: result.append(bulk.pump(1.5)), daemon=True)
            t.start()
            time.sleep(0.3)
            old = d.pid
            d.upgrade()
            exits.append(wait_gone(old, OLD_EXIT_S))
            t.join(30)
            check(result, "bulk stream: pump across upgrade %d did not finish" % (i + 1))
            pumped += result[0]
            check(not errors, "during upgrade %d: %s" % (i + 1, errors))
            bulk.burst()
            time.sleep(0.3)
        # The newest process took over every stream from the one before it.
        n_adopted = adopted(aport, "https")
        check(n_adopted >= len(everyone), "newest pid %d: %s adopted, %d streams open"
              % (d.pid, n_adopted, len(everyone)))
        if KERNEL_RELAY == "sockmap":
            # The adopted streams joined the newest process's kernel path again.
            joined = promtext.value(metrics(aport), "sniroute_kernel_relayed_total")
            check(joined is not None and joined >= 1, "newest pid %d: %s connections "
                  "kernel-relayed" % (d.pid, joined))
        time.sleep(0.3)
        stop.set()
        bursts.join(10)
        check(not errors, "after the upgrades: %s" % errors)
        counts = load.finish()
        check(counts["refused"] == 0 and counts["fail"] == 0 and counts["broken"] == 0,
              "load during %d upgrades: %r; first errors: %s" % (n_upgrades, counts,
                                                               load.errors[:3]))
        check(counts["ok"] > 0 and counts["streams"] > 0, "too little load: %r" % counts)
        for s in everyone:
            s.burst()  # still served after the last upgrade
            s.close()
            s.t_close = time.monotonic()
        # Only the newest process runs now, so the final lines are its own.
        check(all(is_gone(p) for p in d.pids if p != d.pid), "an old process is running")
        check_log_lines(d, everyone)
        check(not any(e.get("outcome") == "handed_over" for e in d.d.logs()),
              "an access-log line says handed_over")
        m = metrics(aport)
        ok = promtext.value(m, "sniroute_connections_closed_total", listener="https",
                            outcome="ok")
        check(ok is not None and ok >= len(everyone), "newest pid closed %s ok" % ok)
        d.stop()
        return ("%d upgrades, %d streams and %d KiB pumped across them; old pids exited "
                "after %.2fs at most (drain_timeout %ds); %d adopted by the newest; load %d "
                "connections, %d streams, 0 refused, 0 broken"
                % (n_upgrades, len(everyone), pumped // 1024, max(exits), DRAIN_S, n_adopted,
                   counts["ok"], counts["streams"]))
    finally:
        stop.set()
        if load is not None:
            load.stop.set()
        for s in streams:
            s.s.close()
        d.kill_all()
        capture.stop()
        echo.stop()


def case_streams_follow_upgrades(ctx):
    """workers = 1: four idle-between-bursts streams and one pumping bulk data across each
    of three upgrades, under load. Fails if a byte differs or is missing, an old process
    outlives its upgrade by more than OLD_EXIT_S, the newest process did not adopt the
    streams, a stream has no single exact access-log line, or a connection is refused."""
    return run_streams(ctx, "streams1", 1)


def case_streams_follow_upgrades_two_workers(ctx):
    """The same with workers = 2 (two SO_REUSEPORT sockets, two loops handing over and
    adopting round robin)."""
    return run_streams(ctx, "streams2", 2)


def case_http_tracked_stays(ctx):
    """protocol = http: a keep-alive connection with a request tracker is not handed over.
    After the upgrade the old process keeps running for it and serves its next request,
    while an idle stream on the TLS listener moves to the new process at once; once the
    HTTP connection closes, the old process exits. Fails otherwise."""
    capture, echo = CaptureBackend(), EchoBackend()
    port, aport, wport = free_port(), free_port(), free_port()
    d = Daemon(ctx, "http", config(port, aport, capture, echo, 1, wport), n_sockets=2)
    h = None
    stream = None
    try:
        h = harness.connect(wport, timeout=20)
        h_port = h.getsockname()[1]
        n_h = 0
        for i in range(2):
            req = b"GET /%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, ECHO_NAME.encode())
            h.sendall(req)
            check(recv_exact(h, len(req)) == req, "http: request %d not echoed" % i)
            n_h += len(req)
        stream = Stream(port, 5)
        stream.burst()
        old = d.pid
        d.upgrade()
        deadline = time.monotonic() + 10
        while adopted(aport, "https") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        check(adopted(aport, "https") == 1, "the idle stream was not adopted")
        stream.burst()
        time.sleep(1.0)
        check(adopted(aport, "web") == 0, "the HTTP-tracked connection was handed over")
        check(not is_gone(old), "old pid %d exited with an HTTP connection open" % old)
        req = b"GET /after HTTP/1.1\r\nHost: %s\r\n\r\n" % ECHO_NAME.encode()
        h.sendall(req)
        check(recv_exact(h, len(req)) == req, "http: request after the upgrade not echoed")
        n_h += len(req)
        check(not is_gone(old), "old pid %d exited with an HTTP connection open" % old)
        h.shutdown(socket.SHUT_WR)
        check(harness.recv_all(h, time.monotonic() + 10) == b"", "http: bytes at the end")
        h.close()
        h = None
        gone_s = wait_gone(old, OLD_EXIT_S)
        e = d.d.wait_log_port(h_port, "the HTTP connection")
        check(e.get("outcome") == "ok" and int(e["bytes_in"]) == n_h and
              e.get("listener") == "web", "http line: %s" % e["_raw"])
        stream.burst()
        stream.close()
        stream.t_close = time.monotonic()
        check_log_lines(d, [stream])
        d.stop()
        return "old pid served the HTTP connection to its end, exited %.2fs after it" % gone_s
    finally:
        if h is not None:
            h.close()
        if stream is not None:
            stream.s.close()
        d.kill_all()
        capture.stop()
        echo.stop()


def case_new_dies_old_keeps(ctx):
    """The new process dies while the old one still holds a busy connection (its backend
    reads nothing yet, so bytes are in flight): the old process's next attempt to hand it
    over fails, it says so, and it relays the connection to its end itself, every byte
    echoed and checked, then exits cleanly. Fails otherwise."""
    capture, echo, gate = CaptureBackend(), EchoBackend(), GateBackend()
    port, aport = free_port(), free_port()
    d = Daemon(ctx, "dies", config(port, aport, capture, echo, gate=gate))
    s = None
    try:
        s = harness.connect(port, timeout=30)
        hello = harness.client_hello(GATE_NAME)
        # More than loopback's socket buffers hold on the way (autotuned up to several MiB
        # each), so bytes stay in flight inside sniroute until the gate opens.
        payload = random.Random(7).randbytes(32 << 20)
        sent = []

        def writer():
            try:
                s.sendall(hello + payload)
                sent.append(True)
            except OSError as e:
                sent.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        gate.next_result(10, "gate")  # connected; the writer blocks soon after
        time.sleep(0.5)
        old = d.pid
        mark = d.mark()
        new = d.upgrade()
        time.sleep(0.5)
        check(not is_gone(old), "old pid %d exited while its connection was busy" % old)
        os.kill(new, 9)
        wait_gone(new, 10)
        gate.release()
        got = bytearray()
        want = len(hello) + len(payload)
        while len(got) < want:
            b = s.recv(min(1 << 20, want - len(got)))
            if not b:
                raise Fail("EOF after %d of %d echoed bytes" % (len(got), want))
            got += b
        t.join(30)
        check(sent == [True], "client send: %r" % sent)
        check(bytes(got) == hello + payload, "echoed bytes differ")
        d.proc.wait_line("stderr", r"upgrade: cannot hand connections over to the new "
                         r"process: .*; the rest finish here", 10, mark)
        s.shutdown(socket.SHUT_WR)
        check(harness.recv_all(s, time.monotonic() + 10) == b"", "bytes after the echo")
        status = d.d.proc.wait_exit(OLD_EXIT_S)
        check(status == 0, "old pid %d: exit status %r after its last connection" % (old, status))
        report = d.d.sanitizer_report()
        check(report is None, "sanitizer: %s" % report)
        check("sniroute: stopped after " in d.proc.text("stderr"), "old pid: no clean stop")
        return "old pid relayed %d MiB to the end after pid %d died" % (len(payload) >> 20, new)
    finally:
        gate.release()
        if s is not None:
            s.close()
        d.kill_all()
        capture.stop()
        echo.stop()
        gate.stop()


def case_many_idle_connections(ctx):
    """600 idle connections, far more than the handoff socket's buffer holds at once (each
    message is about 2 KiB), move in one upgrade: the old process must exit within
    OLD_EXIT_S, the new one must count all of them as adopted, and every one must still
    echo a burst, byte for byte. Fails otherwise."""
    harness.raise_nofile()
    capture, echo = CaptureBackend(), EchoBackend()
    port, aport = free_port(), free_port()
    d = Daemon(ctx, "many", config(port, aport, capture, echo, 2), n_sockets=2)
    streams = []
    try:
        streams = [Stream(port, i) for i in range(600)]
        old = d.pid
        d.upgrade()
        gone_s = wait_gone(old, OLD_EXIT_S)
        # The old process exits once it has sent the last message; the new one may still
        # be reading the handoff socket and its workers adopting (CI once counted 598 of
        # 600 at the moment the old pid was gone): wait for the count, not the exit.
        deadline = time.monotonic() + 10
        while True:
            n = adopted(aport, "https")
            if n >= len(streams) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        check(n == len(streams), "adopted %s of %d" % (n, len(streams)))
        for st in streams:
            st.burst()
        for st in streams:
            st.close()
            st.t_close = time.monotonic()
        d.stop()
        return "%d connections moved; old pid exited after %.2fs" % (len(streams), gone_s)
    finally:
        for st in streams:
            st.s.close()
        d.kill_all()
        capture.stop()
        echo.stop()


# The wire of include/sniroute/core/upgrade.h, as this test plays the old process.
UP_MAGIC, UP_HELLO, UP_END, UP_READY, UP_CONN = 0x53525550, 1, 3, 4, 5
UP_TEXT = 384


def up_header(version, kind, n):
    return struct.pack("=IHHII", UP_MAGIC, version, kind, os.getpid(), n)


def up_record(listener, sni="adopt.test", upstream="10.9.8.7:443", label="10.9.8.7:443",
              alpn="h2", client=("203.0.113.7", 4242), bytes_in=1000, bytes_out=2000,
              age_ms=5000, route=1, flags=0):
    """struct sr_upgrade_conn: three uint64, a sockaddr_storage, route, flags, 6 reserved
    bytes, five NUL-terminated texts of UP_TEXT bytes. A text given as bytes is used as is
    (to send one without its NUL)."""
    def text(t):
        b = t if isinstance(t, bytes) else t.encode() + b"\0"
        return b.ljust(UP_TEXT, b"\0")[:UP_TEXT]

    ss = struct.pack("=H", socket.AF_INET) + struct.pack("!H", client[1])
    ss = (ss + socket.inet_aton(client[0])).ljust(128, b"\0")
    start_ms = int(time.time() * 1000) - age_ms
    return (struct.pack("=QQQ", start_ms, bytes_in, bytes_out) + ss +
            struct.pack("=BB6x", route, flags) + text(listener) + text(sni) +
            text(upstream) + text(label) + text(alpn))


def tcp_pair():
    """Two ends of one loopback TCP connection: (ours, the one we hand over)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    ours = socket.create_connection(lst.getsockname())
    theirs, _ = lst.accept()
    lst.close()
    return ours, theirs


def case_adopt_checks_every_message(ctx):
    """The test plays the old process of an upgrade on the new one's handoff socket: after
    READY it sends two good connections (one naming a listener the config lacks) and five
    bad messages: a text without its NUL, a server name that is not a host name, a
    listening socket instead of a connected one, one descriptor instead of two, a short
    message. The good ones must relay both ways and log their totals under the right
    listener; each bad one must be closed (its peers see the close) and counted, and the
    process must go on and stop cleanly. Fails otherwise."""
    capture, echo = CaptureBackend(), EchoBackend()
    port, aport = free_port(), free_port()
    path = os.path.join(ctx.tmp, "adopt.ini")
    with open(path, "w") as f:
        f.write(config(port, aport, capture, echo))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ, SNIROUTE_UPGRADE_FD=str(theirs.fileno()))
    proc = harness.Proc([ctx.binary, "-c", path], "sniroute(adopt)", env=env,
                        pass_fds=(theirs.fileno(),))
    theirs.close()
    keep = []
    try:
        ours.settimeout(20)
        hdr = ours.recv(64)
        magic, version, kind, pid, n = struct.unpack("=IHHII", hdr)
        check(magic == UP_MAGIC and version == 1 and kind == UP_HELLO and n == 2,
              "HELLO: %r" % (hdr,))
        ours.send(up_header(1, UP_END, 0))  # no listening sockets: it binds its own
        magic, version, kind, pid, n = struct.unpack("=IHHII", ours.recv(64))
        check(kind == UP_READY, "no READY: type %d" % kind)

        def send(rec, fds, n_fds=2, cut=None):
            data = up_header(2, UP_CONN, n_fds) + rec
            ours.sendmsg([data[:cut] if cut else data],
                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])

        good = []
        for listener in ("https", "nosuch"):
            client, c_side = tcp_pair()
            backend, b_side = tcp_pair()
            send(up_record(listener), [c_side.fileno(), b_side.fileno()])
            c_side.close()
            b_side.close()
            good.append((client, backend))
        bad = []
        for why, rec, n_fds, cut in (
                ("no NUL", up_record(b"x" * UP_TEXT), 2, None),
                ("bad sni", up_record("https", sni="not a name"), 2, None),
                ("listening", up_record("https"), 2, None),
                ("one fd", up_record("https"), 1, None),
                ("short", up_record("https"), 2, 100)):
            client, c_side = tcp_pair()
            backend, b_side = tcp_pair()
            fds = [c_side.fileno(), b_side.fileno()]
            if why == "listening":
                lst = socket.socket()
                lst.bind(("127.0.0.1", 0))
                lst.listen(1)
                keep.append(lst)
                fds[1] = lst.fileno()
            send(rec, fds[:n_fds], n_fds=2, cut=cut)
            c_side.close()
            b_side.close()
            bad.append((why, client, backend if why not in ("listening", "one fd") else None))
        for why, client, backend in bad:
            for s in (client, backend):
                if s is not None:
                    kind, data = harness.wait_close(s, 10)
                    check(data == b"", "%s: bytes from a refused connection" % why)
        for i, (client, backend) in enumerate(good):
            client.sendall(b"ping %d" % i)
            check(recv_exact(backend, 6) == b"ping %d" % i, "good %d: client to backend" % i)
            backend.sendall(b"pong!! %d" % i)
            check(recv_exact(client, 8) == b"pong!! %d" % i, "good %d: backend to client" % i)
        check(adopted(aport, "https") == 2, "adopted: %s" % adopted(aport, "https"))
        ours.close()  # "old" has nothing left: the new process says what it took
        proc.wait_line("stderr", r"upgrade: took over 2 open connection\(s\) from pid %d "
                       r"\(5 failed\)" % os.getpid(), 10)
        err = proc.text("stderr")
        for why in ("bad listener name", "bad server name",
                    "a descriptor is not a connected TCP socket", "not two descriptors",
                    "a short or truncated message"):
            check("not taken over: %s; closed" % why in err, "no notice '%s'" % why)
        for client, backend in good:
            client.shutdown(socket.SHUT_WR)
            check(harness.recv_all(backend, time.monotonic() + 10) == b"", "good: EOF")
            backend.shutdown(socket.SHUT_WR)
            check(harness.recv_all(client, time.monotonic() + 10) == b"", "good: EOF back")
            client.close()
            backend.close()
        deadline = time.monotonic() + 10
        while True:
            with proc.cond:
                lines = [harness.parse_log_line(x) for x in proc.lines["stdout"]
                         if "outcome=" in x]
            if len(lines) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        check(len(lines) == 2, "access log: %s" % [e["_raw"] for e in lines])
        for e in lines:
            check(e.get("listener") == "https" and e.get("client") == "203.0.113.7:4242" and
                  e.get("sni") == "adopt.test" and e.get("upstream") == "10.9.8.7:443" and
                  e.get("alpn") == "h2" and e.get("route") == "exact" and
                  e.get("outcome") == "ok" and e.get("bytes_in") == "1006" and
                  e.get("bytes_out") == "2008" and int(e["duration_ms"]) >= 5000,
                  "adopted line: %s" % e["_raw"])
        status = proc.stop(signal.SIGTERM, 15)
        check(status == 0, "exit status %r" % status)
        report = next((p for p in harness.SANITIZER_MARKS if p in proc.text("stderr")), None)
        check(report is None, "sanitizer: %s" % report)
        return "2 adopted and logged, 5 bad messages closed and counted"
    finally:
        ours.close()
        for s in keep:
            s.close()
        proc.stop(signal.SIGTERM, 5)
        capture.stop()
        echo.stop()


CASES = [case_streams_follow_upgrades, case_streams_follow_upgrades_two_workers,
         case_http_tracked_stays, case_new_dies_old_keeps, case_many_idle_connections,
         case_adopt_checks_every_message]


def extra_args(ap):
    ap.add_argument("--kernel-relay", default=None,
                    help="run every daemon with kernel_relay = this (off, auto, sockmap)")


def make_ctx(binary, tmp, args):
    global KERNEL_RELAY
    KERNEL_RELAY = args.kernel_relay
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    return ctx


if __name__ == "__main__":
    harness.run_suite(CASES, make_ctx, extra_args)
