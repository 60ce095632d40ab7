#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""max_new_connections_per_ip (issue 15) through the real daemon: a flood of new connections
from 127.0.0.2 is admitted at the configured rate (burst included) within 10 %, counted at
the backend, while 127.0.0.3 at a modest rate is never refused, with workers = 1 and 4 (and
no lock every worker takes); a reload keeps the buckets (no fresh burst) and one that
changes the rate applies it to them; behind HAProxy (PROXY v2) the named client is limited,
not the proxy; a QUIC listener limits new flows; IPv6 clients count by /64, and 100,000
distinct /64s keep the table within rate_limit_entries (a private network namespace with
2001:db8::/32 routed to lo).

    run_ratelimit.py --sniroute build/sniroute [-k FILTER]
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import Fail, check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NOTICE = "refused over max_new_connections_per_ip"
IP_FREEBIND = 15


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class CountBackend:
    """Accepts and closes at once, counting: how many connections sniroute routed here."""

    def __init__(self, family=socket.AF_INET, host="127.0.0.1"):
        self.sock = socket.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.n = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.n += 1
            c.close()

    def settle(self, timeout=5.0):
        """The count once it has not moved for 0.5 s."""
        deadline = time.monotonic() + timeout
        last, since = self.n, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if self.n != last:
                last, since = self.n, time.monotonic()
            elif time.monotonic() - since >= 0.5:
                break
        return self.n

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def attempt(port, hello, source, host="127.0.0.1", family=socket.AF_INET):
    """One new connection from <source>: the hello, then wait for the close (sniroute
    closes at once when refused; the backend closes at once when routed)."""
    s = socket.socket(family)
    try:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect((host, port))
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    except OSError:
        pass
    finally:
        s.close()


def flood(port, hello, source, seconds, n_threads=4):
    """New connections from <source> as fast as <n_threads> threads go, for <seconds>.
    Returns (attempts, time from the first attempt's start to the last one's start)."""
    counts = [0] * n_threads
    first, last = [], []
    stop_at = time.monotonic() + seconds

    def run(i):
        while True:
            t = time.monotonic()
            if t >= stop_at:
                return
            if counts[i] == 0:
                first.append(t)
            last.append(t)
            attempt(port, hello, source)
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
    return sum(counts), max(last) - min(first)


def modest(port, hello, source, seconds, per_second, sent):
    """<per_second> connections a second from <source> for <seconds>; counts in sent[0]."""
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        attempt(port, hello, source)
        sent[0] += 1
        time.sleep(1.0 / per_second)


def start(ctx, name, listener_extra, routes, settings="", workers=1, listen="127.0.0.1",
          n_sockets=None):
    port = free_port(socket.AF_INET6 if ":" in listen else socket.AF_INET, listen)
    host = "[%s]" % listen if ":" in listen else listen
    text = ("[sniroute]\nadmin = 127.0.0.1:0\naccess_log = off\nworkers = %d\n%s\n"
            "[listener https]\nlisten = %s:%d\nroutes = main\n%s\n[routes main]\n%s"
            % (workers, settings, host, port, listener_extra, routes))
    d = harness.Sniroute(ctx.binary, ctx.tmp, name, text,
                         n_sockets=n_sockets if n_sockets is not None else workers)
    _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
    return d, port, int(m.group(1))


def scrape(aport):
    r = harness.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:%d/metrics" % aport])
    return promtext.parse(harness.txt(r.stdout), lint=True)


def metric(fams, name, **labels):
    try:
        return promtext.value(fams, name, **labels)
    except KeyError:
        raise Fail("/metrics has no %s%s" % (name, labels))


def finish(d):
    status = d.stop()
    report = d.sanitizer_report()
    check(status == 0 and report is None, "%s exited %s; %s" % (d.name, status, report))


def hup(d, text_replace=None):
    """Rewrite the config (optionally) and reload; waits for the verdict."""
    if text_replace is not None:
        with open(d.path) as f:
            text = f.read()
        for old, new in text_replace:
            check(old in text, "config has no %r" % old)
            text = text.replace(old, new)
        with open(d.path, "w") as f:
            f.write(text)
    start_line = len(d.proc.lines["stderr"])
    os.kill(d.pid, signal.SIGHUP)
    _, m = d.proc.wait_line("stderr", r"reloaded|reload failed", 10, start_line)
    check(m.group(0) == "reloaded", "reload failed: %s" % d.proc.tail("stderr"))


# --- The rate, one worker and four -------------------------------------------------------


