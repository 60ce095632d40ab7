#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""QUIC benchmark (issue 13): datagram rate and CPU per datagram through sniroute beside a
direct path, nginx's stream module relaying UDP to one backend (no SNI: the cost floor of a
user-space UDP relay) and the ceiling relay (bench/udpload.c: the least a UDP relay does), an
HTTP/3 download through each, and memory per idle flow.

One command: `sudo bench/quic.py` (root: it installs nginx's stream module with apt-get if
missing, and runs the measurements in a private network and mount namespace, `unshare -n
-m`, with fixed loopback ports and a private /etc/hosts for gtlsclient, which takes its SNI
from the host name). It builds a Release sniroute into bench-build/ and bench/udpload.c with
cc, then measures, every target side by side in one run:

1. datagrams: 16 client flows (own UDP socket each) open with a real client's Initial
   (test/fixtures/quic), then send 1,200-byte datagrams: flooded one way, paced one way (in
   bursts of 8 per flow, and one at a time round robin), and echoed both ways with a window;
   delivered counts at the backend, proxy CPU from /proc/PID/stat;
2. an HTTP/3 download of 64 MiB, gtlsclient from gtlsserver (Debian's ngtcp2 examples);
3. memory per idle flow: N flows each opened by one Initial from its own source port.

Writes bench/results/quic.md and quic.json. Bounded: every child has a timeout, every loop a
count; only PIDs started here are stopped. Not a test: nothing here asserts a speed.
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as common  # noqa: E402  bench/run.py: processes, /proc readers, machine, fmt

REPO = common.REPO
BUILD = common.BUILD
RESULTS = common.RESULTS
WORK = os.path.join(BUILD, "quic-run")
QFIX = os.path.join(REPO, "test", "fixtures", "quic")
UDPLOAD = os.path.join(BUILD, "bench_udpload")
NGINX_STREAM = common.NGINX_STREAM

# The backends: a counting sink, an echoing sink, gtlsserver. Each name is one route in
# sniroute (by the SNI of the fixture that opens the flow) and one port in nginx.
SINK, ECHO, H3, H3_NOGSO = 9100, 9102, 9101, 9103
ROUTES = [("quic.example", SINK, "gtlsclient-v1.bin"),  # one Initial datagram
          ("zerortt.example", ECHO, "gtlsclient-0rtt.bin"),  # Initial + 0-RTT, one datagram
          ("big.example", H3, None),
          ("nogso.example", H3_NOGSO, None)]
PORTS = {"direct": {SINK: SINK, ECHO: ECHO, H3: H3, H3_NOGSO: H3_NOGSO},
         "sniroute": {SINK: 8543, ECHO: 8543, H3: 8543, H3_NOGSO: 8543},
         "nginx": {SINK: 8544, ECHO: 8545, H3: 8546, H3_NOGSO: 8547},
         "ceiling relay": {SINK: 8550, ECHO: 8551, H3: 8552, H3_NOGSO: 8553},
         "ceiling relay GRO": {SINK: 8560, ECHO: 8561, H3: 8562, H3_NOGSO: 8563}}
# The download's two servers: gtlsserver as it comes, which sends with UDP GSO (up to 64
# datagrams per sendmsg), and the same with one datagram per sendmsg.
H3_VARIANTS = [("GSO", H3, "big.example", []),
               ("no GSO", H3_NOGSO, "nogso.example", ["--max-gso-dgrams=1"])]
TARGETS = ["direct", "ceiling relay", "sniroute", "nginx"]
# The download also goes through the ceiling relay with UDP GRO and GSO (udpload relay -g):
# what coalescing would be worth to a relay when the server sends with GSO.
DL_TARGETS = TARGETS + ["ceiling relay GRO"]
SNIROUTE = [os.path.join(BUILD, "sniroute")]  # --sniroute replaces it
# name -> (udpload send arguments, backend, what is counted)
MODES = {
    "flood": (["-b", "8"], SINK, "one way, as fast as the sender goes, bursts of 8 per flow"),
    "paced": (["-b", "8"], SINK, "one way, paced to RATE/s in all, bursts of 8 per flow"),
    "paced-b1": (["-b", "1"], SINK, "one way, paced to RATE/s, one datagram per flow in turn"),
    "echo": (["-b", "8"], ECHO, "both ways: the backend echoes; WINDOW in flight per flow"),
}
log = common.log


# --- setup (outside the namespaces) --------------------------------------------------------

def install_peers():
    want = []
    if shutil.which("nginx") is None:
        want.append("nginx-light")
    if not os.path.exists(NGINX_STREAM):
        want.append("libnginx-mod-stream")
    if shutil.which("gtlsclient") is None:
        want.append("ngtcp2-client")
    if shutil.which("gtlsserver") is None:
        want.append("ngtcp2-server")
    if not want:
        return
    log("installing %s" % " ".join(want))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    common.sh(["apt-get", "update", "-qq"], env=env)
    common.sh(["apt-get", "install", "-y", "-qq"] + want, env=env)


def build():
    log("building Release sniroute into %s" % BUILD)
    common.sh(["cmake", "-S", REPO, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release"],
              stdout=subprocess.DEVNULL)
    common.sh(["cmake", "--build", BUILD, "-j2", "--target", "sniroute"], stdout=subprocess.DEVNULL)
    common.sh([os.environ.get("CC", "cc"), "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
               "-o", UDPLOAD, os.path.join(HERE, "udpload.c")])


# --- processes -------------------------------------------------------------------------------

def udp_bound(port):
    want = ":%04X" % port
    with open("/proc/net/udp") as f:
        return any(line.split()[1].endswith(want) for line in f.readlines()[1:])


def wait_udp(port, p, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if udp_bound(port):
            return True
        time.sleep(0.05)
    return False


def conf_sniroute(path, listen, idle):
    with open(path, "w") as f:
        f.write("[sniroute]\naccess_log = off\ndrain_timeout = 1s\nquic_idle_timeout = %s\n"
                "max_quic_flows_per_ip = 0\n"
                "max_quic_flows = 200000\n\n" % idle)
        f.write("[listener h3]\nlisten = 127.0.0.1:%d\nprotocol = quic\nroutes = main\n\n"
                "[routes main]\n" % listen)
        for name, port, _ in ROUTES:
            f.write("%s = 127.0.0.1:%d\n" % (name, port))


def conf_nginx(d, ports, idle, conns):
    cfg = os.path.join(d, "nginx.conf")
    with open(cfg, "w") as f:
        f.write("load_module %s;\ndaemon off;\nmaster_process on;\nworker_processes 1;\n"
                "worker_rlimit_nofile %d;\n" % (NGINX_STREAM, conns + 1000))
        f.write("pid %s/nginx.pid;\nerror_log %s/error.log error;\n" % (d, d))
        f.write("events { worker_connections %d; }\nstream {\n" % conns)
        for _, port, _ in ROUTES:
            # The same socket buffers as sniroute asks for on its listening socket (4 MiB).
            f.write("    server {\n        listen 127.0.0.1:%d udp rcvbuf=4m sndbuf=4m;\n"
                    "        proxy_pass 127.0.0.1:%d;\n        proxy_timeout %s;\n    }\n"
                    % (ports[port], port, idle))
        f.write("}\n")
    return cfg


def start_proxy(kind, tag, idle="60s", conns=4096):
    """A fresh sniroute, nginx or ceiling relay in WORK/<tag>, with every route; returns its
    Popen."""
    d = os.path.join(WORK, tag)
    os.makedirs(d, exist_ok=True)
    if kind.startswith("ceiling relay"):
        p = common.start([UDPLOAD, "relay"] + (["-g"] if kind.endswith("GRO") else []) +
                         sum([["-p", "127.0.0.1:%d=127.0.0.1:%d" % (lp, up)]
                              for up, lp in PORTS[kind].items()], []), tag)
        port = PORTS[kind][H3_NOGSO]
    elif kind == "sniroute":
        cfg = os.path.join(d, "sniroute.ini")
        conf_sniroute(cfg, PORTS["sniroute"][SINK], idle)
        p = common.start([SNIROUTE[0], "-c", cfg], tag)
        port = PORTS["sniroute"][SINK]
    else:
        cfg = conf_nginx(d, PORTS["nginx"], idle, conns)
        p = common.start(["nginx", "-p", d, "-c", cfg, "-e", os.path.join(d, "error.log")], tag)
        port = PORTS["nginx"][H3]
    if not wait_udp(port, p):
        raise RuntimeError("%s did not start (see %s)" % (tag, d))
    time.sleep(0.2)  # nginx: the worker is up after the master binds
    return p


class Sink:
    """bench_udpload sink: counting on SINK, echoing on ECHO. count() is the cumulative
    {dgrams, echo_dgrams, ...} read with SIGUSR1."""

    def __init__(self):
        self.p = common.start([UDPLOAD, "sink", "-l", "127.0.0.1:%d" % SINK,
                               "-e", "127.0.0.1:%d" % ECHO], "sink", stdout=subprocess.PIPE)
        if not wait_udp(ECHO, self.p):
            raise RuntimeError("sink did not start")

    def count(self):
        self.p.send_signal(signal.SIGUSR1)
        return json.loads(self.p.stdout.readline())

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.communicate(timeout=10)
        common.started.remove(self.p)


def snmp_udp():
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    return dict(zip(rows[0][1:], (int(x) for x in rows[1][1:])))


# --- 1. datagrams ------------------------------------------------------------------------------

def dgram_run(target, pid, mode, sink, opts, rep):
    extra, backend, _ = MODES[mode]
    fixture = next(f for _, port, f in ROUTES if port == backend)
    args = [UDPLOAD, "send", "-a", "127.0.0.1:%d" % PORTS[target][backend],
            "-f", os.path.join(QFIX, fixture), "-n", str(opts.flows), "-t", str(opts.seconds),
            "-L", target] + extra
    if mode.startswith("paced"):
        args += ["-r", str(opts.rate)]
    if mode == "echo":
        args += ["-w", str(opts.window)]
    s0, u0, c0 = sink.count(), snmp_udp(), common.cpu_s(pid) if pid else None
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=opts.seconds + 30)
    if r.returncode != 0:
        raise RuntimeError("udpload failed: %s: %s" % (" ".join(args), r.stderr.strip()))
    time.sleep(0.3)  # what is queued in the proxy and the sink's socket arrives
    s1, u1, c1 = sink.count(), snmp_udp(), common.cpu_s(pid) if pid else None
    res = json.loads(r.stdout.strip().splitlines()[-1])
    key = "echo_dgrams" if mode == "echo" else "dgrams"
    res.update({"target": target, "mode": mode, "rep": rep,
                "delivered": s1[key] - s0[key] - res["initial_dgrams"],
                "proxy_cpu_s": (c1 - c0) if pid else None,
                "rcvbuf_errors": u1["RcvbufErrors"] - u0["RcvbufErrors"]})
    if mode == "echo":
        res["rate"] = res["echoed"] / res["elapsed_s"]  # round trips per second
        res["lost_frac"] = res["lost"] / res["sent"] if res["sent"] else None
        done = res["echoed"]
    else:
        res["rate"] = res["delivered"] / res["elapsed_s"]
        res["lost_frac"] = 1 - res["delivered"] / res["sent"] if res["sent"] else None
        done = res["delivered"]
    res["cpu_us"] = res["proxy_cpu_s"] * 1e6 / done if pid and done > 0 else None
    return res


# --- 2. HTTP/3 download -------------------------------------------------------------------------

def private_hosts():
    """Every route name is 127.0.0.1 in this mount namespace only (gtlsclient's SNI is the
    host name it resolves)."""
    hosts = os.path.join(WORK, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost %s\n::1 localhost\n" % " ".join(n for n, _, _ in ROUTES))
    common.sh(["mount", "--bind", hosts, "/etc/hosts"])


def start_h3_backends(size):
    """gtlsserver for each of H3_VARIANTS, serving one file of <size> random bytes; returns
    ({variant: Popen}, the file's SHA-256)."""
    d = os.path.join(WORK, "htdocs")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "big")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    key, cert = os.path.join(WORK, "h3.key"), os.path.join(WORK, "h3.pem")
    common.sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=big.example",
               "-addext", "subjectAltName=DNS:big.example,DNS:nogso.example"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers = {}
    for variant, port, _, extra in H3_VARIANTS:
        argv = ["gtlsserver", "-q"] + extra + ["-d", d, "127.0.0.1", str(port), key, cert]
        p = common.start(argv, "gtlsserver-%d" % port)
        if not wait_udp(port, p):
            raise RuntimeError("gtlsserver (%s) did not start" % variant)
        servers[variant] = p
    return servers, h.hexdigest()


def download(target, pid, variant, server_pid, want, rep, size):
    out = os.path.join(WORK, "dl")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    _, backend, name, _ = next(v for v in H3_VARIANTS if v[0] == variant)
    port = PORTS[target][backend]
    argv = ["gtlsclient", "-q", "--exit-on-all-streams-close", "--download=" + out,
            name, str(port), "https://%s/big" % name]
    c0 = common.cpu_s(pid) if pid else None
    s0 = common.cpu_s(server_pid)
    u0, k0 = snmp_udp(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=180)
    secs = time.monotonic() - t0
    u1, k1 = snmp_udp(), resource.getrusage(resource.RUSAGE_CHILDREN)
    got = os.path.join(out, "big")
    ok = False
    if r.returncode == 0 and os.path.exists(got) and os.path.getsize(got) == size:
        h = hashlib.sha256()
        with open(got, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        ok = h.hexdigest() == want
    shutil.rmtree(out, ignore_errors=True)
    return {"target": target, "mode": "download", "variant": variant, "rep": rep,
            "seconds": secs, "ok": ok,
            "exit": r.returncode, "mbit_s": size * 8 / secs / 1e6 if ok else None,
            "proxy_cpu_s": (common.cpu_s(pid) - c0) if pid else None,
            "server_cpu_s": common.cpu_s(server_pid) - s0,
            "client_cpu_s": (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime),
            "udp_in": u1["InDatagrams"] - u0["InDatagrams"],
            "rcvbuf_errors": u1["RcvbufErrors"] - u0["RcvbufErrors"],
            "stderr": r.stderr.decode(errors="replace")[-300:] if not ok else ""}


# --- 3. idle flows ------------------------------------------------------------------------------

def fixture_dgrams(name):
    with open(os.path.join(QFIX, name), "rb") as f:
        data = f.read()
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 2], "big")
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


def idle_flows(kind, n, sink):
    """A fresh <kind>; <n> flows, each one Initial from its own source port, sent in steps
    of 500 that wait for the backend to see them (a burst would overflow the listening
    socket's buffer: lost Initials are not idle flows); RSS of the proxy before and after."""
    p = start_proxy(kind, kind + "-idle", idle="10m", conns=2 * n + 100)
    initial = fixture_dgrams(ROUTES[0][2])[0]
    port = PORTS[kind][SINK]
    time.sleep(0.3)
    rss0, fds0 = common.rss_kib(p.pid), fd_count(p.pid)
    base = sink.count()["dgrams"]
    socks = []
    t0 = time.monotonic()
    try:
        while len(socks) < n:
            step = min(500, n - len(socks))
            for _ in range(step):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendto(initial, ("127.0.0.1", port))
                socks.append(s)
            deadline = time.monotonic() + 5
            while sink.count()["dgrams"] - base < len(socks) and time.monotonic() < deadline:
                time.sleep(0.02)
        open_s = time.monotonic() - t0
        time.sleep(1.0)
        seen = sink.count()["dgrams"] - base
        rss1, fds1 = common.rss_kib(p.pid), fd_count(p.pid)
    finally:
        for s in socks:
            s.close()
        common.stop(p)
    return {"target": kind, "mode": "idle", "flows": n, "reached_backend": seen,
            "rss0_kib": rss0, "rss1_kib": rss1, "fds0": fds0, "fds1": fds1, "open_s": open_s,
            "bytes_per_flow": (rss1 - rss0) * 1024.0 / seen if seen else None}


def fd_count(pid):
    return sum(len(os.listdir("/proc/%d/fd" % q)) for q in common.proc_tree(pid)
               if os.path.exists("/proc/%d/fd" % q))


# --- the run -----------------------------------------------------------------------------------

def inside(opts):
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    common.WORK = WORK  # common.start() writes each child's stderr there
    if opts.sniroute:
        SNIROUTE[0] = os.path.abspath(opts.sniroute)
    common.sh(["ip", "link", "set", "lo", "up"])
    private_hosts()
    hard = common.raise_nofile()
    n_idle = max(100, min(opts.idle_flows, hard - 1000))
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
               "command": " ".join(["bench/quic.py"] + [a for a in sys.argv[1:]
                                                         if a != "--inside"]),
               "opts": vars(opts), "idle_flows": n_idle}
    raw = []
    sink = Sink()

    # 3 first, on fresh processes (memory freed by earlier runs would hide growth).
    idle = {}
    if not opts.no_idle:
        for kind in ("sniroute", "nginx"):
            idle[kind] = r = idle_flows(kind, n_idle, sink)
            raw.append(r)
            log("idle %s: %d flows, %s B/flow, fds %d -> %d" % (
                kind, r["reached_backend"], common.fmt(r["bytes_per_flow"]), r["fds0"], r["fds1"]))

    procs = {k: start_proxy(k, k.replace(" ", "-")) for k in DL_TARGETS if k != "direct"}

    def pid_of(t):
        return procs[t].pid if t in procs else None

    # 1. Datagrams: each repetition runs every mode through every target, direct first.
    dg = {}
    for rep in range(opts.reps):
        for mode in opts.modes.split(","):
            for t in TARGETS:
                r = dgram_run(t, pid_of(t), mode, sink, opts, rep)
                raw.append(r)
                dg.setdefault((t, mode), []).append(r)
        log("datagram repetition %d/%d: %s" % (rep + 1, opts.reps, ", ".join(
            "%s %s %.0f/s" % (r["mode"], r["target"], r["rate"]) for r in raw[-len(TARGETS):])))

    # 2. HTTP/3 download, interleaved.
    dl = {}
    if not opts.no_download:
        size = opts.download_mib << 20
        servers, want = start_h3_backends(size)
        for rep in range(opts.download_reps):
            for variant, _, _, _ in H3_VARIANTS:
                for t in DL_TARGETS:
                    r = download(t, pid_of(t), variant, servers[variant].pid, want, rep, size)
                    raw.append(r)
                    dl.setdefault((variant, t), []).append(r)
                    log("download %s %s: %.2f s%s" % (variant, t, r["seconds"],
                                                      "" if r["ok"] else " FAILED " + r["stderr"]))
        for p in servers.values():
            common.stop(p)
        os.unlink(os.path.join(WORK, "htdocs", "big"))

    for p in procs.values():
        common.stop(p)
    summary["sink"] = sink.count()
    sink.stop()
    summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    summary["load_after"] = open("/proc/loadavg").read().strip()
    data = {"summary": summary, "runs": raw}
    with open(os.path.join(RESULTS, "quic.json"), "w") as f:
        json.dump(data, f, indent=1)
    report(data)


