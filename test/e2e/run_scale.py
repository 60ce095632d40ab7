#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Issue 14 part 1 through the real daemon: nothing process-wide on the way of a
connection. Lock acquisitions read from /metrics (none of a lock every worker may take per
connection, with workers = 2 and 4; with max_connections_per_ip only the shard locks, two
per connection); the limits exact when four workers race for the last slots (global,
listener, per client address); the access log batched per worker yet whole: thousands of
connections from four workers to a pipe and to a file (text and JSON), every line parsed,
one per connection, none torn, none lost at SIGTERM, and a line out soon when idle.

    run_scale.py --sniroute build/sniroute
"""

import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import CaptureBackend, HoldBackend, check  # noqa: E402

PROCESS_LOCKS = "sniroute_process_lock_acquisitions_total"
SHARD_LOCKS = "sniroute_shard_lock_acquisitions_total"
# A whole text line: the timestamp, every key in order, nothing after the outcome but the
# optional keys. A torn or merged line cannot match.
LINE_RX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z listener=\S+ client=\S+:(\d+) "
                     r"sni=\S+ route=\S+ upstream=\S+ bytes_in=\d+ bytes_out=\d+ "
                     r"duration_ms=\d+ outcome=\S+( ech=1)?( alpn=\S+)?( detail=\"[^\"]*\")?$")


def start(ctx, name, workers, settings="", listener="", n_listeners=1, backend=None):
    be = backend if backend is not None else CaptureBackend()
    port = harness.free_port()
    text = ("[sniroute]\nworkers = %d\nadmin = 127.0.0.1:0\n%s\n[listener https]\n"
            "listen = 127.0.0.1:%d\nroutes = main\n%s\n[routes main]\ndefault = 127.0.0.1:%d\n"
            % (workers, settings, port, listener, be.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, name, text, n_sockets=workers * n_listeners)
    _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
    return d, be, port, int(m.group(1))


def scrape(aport, name, **labels):
    r = harness.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:%d/metrics" % aport])
    fams = promtext.parse(harness.txt(r.stdout), lint=True)
    return promtext.value(fams, name, **labels)


def locks(aport):
    try:
        return scrape(aport, PROCESS_LOCKS), scrape(aport, SHARD_LOCKS)
    except KeyError:
        check(False, "/metrics has no %s or %s (the counters tests read)"
              % (PROCESS_LOCKS, SHARD_LOCKS))


def ask(port, hello, source="127.0.0.1"):
    with socket.socket() as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        return harness.recv_all(s, time.monotonic() + 10).startswith(b"GOT")


def storm(port, hello, n, n_threads):
    """<n> routed-and-closed connections from <n_threads> threads; returns how many were
    routed (the backend answered GOT)."""
    oks = [0] * n_threads

    def client(i):
        for _ in range(n // n_threads):
            try:
                oks[i] += ask(port, hello)
            except OSError:
                pass

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return sum(oks)


def finish(d):
    status = d.stop()
    report = d.sanitizer_report()
    check(status == 0 and report is None, "%s exited %s; %s" % (d.name, status, report))


# --- Lock counts ---------------------------------------------------------------------------


def lock_case(ctx, workers, per_ip):
    n = 300
    d, be, port, aport = start(ctx, "locks%d%s" % (workers, "ip" if per_ip else ""), workers,
                               "max_connections_per_ip = 1000" if per_ip else "")
    try:
        hello = harness.client_hello("scale.test")
        check(ask(port, hello), "a first connection was not routed")
        d.wait_log_count(1, timeout=5)
        p0, s0 = locks(aport)
        mark = d.mark()
        got = storm(port, hello, n, 4)
        check(got == n, "%d of %d connections routed" % (got, n))
        lines = d.wait_log_count(n, start=mark, timeout=20)
        check(len(lines) == n, "%d access-log lines for %d connections" % (len(lines), n))
        # Released at the free after the close: wait for the shard count to settle.
        deadline = time.monotonic() + 5
        while True:
            p1, s1 = locks(aport)
            if s1 - s0 >= 2 * n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        check(p1 - p0 == 0, "%d process-wide lock acquisitions for %d connections (want 0)"
              % (p1 - p0, n))
        # Each connection: its address counted at admission and released at the free.
        check(s1 - s0 == 2 * n, "%d shard lock acquisitions for %d connections (want %d)"
              % (s1 - s0, n, 2 * n))
        finish(d)
        return "workers %d: process %d, shard %d for %d connections" % (workers, p1 - p0,
                                                                        s1 - s0, n)
    finally:
        d.stop()
        be.stop()


def case_no_process_lock_workers_2(ctx):
    """workers = 2, 300 connections routed and closed, the access log on, no per-address
    limit: not one acquisition of a lock every worker may take. Fails on the old code (one
    mutex at accept, at close and per log line; no such counter in /metrics)."""
    return lock_case(ctx, 2, False)


def case_no_process_lock_workers_4(ctx):
    """The same with workers = 4."""
    return lock_case(ctx, 4, False)


def case_only_shard_locks_per_ip(ctx):
    """workers = 4 with max_connections_per_ip: the address is counted under its shard's
    lock (two acquisitions per connection), still nothing process-wide."""
    return lock_case(ctx, 4, True)


# --- Exact limits under a race ---------------------------------------------------------------


def race(port, hello, n_clients, n_threads, sources=("127.0.0.1",)):
    """<n_clients> connections opened at once from <n_threads> threads, each sending a
    hello; returns (held, refused): the sockets the daemon kept open and those it closed."""
    socks = []
    lock = threading.Lock()
    go = threading.Barrier(n_threads)

    def client(i):
        mine = []
        go.wait(timeout=10)
        for k in range(n_clients // n_threads):
            s = socket.socket()
            s.settimeout(10)
            s.bind((sources[(i + k) % len(sources)], 0))
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(hello)
            except OSError:
                pass
            mine.append(s)
        with lock:
            socks.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # A refused connection is closed at once; one admitted is routed to a backend that
    # holds it. Give the refusals time to arrive, then look.
    time.sleep(1.0)
    held, refused = [], []
    for s in socks:
        (refused if harness.peer_closed(s) in ("eof", "reset") else held).append(s)
    return held, refused


def close_all(socks):
    for s in socks:
        s.close()


def limit_case(ctx, name, settings, listener, limit, sources=("127.0.0.1",)):
    be = HoldBackend()
    d, _, port, aport = start(ctx, name, 4, settings, listener, backend=be)
    try:
        hello = harness.client_hello("race.test")
        n_clients = 64 * len(sources)
        for round_ in range(2):
            held, refused = race(port, hello, n_clients, 8, sources)
            try:
                by_source = {}
                for s in held:
                    by_source[s.getsockname()[0]] = by_source.get(s.getsockname()[0], 0) + 1
                want = limit * len(sources) if name == "race_per_ip" else limit
                check(len(held) == want and len(refused) == n_clients - want,
                      "round %d: %d held open and %d refused of %d, want exactly %d held (%s)"
                      % (round_ + 1, len(held), len(refused), n_clients, want, by_source))
                if name == "race_per_ip":
                    check(all(v == limit for v in by_source.values()),
                          "held per address: %s, want %d each" % (by_source, limit))
            finally:
                close_all(held + refused)
            # Everything closed: the daemon must see it and give every slot back.
            deadline = time.monotonic() + 10
            while scrape(aport, "sniroute_connections_active", listener="https") != 0:
                check(time.monotonic() < deadline, "connections still counted active")
                time.sleep(0.1)
        finish(d)
        return "twice: %d held, %d refused" % (len(held), len(refused))
    finally:
        d.stop()
        be.stop()


def case_race_global(ctx):
    """workers = 4, max_connections = 10, 64 clients at once from 8 threads: exactly 10 held
    open, 54 refused; all closed, and again exactly 10 (the slots came back)."""
    return limit_case(ctx, "race_global", "max_connections = 10", "", 10)


def case_race_listener(ctx):
    """The same with the listener's max_connections = 7."""
    return limit_case(ctx, "race_listener", "", "max_connections = 7", 7)


