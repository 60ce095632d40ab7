# SPDX-License-Identifier: MIT
"""Scrape the admin endpoint with a real client: `test_admin --serve` serves a small
registry on 127.0.0.1 (port chosen by the OS), curl fetches /metrics, /healthz, /readyz and
a few wrong requests, and promtext.py parses the exposition strictly (lint on), including
label values that need escaping. The daemon's own e2e test reuses promtext the same way.

Usage: run_admin_scrape.py --test-admin build/test_admin"""

import argparse
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promtext  # noqa: E402

TIMEOUT = 10


def curl(port, path, *args):
    """(status code, headers text, body bytes) of one request made by curl."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", str(TIMEOUT), "-D", "-", *args,
         "http://127.0.0.1:%d%s" % (port, path)],
        stdout=subprocess.PIPE, check=True, timeout=TIMEOUT + 5).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-admin", required=True)
    args = ap.parse_args()

    proc = subprocess.Popen([args.test_admin, "--serve"], stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        check(line.startswith("port "), "no port line: %r" % line)
        port = int(line.split()[1])

        status, head, body = curl(port, "/metrics")
        check(status == 200, "/metrics: %d" % status)
        check("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in head, head)
        fams = promtext.parse(body, lint=True)
        v = promtext.value
        check(v(fams, "sniroute_connections_accepted_total",
                listener='quote"back\\slash\nnewline') == 1, "escaped listener")
        check(v(fams, "sniroute_connections_accepted_total", listener="_other") == 1, "_other")
        check(v(fams, "sniroute_config_reloads_total", result="failed") == 1, "reloads")
        check(v(fams, "sniroute_upstream_connect_duration_seconds_bucket",
                upstream="[::1]:8443", le="2.5") == 0, "bucket 2.5")
        check(v(fams, "sniroute_upstream_connect_duration_seconds_bucket",
                upstream="[::1]:8443", le="5") == 1, "bucket 5")
        check(v(fams, "sniroute_upstream_connect_duration_seconds_sum",
                upstream="[::1]:8443") == 3.0, "sum")
        check(v(fams, "sniroute_hello_results_total", result="not_tls",
                reason="not_handshake") == 1, "hello")
        n = sum(len(f.samples) for f in fams.values())
        print("ok /metrics: %d families, %d samples, strict parse with lint" % (len(fams), n))

        for path, want_status, want_body in (("/healthz", 200, b"ok\n"),
                                             ("/readyz", 200, b"ready\n"),
                                             ("/nope", 404, b"not found\n")):
            status, head, body = curl(port, path)
            check((status, body) == (want_status, want_body),
                  "%s: %d %r" % (path, status, body))
            check("\r\nConnection: close" in head, head)
            print("ok %s: %d %r" % (path, status, body))

        status, head, body = curl(port, "/metrics", "-X", "POST", "-d", "x=1")
        check(status == 405 and "\r\nAllow: GET, HEAD\r\n" in head, "POST: %d" % status)
        out = subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), "-I",
                              "http://127.0.0.1:%d/metrics" % port],
                             stdout=subprocess.PIPE, check=True, timeout=TIMEOUT + 5).stdout
        check(out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n")
              and out.count(b"HTTP/1.1") == 1, "HEAD: %r" % out)
        status, head, body = curl(port, "/metrics", "-H", "X-Big: " + "a" * 9000)
        check(status == 431, "big head: %d" % status)
        print("ok POST 405, HEAD 200 without body, 9 KB head 431")

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=TIMEOUT)
        check(rc == 0, "test_admin --serve exited %d" % rc)
        print("ok clean exit")
        return 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
