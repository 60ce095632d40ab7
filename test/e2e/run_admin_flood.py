#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin endpoint under a flood (issue 11 item 3): whoever reaches the admin port must
not be able to starve /healthz and /readyz, or the kubelet restarts the router. Floods come
from other loopback addresses (a client socket bound to 127.0.0.2, 127.0.1.x, ...) in a
separate process, probes from 127.0.0.3 with http.client; every probe must be answered 200
within 1 s while the flood runs (the one timing assertion, asked for by the issue).

    run_admin_flood.py --sniroute build/sniroute

Cases: 200 silent connections from one address; 400 from 40 addresses (beyond the total
cap); 400 slowloris heads from 40 addresses; 64 slow readers of a ~1 MB /metrics (memory
stays bounded); and the first-byte and head deadlines. The flooder is this script run with
--flood; it reopens what the daemon closes, at most FLOOD_RATE connections a second, for a
bounded time."""

import argparse
import http.client
import os
import selectors
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Fail, check  # noqa: E402

PROBE_FROM = "127.0.0.3"
PROBE_LIMIT_S = 1.0  # the issue: every probe answered 200 within 1 s
PROBE_EVERY_S = 0.05
FLOOD_RATE = 3000  # connects a second, per flooder process: enough to churn every slot
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the source port at connect, not at bind
N_BIG_LISTENERS = 250  # with 63-byte names: a /metrics text of ~1 MB

# ---------------------------------------------------------------------------------------
# The flooder (a child process, so its busy loop never delays a probe in this one)


def flood(port, sources, per_source, mode, seconds):
    """Keep <per_source> connections open from each address of <sources> to the admin
    port, reopening each one the daemon closes, until <seconds> have passed. <mode>:
    silent (nothing sent), slowloris (a head that never ends, one more byte every 0.5 s) or
    metrics (a whole /metrics request with a 2 KiB receive buffer, never read). Prints
    "opened N max_open M" at the end."""
    sel = selectors.DefaultSelector()
    pending = [(src, i) for src in sources for i in range(per_source)]
    held = []  # metrics: sockets kept open and unread until we exit
    opened = 0
    max_open = 0
    open_now = 0
    tokens = 0.0
    last = time.monotonic()
    end = last + seconds
    next_drip = last + 0.5

    def open_one(src):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        if mode == "metrics":
            # A small window, and a small MSS in the SYN: on loopback (MSS 64 KiB) the
            # daemon's send buffer would otherwise grow to take the whole body at once.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        s.bind((src, 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        return s

    while time.monotonic() < end:
        now = time.monotonic()
        tokens = min(tokens + (now - last) * FLOOD_RATE, FLOOD_RATE / 20)
        last = now
        while pending and tokens >= 1:
            src, i = pending.pop()
            tokens -= 1
            try:
                s = open_one(src)
            except OSError:
                pending.append((src, i))
                break
            opened += 1
            open_now += 1
            max_open = max(max_open, open_now)
            sel.register(s, selectors.EVENT_WRITE, ("connecting", src, i))
        for key, _ in sel.select(timeout=0.01):
            s = key.fileobj
            state, src, i = key.data
            try:
                if state == "connecting":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err != 0:
                        raise OSError(err, os.strerror(err))
                    if mode == "metrics":
                        s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                        sel.unregister(s)  # never read: the daemon's response waits
                        held.append(s)
                        continue
                    if mode == "slowloris":
                        s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    sel.modify(s, selectors.EVENT_READ, ("open", src, i))
                    continue
                if s.recv(4096):
                    continue  # an answer (a 408, say): read to its end
                raise OSError("eof")
            except OSError:
                sel.unregister(s)
                s.close()
                open_now -= 1
                pending.append((src, i))
        if mode == "slowloris" and now >= next_drip:
            next_drip = now + 0.5
            for key in list(sel.get_map().values()):
                if key.data[0] == "open":
                    try:
                        key.fileobj.send(b"X")
                    except OSError:
                        pass
    print("opened %d max_open %d" % (opened, max_open), flush=True)
    for s in held:
        s.close()

# ---------------------------------------------------------------------------------------
# The probes


def probe(port, path):
    """(status or None, seconds) of one GET from PROBE_FROM, the way a kubelet asks."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3,
                                   source_address=(PROBE_FROM, 0))
    try:
        c.request("GET", path, headers={"User-Agent": "kube-probe/1.29"})
        r = c.getresponse()
        r.read()
        status = r.status
    except (OSError, http.client.HTTPException):
        status = None
    finally:
        c.close()
    return status, time.monotonic() - t0