def case_race_per_ip(ctx):
    """max_connections_per_ip = 5, clients from 127.0.0.1, .2 and .3 at once: exactly 5 held
    per address, the rest refused, twice."""
    return limit_case(ctx, "race_per_ip", "max_connections_per_ip = 5", "", 5,
                      ("127.0.0.1", "127.0.0.2", "127.0.0.3"))


# --- The access log ----------------------------------------------------------------------------


def many_then_term(ctx, name, settings, n, read_lines):
    """workers = 4, <n> connections from 8 threads, SIGTERM at once after the last: the
    lines read by <read_lines>(d) after the exit, checked one per connection."""
    d, be, port, _ = start(ctx, name, 4, settings)
    try:
        hello = harness.client_hello("log.test")
        got = storm(port, hello, n, 8)
        check(got == n, "%d of %d connections routed" % (got, n))
        # No wait for the lines: the stop must write every batch out.
        finish(d)
        return read_lines(d)
    finally:
        d.stop()
        be.stop()


def check_text_lines(lines, n):
    bad = [x for x in lines if not LINE_RX.match(x)]
    check(not bad, "%d line(s) torn or malformed, e.g. %r" % (len(bad), bad[:2]))
    check(len(lines) == n, "%d lines for %d connections" % (len(lines), n))


