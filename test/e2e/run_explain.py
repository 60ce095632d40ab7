#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`sniroute explain`, the daemon's /explain and the `-t` lint through the real binary.

The daemon runs with real listeners in front of `openssl s_server` backends, each with its
own certificate from a throwaway CA. For every name (and ALPN offer) the suite asks /explain
over HTTP, checks that `sniroute explain -c FILE` prints the same text, then connects with
`openssl s_client -servername NAME` and requires that the certificate it gets belongs to the
backend the explanation named (or, for "no route", that the client got an alert and no
backend). Then a reload, the endpoint's errors, and `-t` / `-t --strict` with warnings.

    run_explain.py --sniroute build/sniroute
"""

import os
import re
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PKI, SServer, check, run, short, txt  # noqa: E402


def make_ctx(binary, tmp, args):
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    ctx.pki = PKI(tmp)
    return ctx


def explain_http(aport, query):
    """GET /explain?<query> on the admin port: (status, text)."""
    url = "http://127.0.0.1:%d/explain?%s" % (aport, query)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def explain_cli(ctx, path, *args):
    r = run([ctx.binary, "explain", "-c", path] + list(args))
    return r.returncode, txt(r.stdout), txt(r.stderr)


def landed_cn(ctx, port, servername, alpn=None):
    """The CN of the certificate s_client gets through sniroute, or None; and its output."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", ctx.pki.ca,
            "-servername", servername]
    if alpn:
        argv += ["-alpn", alpn]
    r = run(argv, timeout=20)
    out = txt(r.stdout)
    m = re.search(r"^subject=.*?CN ?= ?([^,/\r\n]+)", out, re.M)
    return (m.group(1).strip() if m else None), out + txt(r.stderr)


def upstream_of(text, listener):
    """The "upstream:" of <listener>'s block in an explanation, or None for no route."""
    block = text.split("\nlistener: %s " % listener, 1)[1].split("\nlistener: ", 1)[0]
    if "  result: no route" in block:
        return None
    m = re.search(r"^  upstream: (.*)$", block, re.M)
    check(m is not None, "no upstream line in: %s" % block)
    return m.group(1)


class Setup:
    """Backends (each its own certificate), and a daemon routing names to them."""

    NAMES = ["exact", "wild", "deep", "acme", "dflt", "pool1", "pool2"]

    def __init__(self, ctx):
        self.ctx = ctx
        self.servers = {}
        for n in self.NAMES:
            cert, key = ctx.pki.leaf("backend-" + n, ["DNS:*.test", "DNS:exact.test",
                                                      "DNS:acme.test", "DNS:pool.test",
                                                      "DNS:*.wild.test", "DNS:*.deep.wild.test",
                                                      "DNS:other.example"])
            self.servers[n] = SServer(cert, key, n)
        self.by_port = {"127.0.0.1:%d" % s.port: "backend-" + n for n, s in self.servers.items()}
        p = {n: s.port for n, s in self.servers.items()}
        self.text = (
            "[sniroute]\nadmin = 127.0.0.1:0\n"
            "[listener https]\nlisten = 127.0.0.1:0\nroutes = main\n"
            "[listener strict]\nlisten = 127.0.0.1:0\nroutes = nodefault\nno_sni = reject\n"
            "[routes main]\n"
            "EXACT.test. = 127.0.0.1:%d\n"
            "*.wild.test = 127.0.0.1:%d\n"
            "*.deep.wild.test = 127.0.0.1:%d\n"
            "acme.test = 127.0.0.1:%d\n"
            "acme.test[acme-tls/1] = 127.0.0.1:%d\n"
            "pool.test = apps\n"
            "default = 127.0.0.1:%d\n"
            "[routes nodefault]\n"
            "exact.test = 127.0.0.1:%d\n"
            "[upstream apps]\nserver = 127.0.0.1:%d\nserver = 127.0.0.1:%d\n"
            % (p["exact"], p["wild"], p["deep"], p["exact"], p["acme"], p["dflt"], p["exact"],
               p["pool1"], p["pool2"]))
        self.d = harness.Sniroute(ctx.binary, ctx.tmp, "explain", self.text, n_sockets=2)
        _, m = self.d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
        self.aport = int(m.group(1))

    def stop(self):
        status = self.d.stop()
        for s in self.servers.values():
            s.stop()
        return status


