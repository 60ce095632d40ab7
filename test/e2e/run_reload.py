#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Reload on SIGHUP through the real daemon: new routes for new connections at once, open
connections untouched, an invalid config logged and ignored, listeners added and removed,
the access log reopened, and 50 reloads under continuous connections without one failure.

    run_reload.py --sniroute build/sniroute [-k FILTER]
"""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CaptureBackend, EchoBackend, Fail, check  # noqa: E402

HELLO_NAME = "app.test"


# Fixed ports, not port 0: a reload keeps a listener only when its address is unchanged.
free_port = harness.free_port


def config(listens, routes, extra=""):
    out = ["[sniroute]", "hello_timeout = 5s", "connect_timeout = 2s", "drain_timeout = 5s",
           extra, "[listener https]"]
    out += ["listen = %s" % a for a in listens]
    out += ["routes = main", "[routes main]"]
    out += ["%s = %s" % kv for kv in routes]
    return "\n".join(out) + "\n"


def write(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)  # atomically, as an editor or a ConfigMap update would


def ask(port, hello):
    """One routed request through a CaptureBackend: returns the reply's first line."""
    with harness.connect(port, timeout=10) as s:
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        data = harness.recv_all(s, time.monotonic() + 10)
    return data.split(b"\n", 1)[0]


class Ctx:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp
        self.hello = harness.client_hello(HELLO_NAME)


def start(ctx, name, text, n_sockets=1):
    return harness.Sniroute(ctx.binary, ctx.tmp, name, text, n_sockets=n_sockets)


def hup(d, marker, start_line):
    """Send SIGHUP and wait for the daemon's verdict line after <start_line>."""
    os.kill(d.pid, signal.SIGHUP)
    i, m = d.proc.wait_line("stderr", r"reloaded|reload failed", 10, start_line)
    return i, m.group(0)


def finish(d):
    """Stop the daemon; it must exit 0 with no sanitizer report (reloads free every old
    generation once its last connection is gone)."""
    status = d.stop()
    report = d.sanitizer_report()
    check(status == 0 and report is None, "%s exited %s; %s" % (d.name, status, report))


def stderr_len(d):
    with d.proc.cond:
        return len(d.proc.lines["stderr"])


def case_new_routes_open_connections_kept(ctx):
    """After a reload new connections follow the new routes; a connection opened before
    keeps relaying to its old backend. Fails if a new connection reaches the old backend
    or the old connection breaks."""
    old_be, new_be, echo = CaptureBackend(), CaptureBackend(), EchoBackend()
    port = free_port()
    d = start(ctx, "routes", config(["127.0.0.1:%d" % port],
                                     [(HELLO_NAME, "127.0.0.1:%d" % old_be.port),
                                      ("echo.test", "127.0.0.1:%d" % echo.port)]))
    try:
        check(ask(port, ctx.hello).startswith(b"GOT"), "before reload: no reply")
        old_be.next_result(5, "old backend before reload")
        echo_hello = harness.client_hello("echo.test")
        held = harness.connect(port)
        held.sendall(echo_hello + b"ping")
        write(d.path, config(["127.0.0.1:%d" % port],
                             [(HELLO_NAME, "127.0.0.1:%d" % new_be.port)]))
        _, verdict = hup(d, "reload", stderr_len(d))
        check(verdict == "reloaded", "reload: %s" % verdict)
        check(ask(port, ctx.hello).startswith(b"GOT"), "after reload: no reply")
        r = new_be.next_result(5, "new backend after reload")
        check(r[0] == "ok", "new backend: %s" % (r,))
        check(old_be.results.empty(), "a connection after the reload reached the old backend")
        # The held connection still relays through its generation's route (echo.test is
        # gone from the new config).
        held.sendall(b"pong")
        held.shutdown(socket.SHUT_WR)
        data = harness.recv_all(held, time.monotonic() + 10)
        held.close()
        check(data == echo_hello + b"pingpong",
              "held connection across the reload: got %s" % harness.short(data))
        finish(d)
        return None
    finally:
        d.stop()
        for b in (old_be, new_be, echo):
            b.stop()