def case_log_pipe_whole_and_complete(ctx):
    """access_log = stdout (a pipe, as under systemd or Kubernetes), 4 workers, 3000
    connections, SIGTERM right after the last: 3000 lines, each whole, none lost."""
    n = 3000

    def read(d):
        return [x for x in d.proc.lines["stdout"] if x]

    lines = many_then_term(ctx, "logpipe", "", n, read)
    check_text_lines(lines, n)
    return "%d lines" % len(lines)


def case_log_file_whole_and_complete(ctx):
    """access_log = FILE (O_APPEND), the same load: every line whole, one per connection."""
    n = 3000
    path = os.path.join(ctx.tmp, "access.log")

    def read(d):
        with open(path) as f:
            return f.read().splitlines()

    lines = many_then_term(ctx, "logfile", "access_log = %s" % path, n, read)
    check_text_lines(lines, n)
    return "%d lines" % len(lines)


def case_log_json_pipe(ctx):
    """log_format = json to stdout: 2000 lines, each one JSON object, none lost."""
    n = 2000

    def read(d):
        return [x for x in d.proc.lines["stdout"] if x]

    lines = many_then_term(ctx, "logjson", "log_format = json", n, read)
    objs = []
    for x in lines:
        try:
            objs.append(json.loads(x))
        except ValueError:
            check(False, "not one JSON object: %r" % x[:200])
    check(len(objs) == n, "%d JSON lines for %d connections" % (len(objs), n))
    check(all(o.get("outcome") == "ok" and o.get("sni") == "log.test" for o in objs),
          "a JSON line with another outcome or name")
    return "%d lines" % len(objs)


def case_log_line_soon_when_idle(ctx):
    """One connection on an idle daemon: its line is written by the batch's timer (100 ms),
    so it shows within a generous 3 s, not at the next batch or the exit."""
    d, be, port, _ = start(ctx, "logidle", 2)
    try:
        hello = harness.client_hello("idle.test")
        mark = d.mark()
        check(ask(port, hello), "not routed")
        t0 = time.monotonic()
        lines = d.wait_log_count(1, start=mark, timeout=3)
        check(len(lines) == 1, "no access-log line within 3 s of an idle connection's end")
        finish(d)
        return "line after %.2f s" % (time.monotonic() - t0)
    finally:
        d.stop()
        be.stop()


def case_log_reload_switches_file(ctx):
    """A reload to another access_log path with 4 workers: lines of connections before it
    in the first file, after it in the second, none lost or duplicated."""
    first = os.path.join(ctx.tmp, "first.log")
    second = os.path.join(ctx.tmp, "second.log")
    d, be, port, _ = start(ctx, "logreload", 4, "access_log = %s" % first)
    try:
        hello = harness.client_hello("reload.test")
        check(storm(port, hello, 200, 4) == 200, "before: not all routed")
        with open(d.path) as f:
            text = f.read()
        with open(d.path, "w") as f:
            f.write(text.replace(first, second))
        with d.proc.cond:
            mark = len(d.proc.lines["stderr"])
        os.kill(d.pid, signal.SIGHUP)
        d.proc.wait_line("stderr", r"reloaded", 5, mark)
        time.sleep(0.3)  # every worker has taken the new generation (its mailbox)
        check(storm(port, hello, 200, 4) == 200, "after: not all routed")
        finish(d)
        with open(first) as f:
            a = f.read().splitlines()
        with open(second) as f:
            b = f.read().splitlines()
        check_text_lines(a + b, 400)
        check(len(a) == 200 and len(b) == 200, "%d lines in the first file, %d in the second"
              % (len(a), len(b)))
        return None
    finally:
        d.stop()
        be.stop()


if __name__ == "__main__":
    harness.run_suite([case_no_process_lock_workers_2, case_no_process_lock_workers_4,
                       case_only_shard_locks_per_ip, case_race_global, case_race_listener,
                       case_race_per_ip, case_log_pipe_whole_and_complete,
                       case_log_file_whole_and_complete, case_log_json_pipe,
                       case_log_line_soon_when_idle, case_log_reload_switches_file])