def rate_case(ctx, workers):
    rate = 100
    flooded, calm = CountBackend(), CountBackend()
    d, port, aport = start(ctx, "rate%d" % workers, "max_new_connections_per_ip = %d/s" % rate,
                           "flood.test = 127.0.0.1:%d\ncalm.test = 127.0.0.1:%d\n"
                           % (flooded.port, calm.port), workers=workers)
    try:
        fams = scrape(aport)
        p0 = metric(fams, "sniroute_process_lock_acquisitions_total")
        s0 = metric(fams, "sniroute_shard_lock_acquisitions_total")
        sent = [0]
        calm_thread = threading.Thread(
            target=modest, args=(port, harness.client_hello("calm.test"), "127.0.0.3", 4.5, 10,
                                 sent))
        calm_thread.start()
        n, span = flood(port, harness.client_hello("flood.test"), "127.0.0.2", 4.0)
        calm_thread.join(timeout=30)
        got = flooded.settle()
        calm_got = calm.settle()
        want = rate + rate * span  # the burst, then the refill over the flood
        err = (got - want) / want
        check(n > 3 * want, "the flood made only %d attempts (want far above %d)" % (n, want))
        check(abs(err) <= 0.10, "%d of %d admitted in %.2f s: want %.0f (burst %d + %d/s), "
              "off by %+.1f %%" % (got, n, span, want, rate, rate, 100 * err))
        check(calm_got == sent[0], "127.0.0.3 at 10/s: %d of %d reached its backend"
              % (calm_got, sent[0]))
        fams = scrape(aport)
        rejected = metric(fams, "sniroute_connections_rejected_total", listener="https",
                          limit="max_new_connections_per_ip")
        check(rejected == n - got, "rejected_total %d, want %d (attempts %d - admitted %d)"
              % (rejected, n - got, n, got))
        p1 = metric(fams, "sniroute_process_lock_acquisitions_total")
        s1 = metric(fams, "sniroute_shard_lock_acquisitions_total")
        check(p1 == p0, "process-wide locks moved %d -> %d during the flood" % (p0, p1))
        check(s1 - s0 >= n + sent[0], "shard locks %d for %d connections: the rate was not "
              "checked in the shards" % (s1 - s0, n + sent[0]))
        check(metric(fams, "sniroute_rate_limit_entries") == 2, "entries: want 2 addresses")
        d.proc.wait_line("stderr", NOTICE, 5)
        finish(d)
        return ("workers=%d: %d of %d admitted in %.2f s, want %.0f: %+.2f %%; 127.0.0.3 %d/%d; "
                "process locks +0, shard locks +%d"
                % (workers, got, n, span, want, 100 * err, calm_got, sent[0], s1 - s0))
    finally:
        d.stop()
        flooded.stop()
        calm.stop()


def case_rate_one_worker(ctx):
    """A 4 s flood from 127.0.0.2 at 100/s is admitted at 100 + 100/s within 10 %, counted
    at the backend; 127.0.0.3 at 10/s meanwhile loses nothing; rejections counted."""
    return rate_case(ctx, 1)


def case_rate_four_workers(ctx):
    """The same with workers = 4: the four accept loops share the buckets exactly, and no
    lock every worker takes is touched (process-wide lock count unchanged)."""
    return rate_case(ctx, 4)


# --- Reloads -------------------------------------------------------------------------------


def burst(port, hello, source, n):
    for _ in range(n):
        attempt(port, hello, source)


def case_reload_keeps_buckets(ctx):
    """20/m: 40 attempts get the burst of 20; a reload with the same rate gives no fresh
    burst (at most the refill since, one per 3 s); a reload to 600/m applies the new rate to
    the same bucket: it refills at 10/s, not with a burst of 600."""
    be = CountBackend()
    d, port, aport = start(ctx, "reload", "max_new_connections_per_ip = 20/m",
                           "default = 127.0.0.1:%d\n" % be.port, settings="hello_timeout = 5s")
    hello = harness.client_hello("reload.test")
    try:
        burst(port, hello, "127.0.0.2", 40)
        first = be.settle()
        check(first == 20, "before the reload: %d admitted of 40, want the burst of 20" % first)
        t0 = time.monotonic()
        hup(d, [("hello_timeout = 5s", "hello_timeout = 6s")])
        burst(port, hello, "127.0.0.2", 40)
        second = be.settle() - first
        elapsed = time.monotonic() - t0
        check(second <= 1 + elapsed / 3, "after a reload with the same rate: %d more admitted "
              "in %.1f s (want at most the refill, one per 3 s): the buckets were reset"
              % (second, elapsed))
        hup(d, [("= 20/m", "= 600/m")])
        t1 = time.monotonic()
        time.sleep(1.0)
        burst(port, hello, "127.0.0.2", 60)
        third = be.settle() - first - second
        elapsed = time.monotonic() - t1
        check(5 <= third <= 10 * elapsed + 2, "after a reload to 600/m: %d admitted in %.1f s "
              "(want the new refill of 10/s, no burst of 600)" % (third, elapsed))
        check(scrape(aport) is not None, "scrape")
        finish(d)
        return "20, then %d after the same-rate reload, then %d in %.1f s at 600/m" % (
            second, third, elapsed)
    finally:
        d.stop()
        be.stop()


