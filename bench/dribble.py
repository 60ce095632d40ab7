#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""CPU the daemon spends on a first request dribbled in tiny writes (issue 11 item 6): a
120 KB HTTP request head in 15,000 writes of 8 bytes to a protocol = http listener and,
for comparison, a ClientHello inflated with a padding extension (about 65 KB: an extension
holds at most 64 KiB) in writes of 5 bytes to a TLS listener; max_hello_size is raised to
128k so both are allowed. The client sleeps --gap-us between writes so that most arrive
as reads of their own. Prints the daemon's CPU time (user + system) for each. Loopback
only, ports chosen by the OS, bounded in time. Not a test: nothing here asserts a speed.

    bench/dribble.py --sniroute build/sniroute [--writes 15000] [--size 120000]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test",
                                "e2e"))
import harness  # noqa: E402


class Backend(harness._Acceptor):
    """Reads one request head (or hello), then answers a short HTTP response and holds the
    connection until the client closes."""

    def handle(self, conn):
        conn.settimeout(60)
        data = b""
        while b"\r\n\r\n" not in data and not data.startswith(b"\x16"):
            b = conn.recv(65536)
            if not b:
                return
            data += b
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        while conn.recv(65536):
            pass


def http_head(size):
    """A valid request head of about <size> bytes: header lines of 8,000 bytes."""
    head = b"GET / HTTP/1.1\r\nHost: a.test\r\n"
    i = 0
    while len(head) + 8000 + 2 < size:
        head += b"X-Pad-%02d: " % i + b"a" * (8000 - 12) + b"\r\n"
        i += 1
    pad = size - len(head) - 2 - 12
    if pad > 0:
        head += b"X-Pad-%02d: " % i + b"b" * pad + b"\r\n"
    return head + b"\r\n"


def dribble(d, port, data, writes, gap_s):
    step = max(1, -(-len(data) // writes))
    s = harness.connect(port)
    cpu0 = d.cpu_seconds()
    t0 = time.monotonic()
    n = 0
    for i in range(0, len(data), step):
        s.sendall(data[i:i + step])
        n += 1
        if gap_s:
            time.sleep(gap_s)
    s.settimeout(30)
    got = s.recv(100)  # the backend's answer (HTTP) or nothing yet (TLS): wait either way
    cpu = d.cpu_seconds() - cpu0
    wall = time.monotonic() - t0
    s.close()
    return n, cpu, wall, got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sniroute", required=True)
    ap.add_argument("--writes", type=int, default=15000)
    ap.add_argument("--size", type=int, default=120000)
    ap.add_argument("--gap-us", type=int, default=100, help="sleep between writes")
    args = ap.parse_args()
    be = Backend()
    with tempfile.TemporaryDirectory() as tmp:
        text = ("[sniroute]\nmax_hello_size = 128k\nhello_timeout = 60s\n"
                "[listener web]\nlisten = 127.0.0.1:0\nprotocol = http\nroutes = main\n"
                "[listener tls]\nlisten = 127.0.0.1:0\nroutes = main\n"
                "[routes main]\na.test = 127.0.0.1:%d\n" % be.port)
        d = harness.Sniroute(os.path.abspath(args.sniroute), tmp, "dribble", text, n_sockets=2)
        try:
            head = http_head(args.size)
            n, cpu, wall, got = dribble(d, d.port("web"), head, args.writes, args.gap_us / 1e6)
            print("http head %d bytes in %d writes: daemon CPU %.3f s (wall %.1f s), answer %r"
                  % (len(head), n, cpu, wall, got[:15]))
            hello = harness.inflate_hello(harness.client_hello("a.test"),
                                          min(args.size - 600, 65000))
            n, cpu, wall, got = dribble(d, d.port("tls"), hello, args.writes, args.gap_us / 1e6)
            print("client hello %d bytes in %d writes: daemon CPU %.3f s (wall %.1f s)"
                  % (len(hello), n, cpu, wall))
        finally:
            d.stop()
            be.stop()


if __name__ == "__main__":
    main()
