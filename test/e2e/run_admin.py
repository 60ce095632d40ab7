#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin endpoint and the JSON access log through the real daemon: /healthz, /readyz
(not ready while draining), /metrics scraped with curl and parsed strictly, with exact
counts for a known set of connections, and reload counters.

    run_admin.py --sniroute build/sniroute
"""

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promtext  # noqa: E402
from harness import CaptureBackend, Fail, HoldBackend, check  # noqa: E402


# Fixed ports, not port 0: a listener on port 0 would get a new one at the reload below.
free_port = harness.free_port


def curl(port, path):
    """(status, body) of GET http://127.0.0.1:PORT/PATH with a real client."""
    r = harness.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10",
                     "http://127.0.0.1:%d%s" % (port, path)])
    out = harness.txt(r.stdout)
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def scrape(port):
    status, body = curl(port, "/metrics")
    check(status == 200, "/metrics: HTTP %d" % status)
    try:
        return promtext.parse(body, lint=True)
    except promtext.ParseError as e:
        raise Fail("/metrics is not valid Prometheus text: %s" % e)


def metric(fams, name, **labels):
    try:
        return promtext.value(fams, name, **labels)
    except KeyError:
        return 0.0


def exchange(port, data):
    with harness.connect(port) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return harness.recv_all(s, time.monotonic() + 10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sniroute", required=True)
    args = ap.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        be = CaptureBackend()
        hold = HoldBackend()
        dead_sock, dead_port = harness.dead_port()
        text = ("[sniroute]\nadmin = 127.0.0.1:0\nlog_format = json\ndrain_timeout = 10s\n"
                "[listener web]\nlisten = 127.0.0.1:%d\nroutes = main\n"
                "[routes main]\nok.test = 127.0.0.1:%d\nhold.test = 127.0.0.1:%d\n"
                "dead.test = 127.0.0.1:%d\npublic.ech.example = 127.0.0.1:%d\n"
                % (free_port(), be.port, hold.port, dead_port, be.port))
        d = harness.Sniroute(os.path.abspath(args.sniroute), tmp, "admin", text)
        cases = []

        def case(fn):
            cases.append(fn)
            return fn

        _, m = d.proc.wait_line("stderr", r"admin on 127\.0\.0\.1:(\d+)", 10)
        aport = int(m.group(1))
        port = d.port("web")
        hello_ok = harness.client_hello("ok.test")

        @case
        def health_and_ready():
            check(curl(aport, "/healthz") == (200, "ok\n"), "/healthz: %r" % (curl(aport, "/healthz"),))
            check(curl(aport, "/readyz") == (200, "ready\n"), "/readyz: %r" % (curl(aport, "/readyz"),))
            check(curl(aport, "/nope")[0] == 404, "unknown path is not 404")

        @case
        def exact_counts():
            """A known set of connections, then exact counters. Fails on any miscount."""
            before = scrape(aport)
            for _ in range(3):
                check(exchange(port, hello_ok).startswith(b"GOT"), "ok.test not routed")
            exchange(port, harness.client_hello("unknown.test"))    # no_route
            exchange(port, b"SSH-2.0-OpenSSH_9.2\r\n")               # not_tls
            exchange(port, harness.client_hello("dead.test"))        # connect_failed
            d.wait_log_count(6, start=0, timeout=10)
            time.sleep(0.2)
            after = scrape(aport)

            def delta(name, **labels):
                return metric(after, name, **labels) - metric(before, name, **labels)

            want = {
                ("sniroute_connections_accepted_total", ("listener", "web")): 6,
                ("sniroute_connections_closed_total", ("listener", "web"), ("outcome", "ok")): 3,
                ("sniroute_connections_closed_total", ("listener", "web"),
                 ("outcome", "no_route")): 1,
                ("sniroute_connections_closed_total", ("listener", "web"),
                 ("outcome", "not_tls")): 1,
                ("sniroute_connections_closed_total", ("listener", "web"),
                 ("outcome", "connect_failed")): 1,
                ("sniroute_hello_results_total", ("result", "found"), ("reason", "none")): 5,
                ("sniroute_hello_results_total", ("result", "not_tls"),
                 ("reason", "not_handshake")): 1,
                ("sniroute_route_lookups_total", ("listener", "web"), ("kind", "exact")): 4,
                ("sniroute_route_lookups_total", ("listener", "web"), ("kind", "none")): 1,
                ("sniroute_upstream_connect_failures_total",
                 ("upstream", "127.0.0.1:%d" % dead_port), ("error", "refused")): 1,
                ("sniroute_upstream_connect_duration_seconds_count",
                 ("upstream", "127.0.0.1:%d" % be.port)): 3,
                ("sniroute_upstream_bytes_in_total", ("upstream", "127.0.0.1:%d" % be.port)):
                    3 * len(hello_ok),
            }
            for (name, *labels), n in want.items():
                got = delta(name, **dict(labels))
                check(got == n, "%s%s: +%s, want +%d" % (name, dict(labels), got, n))
            check(metric(after, "sniroute_connections_active", listener="web") == 0,
                  "connections_active is not 0 with nothing open")

        @case
        def json_access_log():
            """Every access-log line is one JSON object with the documented keys."""
            lines = [x for x in d.proc.text("stdout").splitlines() if x.strip()]
            check(len(lines) >= 6, "only %d access-log lines" % len(lines))
            keys = ["time", "listener", "client", "sni", "route", "upstream", "bytes_in",
                    "bytes_out", "duration_ms", "outcome", "detail"]
            for line in lines:
                obj = json.loads(line)
                check(list(obj) in (keys, keys + ["ech"]), "keys %s" % list(obj))
            obj = json.loads([x for x in lines if "ok.test" in x][0])
            check(obj["outcome"] == "ok" and obj["bytes_in"] == len(hello_ok)
                  and obj["route"] == "exact", "line %s" % obj)

        @case
        def ech_marked():
            """A hello carrying Encrypted Client Hello is routed by its outer name, marked
            in the access log and counted. Fails if any of the three is missing."""
            before = scrape(aport)
            fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                   "fixtures", "hello", "hand-ech.bin")
            with open(fixture, "rb") as f:
                hello = f.read()
            check(exchange(port, hello).startswith(b"GOT"), "the ECH hello was not routed")
            deadline = time.monotonic() + 10
            found = []
            while not found and time.monotonic() < deadline:
                found = [x for x in d.proc.text("stdout").splitlines() if "public.ech" in x]
                time.sleep(0.05)
            check(found, "no access-log line for the ECH hello")
            obj = json.loads(found[0])
            check(obj.get("ech") is True and obj["sni"] == "public.ech.example",
                  "line %s" % obj)
            after = scrape(aport)
            check(metric(after, "sniroute_hello_ech_total")
                  == metric(before, "sniroute_hello_ech_total") + 1, "ECH not counted")

        @case
        def reload_counters():
            before = scrape(aport)
            os.kill(d.pid, signal.SIGHUP)
            d.proc.wait_line("stderr", r"reloaded", 5)
            with open(d.path) as f:
                good = f.read()
            with open(d.path, "w") as f:
                f.write(good + "bogus line\n")
            os.kill(d.pid, signal.SIGHUP)
            d.proc.wait_line("stderr", r"reload failed", 5)
            with open(d.path, "w") as f:
                f.write(good)
            after = scrape(aport)
            check(metric(after, "sniroute_config_generation")
                  == metric(before, "sniroute_config_generation") + 1, "generation")
            check(metric(after, "sniroute_config_reloads_total", result="ok") == 1, "reloads ok")
            check(metric(after, "sniroute_config_reloads_total", result="failed") == 1,
                  "reloads failed")

        @case
        def not_ready_while_draining():
            """SIGTERM with a connection open: /readyz answers 503 while it drains; once the
            connection ends the daemon exits 0 (the admin endpoint closes with it)."""
            s = harness.connect(port)
            s.sendall(harness.client_hello("hold.test"))
            time.sleep(0.3)
            os.kill(d.pid, signal.SIGTERM)
            d.proc.wait_line("stderr", r"draining", 5)
            status, body = curl(aport, "/readyz")
            check(status == 503 and "draining" in body, "/readyz while draining: %d %r"
                  % (status, body))
            check(curl(aport, "/healthz")[0] == 200, "/healthz while draining")
            s.close()
            check(d.proc.wait_exit(10) == 0, "exit status %s" % d.proc.p.returncode)
            report = d.sanitizer_report()
            check(report is None, report or "")

        try:
            for fn in cases:
                try:
                    fn()
                    print("PASS %s" % fn.__name__)
                    passed += 1
                except (Fail, KeyError, ValueError) as e:
                    print("FAIL %s: %s" % (fn.__name__, e))
                    failed += 1
        finally:
            harness.Proc.stop_all()
            be.stop()
            hold.stop()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
