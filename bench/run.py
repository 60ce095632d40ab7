#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end benchmark: sniroute beside a direct connection, the ceiling relay
(bench/relay.c) and the SNI routers Debian ships (HAProxy, nginx stream + ssl_preread,
sniproxy), with the same routes and one worker each (plus HAProxy and nginx on all cores).

One command: `sudo bench/run.py` (root: it installs missing peers with apt-get and runs the
measurements in a private network namespace, `unshare -n`, where fixed loopback ports and
the namespace's own sysctls cannot disturb anything else). It builds a Release sniroute and
the bench programs into bench-build/, then measures connection rate (two hello sizes),
bulk throughput (both ways, one way, and one way at a fixed pace, where the machine's busy
time per KiB is the CPU a path costs wherever the kernel does its work), idle memory per connection, an 8,000-connection integrity run, route
table scale and reload under traffic. Every figure is also given as a ratio to direct client->backend measured in
the same run. Writes bench/results/results.md, results.json and *.png (gnuplot); a partial
run (--only, --rate-only) writes into bench-build/partial/ instead, unless --out says where,
so that it never replaces the full table.

Bounded: every child has a timeout, every loop a fixed count, only PIDs started here are
stopped. Not a test: nothing here asserts a speed.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "bench-build")
RESULTS = os.path.join(REPO, "bench", "results")  # --out, or bench-build/partial/ (see main)
WORK = os.path.join(BUILD, "run")
FIXTURES = os.path.join(REPO, "test", "fixtures", "hello")
HELLOS = [("curl.bin", "curl.example"), ("hand-pq.bin", "pq.example")]
BACKEND = "127.0.0.1:9000"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"

# name, port, kind; "direct" has no proxy. Order is the table's order.
TARGETS = [
    ("direct", 9000, "direct"),
    ("ceiling relay", 8447, "relay"),
    ("sniroute", 8443, "sniroute"),
    # workers = 2 beside workers = 1, HAProxy's nbthread 2 and nginx's two workers (issue 14).
    ("sniroute 2 workers", 8456, "sniroute2"),
    # The kernel relay (kernel_relay = sockmap, issue 14 part 2) beside the default splice
    # path ("sniroute").
    ("sniroute sockmap", 8453, "sockmap"),
    # The same as "sniroute" with access rules (an allow, 16 denies that match nothing) and
    # max_new_connections_per_ip set too high to refuse (every connection takes a token
    # under its address's shard lock): the accept path's cost of issue 15's rules.
    ("sniroute rules", 8455, "sniroute_rules"),
    ("haproxy", 8444, "haproxy"),
    ("nginx", 8445, "nginx"),
    ("sniproxy", 8446, "sniproxy"),
    ("haproxy 2 threads", 8448, "haproxy2"),
    ("nginx 2 workers", 8449, "nginx2"),
]

started = []  # Popen objects we started; the only processes we ever stop
BASELINE = []  # --baseline: the other sniroute binary, measured beside this build


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def sh(cmd, timeout=600, **kw):
    return subprocess.run(cmd, check=True, timeout=timeout, **kw)


# --- setup (outside the namespace) --------------------------------------------------------

def install_peers():
    want = []
    if shutil.which("haproxy") is None:
        want.append("haproxy")
    if shutil.which("nginx") is None or not os.path.exists(NGINX_STREAM):
        want += ["nginx", "libnginx-mod-stream"]
    if shutil.which("sniproxy") is None:
        want.append("sniproxy")
    if shutil.which("gnuplot") is None:
        want.append("gnuplot-nox")
    if not want:
        return
    log("installing %s" % " ".join(want))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh(["apt-get", "update", "-qq"], env=env)
    sh(["apt-get", "install", "-y", "-qq"] + want, env=env)


