#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An upstream name that resolves to several addresses: sniroute must try each in turn.

Runs itself inside private mount and network namespaces (unshare -m -n) with its own
/etc/hosts, so a name can have several loopback addresses of which only the last one in
the resolver's order listens. Exits 77 (a CTest skip) where namespaces are not allowed.

    run_resolver.py --sniroute build/sniroute
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Fail, check  # noqa: E402

NAME = "multi.test"
# Three IPv4 loopback addresses and ::1: in a fresh namespace nothing listens on any of them
# until the test says so.
HOSTS = "127.0.0.1 localhost\n127.0.0.2 %s\n127.0.0.3 %s\n127.0.0.4 %s\n::1 %s\n" % (
    (NAME,) * 4)


def enter_namespaces():
    """Re-run this script inside new mount and network namespaces."""
    if subprocess.run(["unshare", "-m", "-n", "true"], stderr=subprocess.DEVNULL).returncode:
        print("SKIP resolver: unshare -m -n not permitted here")
        sys.exit(77)
    os.execvp("unshare", ["unshare", "-m", "-n", sys.executable, os.path.abspath(__file__),
                          "--inside"] + sys.argv[1:])


def private_hosts(tmp):
    """Bind-mount our own /etc/hosts (and host.conf, so every line of a name is returned)
    over the real ones; only this mount namespace sees them."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for name, text in (("hosts", HOSTS), ("host.conf", "multi on\n")):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        target = "/etc/" + name
        if not os.path.exists(target):
            open(target, "a").close()  # a private namespace: creating it is harmless
        subprocess.run(["mount", "--bind", path, target], check=True)


def resolver_order(port):
    infos = socket.getaddrinfo(NAME, port, type=socket.SOCK_STREAM)
    return [(ai[0], ai[4][0]) for ai in infos]


def start_router(sniroute, tmp, upstream_port):
    conf = os.path.join(tmp, "resolver.ini")
    with open(conf, "w") as f:
        f.write("[sniroute]\nconnect_timeout = 5s\naccess_log = stdout\n"
                "[listener tls]\nlisten = 127.0.0.1:0\nroutes = main\n"
                "[routes main]\ndefault = %s:%d\n" % (NAME, upstream_port))
    router = harness.Proc([sniroute, "-c", conf], "sniroute")
    _, m = router.wait_line("stderr", r"listening on 127\.0\.0\.1:(\d+)", 10)
    return router, int(m.group(1))


def case_tries_each_address(sniroute, tmp):
    """Only the last address in the resolver's order listens: the connection succeeds
    only if sniroute moves on after each refusal."""
    order = resolver_order(443)
    check(len(order) >= 3, "resolver returned %r for %s; expected all four hosts lines"
          % (order, NAME))
    family, last = order[-1]
    backend = harness.CaptureBackend(family=family, host=last)
    router, listen_port = start_router(sniroute, tmp, backend.port)
    try:
        hello = harness.client_hello("anything.test")
        s = harness.connect(listen_port)
        s.sendall(hello + b"payload")
        s.shutdown(socket.SHUT_WR)
        reply = harness.recv_all(s, time.monotonic() + 15)
        s.close()
        kind, data, expect = backend.next_result(15, "resolver backend")[:3]
        check(kind == "ok" and data == hello + b"payload",
              "backend on %s got %s" % (last, harness.short(data)))
        check(reply == expect, "client got %s" % harness.short(reply))
        _, m = router.wait_line("stdout", r"outcome=(\S+)", 10)
        check(m.group(1) == "ok", "outcome %s" % m.group(1))
        return "addresses tried in order %s; only %s listened" % (
            [a for _, a in order], last)
    finally:
        router.stop()
        backend.stop()


def case_all_addresses_dead(sniroute, tmp):
    """Nothing listens anywhere: every address is tried, then a clean close."""
    # A fresh network namespace: nothing listens on any port of any address.
    router, listen_port = start_router(sniroute, tmp, 443)
    try:
        s = harness.connect(listen_port)
        s.sendall(harness.client_hello("anything.test"))
        how, data = harness.wait_close(s, 10)
        check(how == "eof" and not data, "client saw %s after %s" % (how, harness.short(data)))
        s.close()
        _, m = router.wait_line("stdout", r"outcome=(\S+).*detail=\"(\S+)\"", 10)
        check(m.group(1) == "connect_failed" and m.group(2) == "ECONNREFUSED",
              "log says outcome=%s detail=%s" % (m.group(1), m.group(2)))
        return None
    finally:
        router.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sniroute", required=True)
    ap.add_argument("--inside", action="store_true")
    args = ap.parse_args()
    if not args.inside:
        enter_namespaces()
    sniroute = os.path.abspath(args.sniroute)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        private_hosts(tmp)
        for case in (case_tries_each_address, case_all_addresses_dead):
            name = case.__name__[len("case_"):]
            try:
                note = case(sniroute, tmp)
                print("PASS %s%s" % (name, " (%s)" % note if note else ""))
                passed += 1
            except Fail as e:
                print("FAIL %s: %s" % (name, e))
                failed += 1
            finally:
                harness.Proc.stop_all()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