def probe_for(port, seconds, held=None):
    """Probe /healthz and /readyz in turn for <seconds>. Returns [(path, status, s)] and the
    largest value held() returned between probes (0 without <held>)."""
    out = []
    most = 0
    end = time.monotonic() + seconds
    paths = ("/healthz", "/readyz")
    while time.monotonic() < end:
        path = paths[len(out) % 2]
        status, dt = probe(port, path)
        out.append((path, status, dt))
        if held is not None:
            most = max(most, held())
        time.sleep(PROBE_EVERY_S)
    return out, most


def summary(results):
    ok = [dt for _, st, dt in results if st == 200 and dt < PROBE_LIMIT_S]
    lat = sorted(dt for _, st, dt in results if st == 200)
    p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
    mx = lat[-1] * 1000 if lat else float("nan")
    return ("%d/%d probes 200 within %.0f s (%.0f%%), latency of the 200s p50 %.1f ms max "
            "%.1f ms" % (len(ok), len(results), PROBE_LIMIT_S,
                         100.0 * len(ok) / max(len(results), 1), p50, mx))


def check_probes(results):
    bad = [(p, st, round(dt, 3)) for p, st, dt in results if st != 200 or dt >= PROBE_LIMIT_S]
    print("    " + summary(results))
    check(results, "no probe ran")
    check(not bad, "%d of %d probes not answered 200 within %.0f s, first: %s"
          % (len(bad), len(results), PROBE_LIMIT_S, bad[:5]))


def start_flood(aport, sources, per_source, mode, seconds):
    argv = [sys.executable, os.path.abspath(__file__), "--flood", str(aport),
            "--sources", ",".join(sources), "--per-source", str(per_source),
            "--mode", mode, "--seconds", str(seconds)]
    return harness.Proc(argv, "flood(%s)" % mode)


def end_flood(f, seconds):
    f.wait_exit(seconds + 10)
    out = f.text("stdout").strip()
    print("    flood: %s" % (out or "(no report) " + f.text("stderr")[-300:]))
    return out


def flooded_probes(d, aport, sources, per_source, mode, min_held, probe_s=6.0):
    """Flood daemon <d> for 1 s, probe for <probe_s> while it goes on, then let it end. The
    flood must have opened each of its connections and the daemon must have held at least
    <min_held> of them at once (descriptors beyond its own), or the probes prove nothing."""
    seconds = probe_s + 1.5
    base = d.n_fds()
    f = start_flood(aport, sources, per_source, mode, seconds)
    time.sleep(1.0)
    results, held = probe_for(aport, probe_s, lambda: (d.n_fds() or 0) - base)
    out = end_flood(f, seconds)
    opened = int(out.split()[1]) if out.startswith("opened ") else 0
    print("    the daemon held up to %d flood connections at once" % held)
    check(opened >= per_source * len(sources), "the flood opened only %d connections" % opened)
    check(held >= min_held, "the daemon held at most %d connections at once, not %d: no flood"
          % (held, min_held))
    return results