def build():
    log("building Release into %s" % BUILD)
    sh(["cmake", "-S", REPO, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release"], stdout=subprocess.DEVNULL)
    sh(["cmake", "--build", BUILD, "-j2", "--target", "sniroute", "bench_loadgen",
        "bench_backend", "bench_relay", "bench_route"], stdout=subprocess.DEVNULL)


# --- processes -------------------------------------------------------------------------------

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start(cmd, name, stdout=subprocess.DEVNULL, stderr=None):
    errf = stderr or open(os.path.join(WORK, name + ".stderr"), "wb")
    p = subprocess.Popen(cmd, stdout=stdout, stderr=errf, stdin=subprocess.DEVNULL)
    started.append(p)
    return p


def stop(p, timeout=10):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()  # our own child, by its PID
            p.wait(5)
    if p in started:
        started.remove(p)


def stop_all():
    for p in list(started):
        stop(p)


def wait_port(port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def proc_tree(pid):
    """<pid> and its descendants (nginx workers, sniproxy's binder)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_s(pid):
    """utime + stime of the process tree, seconds (all threads included)."""
    total = 0
    for p in proc_tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# --- configs -----------------------------------------------------------------------------

def conf_sniroute(port, names, path, kernel_relay=None, listener_extra="", workers=None):
    with open(path, "w") as f:
        f.write("[sniroute]\naccess_log = off\nidle_timeout = 1h\nhello_timeout = 30s\n")
        if kernel_relay is not None:
            f.write("kernel_relay = %s\n" % kernel_relay)
        if workers is not None:
            f.write("workers = %d\n" % workers)
        f.write("\n")
        f.write("[listener bench]\nlisten = 127.0.0.1:%d\nroutes = main\n%s\n[routes main]\n"
                % (port, listener_extra))
        for n in names:
            f.write("%s = %s\n" % (n, BACKEND))


def start_proxy(kind, port, name):
    names = [h[1] for h in HELLOS]
    d = os.path.join(WORK, kind)
    os.makedirs(d, exist_ok=True)
    if kind == "relay":
        return start([os.path.join(BUILD, "bench_relay"), "127.0.0.1:%d" % port, BACKEND], name)
    if kind in ("sniroute", "baseline", "sniroute_rules", "sockmap", "sniroute2"):
        cfg = os.path.join(d, "sniroute.ini")
        rules = ""
        if kind == "sniroute_rules":
            rules = ("allow = 127.0.0.0/8\n" +
                     "".join("deny = 198.51.100.%d/32\n" % (i + 1) for i in range(16)) +
                     "max_new_connections_per_ip = 1000000/s\n")
        workers = 2 if kind == "sniroute2" else None
        if kind == "baseline":
            workers = BASELINE[1]
        conf_sniroute(port, names, cfg, "sockmap" if kind == "sockmap" else None, rules, workers)
        binary = BASELINE[0] if kind == "baseline" else os.path.join(BUILD, "sniroute")
        return start([binary, "-c", cfg], name)
    if kind in ("haproxy", "haproxy2"):
        cfg = os.path.join(d, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n    nbthread %d\n    maxconn 9500\n\n" % (2 if kind == "haproxy2" else 1))
            f.write("defaults\n    mode tcp\n    maxconn 9500\n    timeout connect 5s\n"
                    "    timeout client 1h\n    timeout server 1h\n\n")
            f.write("frontend fe\n    bind 127.0.0.1:%d\n    tcp-request inspect-delay 5s\n"
                    "    tcp-request content accept if { req_ssl_hello_type 1 }\n"
                    "    use_backend be if { req_ssl_sni -i %s }\n\n" % (port, " ".join(names)))
            f.write("backend be\n    server s1 %s\n" % BACKEND)
        return start(["haproxy", "-f", cfg, "-db"], name)
    if kind in ("nginx", "nginx2"):
        cfg = os.path.join(d, "nginx.conf")
        with open(cfg, "w") as f:
            f.write("load_module %s;\ndaemon off;\nmaster_process on;\n" % NGINX_STREAM)
            f.write("worker_processes %d;\nworker_rlimit_nofile 20000;\n" % (2 if kind == "nginx2" else 1))
            f.write("pid %s/nginx.pid;\nerror_log %s/error.log error;\n" % (d, d))
            f.write("events { worker_connections 19000; }\n")
            f.write("stream {\n    upstream be { server %s; }\n" % BACKEND)
            f.write("    map $ssl_preread_server_name $up {\n")
            for n in names:
                f.write("        %s be;\n" % n)
            f.write("    }\n    server {\n        listen 127.0.0.1:%d;\n        ssl_preread on;\n"
                    "        proxy_pass $up;\n        proxy_half_close on;\n    }\n}\n" % port)
        return start(["nginx", "-p", d, "-c", cfg, "-e", os.path.join(d, "error.log")], name)
    if kind == "sniproxy":
        cfg = os.path.join(d, "sniproxy.conf")
        with open(cfg, "w") as f:
            f.write("user nobody\npidfile %s/sniproxy.pid\n" % d)
            f.write("error_log {\n    filename %s/error.log\n    priority error\n}\n" % d)
            f.write("listener 127.0.0.1:%d {\n    protocol tls\n    table bench\n}\n" % port)
            f.write("table bench {\n")
            for n in names:
                f.write("    ^%s$ %s\n" % (n.replace(".", "\\\\."), BACKEND))
            f.write("}\n")
        os.chmod(d, 0o777)
        return start(["sniproxy", "-f", "-c", cfg], name)
    raise ValueError(kind)


# --- measurements --------------------------------------------------------------------------

def loadgen(args, timeout):
    cmd = [os.path.join(BUILD, "bench_loadgen")] + args
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       text=True)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError("loadgen failed: %s: %s" % (" ".join(cmd), r.stderr.strip()))
    return json.loads(lines[-1])


def kworker_cpu_s():
    """utime + stime of the kernel's worker threads (kworker/*), seconds. The kernel relay
    (sockmap) pushes redirected bytes into the peer socket from a workqueue, so its cost is
    theirs, not the proxy's: the bulk table adds them to every target's CPU (a kworker
    that exits during a run takes its time with it)."""
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        if not s[s.index("(") + 1:].startswith("kworker"):
            continue
        fields = s[s.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_cpu_s():
    """Busy time of every CPU (user, nice, system, irq, softirq, steal from /proc/stat),
    seconds. Unlike the per-process figures it keeps what a run costs wherever the kernel
    does the work (kworkers that exit mid-run, softirqs charged to the load generator or
    the backend); a run's cost to the machine less the direct run's is what the proxy
    added."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def measured(target, pid, args, timeout):
    """Run loadgen against <target>, with the proxy's CPU time over the run (and the
    kernel workers', and the whole machine's)."""
    c0 = cpu_s(pid) if pid else 0.0
    k0 = kworker_cpu_s()
    m0 = machine_cpu_s()
    res = loadgen(args, timeout)
    res["machine_cpu_s"] = machine_cpu_s() - m0
    res["proxy_cpu_s"] = (cpu_s(pid) - c0) if pid else None
    res["kworker_cpu_s"] = kworker_cpu_s() - k0
    res["target"] = target
    return res


def run_idle(target, port, pid, n):
    """Open <n> connections, hold them, sample the proxy's RSS before and at 'ready'."""
    fix = os.path.join(FIXTURES, HELLOS[0][0])
    rss0 = rss_kib(pid)
    p = subprocess.Popen([os.path.join(BUILD, "bench_loadgen"), "idle", "-a", "127.0.0.1:%d" % port,
                          "-f", fix, "-n", str(n), "-H", "3", "-T", "60", "-L", target],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started.append(p)
    try:
        ready = json.loads(p.stdout.readline() or "{}")
        time.sleep(0.5)
        rss1 = rss_kib(pid)
        out, _ = p.communicate(timeout=70)
    finally:
        stop(p)
    final = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    n_ok = final.get("ready", 0)
    final.update({"target": target, "rss0_kib": rss0, "rss1_kib": rss1,
                  "open_s": ready.get("open_s"),
                  "bytes_per_conn": (rss1 - rss0) * 1024.0 / n_ok if n_ok else None})
    return final


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def route_scale(sizes, port, raw):
    """Config load time and RSS of the daemon for N names, then a short rate run through it."""
    out = []
    fix = os.path.join(FIXTURES, HELLOS[0][0])
    for n in sizes:
        cfg = os.path.join(WORK, "routes-%d.ini" % n)
        names = ["curl.example"] + ["host-%d.bench-routes.example" % i for i in range(n - 1)]
        conf_sniroute(port, names, cfg)
        name_bytes = sum(len(x) for x in names)
        t0 = time.monotonic()
        p = start([os.path.join(BUILD, "sniroute"), "-c", cfg], "sniroute-routes",
                  stderr=subprocess.PIPE)
        line = p.stderr.readline().decode(errors="replace")  # "listening on ..." once loaded
        load_s = time.monotonic() - t0
        ok = "listening" in line
        if not ok:
            log("sniroute with %d names did not start: %s" % (n, line.strip()))
        rss = rss_kib(p.pid)
        res = None
        if ok:
            res = measured("sniroute %d names" % n, p.pid,
                           ["rate", "-a", "127.0.0.1:%d" % port, "-f", fix, "-c", "50", "-t", "3",
                            "-L", "routes-%d" % n], 30)
            raw.append(res)
        stop(p)
        os.unlink(cfg)
        out.append({"names": n, "load_s": load_s if ok else None, "rss_kib": rss,
                    "name_bytes": name_bytes, "conn_per_s": res["conn_per_s"] if res else None,
                    "started": ok})
        log("routes %d: load %.2f s, RSS %d KiB" % (n, load_s, rss))
    return out


def read_line_until(p, word, timeout):
    """Read <p>'s stderr (a pipe) until a line containing <word>; None after <timeout> s."""
    import select
    deadline = time.monotonic() + timeout
    buf = b""
    fd = p.stderr.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if word.encode() in line:
                return line.decode(errors="replace")
    return None


def reload_test(port, n_names, n_reloads, raw):
    """SIGHUP a <n_names>-name config <n_reloads> times while a rate run flows through the
    daemon: reload time (SIGHUP to the "reloaded" notice) and connections that failed."""
    fix = os.path.join(FIXTURES, HELLOS[0][0])
    cfg = os.path.join(WORK, "reload.ini")

    def write(gen):
        conf_sniroute(port, ["curl.example"] + ["g%d-host-%d.bench-reload.example" % (gen, i)
                                                for i in range(n_names - 1)], cfg)

    write(0)
    p = start([os.path.join(BUILD, "sniroute"), "-c", cfg], "sniroute-reload", stderr=subprocess.PIPE)
    out = {"names": n_names, "reload_s": [], "errors": None, "conn_per_s": None}
    try:
        if read_line_until(p, "listening", 30) is None:
            log("reload: sniroute did not start")
            return out
        seconds = 2.0 * (n_reloads + 1)
        lg = subprocess.Popen([os.path.join(BUILD, "bench_loadgen"), "rate", "-a", "127.0.0.1:%d" % port,
                               "-f", fix, "-c", "50", "-t", str(seconds), "-L", "reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started.append(lg)
        for gen in range(1, n_reloads + 1):
            time.sleep(1.0)
            write(gen)  # a different set of names each time: a real rebuild
            t0 = time.monotonic()
            p.send_signal(signal.SIGHUP)
            line = read_line_until(p, "reloaded", 30)
            out["reload_s"].append(time.monotonic() - t0 if line else None)
        res_text, _ = lg.communicate(timeout=seconds + 30)
        started.remove(lg)
        res = json.loads([l for l in res_text.splitlines() if l.startswith("{")][-1])
        res["target"] = "sniroute reload"
        raw.append(res)
        out["errors"] = res["connect_errors"] + res["reply_errors"] + res["resets"]
        out["completed"] = res["completed"]
        out["conn_per_s"] = res["conn_per_s"]
    finally:
        stop(p)
        os.unlink(cfg)
    log("reload: %s s, %s failed connections" % (out["reload_s"], out["errors"]))
    return out


def inside(opts):
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    sh(["ip", "link", "set", "lo", "up"])
    # The namespace's own sysctls: enough ephemeral ports, all above our fixed ones (< 10000),
    # and reuse of TIME_WAIT ports for outgoing connections (several hundred thousand short
    # connections per run).
    for key, val in (("net/ipv4/ip_local_port_range", "10000 65000"),
                     ("net/ipv4/tcp_tw_reuse", "1"),
                     ("net/core/somaxconn", "8192")):
        try:
            with open("/proc/sys/" + key, "w") as f:
                f.write(val)
        except OSError as e:
            log("cannot set %s: %s" % (key, e))
    hard = raise_nofile()
    n_big = max(100, min(opts.conns, (hard - 200) // 2))

    all_targets = list(TARGETS)
    if opts.baseline:
        # Another sniroute binary (an older commit) beside this one, in the same run.
        BASELINE[:] = [os.path.abspath(opts.baseline), opts.baseline_workers]
        all_targets.insert(3, ("sniroute baseline" + (" %d workers" % opts.baseline_workers
                                                      if opts.baseline_workers else ""),
                               8452, "baseline"))
    targets = [t for t in all_targets if not opts.only or t[0] in opts.only.split(",")
               or t[2] in opts.only.split(",")]
    if not any(t[2] == "direct" for t in targets):
        targets.insert(0, TARGETS[0])
    raw = []
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
               "command": " ".join(["bench/run.py"] + sys.argv[1:]).replace(" --inside", ""),
               "conns": n_big, "nofile_hard": hard, "opts": vars(opts),
               "targets": targets}

    backend = start([os.path.join(BUILD, "bench_backend"), "-l", BACKEND]
                    + sum([["-f", os.path.join(FIXTURES, h[0])] for h in HELLOS], []),
                    "backend", stdout=subprocess.PIPE)
    if not wait_port(9000):
        raise RuntimeError("backend did not start")
    procs = {}
    for name, port, kind in targets:
        if kind == "direct":
            continue
        procs[name] = start_proxy(kind, port, name)
        if not wait_port(port):
            raise RuntimeError("%s did not start (see %s)" % (name, WORK))
    log("started: %s" % ", ".join(t[0] for t in targets))

    def pid_of(name):
        return procs[name].pid if name in procs else None

    if opts.routes_only:
        print(json.dumps(route_scale([2, 1000, 100000, 1000000], 8450, raw), indent=1))
        print(json.dumps(reload_test(8451, 100000, 3, raw), indent=1))
        return

    # 1. Idle memory first, on fresh processes (freed memory from earlier runs would hide growth).
    idle = {}
    for name, port, kind in targets:
        if kind in ("direct", "haproxy2", "nginx2") or opts.rate_only:
            continue
        idle[name] = run_idle(name, port, pid_of(name), n_big)
        raw.append(idle[name])
        log("idle %s: %s B/conn, ready %s, dropped %s" % (
            name, "%.0f" % idle[name]["bytes_per_conn"] if idle[name]["bytes_per_conn"] else "?",
            idle[name]["ready"], idle[name]["dropped"]))

    # 2. Connection rate, interleaved so every repetition has its own direct figure.
    rate = {}
    for rep in range(opts.reps):
        # Direct first, then the proxies in an order that rotates from one repetition to
        # the next: no proxy always runs right after the same one (each run leaves tens of
        # thousands of TIME_WAIT sockets towards the backend, which the next one's connects
        # must step over).
        proxies = [t for t in targets if t[2] != "direct"]
        k = rep % len(proxies) if proxies else 0
        order = [t for t in targets if t[2] == "direct"] + proxies[k:] + proxies[:k]
        for fix, _ in HELLOS:
            for name, port, kind in order:
                r = measured(name, pid_of(name),
                             ["rate", "-a", "127.0.0.1:%d" % port, "-f", os.path.join(FIXTURES, fix),
                              "-c", str(opts.concurrency), "-t", str(opts.seconds), "-L", name],
                             opts.seconds + 30)
                r["rep"] = rep
                raw.append(r)
                rate.setdefault((name, fix), []).append(r)
        log("rate repetition %d/%d done" % (rep + 1, opts.reps))

    # 3. Bulk, both ways, verified; ends with a half-close whose tail must arrive.
    bulk = {}
    for rep in range(0 if opts.rate_only else opts.bulk_reps):
        for name, port, kind in targets:
            r = measured(name, pid_of(name),
                         ["bulk", "-a", "127.0.0.1:%d" % port, "-f", os.path.join(FIXTURES, HELLOS[0][0]),
                          "-n", str(opts.streams), "-t", str(opts.seconds), "-T", "60", "-L", name],
                         opts.seconds + 90)
            r["rep"] = rep
            raw.append(r)
            bulk.setdefault(name, []).append(r)
        log("bulk repetition %d/%d done" % (rep + 1, opts.bulk_reps))

    # 3b. Bulk one way (the backend's stream only, as in a download): where the kernel
    #     relay keeps a connection (bulk both ways moves it to the worker once the backend
    #     falls behind).
    oneway = {}
    for rep in range(0 if opts.rate_only else opts.bulk_reps):
        for name, port, kind in targets:
            r = measured(name, pid_of(name),
                         ["bulk", "-D", "-a", "127.0.0.1:%d" % port, "-f",
                          os.path.join(FIXTURES, HELLOS[0][0]), "-n", str(opts.streams), "-t",
                          str(opts.seconds), "-T", "60", "-L", name], opts.seconds + 90)
            r["rep"] = rep
            r["oneway"] = True
            raw.append(r)
            oneway.setdefault(name, []).append(r)
        log("one-way bulk repetition %d/%d done" % (rep + 1, opts.bulk_reps))
    summary["oneway"] = oneway

    # 3c. One way at a fixed pace, below every target's top speed: the same bytes per second
    #     through every path, so the machine's busy time per KiB less direct's is what the
    #     path costs, wherever the kernel does the work (at top speed the CPUs are saturated
    #     and busy time only measures speed).
    paced = {}
    for rep in range(0 if opts.rate_only or not opts.pace else opts.bulk_reps):
        for name, port, kind in targets:
            r = measured(name, pid_of(name),
                         ["bulk", "-D", "-R", "%g" % (opts.pace / opts.streams), "-a",
                          "127.0.0.1:%d" % port, "-f", os.path.join(FIXTURES, HELLOS[0][0]),
                          "-n", str(opts.streams), "-t", str(opts.seconds), "-T", "60", "-L", name],
                         opts.seconds + 90)
            r["rep"] = rep
            r["paced"] = opts.pace
            raw.append(r)
            paced.setdefault(name, []).append(r)
        log("paced one-way repetition %d/%d done" % (rep + 1, opts.bulk_reps))
    summary["paced"] = paced

    # 4. Integrity at n_big concurrent connections through sniroute (and direct, as a check
    #    of the harness itself).
    integ = {}
    for name, port, kind in targets:
        if opts.rate_only:
            break
        if kind not in ("direct", "sniroute", "sockmap") and not opts.integrity_all:
            continue
        if kind in ("haproxy2", "nginx2"):
            continue
        r = measured(name, pid_of(name),
                     ["integrity", "-a", "127.0.0.1:%d" % port, "-f", os.path.join(FIXTURES, HELLOS[0][0]),
                      "-n", str(n_big), "-b", str(opts.integrity_bytes), "-T", "120", "-L", name], 200)
        raw.append(r)
        integ[name] = r
        log("integrity %s: %d/%d complete, lost %d reordered %d mixed %d corrupt %d" % (
            name, r["completed"] - r["resets"], r["connections"], r["lost"], r["reordered"],
            r["mixed"], r["corrupt"]))

    for p in list(procs.values()):
        stop(p)
    backend.send_signal(signal.SIGTERM)
    bout, _ = backend.communicate(timeout=10)
    started.remove(backend)
    summary["backend"] = json.loads(bout.decode().strip().splitlines()[-1])

    # 5. Route-table scale through the daemon, and the table-only microbenchmark.
    routes = []
    if not opts.no_routes and not opts.rate_only:
        backend = start([os.path.join(BUILD, "bench_backend"), "-l", BACKEND]
                        + ["-f", os.path.join(FIXTURES, HELLOS[0][0])], "backend2")
        wait_port(9000)
        routes = route_scale([2, 1000, 100000, 1000000], 8450, raw)
        summary["reload"] = reload_test(8451, 100000, 3, raw)
        stop(backend)
        log("bench_route")
        summary["bench_route"] = subprocess.run([os.path.join(BUILD, "bench_route")],
                                                stdout=subprocess.PIPE, text=True,
                                                timeout=300).stdout
    summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    summary["load_after"] = open("/proc/loadavg").read().strip()
    report(summary, targets, idle, rate, bulk, integ, routes, raw, opts)


# --- report --------------------------------------------------------------------------------

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = f.readline().split()[1]
    return {"nproc": os.cpu_count(), "kernel": os.uname().release, "cpu": model,
            "mem_gib": round(int(mem) / 1048576, 1),
            "load_before": open("/proc/loadavg").read().strip(),
            "haproxy": first_line(["haproxy", "-v"]), "nginx": first_line(["nginx", "-v"]),
            "sniproxy": first_line(["sniproxy", "-V"]),
            "sniroute_commit": first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
            "src_uncommitted": subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src",
                                               "include", "CMakeLists.txt"], stdout=subprocess.PIPE,
                                              text=True, timeout=10).stdout.split("\n")[:-1]}


def first_line(cmd):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
        return r.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def fmt(x, spec="%.0f", none="–"):
    return none if x is None else spec % x


def ratio(x, base):
    return None if x is None or not base else x / base


def paired(rate, name, base, fix):
    by_rep = {r["rep"]: r["conn_per_s"] for r in rate.get((base, fix), [])}
    return med([r["conn_per_s"] / by_rep[r["rep"]] for r in rate.get((name, fix), [])
                if by_rep.get(r["rep"])])


def paired_bulk(bulk, name):
    def total(r):
        return (r["up_gbps"] or r["up_sent_gbps"]) + r["down_gbps"]
    by_rep = {r["rep"]: total(r) for r in bulk.get("direct", [])}
    return med([total(r) / by_rep[r["rep"]] for r in bulk.get(name, []) if by_rep.get(r["rep"])])


def side_by_side(md, names, rate):
    """A partial run: every target against every other, paired by repetition (each run
    divided by the other target's run of the same repetition and hello, then the median),
    with the spread of those ratios."""
    others = [n for n in names if n != "direct"]
    md.append("### Side by side\n")
    md.append("Each cell: the median over repetitions of (row's conn/s ÷ column's conn/s in the same "
              "repetition), with the lowest and highest of those ratios in brackets.\n")
    for fix, _ in HELLOS:
        md.append("%s hello:\n" % ("517 B" if fix == HELLOS[0][0] else "1.9 KB"))
        md.append("| target | " + " | ".join("× " + o for o in others) + " |")
        md.append("|---|" + "---:|" * len(others))
        for name in others:
            cells = []
            for o in others:
                by_rep = {r["rep"]: r["conn_per_s"] for r in rate.get((o, fix), [])}
                xs = sorted(r["conn_per_s"] / by_rep[r["rep"]] for r in rate.get((name, fix), [])
                            if by_rep.get(r["rep"]))
                cells.append("%.2f [%.2f–%.2f]" % (statistics.median(xs), xs[0], xs[-1]) if xs else "–")
            md.append("| %s | %s |" % (name, " | ".join(cells)))
        md.append("")


def report(summary, targets, idle, rate, bulk, integ, routes, raw, opts):
    names = [t[0] for t in targets]
    rows = {}
    for name in names:
        row = {}
        for fix, _ in HELLOS:
            runs = rate.get((name, fix), [])
            row["cps_" + fix] = med([r["conn_per_s"] for r in runs])
            row["p50_" + fix] = med([r["lat_us"]["p50"] for r in runs])
            row["p99_" + fix] = med([r["lat_us"]["p99"] for r in runs])
            row["max_" + fix] = med([r["lat_us"]["max"] for r in runs])
            row["cpu_us_" + fix] = med([r["proxy_cpu_s"] * 1e6 / r["completed"]
                                        for r in runs if r["proxy_cpu_s"] is not None and r["completed"]])
            row["err_" + fix] = sum(r["connect_errors"] + r["reply_errors"] + r["resets"] for r in runs)
        b = bulk.get(name, [])
        row["up_gbps"] = med([r["up_gbps"] for r in b])
        row["bulk_gbps"] = med([r["up_gbps"] + r["down_gbps"] for r in b])
        # Upstream bytes are verified by the backend and reported in its trailer; a proxy that
        # drops the tail at half-close loses the trailer, so show what was sent, marked.
        row["up_unverified"] = bool(b) and not row["up_gbps"]
        if row["up_unverified"]:
            row["up_gbps"] = med([r["up_sent_gbps"] for r in b])
            row["bulk_gbps"] = med([r["up_sent_gbps"] + r["down_gbps"] for r in b])
        row["down_gbps"] = med([r["down_gbps"] for r in b])
        moved = [(r, (r["up_sent"] if row["up_unverified"] else r["up_verified"]) + r["down_verified"])
                 for r in b]
        row["cpu_ns_kib"] = med([r["proxy_cpu_s"] * 1e9 / (n / 1024) for r, n in moved
                                 if r["proxy_cpu_s"] is not None and n])
        row["cpu_kw_ns_kib"] = med([(r["proxy_cpu_s"] + r.get("kworker_cpu_s", 0)) * 1e9 / (n / 1024)
                                    for r, n in moved if r["proxy_cpu_s"] is not None and n])
        row["bulk_bad"] = sum(r["lost"] + r["reordered"] + r["mixed"] + r["corrupt"] + r["no_trailer"]
                              for r in b)
        row["bulk_lost"] = sum(r["lost"] for r in b)
        i = idle.get(name)
        row["idle_b"] = i["bytes_per_conn"] if i else None
        row["idle_ok"] = ("%d/%d" % (i["ready"], i["connections"])) if i else "–"
        rows[name] = row
    d = rows["direct"]
    # Ratios: each run against the direct run of the same repetition (taken seconds before it),
    # then the median, which keeps drifting machine load out of the ratio.
    for name in names:
        row = rows[name]
        for fix, _ in HELLOS:
            row["x_direct_" + fix] = paired(rate, name, "direct", fix)
            row["x_ceiling_" + fix] = paired(rate, name, "ceiling relay", fix)
        row["bulk_x_direct"] = paired_bulk(bulk, name)
    summary["rows"] = rows

    md = []
    m = summary["machine"]
    md.append("# sniroute benchmark results\n")
    md.append("Generated by `bench/run.py` on %s (finished %s). Raw runs: `results.json`.\n"
              % (summary["started"], summary["finished"]))
    md.append("Machine: %s CPUs (`nproc`), %s, kernel %s, %s GiB RAM. Load average before: %s; after: %s "
              "(other work shares this machine, see Caveats). Peers: %s; %s; %s. sniroute at %s (Release build).\n"
              % (m["nproc"], m["cpu"], m["kernel"], m["mem_gib"], m["load_before"], summary["load_after"],
                 m["haproxy"], m["nginx"], m["sniproxy"],
                 m["sniroute_commit"] + (" plus uncommitted changes to %s" % ", ".join(
                     x[3:] for x in m["src_uncommitted"]) if m["src_uncommitted"] else "")))
    md.append("Command: `%s` (as root; the measurements run inside `unshare -n`).\n" % summary["command"])
    md.append("Setup: loopback only; load generator, proxy and backend share the CPUs. Same two routes "
              "(curl.example, pq.example → one backend) in every proxy; one worker each unless the name "
              "says otherwise; access logs off. Medians of %d runs × %g s (rate, %d concurrent clients), "
              "%d runs × %g s (bulk, %d streams each way). Every ratio is to `direct` "
              "(load generator → backend, no proxy) measured in the same harness run: runs are interleaved "
              "(each repetition runs every target once, direct first, the proxies in an order that rotates "
              "from one repetition to the next), each run is divided by the direct run "
              "of its repetition, and the table gives the median of those ratios.\n"
              % (opts.reps, opts.seconds, opts.concurrency, opts.bulk_reps, opts.seconds, opts.streams))

    md.append("## Connection rate\n")
    md.append("Each connection: connect, send a ClientHello (curl's 517 B, or a 1,856 B post-quantum-sized "
              "one), read the backend's 64-byte reply, FIN, wait for EOF. Latency is connect → reply; "
              "*added* is the median minus direct's. CPU is the proxy's utime+stime over the run "
              "(`/proc/PID/stat`, all its processes and threads) per completed connection.\n")
    md.append("| target | conn/s 517 B | × direct | conn/s 1.9 KB | × direct | × ceiling (517 B) | added p50 µs | "
              "added p99 µs | max µs | CPU µs/conn 517 B | CPU µs/conn 1.9 KB | errors |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    c0, c1 = HELLOS[0][0], HELLOS[1][0]
    for name in names:
        r = rows[name]
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            name, fmt(r["cps_" + c0]), fmt(r["x_direct_" + c0], "%.2f"),
            fmt(r["cps_" + c1]), fmt(r["x_direct_" + c1], "%.2f"),
            fmt(r["x_ceiling_" + c0], "%.2f"),
            fmt(None if name == "direct" else r["p50_" + c0] - d["p50_" + c0], "%+.0f"),
            fmt(None if name == "direct" else r["p99_" + c0] - d["p99_" + c0], "%+.0f"),
            fmt(r["max_" + c0]), fmt(r["cpu_us_" + c0], "%.1f"), fmt(r["cpu_us_" + c1], "%.1f"),
            r["err_" + c0] + r["err_" + c1]))
    md.append("")
    if opts.only:
        side_by_side(md, names, rate)

    if bulk:
        bulk_table(md, names, rows, bulk, opts)
    if summary.get("oneway"):
        oneway_table(md, names, summary["oneway"], opts)
    if summary.get("paced"):
        paced_table(md, names, summary["paced"], opts)
    if idle:
        idle_table(md, names, rows, idle, summary)
    if integ:
        integrity_table(md, names, integ, summary, opts)
    report_rest(md, summary, routes, raw, names, rows, idle, integ)


def added_cpu_ns_kib(runs, name, kib):
    """The machine's CPU per KiB in <name>'s runs less the direct run's of the same
    repetition (paired, then the median): what putting the proxy in the path cost, wherever
    the kernel did the work. <kib>(run) is the KiB a run moved."""
    def per_kib(r):
        return r["machine_cpu_s"] * 1e9 / kib(r) if r.get("machine_cpu_s") and kib(r) else None

    by_rep = {r["rep"]: per_kib(r) for r in runs.get("direct", [])}
    return med([per_kib(r) - by_rep[r["rep"]] for r in runs.get(name, [])
                if per_kib(r) is not None and by_rep.get(r["rep"]) is not None])


def bulk_table(md, names, rows, bulk, opts):
    md.append("## Bulk\n")
    md.append("%d streams, each moving a self-describing pattern both ways at once for %g s; every byte is "
              "checked at the far end (backend for upstream, load generator for downstream). Each stream "
              "ends with a client half-close: the backend reports what it received in a trailer, so a proxy "
              "that cuts the tail at half-close shows in the last column (its upstream figure is then "
              "what was sent, unverified). CPU per KiB counts bytes in both directions; *+ kworkers* "
              "adds the kernel's worker threads' CPU over the run (where `sniroute sockmap`'s relaying "
              "runs: the kernel pushes redirected bytes from a workqueue), for every target alike "
              "(a kworker that exits mid-run takes its time with it, so this can undercount). "
              "*Machine, added* is every CPU's busy time per KiB (`/proc/stat`) less the direct "
              "run's of the same repetition: what the proxy cost the machine, wherever the kernel "
              "did the work; at top speed the CPUs are saturated and it moves with speed, so for "
              "CPU per KiB see *CPU per KiB at one pace* below.\n"
              % (opts.streams, opts.seconds))
    md.append("| target | up Gbit/s | down Gbit/s | total Gbit/s | × direct | CPU ns/KiB | × HAProxy CPU/KiB | "
              "CPU + kworkers ns/KiB | × HAProxy's | machine, added ns/KiB | × HAProxy's | "
              "lost / reordered / mixed / corrupt | streams whose tail was cut at half-close |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    hcpu = rows.get("haproxy", {}).get("cpu_ns_kib")
    hkw = rows.get("haproxy", {}).get("cpu_kw_ns_kib")

    def kib_both(r):
        return ((r["up_verified"] or r["up_sent"]) + r["down_verified"]) / 1024

    hadd = added_cpu_ns_kib(bulk, "haproxy", kib_both)
    for name in names:
        r = rows[name]
        b = bulk.get(name, [])
        add = added_cpu_ns_kib(bulk, name, kib_both) if name != "direct" else None
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(r["up_gbps"], "%.2f") + (" (sent, unverified)" if r["up_unverified"] else ""),
            fmt(r["down_gbps"], "%.2f"), fmt(r["bulk_gbps"], "%.2f"),
            fmt(r["bulk_x_direct"], "%.2f"), fmt(r["cpu_ns_kib"], "%.0f"),
            fmt(ratio(r["cpu_ns_kib"], hcpu), "%.2f"),
            fmt(r.get("cpu_kw_ns_kib"), "%.0f"), fmt(ratio(r.get("cpu_kw_ns_kib"), hkw), "%.2f"),
            fmt(add, "%.0f"), fmt(ratio(add, hadd), "%.2f"),
            " / ".join(str(sum(x[k] for x in b)) for k in ("lost", "reordered", "mixed", "corrupt")),
            "%d of %d" % (sum(x["no_trailer"] for x in b), sum(x["connections"] for x in b))))
    md.append("")

def oneway_table(md, names, oneway, opts):
    md.append("## Bulk, one way\n")
    md.append("The same streams, but only the backend sends (a download): %d streams for %g s, "
              "every byte checked at the client. The kernel relay keeps such connections (it "
              "pauses the backend's socket while the client lags); in bulk both ways above, "
              "once the backend falls 4 MiB behind, the upload goes to the worker's relay "
              "and the download stays in the kernel. CPU per KiB as above (and see the next "
              "table).\n" % (opts.streams, opts.seconds))
    md.append("| target | Gbit/s | × direct | CPU ns/KiB | CPU + kworkers ns/KiB | × HAProxy's | "
              "machine, added ns/KiB | × HAProxy's | lost / reordered / mixed / corrupt |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    by_rep = {r["rep"]: r["down_gbps"] for r in oneway.get("direct", [])}

    def kib(r):
        return r["down_verified"] / 1024

    ow = {}
    for name in names:
        b = oneway.get(name, [])
        ow[name] = (
            med([r["down_gbps"] for r in b]),
            med([r["down_gbps"] / by_rep[r["rep"]] for r in b if by_rep.get(r["rep"])]),
            med([r["proxy_cpu_s"] * 1e9 / kib(r) for r in b
                 if r["proxy_cpu_s"] is not None and r["down_verified"]]),
            med([(r["proxy_cpu_s"] + r.get("kworker_cpu_s", 0)) * 1e9 / kib(r) for r in b
                 if r["proxy_cpu_s"] is not None and r["down_verified"]]))
    hkw1 = ow.get("haproxy", (None,) * 4)[3]
    hadd = added_cpu_ns_kib(oneway, "haproxy", kib)
    for name in names:
        b = oneway.get(name, [])
        if not b:
            continue
        g, x, c, ck = ow[name]
        add = added_cpu_ns_kib(oneway, name, kib) if name != "direct" else None
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(g, "%.2f"), fmt(x, "%.2f"), fmt(c, "%.0f"), fmt(ck, "%.0f"),
            fmt(ratio(ck, hkw1), "%.2f"), fmt(add, "%.0f"), fmt(ratio(add, hadd), "%.2f"),
            " / ".join(str(sum(r[k] for r in b)) for k in ("lost", "reordered", "mixed",
                                                           "corrupt"))))
    md.append("")


def paced_table(md, names, paced, opts):
    def kib(r):
        return r["down_verified"] / 1024

    md.append("## CPU per KiB at one pace (one way)\n")
    md.append("The download above, but the backend paces its streams to %g Mbit/s in all, below "
              "every target's top speed (one that falls more than 5 %% short is marked): every path "
              "moves the same bytes in the same time, so the machine's busy time (every CPU's, "
              "`/proc/stat`) per KiB less the direct run's of the same repetition is what the path "
              "costs, wherever the kernel does the work: the proxy's process, kernel workers, "
              "softirqs charged to the load generator or the backend. At top speed (the tables "
              "above) the CPUs are saturated and busy time mostly measures speed. *Proxy* is the "
              "proxy's own utime + stime, *+ kworkers* adds the kernel's worker threads'.\n"
              % opts.pace)
    md.append("| target | Gbit/s | machine ns/KiB | added ns/KiB | × HAProxy's added | "
              "proxy ns/KiB | + kworkers ns/KiB | lost / reordered / mixed / corrupt |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---|")
    hadd = added_cpu_ns_kib(paced, "haproxy", kib)
    for name in names:
        b = paced.get(name, [])
        if not b:
            continue
        g = med([r["down_gbps"] for r in b])
        slow = g is not None and g < 0.95 * opts.pace / 1000
        add = added_cpu_ns_kib(paced, name, kib) if name != "direct" else None
        md.append("| %s | %s%s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(g, "%.2f"), " (fell behind)" if slow else "",
            fmt(med([r["machine_cpu_s"] * 1e9 / kib(r) for r in b if r["down_verified"]]), "%.0f"),
            fmt(add, "%.0f"), fmt(ratio(add, hadd), "%.2f"),
            fmt(med([r["proxy_cpu_s"] * 1e9 / kib(r) for r in b
                     if r["proxy_cpu_s"] is not None and r["down_verified"]]), "%.0f"),
            fmt(med([(r["proxy_cpu_s"] + r.get("kworker_cpu_s", 0)) * 1e9 / kib(r) for r in b
                     if r["proxy_cpu_s"] is not None and r["down_verified"]]), "%.0f"),
            " / ".join(str(sum(r[k] for r in b)) for k in ("lost", "reordered", "mixed",
                                                           "corrupt"))))
    md.append("")


def idle_table(md, names, rows, idle, summary):
    md.append("## Idle memory\n")
    md.append("%d connections opened (hello sent, reply read) and held; the proxy's RSS (`VmRSS`, whole "
              "process tree) sampled before and while they are held, on a freshly started proxy. Kernel "
              "socket memory is not included (it is the same for every proxy).\n" % summary["conns"])
    md.append("| target | held | RSS before KiB | RSS held KiB | bytes/conn |")
    md.append("|---|---:|---:|---:|---:|")
    for name in names:
        i = idle.get(name)
        if i:
            md.append("| %s | %s | %d | %d | %s |" % (name, rows[name]["idle_ok"], i["rss0_kib"],
                                                   i["rss1_kib"], fmt(i["bytes_per_conn"])))
    md.append("")


def integrity_table(md, names, integ, summary, opts):
    md.append("## Load with integrity\n")
    md.append("%d connections opened first, then all of them move %d bytes each way at once; every 16-byte "
              "block carries its connection id and index, so bytes from another connection (`mixed`), out "
              "of place (`reordered`), damaged (`corrupt`) or missing (`lost`, including at the closing "
              "half-close) are told apart.\n" % (summary["conns"], opts.integrity_bytes))
    md.append("| target | connections | completed | bytes verified | lost | reordered | mixed | corrupt | "
              "errors | seconds |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = integ.get(name)
        if r:
            md.append("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %.2f |" % (
                name, r["connections"], r["completed"] - r["resets"], r["up_verified"] + r["down_verified"],
                r["lost"], r["reordered"], r["mixed"], r["corrupt"],
                r["connect_errors"] + r["reply_errors"] + r["resets"] + r["no_trailer"], r["elapsed_s"]))
    md.append("")


def report_rest(md, summary, routes, raw, names, rows, idle, integ):
    if routes:
        md.append("## Route-table scale\n")
        md.append("sniroute started on a config of N exact names (`host-I.bench-routes.example`, plus the "
                  "benchmark's name); load time is spawn → the `listening` line; RSS right after; then a 3 s "
                  "rate run (517 B hello, 50 clients) through it.\n")
        md.append("| names | load s | RSS MiB | RSS beyond 2-name config, bytes/name | of which name text | "
                  "conn/s through it |")
        md.append("|---:|---:|---:|---:|---:|---:|")
        base = routes[0]
        for r in routes:
            per = None
            if r["names"] > base["names"]:
                per = (r["rss_kib"] - base["rss_kib"]) * 1024.0 / (r["names"] - base["names"])
            md.append("| %d | %s | %.1f | %s | %s | %s |" % (
                r["names"], fmt(r["load_s"], "%.3f"), r["rss_kib"] / 1024.0, fmt(per),
                fmt(r["name_bytes"] / r["names"], "%.0f"), fmt(r["conn_per_s"])))
        md.append("\nTable alone (`bench_route`, the existing microbenchmark):\n")
        md.append("```\n%s```\n" % summary.get("bench_route", ""))
    md.append("## Reload\n")
    rl = summary.get("reload")
    if rl and rl["reload_s"]:
        md.append("A rate run (517 B hello, 50 clients) flows through sniroute on a %d-name config while "
                  "it is rewritten with a different set of %d names and reloaded with SIGHUP %d times, "
                  "about a second apart. Reload time is SIGHUP → the `reloaded` notice.\n"
                  % (rl["names"], rl["names"], len(rl["reload_s"])))
        md.append("| names | reload s (each) | connections during the run | failed or refused | conn/s |")
        md.append("|---:|---|---:|---:|---:|")
        md.append("| %d | %s | %s | %s | %s |\n" % (
            rl["names"], ", ".join(fmt(x, "%.3f") for x in rl["reload_s"]), rl.get("completed", "–"),
            fmt(rl["errors"], "%d"), fmt(rl["conn_per_s"])))
    else:
        md.append("Not measured in this run.\n")
    md.append("## Caveats\n")
    md.append("- Two CPUs shared by load generator, proxy and backend, and with other work on this machine "
              "(see the load averages above): absolute figures move from run to run; the ratios to `direct` "
              "taken in the same run are the figures to compare.\n"
              "- CPU time comes from `/proc/PID/stat` in clock ticks (%d Hz).\n"
              "- Connection rate is kernel-bound on loopback: connect, accept, FIN and TIME_WAIT dominate.\n"
              % CLK_TCK)
    md.append("Charts: `rate.png` (connection rate × direct), `bulk.png` (Gbit/s), `idle.png` (bytes per "
              "idle connection).\n")

    with open(os.path.join(RESULTS, "results.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(RESULTS, "results.json"), "w") as f:
        json.dump({"summary": summary, "idle": idle, "integrity": integ, "routes": routes, "runs": raw},
                  f, indent=1, default=str)
    charts(names, rows, idle)
    log("wrote %s" % os.path.join(RESULTS, "results.md"))


def charts(names, rows, idle):
    if shutil.which("gnuplot") is None:
        log("gnuplot missing: no charts")
        return
    d = rows["direct"]
    c0, c1 = HELLOS[0][0], HELLOS[1][0]
    dat = os.path.join(WORK, "chart.dat")
    with open(dat, "w") as f:
        for name in names:
            r = rows[name]
            f.write('"%s" %s %s %s %s %s\n' % (
                name.replace(" ", "\\n"), fmt(r["x_direct_" + c0], "%.3f", "0"),
                fmt(r["x_direct_" + c1], "%.3f", "0"),
                fmt(r["up_gbps"], "%.3f", "0"), fmt(r["down_gbps"], "%.3f", "0"),
                fmt(idle[name]["bytes_per_conn"] if name in idle else None, "%.0f", "0")))
    common = ("set terminal pngcairo size 1000,480 font ',10'\nset style data histograms\n"
              "set style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
              "set grid ytics\nset key top right\nset yrange [0:*]\nset xtics noenhanced\n"
              "set bmargin 4\n")
    script = common + (
        "set output '%s/rate.png'\nset title 'Connection rate, ratio to direct (same run)'\n"
        "plot '%s' using 2:xtic(1) title '517 B hello', '' using 3 title '1.9 KB hello'\n"
        "set output '%s/bulk.png'\nset title 'Bulk throughput, Gbit/s each way (verified at the far end, except where results.md says not)'\n"
        "plot '%s' using 4:xtic(1) title 'up', '' using 5 title 'down'\n"
        "set output '%s/idle.png'\nset title 'Proxy RSS per idle connection, bytes'\nset logscale y\n"
        "set yrange [10:*]\nplot '%s' using 6:xtic(1) title 'bytes per connection'\n") % (
        RESULTS, dat, RESULTS, dat, RESULTS, dat)
    subprocess.run(["gnuplot"], input=script, text=True, timeout=60, check=False)


def report_again():
    """Rewrite results.md and the charts from results.json (after editing the report code)."""
    with open(os.path.join(RESULTS, "results.json")) as f:
        data = json.load(f)
    summary = data["summary"]
    opts = argparse.Namespace(**summary["opts"])
    targets = [tuple(t) for t in summary["targets"]]
    rate, bulk = {}, {}
    for r in data["runs"]:
        if r["mode"] == "rate" and "rep" in r:
            rate.setdefault((r["target"], r["hello"]), []).append(r)
        elif r["mode"] == "bulk" and not r.get("oneway") and not r.get("paced"):
            bulk.setdefault(r["target"], []).append(r)
    os.makedirs(WORK, exist_ok=True)
    report(summary, targets, data["idle"], rate, bulk, data["integrity"], data["routes"], data["runs"],
           opts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="rate repetitions (5)")
    ap.add_argument("--bulk-reps", type=int, default=3, help="bulk repetitions (3)")
    ap.add_argument("--seconds", type=float, default=5, help="seconds per rate/bulk run (5)")
    ap.add_argument("--concurrency", type=int, default=50, help="rate: concurrent clients (50)")
    ap.add_argument("--streams", type=int, default=4, help="bulk: streams (4)")
    ap.add_argument("--pace", type=float, default=4000,
                    help="paced one-way runs: Mbit/s in all, split over the streams (4000; 0: none)")
    ap.add_argument("--conns", type=int, default=8000, help="idle and integrity connections (8000)")
    ap.add_argument("--integrity-bytes", type=int, default=65536, help="bytes each way per connection")
    ap.add_argument("--integrity-all", action="store_true", help="integrity through every peer too")
    ap.add_argument("--only", help="comma-separated targets (direct is always added)")
    ap.add_argument("--baseline", help="another sniroute binary (say, the previous commit's "
                    "Release build) measured side by side as 'sniroute baseline'")
    ap.add_argument("--baseline-workers", type=int, help="workers = N for the baseline (default: "
                    "its default, 1)")
    ap.add_argument("--no-routes", action="store_true", help="skip the route-table scale runs")
    ap.add_argument("--rate-only", action="store_true", help="only the connection-rate runs (no idle, "
                    "bulk, integrity or route-table runs)")
    ap.add_argument("--out", help="directory for results.md, results.json and the charts (default: "
                    "bench/results, or bench-build/partial for --only and --rate-only runs)")
    ap.add_argument("--routes-only", action="store_true", help="only the route-table scale runs")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get the peers")
    ap.add_argument("--report-only", action="store_true", help="rewrite results.md from results.json")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    global RESULTS
    if opts.out:
        RESULTS = os.path.abspath(opts.out)
    elif opts.only or opts.rate_only:
        RESULTS = os.path.join(BUILD, "partial")  # never over the full run's tables
    if opts.report_only:
        report_again()
        return
    if opts.inside:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        try:
            inside(opts)
        finally:
            stop_all()
        return
    if os.geteuid() != 0:
        sys.exit("bench/run.py: run as root (apt-get for the peers, unshare -n for the network)")
    if not opts.no_install:
        install_peers()
    build()
    os.makedirs(WORK, exist_ok=True)
    log("results go to %s" % RESULTS)
    cmd = ["unshare", "-n", sys.executable, os.path.abspath(__file__), "--inside"] + sys.argv[1:]
    sys.exit(subprocess.run(cmd, timeout=3600).returncode)


if __name__ == "__main__":
    main()