def machine():
    m = common.machine()
    for k in ("haproxy", "sniproxy"):
        m.pop(k, None)
    m["nginx_stream"] = dpkg_version("libnginx-mod-stream")
    m["ngtcp2"] = dpkg_version("ngtcp2-server")
    m["rmem_max"] = open("/proc/sys/net/core/rmem_max").read().strip()
    if SNIROUTE[0] != os.path.join(BUILD, "sniroute"):
        m["sniroute_binary"] = SNIROUTE[0]
    return m


def dpkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, timeout=10)
    return r.stdout.strip() or "?"


# --- report ------------------------------------------------------------------------------------

def paired(runs, name, base, key):
    """Median over repetitions of run(name)[key] / run(base)[key] of the same repetition."""
    by_rep = {r["rep"]: r[key] for r in runs.get(base, []) if r.get(key)}
    return common.med([r[key] / by_rep[r["rep"]] for r in runs.get(name, [])
                       if r.get(key) is not None and by_rep.get(r["rep"])])


def report(data):
    summary, raw = data["summary"], data["runs"]
    opts = argparse.Namespace(**summary["opts"])
    fmt, med = common.fmt, common.med
    dg, dl, idle = {}, {}, {}
    for r in raw:
        if r["mode"] in MODES:
            dg.setdefault(r["mode"], {}).setdefault(r["target"], []).append(r)
        elif r["mode"] == "download":
            dl.setdefault(r.get("variant", "GSO"), {}).setdefault(r["target"], []).append(r)
        elif r["mode"] == "idle":
            idle[r["target"]] = r
    rows = {}
    for mode, by_t in dg.items():
        for t in TARGETS:
            runs = by_t.get(t, [])
            rows[(mode, t)] = {
                "rate": med([r["rate"] for r in runs]),
                "x_direct": paired(by_t, t, "direct", "rate"),
                "x_nginx": paired(by_t, t, "nginx", "rate"),
                "x_ceiling": paired(by_t, t, "ceiling relay", "rate"),
                "loss": med([r["lost_frac"] for r in runs]),
                "cpu_us": med([r["cpu_us"] for r in runs]),
                "cpu_x_nginx": paired(by_t, t, "nginx", "cpu_us") if t != "direct" else None,
                "sent": sum(r["sent"] for r in runs),
                "n": len(runs)}
    summary["rows"] = {"%s/%s" % k: v for k, v in rows.items()}
    m = summary["machine"]
    md = ["# sniroute QUIC benchmark results\n"]
    md.append("Generated by `bench/quic.py` on %s (finished %s). Raw runs: `quic.json`.\n"
              % (summary["started"], summary["finished"]))
    md.append("Machine: %s CPUs (`nproc`), %s, kernel %s, %s GiB RAM, net.core.rmem_max %s. Load "
              "average before: %s; after: %s (other work shares this machine). Peers: %s with "
              "Debian's stream module %s; ngtcp2 examples (gtlsclient, gtlsserver) %s. sniroute at "
              "%s (Release build%s).\n" % (
                  m["nproc"], m["cpu"], m["kernel"], m["mem_gib"], m["rmem_max"], m["load_before"],
                  summary["load_after"], m["nginx"], m["nginx_stream"], m["ngtcp2"],
                  m["sniroute_commit"],
                  ("; uncommitted changes to %s" % ", ".join(x[3:] for x in m["src_uncommitted"])
                   if m["src_uncommitted"] else "") +
                  ("; binary measured: %s" % m["sniroute_binary"] if m.get("sniroute_binary")
                   else "")))
    md.append("Command: `%s` (as root; the measurements run inside `unshare -n -m`).\n"
              % summary["command"])
    md.append("Setup: loopback only; sender, proxy and backend share the CPUs. One process or "
              "worker each (sniroute's default; nginx `worker_processes 1`), access logs off, all "
              "asking for 4 MiB socket buffers on the listening socket (sniroute does by itself; "
              "nginx `listen ... udp rcvbuf=4m sndbuf=4m`) and kernel defaults on the per-flow "
              "upstream sockets. sniroute: one `protocol = quic` listener routing each backend by "
              "the SNI of the flow's first datagram; nginx: one `listen ... udp` server per "
              "backend with `proxy_pass` (no SNI: nginx cannot route QUIC by name); *ceiling "
              "relay*: `bench_udpload relay` (bench/udpload.c), one listening socket per backend, "
              "a connected upstream socket per client flow, `recvmmsg` and one `sendmmsg` per run "
              "of a flow's datagrams, no parsing, timers, limits or logs: the least a UDP relay "
              "can do, as a yardstick. Runs are interleaved (each repetition runs every target, "
              "direct first); each ratio is the median over repetitions of the run divided by its "
              "repetition's direct, ceiling or nginx run.\n")

    md.append("## Datagrams\n")
    md.append("`bench_udpload` (bench/udpload.c): %d client flows, each its own UDP socket, open "
              "with a real client's Initial (gtlsclient's, from test/fixtures/quic, whose SNI is "
              "sniroute's route to the backend), wait 300 ms, then send %d-byte datagrams shaped "
              "like QUIC short-header packets for %g s; medians of %d runs. *Rate* counts "
              "datagrams delivered at the backend per second (echo: round trips per second, each "
              "crossing the proxy twice); *loss* is sent minus delivered (echo: not back within "
              "100 ms); *CPU* is the proxy's utime+stime (`/proc/PID/stat`, all processes and "
              "threads) per delivered datagram (echo: per round trip). Modes:\n"
              % (opts.flows, 1200, opts.seconds, opts.reps))
    for mode in MODES:
        if mode in dg:
            md.append("- `%s`: %s" % (mode, MODES[mode][2].replace("RATE", "%d" % opts.rate)
                                       .replace("WINDOW", "%d" % opts.window)))
    md.append("")
    md.append("| mode | target | rate /s | × direct | × ceiling | × nginx | loss | CPU µs/dgram | "
              "CPU × nginx |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode in MODES:
        for t in TARGETS:
            r = rows.get((mode, t))
            if not r or not r["n"]:
                continue
            md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                mode, t, fmt(r["rate"]), fmt(r["x_direct"], "%.2f"), fmt(r["x_ceiling"], "%.2f"),
                fmt(r["x_nginx"], "%.2f"),
                fmt(None if r["loss"] is None else 100 * r["loss"], "%.2f%%"),
                fmt(r["cpu_us"], "%.2f"), fmt(r["cpu_x_nginx"], "%.2f")))
    md.append("")

    md.append("## HTTP/3 download\n")
    if dl:
        size = opts.download_mib
        md.append("gtlsclient fetches a %d MiB file of random bytes from gtlsserver over HTTP/3 "
                  "(`https://NAME/big`: the SNI is the host name, resolved by the run's private "
                  "/etc/hosts), directly and through each proxy; each download is checked against "
                  "the file's SHA-256. Two servers: gtlsserver as it comes, which sends with UDP "
                  "GSO (`UDP_SEGMENT`: up to 64 datagrams of ~1,450 bytes in one `sendmsg`, which "
                  "a direct loopback path carries as one buffer until the receiving socket), and "
                  "the same with `--max-gso-dgrams=1` (one datagram per `sendmsg`, as a relay that "
                  "sends datagrams one by one does). Medians of %d; ratios paired per repetition. "
                  "CPU: the proxy's, the server's and the client's over the download; *drops*: "
                  "datagrams the kernel dropped at a full socket receive buffer in the run's "
                  "namespace (`RcvbufErrors`, /proc/net/snmp), summed over the runs.\n"
                  % (size, opts.download_reps))
        md.append("| server | target | seconds | Mbit/s | × direct | × ceiling | × nginx | "
                  "proxy CPU s | server CPU s | client CPU s | drops | verified |")
        md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for variant, _, _, _ in H3_VARIANTS:
            by_t = dl.get(variant, {})
            for t in DL_TARGETS:
                runs = by_t.get(t, [])
                if not runs:
                    continue
                md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d |" % (
                    variant, t, fmt(med([r["seconds"] for r in runs if r["ok"]]), "%.2f"),
                    fmt(med([r["mbit_s"] for r in runs]), "%.0f"),
                    fmt(paired(by_t, t, "direct", "mbit_s"), "%.2f"),
                    fmt(paired(by_t, t, "ceiling relay", "mbit_s"), "%.2f"),
                    fmt(paired(by_t, t, "nginx", "mbit_s"), "%.2f"),
                    fmt(med([r["proxy_cpu_s"] for r in runs]), "%.2f"),
                    fmt(med([r["server_cpu_s"] for r in runs]), "%.2f"),
                    fmt(med([r.get("client_cpu_s") for r in runs]), "%.2f"),
                    fmt(sum(r.get("rcvbuf_errors", 0) for r in runs), "%d"),
                    sum(1 for r in runs if r["ok"]), len(runs)))
        md.append("")
    else:
        md.append("Not measured in this run.\n")

    md.append("## Memory per idle flow\n")
    if idle:
        md.append("A freshly started proxy; %d flows, each one gtlsclient Initial (1,200 bytes) "
                  "sent from its own source port (500 at a time, each step waiting for the backend "
                  "to see them), then idle for 1 s; the proxy's RSS (`VmRSS`, whole process tree) "
                  "before and after, divided by the flows that reached the backend. Kernel socket "
                  "memory is not included; every flow also holds one connected UDP socket in both "
                  "proxies (descriptors before → after).\n" % summary["idle_flows"])
        md.append("| target | flows reached backend | RSS before KiB | RSS after KiB | "
                  "bytes/flow | descriptors | seconds to open |")
        md.append("|---|---:|---:|---:|---:|---|---:|")
        for t in ("sniroute", "nginx"):
            i = idle.get(t)
            if i:
                md.append("| %s | %d | %d | %d | %s | %d → %d | %.1f |" % (
                    t, i["reached_backend"], i["rss0_kib"], i["rss1_kib"],
                    fmt(i["bytes_per_flow"]), i["fds0"], i["fds1"], i["open_s"]))
        md.append("")
    else:
        md.append("Not measured in this run.\n")

    md.append("## Against the issue's targets\n")
    fl, pc = rows.get(("flood", "sniroute")), rows.get(("paced", "sniroute"))
    ec = rows.get(("echo", "sniroute"))
    if fl:
        md.append("- Datagram rate at least nginx's: flood %s× nginx%s." % (
            fmt(fl["x_nginx"], "%.2f"),
            ", echo %s×" % fmt(ec["x_nginx"], "%.2f") if ec else ""))
    if pc:
        md.append("- Lower CPU per datagram than nginx: paced %s× nginx's CPU per datagram%s%s." % (
            fmt(pc["cpu_x_nginx"], "%.2f"),
            ", flood %s×" % fmt(fl["cpu_x_nginx"], "%.2f") if fl else "",
            ", echo %s×" % fmt(ec["cpu_x_nginx"], "%.2f") if ec else ""))
    if dl:
        md.append("- HTTP/3 download at ≥ 0.9× direct: %s." % "; ".join(
            "%s server %s× (ceiling relay %s×, nginx %s×)" % (
                v, fmt(paired(dl.get(v, {}), "sniroute", "direct", "mbit_s"), "%.2f"),
                fmt(paired(dl.get(v, {}), "ceiling relay", "direct", "mbit_s"), "%.2f"),
                fmt(paired(dl.get(v, {}), "nginx", "direct", "mbit_s"), "%.2f"))
            for v, _, _, _ in H3_VARIANTS if v in dl))
        xs = [(v, paired(dl.get(v, {}), "sniroute", "ceiling relay", "mbit_s"))
              for v, _, _, _ in H3_VARIANTS]
        if all(x is not None for _, x in xs):
            md.append("  sniroute against the ceiling relay (one datagram at a time): %s; "
                      "against the ceiling relay with GRO and GSO: %s." % (
                          ", ".join("%.2f× (%s)" % (x, v) for v, x in xs),
                          ", ".join("%s× (%s)" % (fmt(paired(dl.get(v, {}), "sniroute",
                                                             "ceiling relay GRO", "mbit_s"),
                                                      "%.2f"), v)
                                    for v, _, _, _ in H3_VARIANTS)))
        md.append("  A server that sends one datagram per system call gets no coalescing on "
                  "loopback (loopback traffic skips the kernel's GRO stage, which on a network "
                  "interface merges such datagrams for a socket with UDP_GRO): every relay here, "
                  "sniroute, nginx and both ceiling relays, pays a full trip through the stack "
                  "per datagram and lands near the same rate.")
    if idle.get("sniroute"):
        md.append("- Memory per idle flow: %s bytes (nginx: %s)." % (
            fmt(idle["sniroute"]["bytes_per_flow"]),
            fmt(idle.get("nginx", {}).get("bytes_per_flow"))))
    md.append("")
    md.append("## Caveats\n")
    md.append("- Two CPUs shared by sender, proxy and backend, and with other work on this "
              "machine: absolute figures move from run to run; compare the ratios taken in the "
              "same run.\n"
              "- `flood` is bound by the sender: on loopback the kernel delivers a datagram in the "
              "sender's system call, so the sender pays for the proxy's receive path too, and a "
              "proxy that falls behind loses datagrams at its socket (loss column).\n"
              "- The download's three processes (client, proxy, server) share two CPUs: a proxy "
              "adds its CPU to the machine's and a hop of wake-up latency to every round trip, "
              "and a download lasts well under a second, so its ratios move more than the "
              "datagram rates do.\n"
              "- CPU time comes from `/proc/PID/stat` in clock ticks (%d Hz): a few ms per run.\n"
              "- sniroute batches (`recvmmsg` on its listening and flow sockets, a flow's "
              "consecutive datagrams in one `sendmmsg`), takes a server's runs of datagrams whole "
              "(UDP_GRO on flow sockets) and sends runs, and neighbouring datagrams of one size, "
              "as one buffer the kernel cuts (UDP_SEGMENT); `paced` against `paced-b1` shows "
              "what the per-flow runs are worth, the download's two servers what a server's GSO "
              "does to each path.\n" % common.CLK_TCK)
    with open(os.path.join(RESULTS, "quic.md"), "w") as f:
        f.write("\n".join(md))
    log("wrote %s" % os.path.join(RESULTS, "quic.md"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="datagram repetitions (3)")
    ap.add_argument("--seconds", type=float, default=4, help="seconds per datagram run (4)")
    ap.add_argument("--flows", type=int, default=16, help="client flows per datagram run (16)")
    ap.add_argument("--rate", type=int, default=50000, help="paced: datagrams/s in all (50000)")
    ap.add_argument("--window", type=int, default=16,
                    help="echo: datagrams in flight per flow (16)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="datagram modes (%s)" % ",".join(MODES))
    ap.add_argument("--download-mib", type=int, default=64, help="HTTP/3 download size (64)")
    ap.add_argument("--download-reps", type=int, default=3, help="downloads per target (3)")
    ap.add_argument("--idle-flows", type=int, default=10000, help="idle flows (10000)")
    ap.add_argument("--sniroute", help="measure this sniroute binary instead of the Release "
                    "build (say, an experiment built elsewhere)")
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--no-idle", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get missing peers")
    ap.add_argument("--report-only", action="store_true", help="rewrite quic.md from quic.json")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.report_only:
        with open(os.path.join(RESULTS, "quic.json")) as f:
            report(json.load(f))
        return
    if opts.inside:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        try:
            inside(opts)
        finally:
            common.stop_all()
        return
    if os.geteuid() != 0:
        sys.exit("bench/quic.py: run as root (apt-get for nginx's stream module, unshare -n -m)")
    if not opts.no_install:
        install_peers()
    build()
    os.makedirs(WORK, exist_ok=True)
    cmd = ["unshare", "-n", "-m", "--propagation", "private", sys.executable,
           os.path.abspath(__file__), "--inside"] + sys.argv[1:]
    sys.exit(subprocess.run(cmd, timeout=3600).returncode)


if __name__ == "__main__":
    main()
