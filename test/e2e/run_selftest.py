#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`sniroute selftest` against real paths: the daemon in front of a real `openssl s_server`
(our own throwaway CA), and the s_server alone. Every case must reach the backend through
a daemon that allows big hellos and straight at the backend (so it is the builder that
works, not only sniroute's parser); a daemon with a small max_hello_size turns the pq and
large cases into alert 40 (too_large); an unknown name into alert 112 (no_route). Each time
/metrics, parsed strictly, must show exactly those misses in sniroute_hello_misses_total;
raw sockets add the reasons selftest cannot cause (no_sni, not_tls, incomplete,
hello_timeout, malformed), counted exactly too.

    run_selftest.py --sniroute build/sniroute
"""

import os
import re
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import Fail, check  # noqa: E402

CASES = ["plain", "bytewise", "records", "header_split", "slow", "pq", "large"]
MISS_REASONS = ["no_sni", "incomplete", "too_large", "hello_timeout", "not_tls", "malformed",
                "no_route"]
ROW_RX = re.compile(r"^(\w+)\s+(\d+)\s+(\d+)\s+(.+?)\s+(\d+)$")


def make_ctx(binary, tmp, args):
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    ctx.pki = harness.PKI(tmp)
    ctx.cert, ctx.key = ctx.pki.leaf("a.test", ["DNS:a.test"])
    return ctx


def daemon(ctx, name, backend_port, max_hello_size="32k"):
    """A daemon routing a.test to <backend_port>, refusing hellos without SNI, with an admin
    endpoint and a short hello_timeout. Returns (daemon, listener port, admin port)."""
    text = ("[sniroute]\nadmin = 127.0.0.1:0\nmax_hello_size = %s\nhello_timeout = 3s\n"
            "[listener web]\nlisten = 127.0.0.1:0\nroutes = main\nno_sni = reject\n"
            "[routes main]\na.test = 127.0.0.1:%d\n" % (max_hello_size, backend_port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, name, text)
    _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
    return d, d.port("web"), int(m.group(1))


def finish(d):
    """Stop <d>: a clean exit and no sanitizer report, or Fail."""
    status = d.stop()
    report = d.sanitizer_report()
    check(report is None, report or "")
    check(status == 0, "%s exited with %s" % (d.name, status))


def selftest(ctx, *args):
    """Run `sniroute selftest ARGS`: (exit status, {case: (bytes, writes, result)}, text)."""
    r = harness.run([ctx.binary, "selftest"] + list(args), timeout=90)
    out = harness.txt(r.stdout)
    for mark in harness.SANITIZER_MARKS:  # exit 1 is also a miss: look, do not assume
        check(mark not in harness.txt(r.stderr), "selftest %s: %s" % (args, harness.txt(r.stderr)))
    rows = {}
    for line in out.splitlines():
        m = ROW_RX.match(line)
        if m and m.group(1) in CASES:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4))
    return r.returncode, rows, out + harness.txt(r.stderr)


def expect_rows(rows, out, want):
    """Every case ran, and each result matches <want>[case] (a regex; default: reached)."""
    check(sorted(rows) == sorted(CASES), "cases %s in:\n%s" % (sorted(rows), out))
    for case in CASES:
        pat = want.get(case, r"reached \(ServerHello\)")
        check(re.fullmatch(pat, rows[case][2]), "%s: %r, want %s\n%s"
              % (case, rows[case][2], pat, out))


def scrape(aport):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % aport, timeout=10) as r:
        check(r.status == 200, "/metrics: HTTP %d" % r.status)
        body = r.read().decode()
    try:
        return promtext.parse(body, lint=True)
    except promtext.ParseError as e:
        raise Fail("/metrics is not valid Prometheus text: %s" % e)


def expect_misses(d, aport, n_conns, want):
    """Once <n_conns> connections are in the access log, sniroute_hello_misses_total shows
    exactly <want> ({reason: n}, the others 0)."""
    got = d.wait_log_count(n_conns, timeout=20)
    check(len(got) >= n_conns, "only %d of %d access-log lines" % (len(got), n_conns))
    fams = scrape(aport)
    for reason in MISS_REASONS:
        try:
            v = promtext.value(fams, "sniroute_hello_misses_total", reason=reason)
        except KeyError:
            raise Fail("no sniroute_hello_misses_total{reason=%r}" % reason)
        check(v == want.get(reason, 0), "misses{reason=%s} = %s, want %d"
              % (reason, v, want.get(reason, 0)))
    return fams


def case_usage(ctx):
    """--help lists selftest; bad arguments exit 2 without connecting anywhere."""
    r = harness.run([ctx.binary, "--help"])
    check(r.returncode == 0 and b"sniroute selftest" in r.stdout, "--help: %r" % r.stdout)
    for args in ([], ["127.0.0.1:1"], ["127.0.0.1:1", "a.test", "extra"],
                 ["--only", "nope", "127.0.0.1:1", "a.test"], ["--timeout", "0", "x:1", "a"],
                 ["--alpn", "h2,,x", "127.0.0.1:1", "a.test"], ["no-port", "a.test"],
                 ["127.0.0.1:1", "bad..name"], ["--frobnicate", "127.0.0.1:1", "a.test"]):
        r = harness.run([ctx.binary, "selftest"] + args)
        check(r.returncode == 2, "selftest %s: exit %d, want 2" % (args, r.returncode))


def case_direct_to_backend(ctx):
    """Straight at s_server, no sniroute: every case reaches it, so the hellos are real."""
    be = harness.SServer(ctx.cert, ctx.key, "a.test")
    rc, rows, out = selftest(ctx, "127.0.0.1:%d" % be.port, "a.test")
    expect_rows(rows, out, {})
    check(rc == 0, "exit %d\n%s" % (rc, out))
    rc, rows, out = selftest(ctx, "--alpn", "h2,http/1.1", "--only", "plain,pq",
                             "127.0.0.1:%d" % be.port, "a.test")
    check(rc == 0 and sorted(rows) == ["plain", "pq"], "--alpn --only: exit %d\n%s" % (rc, out))


def case_all_reach_through_sniroute(ctx):
    """max_hello_size 32k: all seven cases reach the backend through sniroute, no misses."""
    be = harness.SServer(ctx.cert, ctx.key, "a.test")
    d, port, aport = daemon(ctx, "big", be.port)
    rc, rows, out = selftest(ctx, "127.0.0.1:%d" % port, "a.test")
    expect_rows(rows, out, {})
    check(rc == 0, "exit %d\n%s" % (rc, out))
    check(rows["large"][0] > 16384 + 5 and rows["bytewise"][1] == rows["bytewise"][0],
          "sizes: %s" % rows)
    fams = expect_misses(d, aport, len(CASES), {})
    found = promtext.value(fams, "sniroute_hello_results_total", result="found", reason="none")
    check(found == len(CASES), "hello_results found = %s, want %d" % (found, len(CASES)))
    # selftest ends with a FIN after the ServerHello, so the path sees no reset.
    ok = promtext.value(fams, "sniroute_connections_closed_total", listener="web", outcome="ok")
    check(ok == len(CASES), "closed{outcome=ok} = %s, want %d" % (ok, len(CASES)))
    finish(d)


def case_small_max_hello_size(ctx):
    """max_hello_size 1k: pq (1.9 KB) and large (17 KB) get alert 40 and count as too_large;
    the rest still reach the backend; exit 1."""
    be = harness.SServer(ctx.cert, ctx.key, "a.test")
    d, port, aport = daemon(ctx, "small", be.port, max_hello_size="1k")
    rc, rows, out = selftest(ctx, "127.0.0.1:%d" % port, "a.test")
    expect_rows(rows, out, {"pq": r"alert 40 handshake_failure",
                            "large": r"alert 40 handshake_failure"})
    check(rc == 1, "exit %d, want 1\n%s" % (rc, out))
    check("too_large" in out, "no too_large hint in:\n%s" % out)
    expect_misses(d, aport, len(CASES), {"too_large": 2})
    finish(d)


def case_unknown_name(ctx):
    """A name the map does not route: every case gets alert 112 and counts as no_route."""
    be = harness.SServer(ctx.cert, ctx.key, "a.test")
    d, port, aport = daemon(ctx, "unknown", be.port)
    rc, rows, out = selftest(ctx, "127.0.0.1:%d" % port, "unknown.test")
    expect_rows(rows, out, {c: r"alert 112 unrecognized_name" for c in CASES})
    check(rc == 1, "exit %d, want 1\n%s" % (rc, out))
    check("no_route" in out, "no no_route hint in:\n%s" % out)
    expect_misses(d, aport, len(CASES), {"no_route": len(CASES)})
    finish(d)


def case_backend_down(ctx):
    """The route's backend refuses: selftest reports a miss (the daemon closes), exit 1."""
    dead_sock, dead_port = harness.dead_port()
    d, port, _ = daemon(ctx, "dead", dead_port)
    rc, rows, out = selftest(ctx, "--only", "plain", "127.0.0.1:%d" % port, "a.test")
    check(rc == 1 and rows.get("plain", (0, 0, ""))[2] in ("closed (EOF)", "reset"),
          "exit %d\n%s" % (rc, out))
    dead_sock.close()
    finish(d)


def case_verdicts(ctx):
    """Each kind of miss is told apart: silence is a timeout, a reset is a reset, and an
    answer that is not a ServerHello (an echo of our own hello) is not a TLS answer."""
    hold, reset, echo = harness.HoldBackend(), harness.ResetBackend(), harness.EchoBackend()
    try:
        for be, pat in ((hold, r"timeout"), (reset, r"reset|closed \(EOF\)"),
                        (echo, r"not a TLS answer: 160301.*")):
            rc, rows, out = selftest(ctx, "--timeout", "300ms", "--only", "plain,large",
                                     "127.0.0.1:%d" % be.port, "a.test")
            check(rc == 1 and sorted(rows) == ["large", "plain"], "exit %d\n%s" % (rc, out))
            for case in ("plain", "large"):
                check(re.fullmatch(pat, rows[case][2]), "%s: %r, want %s" % (case, rows[case][2],
                                                                            pat))
    finally:
        for be in (hold, reset, echo):
            be.stop()


def case_ipv6_literal(ctx):
    """[::1]:PORT straight at an s_server on IPv6 loopback (skipped where there is none)."""
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        return "no IPv6 loopback: skipped"
    p = harness.Proc(["openssl", "s_server", "-accept", "[::1]:0", "-cert", ctx.cert, "-key",
                      ctx.key, "-www"], "s_server ::1")
    _, m = p.wait_line("stdout", r"^ACCEPT .*:(\d+)$", 15)
    rc, rows, out = selftest(ctx, "--only", "plain,pq", "[::1]:%s" % m.group(1), "a.test")
    check(rc == 0 and sorted(rows) == ["plain", "pq"], "exit %d\n%s" % (rc, out))


def case_raw_misses(ctx):
    """The miss reasons selftest does not cause, from raw sockets, each counted exactly:
    no_sni 2, not_tls 1, incomplete 1, hello_timeout 1, malformed 1."""
    be = harness.SServer(ctx.cert, ctx.key, "a.test")
    d, port, aport = daemon(ctx, "raw", be.port)
    hello = harness.client_hello("a.test")

    def exchange(data, shut=True):
        with harness.connect(port) as s:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            return harness.wait_close(s, 10)

    for _ in range(2):
        _, got = exchange(harness.client_hello(None))
        check(got == bytes.fromhex("15030300020228"), "no_sni: %s" % harness.short(got))
    exchange(b"SSH-2.0-OpenSSH_9.2\r\n")
    exchange(hello[:len(hello) // 2])                      # incomplete: FIN mid-hello
    bad = bytearray(hello)
    bad[43] = 33                                          # legacy_session_id of 33 bytes
    _, got = exchange(bytes(bad))
    check(got == bytes.fromhex("15030300020232"), "malformed: %s" % harness.short(got))
    t0 = time.monotonic()
    how, _ = exchange(hello[:len(hello) // 2], shut=False)  # hello_timeout (3s)
    check(time.monotonic() - t0 > 2, "closed after %.1fs, before hello_timeout"
          % (time.monotonic() - t0))
    expect_misses(d, aport, 6, {"no_sni": 2, "not_tls": 1, "incomplete": 1,
                                "hello_timeout": 1, "malformed": 1})
    finish(d)


if __name__ == "__main__":
    harness.run_suite([case_usage, case_direct_to_backend, case_all_reach_through_sniroute,
                       case_small_max_hello_size, case_unknown_name, case_backend_down,
                       case_verdicts, case_ipv6_literal, case_raw_misses], make_ctx=make_ctx)
