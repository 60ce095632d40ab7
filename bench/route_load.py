#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Route-map load time, side by side: for each sniroute binary given, the median time from
spawn to the `listening` line and of `sniroute -t`, over a config of N exact names written
by bench/run.py's generator (the config of its route-scale section, on port 0), and RSS per
name beyond a 2-name config. Binaries are run in turn, run after run, so that a busy
machine slows them alike. Loopback only; every process it starts is stopped by its PID.

    bench/route_load.py [-n NAMES] [-r RUNS] BINARY...
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the config generator)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def start(binary, cfg):
    """Seconds from spawn to `listening`, and the RSS then; None, None if it did not start."""
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "-c", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            line = p.stderr.readline()
            if not line or b"listening" in line:
                break
        if b"listening" not in line:
            return None, None
        return time.monotonic() - t0, rss_kib(p.pid)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def check(binary, cfg):
    t0 = time.monotonic()
    r = subprocess.run([binary, "-t", "-c", cfg], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return time.monotonic() - t0 if r.returncode == 0 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000000, help="names (default 1000000)")
    ap.add_argument("-r", type=int, default=5, help="runs per binary (default 5)")
    ap.add_argument("binary", nargs="+")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sniroute-route-load-") as d:
        big = os.path.join(d, "big.ini")
        small = os.path.join(d, "small.ini")
        names = ["curl.example"] + ["host-%d.bench-routes.example" % i for i in range(opts.n - 1)]
        run.conf_sniroute(0, names, big)
        run.conf_sniroute(0, names[:2], small)
        print("%d names, %.1f MB config, %.1f B of name text per name; %d runs; load average %s"
              % (opts.n, os.path.getsize(big) / 1e6, sum(map(len, names)) / len(names), opts.r,
                 " ".join(open("/proc/loadavg").read().split()[:3])))
        res = {b: {"start": [], "t": [], "rss": []} for b in opts.binary}
        for _ in range(opts.r):
            for b in opts.binary:
                s, rss = start(b, big)
                res[b]["start"].append(s)
                res[b]["rss"].append(rss)
                res[b]["t"].append(check(b, big))
        for b in opts.binary:
            r = res[b]
            if None in r["start"] or None in r["t"]:
                print("%s: did not load the config" % b)
                continue
            base = start(b, small)[1]
            rss = statistics.median(r["rss"])
            print("%s\n  spawn->listening median %.3f s  (%s)\n  -t median %.3f s  (%s)\n"
                  "  RSS %.1f MiB; %.1f B/name beyond the 2-name config"
                  % (b, statistics.median(r["start"]), " ".join("%.3f" % x for x in r["start"]),
                     statistics.median(r["t"]), " ".join("%.3f" % x for x in r["t"]),
                     rss / 1024.0, (rss - base) * 1024.0 / (opts.n - 2)))


if __name__ == "__main__":
    main()
