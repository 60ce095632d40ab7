#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Binary upgrade on SIGUSR2 through the real daemon: the binary at the same path starts,
takes the listening sockets over (SCM_RIGHTS), and the old process drains and exits. Under
continuous load of new connections plus long-lived streams that keep echoing verified
bytes, 20 upgrades in a row (workers = 1) and a few with workers = 2 (then down to 1) must
refuse nothing and break nothing; an upgrade to an invalid config leaves the old process
serving.

    run_upgrade.py --sniroute build/sniroute [-k FILTER]
"""

import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CaptureBackend, EchoBackend, Fail, check  # noqa: E402

HELLO_NAME = "app.test"
ECHO_NAME = "echo.test"


# Fixed ports, not port 0: the upgrade hands over a socket only when its address is configured as is.
free_port = harness.free_port


def config(port, capture, echo, extra=""):
    return ("[sniroute]\nhello_timeout = 5s\nconnect_timeout = 2s\ndrain_timeout = 30s\n%s\n"
            "[listener https]\nlisten = 127.0.0.1:%d\nroutes = main\n[routes main]\n"
            "%s = 127.0.0.1:%d\n%s = 127.0.0.1:%d\n"
            % (extra, port, HELLO_NAME, capture.port, ECHO_NAME, echo.port))


def write(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def ask(port, hello):
    """One routed request through a CaptureBackend: True if the reply is whole and right."""
    with harness.connect(port, timeout=10) as s:
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        data = harness.recv_all(s, time.monotonic() + 10)
    return data == harness.reply_for(hello)


def is_gone(pid):
    """True once <pid> has exited (a zombie counts: its parent may be gone or busy)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Load:
    """<n_clients> threads opening new connections back to back, and <n_streams> threads
    each keeping one long-lived connection echoing random chunks (every byte checked) for
    ~<stream_s> seconds before closing it cleanly and opening the next."""

    def __init__(self, port, n_clients=4, n_streams=3, stream_s=2.5):
        self.port = port
        self.hello = harness.client_hello(HELLO_NAME)
        self.echo_hello = harness.client_hello(ECHO_NAME)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "refused": 0, "fail": 0, "streams": 0, "broken": 0,
                       "bytes": 0}
        self.errors = []
        self.spans = []  # (start, end) of every stream that finished cleanly
        self.stream_s = stream_s
        self.threads = [threading.Thread(target=self.client, daemon=True)
                        for _ in range(n_clients)]
        self.threads += [threading.Thread(target=self.stream, args=(i,), daemon=True)
                         for i in range(n_streams)]
        for t in self.threads:
            t.start()

    def note(self, key, err=None, n=1):
        with self.lock:
            self.counts[key] += n
            if err is not None and len(self.errors) < 10:
                self.errors.append(err)

    def client(self):
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                self.note("ok" if ask(self.port, self.hello) else "fail", None)
            except ConnectionRefusedError as e:
                self.note("refused", "refused: %r" % e)
            except (OSError, Fail) as e:
                self.note("fail", "connection: %r" % e)

    def stream(self, seed):
        rng = random.Random(seed)
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                t0 = time.monotonic()
                n = self.one_stream(rng)
                with self.lock:
                    self.spans.append((t0, time.monotonic()))
                self.note("streams")
                self.note("bytes", n=n)
            except ConnectionRefusedError as e:
                self.note("refused", "stream refused: %r" % e)
            except (OSError, Fail) as e:
                self.note("broken", "stream: %r" % e)

    def one_stream(self, rng):
        """Hello, then 4 KiB chunks echoed one by one for stream_s seconds, then EOF both
        ways. Returns the bytes echoed; raises Fail on any difference."""
        with harness.connect(self.port, timeout=10) as s:
            s.sendall(self.echo_hello)
            got = recv_exact(s, len(self.echo_hello))
            check(got == self.echo_hello, "stream: the echoed hello differs")
            total = 0
            end = time.monotonic() + self.stream_s
            while time.monotonic() < end:
                chunk = rng.randbytes(4096)
                s.sendall(chunk)
                check(recv_exact(s, len(chunk)) == chunk,
                      "stream: echoed bytes differ after %d bytes" % total)
                total += len(chunk)
                time.sleep(0.01)
            s.shutdown(socket.SHUT_WR)
            rest = harness.recv_all(s, time.monotonic() + 10)
            check(rest == b"", "stream: %d unexpected bytes at the end" % len(rest))
            return total

    def finish(self):
        self.stop.set()
        deadline = time.monotonic() + 30
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        check(not any(t.is_alive() for t in self.threads), "load threads still running")
        return dict(self.counts)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise Fail("stream: EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return buf


class Daemon:
    """The daemon across upgrades: every process writes to the first one's stderr pipe, so
    one reader sees them all. Knows every PID it has seen, to stop them all by PID."""

    def __init__(self, ctx, name, text, n_sockets=1):
        self.d = harness.Sniroute(ctx.binary, ctx.tmp, name, text, n_sockets=n_sockets)
        self.pid = self.d.pid
        self.pids = [self.pid]
        self.binary = ctx.binary
        self.times = []  # when each upgrade was done

    @property
    def proc(self):
        return self.d.proc

    def mark(self):
        with self.proc.cond:
            return len(self.proc.lines["stderr"])

    def upgrade(self):
        """SIGUSR2 to the serving process; returns the new PID once the old one has said
        it stopped accepting. Fails if the upgrade fails or the new process is not the
        old one's child running our binary."""
        old = self.pid
        mark = self.mark()
        os.kill(old, signal.SIGUSR2)
        _, m = self.proc.wait_line("stderr", r"upgrade: pid (\d+) took over from pid (\d+)|"
                                   r"upgrade failed.*", 30, mark)
        check(m.group(1) is not None, "upgrade of pid %d: %s" % (old, m.group(0)))
        new = int(m.group(1))
        check(int(m.group(2)) == old, "took over from %s, not %d" % (m.group(2), old))
        check(new != old and not is_gone(new), "new pid %d is not running" % new)
        _, m = self.proc.wait_line("stderr", r"upgrade: started (\S+) as pid %d$" % new, 1, mark)
        check(m.group(1) == self.binary, "pid %d started from %s" % (new, m.group(1)))
        check(os.readlink("/proc/%d/exe" % new) == self.binary,
              "pid %d runs %s" % (new, os.readlink("/proc/%d/exe" % new)))
        self.times.append(time.monotonic())
        self.pid = new
        self.pids.append(new)
        return new

    def wait_old_gone(self, timeout):
        """Every process but the serving one exits once its streams are done."""
        deadline = time.monotonic() + timeout
        left = [p for p in self.pids if p != self.pid]
        while time.monotonic() < deadline:
            left = [p for p in left if not is_gone(p)]
            if not left:
                return
            time.sleep(0.05)
        raise Fail("old processes still running %ss after their upgrade: %s" % (timeout, left))

    def stop(self):
        """SIGTERM to the serving process; then every process must have exited through
        the normal path ("stopped after"), with no sanitizer report."""
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while not is_gone(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        check(is_gone(self.pid), "pid %d did not stop on SIGTERM" % self.pid)
        self.d.stop()  # the first process, reaped; joins the reader threads
        report = self.d.sanitizer_report()
        check(report is None, "sanitizer: %s" % report)
        n = self.proc.text("stderr").count("sniroute: stopped after ")
        check(n == len(self.pids), "%d processes, %d clean stops" % (len(self.pids), n))

    def kill_all(self):
        for p in self.pids:
            if not is_gone(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.d.stop()


def run_upgrades(ctx, name, extras, n_sockets=1, admin_port=None, expect=()):
    """Start with the config's [sniroute] extra lines <extras>[0], then upgrade once per
    further entry, each time to a config with those lines. Each of <expect> must be in
    the daemons' notices."""
    capture, echo = CaptureBackend(), EchoBackend()
    port = free_port()
    n = len(extras) - 1
    d = Daemon(ctx, name, config(port, capture, echo, extras[0]), n_sockets)
    load = None
    try:
        load = Load(port)
        time.sleep(0.5)
        for i in range(n):
            if extras[i + 1] != extras[i]:
                write(d.d.path, config(port, capture, echo, extras[i + 1]))
            d.upgrade()
            if admin_port is not None:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % admin_port,
                                            timeout=5) as r:
                    check(r.status == 200, "/readyz after upgrade %d: %d" % (i + 1, r.status))
            time.sleep(0.25)
        time.sleep(0.5)
        counts = load.finish()
        d.wait_old_gone(30)
        # A stream "crossed" an upgrade if the handoff finished while it was open.
        crossed = sum(any(a < t < b for t in d.times) for a, b in load.spans)
        check(counts["ok"] >= 100 and crossed >= 3,
              "too little load to mean anything: %r, %d streams crossed an upgrade"
              % (counts, crossed))
        check(counts["refused"] == 0 and counts["fail"] == 0 and counts["broken"] == 0,
              "during %d upgrades: %r; first errors: %s" % (n, counts, load.errors[:3]))
        # The last process serves alone now.
        check(ask(port, load.hello), "no answer from the last process")
        for text in expect:
            check(text in d.proc.text("stderr"), "no notice '%s'" % text)
        d.stop()
        return ("%d upgrades, %d connections and %d streams (%d across an upgrade, %d KiB "
                "echoed), 0 refused, 0 broken" % (n, counts["ok"], counts["streams"], crossed,
                                                  counts["bytes"] // 1024))
    finally:
        if load is not None:
            load.stop.set()
        d.kill_all()
        capture.stop()
        echo.stop()


def case_twenty_upgrades_under_load(ctx):
    """workers = 1: 20 upgrades in a row while 4 clients connect back to back and 3
    long-lived streams echo verified bytes. Fails on any refused or failed connection,
    any broken or short stream, an upgrade that does not start a new process from the
    same binary, or an old process that does not exit after its drain."""
    return run_upgrades(ctx, "twenty", [""] * 21)


def case_two_workers(ctx):
    """workers = 2 (two SO_REUSEPORT sockets) with the admin endpoint: 3 upgrades, one to
    workers = 1 (which must still run two, to keep both sockets and their accept queues),
    then back to 2. /readyz answers after each. Fails like the case above, or if the admin
    socket is not handed over."""
    aport = free_port()
    w2 = "workers = 2\nadmin = 127.0.0.1:%d" % aport
    w1 = "workers = 1\nadmin = 127.0.0.1:%d" % aport
    return run_upgrades(ctx, "workers2", [w2, w2, w2, w2, w1, w2], n_sockets=2,
                        admin_port=aport, expect=["upgrade: 2 workers instead of 1"])


def case_one_to_two_workers(ctx):
    """From workers = 1 (one socket, no SO_REUSEPORT) to 2: both workers of the new
    process accept from the one inherited socket; then 2 again, and back to 1. Fails like
    the cases above."""
    return run_upgrades(ctx, "workers12", ["", "workers = 2", "workers = 2", "workers = 1"],
                        expect=["starting 2 workers"])


def case_invalid_config_keeps_old(ctx):
    """An upgrade whose config has a problem: the new process says FILE:LINE and exits,
    the old one logs "upgrade failed" and keeps serving on its sockets. Then a fixed
    config upgrades. Fails if the old process stops, stops answering, or says nothing."""
    capture, echo = CaptureBackend(), EchoBackend()
    port = free_port()
    good = config(port, capture, echo)
    d = Daemon(ctx, "invalid", good)
    try:
        hello = harness.client_hello(HELLO_NAME)
        write(d.d.path, good + "broken = 127.0.0.1:99999\n")
        mark = d.mark()
        os.kill(d.pid, signal.SIGUSR2)
        i, m = d.proc.wait_line("stderr", r"upgrade: pid \d+ took over|upgrade failed.*", 20,
                                mark)
        check(m.group(0).startswith("upgrade failed"), "bad config: %s" % m.group(0))
        check("still serving as pid %d" % d.pid in m.group(0), "verdict: %s" % m.group(0))
        with d.proc.cond:
            said = "\n".join(d.proc.lines["stderr"][mark:i + 1])
        check("invalid.ini:" in said and "99999" in said,
              "the new process did not say FILE:LINE and what: %s" % said)
        check(not is_gone(d.pid), "the old process stopped")
        for _ in range(20):
            check(ask(port, hello), "the old process stopped answering")
        write(d.d.path, good)
        d.upgrade()
        check(ask(port, hello), "no answer after the fixed upgrade")
        d.wait_old_gone(15)
        d.stop()
        return None
    finally:
        d.kill_all()
        capture.stop()
        echo.stop()


def case_notify_socket_main_pid(ctx):
    """Under systemd (NotifyAccess=main), the old process sends MAINPID=NEW to
    NOTIFY_SOCKET once the new one is ready, so the service manager follows the new
    process instead of ending the service when the old one exits; here a datagram socket
    stands in for systemd's, once by path and once abstract ("@name"). Fails if a
    datagram is missing or names another PID."""
    capture, echo = CaptureBackend(), EchoBackend()
    port = free_port()
    path = os.path.join(ctx.tmp, "notify.sock")
    abstract = "@sniroute-test-%d" % os.getpid()
    socks = []
    for name in (path, abstract):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(name if name[0] == "/" else "\0" + name[1:])
        s.settimeout(10)
        socks.append(s)
    ds = []
    try:
        for name, s in zip((path, abstract), socks):
            os.environ["NOTIFY_SOCKET"] = name
            try:
                d = Daemon(ctx, "notify", config(port, capture, echo))
            finally:
                del os.environ["NOTIFY_SOCKET"]
            ds.append(d)
            for _ in range(2):
                new = d.upgrade()
                got = s.recv(256)
                check(got == b"MAINPID=%d" % new, "%s: got %r, not MAINPID=%d" % (name, got, new))
            d.wait_old_gone(15)
            d.stop()
        return None
    finally:
        for d in ds:
            d.kill_all()
        for s in socks:
            s.close()
        capture.stop()
        echo.stop()


CASES = [case_twenty_upgrades_under_load, case_two_workers, case_one_to_two_workers,
         case_invalid_config_keeps_old, case_notify_socket_main_pid]


if __name__ == "__main__":
    harness.run_suite(CASES)