def wait_served(aport, timeout=10):
    """Wait until a probe is answered again (the flood's sockets closed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe(aport, "/healthz")[0] == 200:
            return
        time.sleep(0.1)
    raise Fail("admin endpoint not answering after the flood")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sniroute")
    ap.add_argument("--flood", type=int)
    ap.add_argument("--sources")
    ap.add_argument("--per-source", type=int)
    ap.add_argument("--mode")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--case", action="append", help="run only this case (repeatable)")
    args = ap.parse_args()
    if args.flood:
        flood(args.flood, args.sources.split(","), args.per_source, args.mode, args.seconds)
        return
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        be = harness.CaptureBackend()
        text = ("[sniroute]\nadmin = 127.0.0.1:0\n"
                "[listener web]\nlisten = 127.0.0.1:0\nroutes = main\n"
                "[routes main]\nok.test = 127.0.0.1:%d\n" % be.port)
        d = harness.Sniroute(os.path.abspath(args.sniroute), tmp, "admin", text)
        _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
        aport = int(m.group(1))
        cases = []

        def case(fn):
            cases.append(fn)
            return fn

        @case
        def one_address_silent():
            """200 silent connections from 127.0.0.2, reopened as they close: probes from
            127.0.0.3 are all answered 200 within 1 s (per-address cap)."""
            check_probes(flooded_probes(d, aport, ["127.0.0.2"], 200, "silent", 8))

        @case
        def many_addresses_silent():
            """10 silent connections from each of 40 addresses (400, beyond the total cap):
            every probe answered (the oldest connection without a request makes room)."""
            srcs = ["127.0.1.%d" % i for i in range(1, 41)]
            check_probes(flooded_probes(d, aport, srcs, 10, "silent", 64))

        @case
        def many_addresses_slowloris():
            """400 heads from 40 addresses that never end, one byte every 0.5 s: every probe
            answered (a partial head is evicted like a silent one)."""
            srcs = ["127.0.2.%d" % i for i in range(1, 41)]
            check_probes(flooded_probes(d, aport, srcs, 10, "slowloris", 64))

        @case
        def first_byte_deadline():
            """A silent connection is closed within 3 s (the first-byte deadline is 1 s; it
            was 5 s), a head dribbled a byte every 0.25 s gets 408 within 3.5 s (2 s for the
            whole head)."""
            wait_served(aport)
            t0 = time.monotonic()
            with harness.connect(aport) as s:
                how, data = harness.wait_close(s, 8)
            dt = time.monotonic() - t0
            print("    silent connection closed after %.2f s (%s)" % (dt, how))
            check(data == b"" and dt < 3.0, "silent: %s %r after %.2f s" % (how, data, dt))
            t0 = time.monotonic()
            head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\n" + b"X" * 40
            with harness.connect(aport) as s:
                got = b""
                for i in range(len(head)):
                    try:
                        s.sendall(head[i:i + 1])
                    except OSError:
                        break
                    s.settimeout(0.25)
                    try:
                        b = s.recv(4096)
                        if not b:
                            break
                        got += b
                    except socket.timeout:
                        continue
                    except OSError:
                        break
                    if got:
                        break
                dt = time.monotonic() - t0
            print("    dribbled head answered after %.2f s: %s" % (dt, harness.short(got, 40)))
            check(got.startswith(b"HTTP/1.1 408 ") and dt < 3.5,
                  "dribbled head: %s after %.2f s" % (harness.short(got), dt))

        @case
        def slow_metrics_readers():
            """64 clients (8 per address) ask for a ~1 MB /metrics with a 2 KiB receive
            buffer and never read: the daemon's memory grows by fewer than 16 bodies (it
            held all 64 for 5 s; now at most 2 * 4; not asserted under ASan), and every
            probe is answered."""
            names = ["l%03d_%s" % (i, "x" * 58) for i in range(N_BIG_LISTENERS)]
            big = ("[sniroute]\nadmin = 127.0.0.1:0\n"
                   + "".join("[listener %s]\nlisten = 127.0.0.1:0\nroutes = main\n" % n
                             for n in names)
                   + "[routes main]\nok.test = 127.0.0.1:%d\n" % be.port)
            bd = harness.Sniroute(os.path.abspath(args.sniroute), tmp, "big", big,
                                  n_sockets=N_BIG_LISTENERS)
            try:
                _, m = bd.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
                bport = int(m.group(1))
                size = 0
                for _ in range(3):  # warm the allocator up with the body's size
                    c = http.client.HTTPConnection("127.0.0.1", bport, timeout=10)
                    c.request("GET", "/metrics")
                    size = len(c.getresponse().read())
                    c.close()
                check(size > 500000, "/metrics is only %d bytes" % size)
                base = bd.rss_kib()
                srcs = ["127.0.3.%d" % i for i in range(1, 9)]
                f = start_flood(bport, srcs, 8, "metrics", 5.0)
                time.sleep(1.0)
                results, peak = probe_for(bport, 3.0, lambda: max(base, bd.rss_kib() or 0))
                end_flood(f, 5.0)
                grew = (peak - base) * 1024
                print("    /metrics %d bytes; RSS grew by %.1f MB = %.1f bodies while 64 slow "
                      "readers held their response" % (size, grew / 1e6, grew / size))
                check_probes(results)
                if harness.binary_has_asan(args.sniroute):
                    print("    (RSS not asserted under ASan: its quarantine keeps freed memory; "
                          "test_admin counts the bodies)")
                else:
                    check(grew < 16 * size, "RSS grew by %d bytes, %.1f bodies of %d"
                          % (grew, grew / size, size))
                bd.stop()
                report = bd.sanitizer_report()
                check(report is None, report or "")
            finally:
                bd.proc.stop()

        try:
            for fn in cases:
                if args.case and fn.__name__ not in args.case:
                    continue
                try:
                    print("CASE %s" % fn.__name__, flush=True)
                    fn()
                    print("PASS %s" % fn.__name__)
                    passed += 1
                except (Fail, KeyError, ValueError) as e:
                    print("FAIL %s: %s" % (fn.__name__, e))
                    failed += 1
                sys.stdout.flush()
            d.stop()
            report = d.sanitizer_report()
            if report is not None:
                print("FAIL sanitizer: %s" % report)
                failed += 1
        finally:
            harness.Proc.stop_all()
            be.stop()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