def case_explain_agrees_with_clients(ctx):
    """For each name: /explain and `sniroute explain` print the same text, and a real TLS
    client lands on the backend it names (a pool: on one of its servers), or gets an alert
    when it says "no route". Fails on any disagreement."""
    s = Setup(ctx)
    cases = [
        # name as the client sends it, ALPN, listener, why-fragment
        ("exact.test", None, "https", "match: exact 'exact.test'"),
        ("Exact.Test.", None, "https", "normalized: from 'Exact.Test.'"),
        ("a.wild.test", None, "https", "match: wildcard '*.wild.test'"),
        ("a.deep.wild.test", None, "https", "also matching, less specific: '*.wild.test'"),
        ("acme.test", "acme-tls/1", "https", "match: exact 'acme.test[acme-tls/1]'"),
        ("acme.test", "h2", "https", "match: exact 'acme.test'"),
        ("other.example", None, "https", "match: default 'default'"),
        ("pool.test", None, "https", "upstream: pool 'apps'"),
        ("exact.test", None, "strict", "match: exact 'exact.test'"),
        ("other.example", None, "strict", "match: none"),
    ]
    try:
        for name, alpn, listener, why in cases:
            what = "%s alpn=%s listener=%s" % (name, alpn, listener)
            q = {"name": name, "listener": listener}
            if alpn:
                q["alpn"] = alpn
            status, text = explain_http(s.aport, urllib.parse.urlencode(q))
            check(status == 200, "%s: /explain status %d: %s" % (what, status, text))
            check(why in text, "%s: '%s' not in:\n%s" % (what, why, text))
            rc, out, err = explain_cli(ctx, s.d.path, "--listener", listener, name,
                                       *([alpn] if alpn else []))
            check(out == text, "%s: CLI and /explain differ:\n%s\n---\n%s" % (what, out, text))
            up = upstream_of(text, listener)
            check(rc == (0 if up else 1), "%s: explain exited %d" % (what, rc))
            cn, seen = landed_cn(ctx, s.d.port(listener), name, alpn)
            if up is None:
                check(cn is None, "%s: explained as no route, but landed on %s" % (what, cn))
                check("unrecognized name" in seen or "alert" in seen,
                      "%s: no alert seen: %s" % (what, short(seen[-300:], 300)))
            elif up.startswith("pool "):
                servers = up.split("servers: ", 1)[1].split(", ")
                check(cn in [s.by_port[x] for x in servers],
                      "%s: landed on %s, not a server of %s" % (what, cn, up))
            else:
                check(cn == s.by_port.get(up), "%s: explained %s (%s), landed on %s"
                      % (what, up, s.by_port.get(up), cn))
        # The whole map at once: no --listener, exit 1 since 'strict' has no route.
        rc, out, _ = explain_cli(ctx, s.d.path, "other.example")
        check(rc == 1 and "listener: https" in out and "listener: strict" in out,
              "every listener: rc %d:\n%s" % (rc, out))
    finally:
        status = s.stop()
    check(status == 0, "daemon exited %s" % status)
    return None


def case_endpoint_errors_and_reload(ctx):
    """Bad queries get 400/404 with the reason; after SIGHUP /explain answers from the new
    generation, and a client lands where it now says."""
    s = Setup(ctx)
    try:
        for query, want, part in [
            ("", 400, "missing name=NAME"),
            ("name=a..b", 400, "not a valid host name: empty label"),
            ("name=a.test&alpn=h2,", 400, "bad ALPN list"),
            ("name=a.test&listener=nope", 404, "no such listener (there are: https strict)"),
            ("name=a.test&bogus=1", 400, "unknown parameter"),
        ]:
            status, text = explain_http(s.aport, query)
            check(status == want and part in text,
                  "/explain?%s: %d %r, want %d with %r" % (query, status, text, want, part))

        # Point exact.test at the 'deep' backend and reload.
        with open(s.d.path) as f:
            text = f.read()
        new = text.replace("EXACT.test. = 127.0.0.1:%d" % s.servers["exact"].port,
                           "EXACT.test. = 127.0.0.1:%d" % s.servers["deep"].port)
        check(new != text, "config rewrite failed")
        with open(s.d.path, "w") as f:
            f.write(new)
        mark = len(s.d.proc.lines["stderr"])
        os.kill(s.d.pid, signal.SIGHUP)
        s.d.proc.wait_line("stderr", r"reloaded .*generation 2", 10, mark)
        # A listener on port 0 gets a new port at every reload.
        _, m = s.d.proc.wait_line("stderr", r"listening on 127\.0\.0\.1:(\d+) \(listener https\)",
                                  10, mark)
        status, text = explain_http(s.aport, "name=exact.test&listener=https")
        want = "127.0.0.1:%d" % s.servers["deep"].port
        check(upstream_of(text, "https") == want, "after reload: %s" % text)
        cn, _ = landed_cn(ctx, int(m.group(1)), "exact.test")
        check(cn == "backend-deep", "after reload landed on %s" % cn)
    finally:
        status = s.stop()
    check(status == 0, "daemon exited %s" % status)
    return None


LINT_CONFIG = """[listener a]
listen = 127.0.0.1:0
routes = m
[routes m]
*.example.com = 127.0.0.1:1
www.example.com = 127.0.0.1:1
example.com = 127.0.0.1:2
example.com[h2] = 127.0.0.1:2
default = nosuch.invalid:443
[routes spare]
x.test = 127.0.0.1:3
[upstream idle]
server = localhost:1
"""