# --- Behind a PROXY front --------------------------------------------------------------------


def haproxy(tmp, name, body):
    path = os.path.join(tmp, name + ".cfg")
    with open(path, "w") as f:
        f.write("global\n    log stdout format raw local0\n"
                "defaults\n    mode tcp\n    timeout connect 5s\n"
                "    timeout client 30s\n    timeout server 30s\n" + body)
    proc = harness.Proc(["haproxy", "-db", "-f", path], "haproxy(" + name + ")")
    time.sleep(0.5)
    check(proc.p.poll() is None, "haproxy %s did not start: %s" % (name, proc.tail("stderr")))
    return proc


def case_behind_haproxy(ctx):
    """client -> HAProxy (send-proxy-v2) -> sniroute (proxy_protocol = accept, 20/m): 40
    from 127.0.0.2 get 20 through, 5 from 127.0.0.3 all get through: the named client is
    limited, not the proxy's own address (45 connections from 127.0.0.1)."""
    if shutil.which("haproxy") is None:
        return "skipped: haproxy is not installed"
    flooded, calm = CountBackend(), CountBackend()
    d, sport, aport = start(ctx, "proxied",
                            "proxy_protocol = accept\ntrusted_proxies = 127.0.0.1/32\n"
                            "max_new_connections_per_ip = 20/m",
                            "flood.test = 127.0.0.1:%d\ncalm.test = 127.0.0.1:%d\n"
                            % (flooded.port, calm.port))
    hport = free_port()
    h = haproxy(ctx.tmp, "front", "frontend fe\n    bind 127.0.0.1:%d\n    default_backend be\n"
                "backend be\n    server s 127.0.0.1:%d send-proxy-v2\n" % (hport, sport))
    try:
        burst(hport, harness.client_hello("flood.test"), "127.0.0.2", 40)
        burst(hport, harness.client_hello("calm.test"), "127.0.0.3", 5)
        got, calm_got = flooded.settle(), calm.settle()
        check(got == 20, "127.0.0.2 through HAProxy: %d of 40 admitted, want 20" % got)
        check(calm_got == 5, "127.0.0.3 through HAProxy: %d of 5 admitted" % calm_got)
        fams = scrape(aport)
        closed = metric(fams, "sniroute_connections_closed_total", listener="https",
                        outcome="max_new_connections_per_ip")
        rejected = metric(fams, "sniroute_connections_rejected_total", listener="https",
                          limit="max_new_connections_per_ip")
        check(closed == 20 and rejected == 20, "closed %d, rejected %d: want 20 each"
              % (closed, rejected))
        finish(d)
        return "20 of 40 and 5 of 5 through HAProxy"
    finally:
        d.stop()
        h.stop()
        flooded.stop()
        calm.stop()


# --- QUIC ------------------------------------------------------------------------------------