def case_invalid_config_ignored(ctx):
    """A config with an error is logged FILE:LINE and changes nothing. Fails if the daemon
    stops, stops routing, or does not say why."""
    be = CaptureBackend()
    port = free_port()
    d = start(ctx, "invalid", config(["127.0.0.1:%d" % port],
                                     [(HELLO_NAME, "127.0.0.1:%d" % be.port)]))
    try:
        mark = stderr_len(d)
        write(d.path, config(["127.0.0.1:%d" % port], [(HELLO_NAME, "127.0.0.1:99999")]))
        i, verdict = hup(d, "reload", mark)
        check(verdict == "reload failed", "reload of a bad config: %s" % verdict)
        with d.proc.cond:
            said = "\n".join(d.proc.lines["stderr"][mark:i + 1])
        check("invalid.ini:" in said and "99999" in said,
              "the reload failure does not say FILE:LINE and what: %s" % said)
        check(ask(port, ctx.hello).startswith(b"GOT"), "routing stopped after a bad reload")
        be.next_result(5, "backend after a failed reload")
        finish(d)
        return None
    finally:
        d.stop()
        be.stop()


def case_listeners_added_and_removed(ctx):
    """A listen address added by a reload is bound, one removed is closed, one kept keeps
    its socket. Fails if the kept port refuses, the new one is not served, or the removed
    one still accepts."""
    be = CaptureBackend()
    keep, drop, add = free_port(), free_port(), free_port()
    routes = [(HELLO_NAME, "127.0.0.1:%d" % be.port)]
    d = start(ctx, "listeners", config(["127.0.0.1:%d" % keep, "127.0.0.1:%d" % drop], routes),
              n_sockets=2)
    try:
        write(d.path, config(["127.0.0.1:%d" % keep, "127.0.0.1:%d" % add], routes))
        _, verdict = hup(d, "reload", stderr_len(d))
        check(verdict == "reloaded", "reload: %s" % verdict)
        for port in (keep, add):
            check(ask(port, ctx.hello).startswith(b"GOT"), "port %d not served" % port)
            be.next_result(5, "backend via port %d" % port)
        check(harness.conn_refused(drop), "removed port %d still accepts" % drop)
        finish(d)
        return None
    finally:
        d.stop()
        be.stop()


def case_access_log_reopened(ctx):
    """SIGHUP reopens a file access log: after a rename, lines go to a new file. Fails if
    they keep going to the renamed one."""
    be = CaptureBackend()
    port = free_port()
    log = os.path.join(ctx.tmp, "access.log")
    text = config(["127.0.0.1:%d" % port], [(HELLO_NAME, "127.0.0.1:%d" % be.port)],
                  "access_log = %s" % log)
    d = start(ctx, "logfile", text)
    try:
        ask(port, ctx.hello)
        be.next_result(5, "first")
        os.rename(log, log + ".1")
        _, verdict = hup(d, "reload", stderr_len(d))
        check(verdict == "reloaded", "reload: %s" % verdict)
        ask(port, ctx.hello)
        be.next_result(5, "second")
        # The line is written when sniroute closes the connection, just after the reply.
        deadline = time.monotonic() + 5
        new = 0
        while time.monotonic() < deadline and new == 0:
            if os.path.exists(log):
                with open(log) as f:
                    new = f.read().count("outcome=")
            time.sleep(0.05)
        check(os.path.exists(log), "no new access log after SIGHUP")
        with open(log + ".1") as f:
            old = f.read().count("outcome=")
        check(old == 1 and new == 1, "lines: %d in the rotated file, %d in the new" % (old, new))
        finish(d)
        return None
    finally:
        d.stop()
        be.stop()