def case_check_lint(ctx):
    """`sniroute -t` prints each warning as FILE:LINE: warning: ... (hint: ...), in line
    order, and still exits 0; --strict exits 1; a clean config is just "ok"."""
    path = os.path.join(ctx.tmp, "lint.ini")
    with open(path, "w") as f:
        f.write(LINT_CONFIG)
    want = [
        "%s:6: warning: routes 'm': route 'www.example.com' is redundant: without it, "
        "'*.example.com' (line 5) sends it to the same upstream (hint: remove it, or point it "
        "elsewhere)",
        "%s:8: warning: routes 'm': route 'example.com[h2]' is redundant: the plain route "
        "'example.com' (line 7) sends it to the same upstream whatever the client offers "
        "(hint: remove the [h2] route, or point it elsewhere)",
        "%s:9: warning: upstream host 'nosuch.invalid' does not resolve here: no such name "
        "(hint: it is resolved at each connect; until it resolves, connections routed there "
        "fail with resolve_failed)",
        "%s:10: warning: routes 'spare' is used by no listener (hint: name it in a listener's "
        "'routes =', or remove it)",
        "%s:12: warning: upstream 'idle' is named by no route and no fallback (hint: use it as "
        "a route target, 'NAME = idle', or remove it)",
    ]
    want = [w % path for w in want]
    r = run([ctx.binary, "-t", "-c", path], timeout=30)
    got = txt(r.stderr).splitlines()
    check(r.returncode == 0, "-t exited %d: %s" % (r.returncode, txt(r.stderr)))
    check(got == want, "-t warnings:\n%s\nwant:\n%s" % ("\n".join(got), "\n".join(want)))
    check(txt(r.stdout) == "%s: ok, 5 warning(s)\n" % path, "-t stdout: %r" % txt(r.stdout))

    r = run([ctx.binary, "-t", "--strict", "-c", path], timeout=30)
    check(r.returncode == 1, "-t --strict exited %d" % r.returncode)
    check(txt(r.stderr).splitlines() == want + ["%s: 5 warning(s); not valid (--strict)" % path],
          "-t --strict stderr: %s" % txt(r.stderr))
    check(txt(r.stdout) == "", "-t --strict stdout: %r" % txt(r.stdout))

    clean = os.path.join(ctx.tmp, "clean.ini")
    with open(clean, "w") as f:
        f.write("[listener a]\nlisten = 127.0.0.1:0\nroutes = m\n[routes m]\n"
                "example.com = localhost:443\ndefault = 127.0.0.1:1\n")
    for argv in ([ctx.binary, "-t", "-c", clean], [ctx.binary, "-t", "--strict", "-c", clean]):
        r = run(argv, timeout=30)
        check(r.returncode == 0 and txt(r.stdout) == "%s: ok\n" % clean and txt(r.stderr) == "",
              "%s: rc %d, %r, %r" % (argv[1:3], r.returncode, txt(r.stdout), txt(r.stderr)))

    # explain's own exit statuses: a config error, and a usage error, are 2.
    r = run([ctx.binary, "explain", "-c", os.path.join(ctx.tmp, "missing.ini"), "a.test"])
    check(r.returncode == 2, "explain on a missing config exited %d" % r.returncode)
    r = run([ctx.binary, "explain", "-c", clean])
    check(r.returncode == 2 and "usage: sniroute explain" in txt(r.stderr),
          "explain without NAME: %d %s" % (r.returncode, txt(r.stderr)))
    r = run([ctx.binary, "explain", "-c", clean, "a..b"])
    check(r.returncode == 2, "explain of a bad name exited %d" % r.returncode)
    return None


def case_check_resolving_many_times(ctx):
    """`sniroute -t` resolving names that do not exist, 30 times in a row: every run exits 0
    and prints its "ok" line. glibc's resolver threads could crash the process at its end
    (SIGSEGV in __gai_notify after gai_error said a lookup was done), about one run in
    seven, before the lookups were polled and kept to the exit."""
    path = os.path.join(ctx.tmp, "resolve.ini")
    with open(path, "w") as f:
        f.write("[listener a]\nlisten = 127.0.0.1:0\nroutes = m\n[routes m]\n"
                "a.example = one.invalid:443\nb.example = two.invalid:443\n"
                "default = three.invalid:443\n")
    for i in range(30):
        r = run([ctx.binary, "-t", "-c", path], timeout=30)
        check(r.returncode == 0 and txt(r.stdout) == "%s: ok, 3 warning(s)\n" % path,
              "run %d: exit %d, stdout %r" % (i + 1, r.returncode, txt(r.stdout)))
    return "30 runs, all ok"


if __name__ == "__main__":
    harness.run_suite([case_explain_agrees_with_clients, case_endpoint_errors_and_reload,
                       case_check_lint, case_check_resolving_many_times], make_ctx=make_ctx)
