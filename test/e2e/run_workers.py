#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""workers = 2 through the real daemon: two loops on two threads, each with its own
SO_REUSEPORT socket on the same address; both take connections; limits, metrics and the
access log are per process, not per thread; reload and drain reach every worker.

    run_workers.py --sniroute build/sniroute
"""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import CaptureBackend, check  # noqa: E402


def ask(port, hello):
    with harness.connect(port, timeout=10) as s:
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        return harness.recv_all(s, time.monotonic() + 10)


def thread_cpu(pid):
    """CPU ticks (utime + stime) of each thread of <pid>."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[tid] = int(fields[11]) + int(fields[12])
    return out


def scrape(aport, name, **labels):
    r = harness.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:%d/metrics" % aport])
    fams = promtext.parse(harness.txt(r.stdout), lint=True)
    return promtext.value(fams, name, **labels)


def start(ctx, name, extra):
    be = CaptureBackend()
    port = harness.free_port()
    text = ("[sniroute]\nworkers = 2\nadmin = 127.0.0.1:0\n%s\n[listener https]\n"
            "listen = 127.0.0.1:%d\nroutes = main\n[routes main]\ndefault = 127.0.0.1:%d\n"
            % (extra, port, be.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, name, text, n_sockets=2)
    _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
    return d, be, port, int(m.group(1))


def case_both_workers_serve(ctx):
    """400 connections from 4 clients: all routed, counted once each in /metrics and the
    access log, and the work spread over two threads. Fails if one worker idles or a
    connection is lost or counted twice."""
    d, be, port, aport = start(ctx, "serve", "")
    try:
        hello = harness.client_hello("w.test")
        before = thread_cpu(d.pid)
        oks = []

        def client():
            oks.append(sum(ask(port, hello).startswith(b"GOT") for _ in range(100)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        check(sum(oks) == 400, "%d of 400 routed" % sum(oks))
        after = thread_cpu(d.pid)
        # The main thread (tid == pid) only handles signals and the admin endpoint.
        busy = [t for t in after
                if t != str(d.pid) and after[t] - before.get(t, 0) > 0]
        check(len(busy) >= 2, "work on %d worker thread(s): %s" % (len(busy), after))
        lines = d.wait_log_count(400, timeout=10)
        check(len(lines) == 400, "%d access-log lines for 400 connections" % len(lines))
        got = scrape(aport, "sniroute_connections_accepted_total", listener="https")
        check(got == 400, "metrics count %s accepted, want 400 (both workers summed)" % got)
        return "threads busy: %d" % len(busy)
    finally:
        d.stop()
        be.stop()


def case_limit_is_per_process(ctx):
    """max_connections = 6 with two workers: the seventh concurrent connection is refused
    whichever worker takes it. Fails if each worker applies the limit alone."""
    d, be, port, _ = start(ctx, "limit", "max_connections = 6")
    held = []
    try:
        for _ in range(6):
            held.append(harness.connect(port))
        time.sleep(0.3)
        refused = 0
        for _ in range(6):
            s = harness.connect(port)
            how, data = harness.wait_close(s, 3)
            refused += not data
            s.close()
        check(refused == 6, "%d of 6 connections over the limit refused" % refused)
        return None
    finally:
        for s in held:
            s.close()
        d.stop()
        be.stop()


def case_reload_and_drain_reach_every_worker(ctx):
    """20 reloads under continuous connections, then SIGTERM with a connection open: no
    connection fails, and the process exits 0 with no sanitizer report once it closes."""
    d, be, port, aport = start(ctx, "reload", "drain_timeout = 10s")
    try:
        hello = harness.client_hello("w.test")
        stop = threading.Event()
        counts = {"ok": 0, "fail": 0}

        def client():
            while not stop.is_set():
                try:
                    ok = ask(port, hello).startswith(b"GOT")
                except OSError:
                    ok = False
                counts["ok" if ok else "fail"] += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(20):
            with d.proc.cond:
                mark = len(d.proc.lines["stderr"])
            os.kill(d.pid, signal.SIGHUP)
            d.proc.wait_line("stderr", r"reloaded", 5, mark)
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(timeout=20)
        check(counts["fail"] == 0 and counts["ok"] > 50, "during reloads: %r" % counts)
        check(scrape(aport, "sniroute_config_generation") == 21, "generation after 20 reloads")
        s = harness.connect(port)
        os.kill(d.pid, signal.SIGTERM)
        d.proc.wait_line("stderr", r"draining", 5)
        time.sleep(0.3)
        check(d.proc.p.poll() is None, "exited with a connection still open")
        s.close()
        check(d.proc.wait_exit(15) == 0, "exit status %s" % d.proc.p.returncode)
        check(d.sanitizer_report() is None, d.sanitizer_report() or "")
        return "%d connections across 20 reloads" % counts["ok"]
    finally:
        d.stop()
        be.stop()


def case_health_checked_once(ctx):
    """health_check = 200ms with workers = 2: one probe per server and round (not one per
    worker), one log line per verdict, and the verdict reaches both workers: no
    connection, whichever worker takes it, is tried on the server that fails its check.
    Fails if every worker probes on its own or only one of them learns the verdict."""
    a = CaptureBackend()
    dead = harness.free_port()
    port = harness.free_port()
    text = ("[sniroute]\nworkers = 2\nadmin = 127.0.0.1:0\n[listener https]\n"
            "listen = 127.0.0.1:%d\nroutes = main\n[routes main]\ndefault = apps\n"
            "[upstream apps]\nserver = 127.0.0.1:%d\nserver = 127.0.0.1:%d\n"
            "health_check = 200ms\n" % (port, a.port, dead))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "health2", text, n_sockets=2)
    try:
        _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
        aport = int(m.group(1))
        d.proc.wait_line("stderr", r"server 127\.0\.0\.1:%d fails its health check" % dead, 5)
        # Probes of the healthy server: nothing else connects to it meanwhile (a probe
        # connects and closes, so its entry may be a short read or a reset).
        while not a.results.empty():
            a.results.get_nowait()
        time.sleep(2.0)
        probes = 0
        while not a.results.empty():
            a.results.get_nowait()
            probes += 1
        check(4 <= probes <= 14, "%d probes of one server in 2 s at 200 ms: want about 10 "
              "(about 20 means each worker probes)" % probes)
        fails = d.proc.text("stderr").count("127.0.0.1:%d fails its health check" % dead)
        check(fails == 1, "the failing verdict logged %d times, want once" % fails)
        hello = harness.client_hello("health.test")
        oks = []

        def client():
            oks.append(sum(ask(port, hello).startswith(b"GOT") for _ in range(20)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        check(sum(oks) == 80, "%d of 80 routed" % sum(oks))
        r = harness.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:%d/metrics" % aport])
        tried = sum(v for fam in promtext.parse(harness.txt(r.stdout)).values()
                    for name, _, v, _ in fam.samples
                    if name == "sniroute_upstream_connect_failures_total")
        check(not tried, "%s connect failures: a worker tried the server its health check "
              "marked down" % tried)
        return "%d probes in 2 s, one verdict line, 80 connections, 0 tried on the dead one" % probes
    finally:
        d.stop()
        a.stop()


if __name__ == "__main__":
    harness.run_suite([case_both_workers_serve, case_limit_is_per_process,
                       case_reload_and_drain_reach_every_worker, case_health_checked_once])