def case_fifty_reloads_under_load(ctx):
    """50 reloads while 4 clients connect continuously, the routes alternating between two
    backends: every single connection must be routed and answered. Fails on any refused,
    reset or unanswered connection, or if a reload fails."""
    a, b = CaptureBackend(), CaptureBackend()
    port = free_port()
    texts = [config(["127.0.0.1:%d" % port], [(HELLO_NAME, "127.0.0.1:%d" % be.port)])
             for be in (a, b)]
    d = start(ctx, "fifty", texts[0])
    stop = threading.Event()
    counts = {"ok": 0, "fail": 0}
    errors = []
    lock = threading.Lock()

    def client():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                ok = ask(port, ctx.hello).startswith(b"GOT")
            except (OSError, Fail) as e:
                ok = False
                with lock:
                    errors.append(repr(e))
            with lock:
                counts["ok" if ok else "fail"] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for i in range(50):
            write(d.path, texts[(i + 1) % 2])
            _, verdict = hup(d, "reload", stderr_len(d))
            check(verdict == "reloaded", "reload %d: %s" % (i + 1, verdict))
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join(timeout=20)
        check(counts["ok"] >= 100, "too little load to mean anything: %r" % counts)
        check(counts["fail"] == 0, "%d of %d connections failed during 50 reloads: %s"
              % (counts["fail"], counts["ok"] + counts["fail"], errors[:3]))
        finish(d)
        return "%d connections, 0 failed, across 50 reloads" % counts["ok"]
    finally:
        stop.set()
        d.stop()
        for be in (a, b):
            be.stop()


def case_watch_file_and_configmap_swap(ctx):
    """watch = yes: a Kubernetes-style ConfigMap update (the ..data symlink swapped to a
    new directory) is reloaded without a signal; touching the file without changing its
    bytes is not. Fails if the swap is missed or a touch reloads."""
    a, b = CaptureBackend(), CaptureBackend()
    port = free_port()
    texts = [config(["127.0.0.1:%d" % port], [(HELLO_NAME, "127.0.0.1:%d" % be.port)],
                    "watch = yes") for be in (a, b)]
    # The ConfigMap layout: cm/sniroute.ini -> ..data/sniroute.ini, ..data -> ..v1
    cm = os.path.join(ctx.tmp, "cm")
    os.makedirs(os.path.join(cm, "..v1"))
    os.makedirs(os.path.join(cm, "..v2"))
    for name, text in (("..v1", texts[0]), ("..v2", texts[1])):
        with open(os.path.join(cm, name, "sniroute.ini"), "w") as f:
            f.write(text)
    os.symlink("..v1", os.path.join(cm, "..data"))
    os.symlink("..data/sniroute.ini", os.path.join(cm, "sniroute.ini"))
    path = os.path.join(cm, "sniroute.ini")
    proc = harness.Proc([ctx.binary, "-c", path], "sniroute(watch)")
    try:
        _, m = proc.wait_line("stderr", r"listening on 127\.0\.0\.1:(\d+)", 10)
        check(ask(port, ctx.hello).startswith(b"GOT"), "before: no reply")
        check(a.next_result(5, "v1 backend")[0] == "ok", "v1 backend")
        # kubelet's swap: a new symlink renamed over ..data.
        os.symlink("..v2", os.path.join(cm, "..data_tmp"))
        os.rename(os.path.join(cm, "..data_tmp"), os.path.join(cm, "..data"))
        proc.wait_line("stderr", r"reloaded", 5)
        check(ask(port, ctx.hello).startswith(b"GOT"), "after the swap: no reply")
        check(b.next_result(5, "v2 backend")[0] == "ok", "the swap was not applied")
        # The same bytes again: no reload.
        with proc.cond:
            mark = len(proc.lines["stderr"])
        os.utime(os.path.join(cm, "..v2", "sniroute.ini"))
        time.sleep(1.0)
        with proc.cond:
            later = proc.lines["stderr"][mark:]
        check(not any("reloaded" in x for x in later), "touching the file reloaded: %s" % later)
        status = proc.stop()
        check(status == 0, "exit status %s" % status)
        return None
    finally:
        proc.stop()
        for be in (a, b):
            be.stop()


CASES = [case_new_routes_open_connections_kept, case_invalid_config_ignored,
         case_listeners_added_and_removed, case_access_log_reopened,
         case_fifty_reloads_under_load, case_watch_file_and_configmap_swap]


if __name__ == "__main__":
    harness.run_suite(CASES, lambda binary, tmp, args: Ctx(binary, tmp))
