#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Reload time and memory of big route maps split over included files (issue 14, part 3):
for each binary and each size, a config whose [routes] section includes N names in files
of 20,000 names (about 0.9 MB each, ConfigMap-sized); the daemon is started, its steady
RSS read after a second, then it is reloaded R times with every name replaced while 2
clients connect continuously. Per reload: SIGHUP to the `reloaded` notice, and the peak
RSS while the old and new tables coexist (VmHWM, reset through /proc/PID/clear_refs just
before the SIGHUP), against the steady RSS; connections refused or failed in all.
Loopback only; every process it starts is stopped by its PID.

    bench/reload_memory.py [-n 10000,100000,1000000] [-r 3] [-o OUT.md] BINARY...
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import harness  # noqa: E402  (ClientHello builder and a backend that answers)

PER_FILE = 20000


def status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_maps(d, n, gen):
    os.makedirs(os.path.join(d, "maps"), exist_ok=True)
    for k in range((n + PER_FILE - 1) // PER_FILE):
        path = os.path.join(d, "maps", "%03d.routes" % k)
        with open(path + ".new", "w") as f:
            f.write("".join("g%d-host-%d.tenants.example = 127.0.0.1:9\n" % (gen, i)
                            for i in range(k * PER_FILE, min(n, (k + 1) * PER_FILE))))
        os.rename(path + ".new", path)


def measure(binary, n, runs, backend_port):
    with tempfile.TemporaryDirectory(prefix="sniroute-reload-mem-") as d:
        write_maps(d, n, 0)
        port = free_port()
        cfg = os.path.join(d, "s.ini")
        with open(cfg, "w") as f:
            f.write("[sniroute]\naccess_log = off\n[listener b]\nlisten = 127.0.0.1:%d\n"
                    "routes = m\n[routes m]\napp.test = 127.0.0.1:%d\ninclude = maps/*.routes\n"
                    % (port, backend_port))
        p = subprocess.Popen([binary, "-c", cfg], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        stop = threading.Event()
        counts = {"ok": 0, "fail": 0}
        hello = harness.client_hello("app.test")

        def client():
            deadline = time.monotonic() + 300
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(hello)
                        s.shutdown(socket.SHUT_WR)
                        ok = s.recv(64).startswith(b"GOT")
                except OSError:
                    ok = False
                counts["ok" if ok else "fail"] += 1

        try:
            while b"listening" not in p.stderr.readline():
                if p.poll() is not None:
                    return None
            threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            steady = status_kib(p.pid, "VmRSS")
            out = {"steady": steady, "reload_s": [], "peak": [], "after": []}
            for gen in range(1, runs + 1):
                write_maps(d, n, gen)
                with open("/proc/%d/clear_refs" % p.pid, "w") as f:
                    f.write("5")
                t0 = time.monotonic()
                p.send_signal(signal.SIGHUP)
                while True:
                    line = p.stderr.readline()
                    if not line or b"reloaded" in line or b"reload failed" in line:
                        break
                if b"reloaded" not in line:
                    return None
                out["reload_s"].append(time.monotonic() - t0)
                time.sleep(0.5)
                out["peak"].append(status_kib(p.pid, "VmHWM"))
                out["after"].append(status_kib(p.pid, "VmRSS"))
            stop.set()
            for t in threads:
                t.join(20)
            out["ok"], out["fail"] = counts["ok"], counts["fail"]
            return out
        finally:
            stop.set()
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", default="10000,100000,1000000", help="sizes, comma-separated")
    ap.add_argument("-r", type=int, default=3, help="reloads per size (default 3)")
    ap.add_argument("-o", help="also write the table as Markdown to this file")
    ap.add_argument("binary", nargs="+")
    opts = ap.parse_args()
    be = harness.CaptureBackend()
    rows = []
    try:
        for n in [int(x) for x in opts.n.split(",")]:
            for b in opts.binary:
                r = measure(b, n, opts.r, be.port)
                if r is None:
                    print("%s: %d names: did not load or reload" % (b, n))
                    continue
                mib = lambda k: k / 1024.0  # noqa: E731
                row = ("| %s | %s | %.3f (%s) | %.1f | %s | %s | %s | %d / %d |"
                       % ("{:,}".format(n), b, statistics.median(r["reload_s"]),
                          ", ".join("%.3f" % x for x in r["reload_s"]), mib(r["steady"]),
                          ", ".join("%.1f" % mib(x) for x in r["peak"]),
                          ", ".join("%.2fx" % (x / r["steady"]) for x in r["peak"]),
                          ", ".join("%.1f" % mib(x) for x in r["after"]), r["fail"],
                          r["ok"] + r["fail"]))
                print(row, flush=True)
                rows.append(row)
    finally:
        be.stop()
    head = ["| names | binary | reload s, median (each) | steady MiB | peak MiB (each) | "
            "peak / steady | RSS after MiB | failed / connections |",
            "|---:|---|---:|---:|---:|---:|---:|---:|"]
    if opts.o:
        with open(opts.o, "w") as f:
            f.write("\n".join(head + rows) + "\n")


if __name__ == "__main__":
    main()