def quic_initial():
    with open(os.path.join(HERE, "..", "fixtures", "quic", "gtlsclient-v1.bin"), "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:2], "big")
    return data[2:2 + n]


def case_quic_new_flows(ctx):
    """A protocol = quic listener at 10/m: Initials from 30 source ports of 127.0.0.2 start
    10 flows (the sink gets 10 datagrams, 20 dropped as max_new_connections_per_ip), from 5
    of 127.0.0.3 all 5."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    port = free_port()
    text = ("[sniroute]\nadmin = 127.0.0.1:0\naccess_log = off\n[listener h3]\n"
            "listen = 127.0.0.1:%d\nroutes = main\nprotocol = quic\n"
            "max_new_connections_per_ip = 10/m\n[routes main]\ndefault = 127.0.0.1:%d\n"
            % (port, sink.getsockname()[1]))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "quic", text)
    _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
    aport = int(m.group(1))
    initial = quic_initial()
    socks = []
    try:
        for src, n in (("127.0.0.2", 30), ("127.0.0.3", 5)):
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((src, 0))
                s.sendto(initial, ("127.0.0.1", port))
                socks.append(s)
        got = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sink.recvfrom(65536)
                got += 1
            except socket.timeout:
                if got >= 15:
                    break
        fams = scrape(aport)
        dropped = metric(fams, "sniroute_quic_datagrams_dropped_total", listener="h3",
                         reason="max_new_connections_per_ip")
        started = metric(fams, "sniroute_quic_flows_started_total", listener="h3")
        check(started == 15 and got == 15 and dropped == 20,
              "flows started %d, datagrams relayed %d, dropped %d: want 15, 15, 20"
              % (started, got, dropped))
        finish(d)
        return "15 flows, 20 dropped"
    finally:
        for s in socks:
            s.close()
        d.stop()
        sink.close()


# --- IPv6 /64s and the bound, in a network namespace -------------------------------------------


def v6_body(binary, tmp):
    """Inside the namespace: 2001:db8::/32 is local on lo, so any address in it can be a
    source."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-6", "route", "add", "local", "2001:db8::/32", "dev", "lo"],
                   check=True)
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    be = CountBackend(socket.AF_INET6, "::1")
    d, port, aport = start(ctx, "v6", "max_new_connections_per_ip = 5/m",
                           "default = [::1]:%d\n" % be.port, settings="rate_limit_entries = 1024",
                           listen="::1")
    hello = harness.client_hello("v6.test")

    def from_(addr, n=1):
        for _ in range(n):
            s = socket.socket(socket.AF_INET6)
            s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            s.bind((addr, 0))
            s.settimeout(5)
            try:
                s.connect(("::1", port))
                s.sendall(hello)
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
            except OSError:
                pass
            s.close()

    try:
        # One /64 is one client; the next /64 is another.
        from_("2001:db8:0:1::1", 5)
        from_("2001:db8:0:1:ffff::2", 3)
        from_("2001:db8:0:2::1", 1)
        got = be.settle()
        check(got == 6, "/64 keying: %d admitted, want 5 from 2001:db8:0:1::/64 and 1 from "
              "2001:db8:0:2::/64" % got)
        # 100,000 distinct /64s: no hello, just the connection (each takes a bucket).
        rss = []
        for i in range(100000):
            s = socket.socket(socket.AF_INET6)
            s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            s.bind(("2001:db8:%x:%x::1" % (0x100 + (i >> 16), i & 0xffff), 0))
            s.settimeout(5)
            try:
                s.connect(("::1", port))
            except OSError:
                pass
            s.close()
            if i in (9999, 99999):
                time.sleep(0.5)
                rss.append(d.rss_kib())
        fams = scrape(aport)
        entries = metric(fams, "sniroute_rate_limit_entries")
        evicted = metric(fams, "sniroute_rate_limit_evictions_total")
        rejected = metric(fams, "sniroute_connections_rejected_total", listener="https",
                          limit="max_new_connections_per_ip")
        check(entries <= 1024, "%d buckets kept, over rate_limit_entries = 1024" % entries)
        check(evicted >= 100000 + 2 - 1024, "only %d evictions for 100,002 addresses" % evicted)
        check(rejected == 3, "%d refused, want 3 (none of the 100,000 new /64s)" % rejected)
        # ASan keeps freed memory in quarantine (up to 256 MiB): only the metric means much there.
        limit_kib = 256 * 1024 if harness.binary_has_asan(binary) else 3 * 1024
        check(rss[1] - rss[0] < limit_kib, "RSS grew %d KiB from 10,000 to 100,000 addresses"
              % (rss[1] - rss[0]))
        finish(d)
        return ("/64s keyed; 100,000 /64s: %d buckets, %d evicted, RSS %d -> %d KiB"
                % (entries, evicted, rss[0], rss[1]))
    finally:
        d.stop()
        be.stop()


def case_ipv6_64s_bounded(ctx):
    """IPv6 clients count by /64 (two addresses of one /64 share a bucket, the next /64 has
    its own), and 100,000 distinct /64s keep the table within rate_limit_entries = 1024
    (entries and evictions from /metrics; RSS grows less than 3 MiB from 10,000 to 100,000
    addresses). In a private network namespace: 2001:db8::/32 routed locally on lo."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "skipped: unshare -n not permitted"
    r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                        "--sniroute", ctx.binary, "--inner-v6", ctx.tmp],
                       capture_output=True, text=True, timeout=240)
    out = r.stdout.strip().splitlines()
    check(r.returncode == 0 and out and out[-1].startswith("OK "),
          "in the namespace: %s %s" % (r.stdout[-600:], r.stderr[-600:]))
    return out[-1][3:]


def main():
    if "--inner-v6" in sys.argv:
        binary = sys.argv[sys.argv.index("--sniroute") + 1]
        tmp = sys.argv[sys.argv.index("--inner-v6") + 1]
        try:
            print("OK " + v6_body(binary, tmp))
        except Fail as e:
            print("FAIL %s" % e)
            sys.exit(1)
        finally:
            harness.Proc.stop_all()
        return
    harness.run_suite([case_rate_one_worker, case_rate_four_workers, case_reload_keeps_buckets,
                       case_behind_haproxy, case_quic_new_flows, case_ipv6_64s_bounded])


if __name__ == "__main__":
    main()
