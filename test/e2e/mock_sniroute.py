#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A stand-in for the sniroute daemon, written from its documented interface, used only to
test the end-to-end suite itself:

    python3 test/e2e/run_e2e.py --sniroute test/e2e/mock_sniroute.py

It speaks the same command line, config, "listening on" lines, access log, alert and drain
behaviour, with one thread per direction and none of the daemon's care for memory. If the
suite fails against this, the suite (or this model) is wrong, not the daemon."""

import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time

LOG_LOCK = threading.Lock()
ALERT = bytes.fromhex("15030300020270")
GLOBAL_KEYS = {"hello_timeout", "connect_timeout", "idle_timeout", "drain_timeout",
               "max_hello_size", "access_log"}
LISTENER_KEYS = {"listen", "routes", "no_sni"}


def duration(v):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", v)
    if not m:
        raise ValueError("bad duration")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def size(v):
    m = re.fullmatch(r"(\d+)([kK]?)", v)
    if not m:
        raise ValueError("bad size")
    return int(m.group(1)) * (1024 if m.group(2) else 1)


def addr(v, literal):
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", v)
    if not m:
        raise ValueError("bad address")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError("bad port")
    if literal:
        socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)
    return host, port


def norm(name):
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def load(path):
    errs = []
    cfg = {"hello_timeout": 5, "connect_timeout": 5, "idle_timeout": 3600,
           "drain_timeout": 30, "max_hello_size": 16384, "access_log": "stdout",
           "listeners": {}, "routes": {}}
    sect = None
    with open(path) as f:
        for no, line in enumerate(f, 1):
            line = re.sub(r"(^|\s);.*$", "", line).strip()
            if not line:
                continue
            m = re.fullmatch(r"\[(\S+)(?: (\S+))?\]", line)
            if m:
                kind, name = m.group(1), m.group(2)
                if kind == "sniroute":
                    sect = ("g", None)
                elif kind == "listener":
                    cfg["listeners"][name] = {"listen": [], "routes": None,
                                              "no_sni": "default"}
                    sect = ("l", name)
                elif kind == "routes":
                    cfg["routes"][name] = {}
                    sect = ("r", name)
                else:
                    errs.append("%s:%d: unknown section" % (path, no))
                    sect = None
                continue
            k, eq, v = line.partition("=")
            k, v = k.strip(), v.strip()
            if not eq or sect is None:
                errs.append("%s:%d: syntax error" % (path, no))
                continue
            try:
                if sect[0] == "g":
                    if k not in GLOBAL_KEYS:
                        raise ValueError("unknown key %s" % k)
                    cfg[k] = (duration(v) if k.endswith("timeout") else
                              size(v) if k == "max_hello_size" else v)
                elif sect[0] == "l":
                    if k not in LISTENER_KEYS:
                        raise ValueError("unknown key %s" % k)
                    lst = cfg["listeners"][sect[1]]
                    if k == "listen":
                        lst["listen"].append(addr(v, True))
                    else:
                        lst[k] = v
                else:
                    table = cfg["routes"][sect[1]]
                    key = norm(k)
                    if "*" in key and not (key.startswith("*.") and "*" not in key[2:]):
                        raise ValueError("bad wildcard")
                    target = addr(v, False)
                    if key in table:
                        raise ValueError("duplicate name")
                    table[key] = target
            except (ValueError, OSError) as e:
                errs.append("%s:%d: %s" % (path, no, e))
    return cfg, errs


def parse_hello(buf):
    """Returns ("need"|"found"|"no_sni"|"not_tls"|"malformed", sni)."""
    if buf and buf[0] != 0x16:
        return "not_tls", None
    hs = b""
    off = 0
    while True:
        if len(buf) - off < 5:
            break
        if buf[off] != 0x16 or buf[off + 1] != 3:
            return ("not_tls" if off == 0 else "malformed"), None
        n = struct.unpack(">H", buf[off + 3:off + 5])[0]
        if n == 0 or n > 16384:
            return "malformed", None
        if len(buf) - off - 5 < n:
            break
        hs += buf[off + 5:off + 5 + n]
        off += 5 + n
        if len(hs) >= 4:
            if hs[0] != 1:
                return "malformed", None
            hlen = struct.unpack(">I", b"\0" + hs[1:4])[0]
            if len(hs) >= 4 + hlen:
                return parse_body(hs[4:4 + hlen])
    if len(buf) >= 1 and len(buf) < 5:
        return "need", None
    return "need", None


def parse_body(b):
    try:
        p = 34
        p += 1 + b[p]
        p += 2 + struct.unpack(">H", b[p:p + 2])[0]
        p += 1 + b[p]
        if p == len(b):
            return "no_sni", None
        elen = struct.unpack(">H", b[p:p + 2])[0]
        p += 2
        if p + elen != len(b):
            return "malformed", None
        sni = None
        while p < len(b):
            t, n = struct.unpack(">HH", b[p:p + 4])
            p += 4
            if p + n > len(b):
                return "malformed", None
            if t == 0:
                e = b[p:p + n]
                ln = struct.unpack(">H", e[:2])[0]
                if ln + 2 != len(e):
                    return "malformed", None
                q = 2
                while q < len(e):
                    typ, nl = e[q], struct.unpack(">H", e[q + 1:q + 3])[0]
                    if q + 3 + nl > len(e):
                        return "malformed", None
                    if typ == 0:
                        sni = e[q + 3:q + 3 + nl].decode("ascii")
                    q += 3 + nl
            p += n
        return ("found", sni) if sni else ("no_sni", None)
    except (IndexError, struct.error, UnicodeDecodeError):
        return "malformed", None


def lookup(table, name):
    if name in table:
        return "exact", table[name]
    labels = name.split(".")
    for i in range(1, len(labels)):
        k = "*." + ".".join(labels[i:])
        if k in table:
            return "wildcard", table[k]
    if "default" in table:
        return "default", table["default"]
    return "none", None


class Server:
    def __init__(self, cfg):
        self.cfg = cfg
        self.active = set()
        self.lock = threading.Lock()
        self.listeners = []
        self.draining = False
        self.log = {"stdout": sys.stdout, "stderr": sys.stderr, "off": None}.get(
            cfg["access_log"]) or (None if cfg["access_log"] == "off"
                                   else open(cfg["access_log"], "a"))

    def write_log(self, c):
        if not self.log:
            return
        t = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (t % 1 * 1000)
        line = ("%s listener=%s client=%s sni=%s route=%s upstream=%s bytes_in=%d "
                "bytes_out=%d duration_ms=%d outcome=%s\n"
                % (ts, c["listener"], c["client"], c["sni"] or "-", c["route"],
                   c["upstream"] or "-", c["in"], c["out"],
                   (time.monotonic() - c["t0"]) * 1000, c["outcome"]))
        with LOG_LOCK:
            self.log.write(line)
            self.log.flush()

    def serve(self, lsock, lname, lcfg):
        while True:
            try:
                s, peer = lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(s, peer, lname, lcfg),
                             daemon=True).start()

    def handle(self, cs, peer, lname, lcfg):
        host = "[%s]" % peer[0] if ":" in peer[0] else peer[0]
        c = {"listener": lname, "client": "%s:%d" % (host, peer[1]), "sni": None,
             "route": "none", "upstream": None, "in": 0, "out": 0, "t0": time.monotonic(),
             "outcome": "error", "socks": [cs]}
        with self.lock:
            self.active.add(id(c))
            self.conns = getattr(self, "conns", {})
            self.conns[id(c)] = c
        try:
            self.handle2(cs, c, lcfg)
        finally:
            for s in c["socks"]:
                try:
                    s.close()
                except OSError:
                    pass
            if c.get("drained"):
                c["outcome"] = "drained"
            self.write_log(c)
            with self.lock:
                self.active.discard(id(c))
                self.conns.pop(id(c), None)

    def handle2(self, cs, c, lcfg):
        cs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + self.cfg["hello_timeout"]
        buf = b""
        while True:
            st, sni = parse_hello(buf)
            if st != "need":
                break
            if len(buf) >= self.cfg["max_hello_size"]:
                c["outcome"] = "too_large"
                return
            left = deadline - time.monotonic()
            if left <= 0:
                c["outcome"] = "hello_timeout"
                return
            cs.settimeout(left)
            try:
                b = cs.recv(self.cfg["max_hello_size"] - len(buf))
            except socket.timeout:
                continue
            except OSError:
                c["outcome"] = "client_reset"
                return
            if not b:
                c["outcome"] = "incomplete"
                return
            buf += b
        c["in"] = len(buf)
        if st in ("not_tls", "malformed"):
            c["outcome"] = st
            return
        table = self.cfg["routes"][lcfg["routes"]]
        if st == "found":
            c["sni"] = sni
            c["route"], target = lookup(table, norm(sni))
        elif lcfg["no_sni"] == "reject":
            target = None
        else:
            target = table.get("default")
            c["route"] = "default" if target else "none"
        if target is None:
            c["route"] = "none"
            c["outcome"] = "no_route"
            cs.sendall(ALERT)
            c["out"] = len(ALERT)
            cs.shutdown(socket.SHUT_WR)
            return
        c["upstream"] = "%s:%d" % target
        bs = None
        try:
            infos = socket.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
        except OSError:
            c["outcome"] = "resolve_failed"
            return
        for fam, typ, proto, _, sa in infos:
            s = socket.socket(fam, typ, proto)
            s.settimeout(self.cfg["connect_timeout"])
            try:
                s.connect(sa)
                bs = s
                break
            except OSError:
                s.close()
        if bs is None:
            c["outcome"] = "connect_failed"
            return
        c["socks"].append(bs)
        bs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bs.settimeout(None)
        cs.settimeout(None)
        bs.sendall(buf)
        res = {}
        last = [time.monotonic()]
        idle = self.cfg["idle_timeout"]

        def wake():
            for s in (cs, bs):
                try:
                    s.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

        def pump(src, dst, key):
            try:
                while not res:
                    if not select.select([src], [], [], min(idle, 0.5))[0]:
                        if time.monotonic() - last[0] >= idle:
                            res.setdefault("abort", "idle_timeout")
                            wake()
                        continue
                    b = src.recv(65536)
                    if not b or res:
                        break
                    last[0] = time.monotonic()
                    dst.sendall(b)
                    c[key] += len(b)
                if not res:
                    dst.shutdown(socket.SHUT_WR)
            except OSError:
                res.setdefault("abort", "client_reset" if key == "in" else "backend_reset")
                wake()

        t = threading.Thread(target=pump, args=(bs, cs, "out"), daemon=True)
        t.start()
        pump(cs, bs, "in")
        t.join()
        why = res.get("abort")
        c["outcome"] = why or "ok"
        if why in ("client_reset", "backend_reset"):
            # Pass the reset on: close the other side with SO_LINGER 0.
            other = bs if why == "client_reset" else cs
            other.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def run(self):
        for lname, lcfg in self.cfg["listeners"].items():
            for host, port in lcfg["listen"]:
                fam = socket.AF_INET6 if ":" in host else socket.AF_INET
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(128)
                p = s.getsockname()[1]
                shown = "[%s]" % host if fam == socket.AF_INET6 else host
                sys.stderr.write("sniroute: listening on %s:%d (listener %s)\n"
                                 % (shown, p, lname))
                sys.stderr.flush()
                self.listeners.append(s)
                threading.Thread(target=self.serve, args=(s, lname, lcfg),
                                 daemon=True).start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        while not stop.wait(0.2):
            pass
        for s in self.listeners:
            s.shutdown(socket.SHUT_RDWR)
            s.close()
        deadline = time.monotonic() + self.cfg["drain_timeout"]
        stop.clear()  # a second signal ends the drain at once
        while time.monotonic() < deadline and not stop.is_set():
            with self.lock:
                if not self.active:
                    return 0
            time.sleep(0.05)
        with self.lock:
            conns = list(getattr(self, "conns", {}).values())
        for c in conns:
            c["drained"] = True
            for s in c["socks"]:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        t = time.monotonic() + 2
        while time.monotonic() < t:
            with self.lock:
                if not self.active:
                    break
            time.sleep(0.05)
        return 0


def main(argv):
    if argv[:1] == ["-h"]:
        print("usage: sniroute [-t] -c FILE | peek [FILE]")
        return 0
    if argv[:1] == ["peek"]:
        f = argv[1] if len(argv) > 1 and argv[1] != "-" else None
        data = open(f, "rb").read() if f else sys.stdin.buffer.read()
        st, sni = parse_hello(data)
        print("status: %s\nsni: %s\nalpn: %s" % (st, sni, "h2" if b"\x02h2" in data else "-"))
        return 0 if st in ("found", "no_sni") else 1
    test = "-t" in argv
    path = argv[argv.index("-c") + 1]
    cfg, errs = load(path)
    for e in errs:
        sys.stderr.write(e + "\n")
    if errs:
        return 1
    if test:
        print("%s: ok" % path)
        return 0
    return Server(cfg).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
