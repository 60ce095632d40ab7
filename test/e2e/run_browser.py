#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A real browser through a protocol = quic listener (issue 13): headless Chromium (Debian's
`chromium`), forced to HTTP/3 for the test origins, loads https://a.test:PORT/ and
https://b.test:PORT/ through one sniroute UDP port and gets each gtlsserver backend's own
page; the access log has one flow per load, with its name and its own upstream.

Then one more load goes through a UDP tap in front of sniroute (browser -> tap -> sniroute,
every datagram forwarded unmodified both ways) that records the browser's first flight, and
`sniroute peek --quic` reads the recording: Chromium's post-quantum ClientHello spans two
Initial packets (the first datagram alone is not enough) with CRYPTO frames out of order.

Chromium finds the names through --host-resolver-rules and accepts the backends'
certificates (a throwaway CA) by their public keys (--ignore-certificate-errors-spki-list),
so no root and no private /etc/hosts are needed. Each browser runs in its own session; its
process group, and only that, is killed once it exits or times out.

Skipped (77) when chromium or gtlsserver is missing.

    run_browser.py --sniroute build/sniroute
"""

import base64
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import Fail, check  # noqa: E402
from run_quic import QuicBackend, quic_conf, stop_clean  # noqa: E402

CHROMIUM = "chromium"
NAMES = ["a.test", "b.test"]
# The flows end this long after their last datagram, and then they are logged: long enough
# that a browser busy rendering never pauses a connection that long, short for the suite.
IDLE = "3s"


def page(name):
    return ("<html><head><title>%s</title></head><body><p id=\"who\">backend %s, served "
            "over HTTP/3</p></body></html>\n" % (name, name)).encode()


def spki_sha256(cert):
    """base64(sha256(DER SubjectPublicKeyInfo)) of <cert>: what Chromium's
    --ignore-certificate-errors-spki-list takes."""
    pub = harness.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"])
    check(pub.returncode == 0, "openssl x509 -pubkey: %s" % harness.txt(pub.stderr))
    der = harness.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub.stdout)
    check(der.returncode == 0 and der.stdout, "openssl pkey: %s" % harness.txt(der.stderr))
    return base64.b64encode(hashlib.sha256(der.stdout).digest()).decode()


def chromium_load(ctx, name, port, timeout=40):
    """Headless Chromium, forced to QUIC for every test name on <port>, loads
    https://<name>:<port>/ and prints the DOM. Returns (exit status, DOM text, seconds)."""
    prof = tempfile.mkdtemp(prefix="chromium-", dir=ctx.tmp)
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + prof, "--enable-quic",
            "--origin-to-force-quic-on=" + ",".join("%s:%d" % (n, port) for n in NAMES),
            "--host-resolver-rules=" + ", ".join("MAP %s 127.0.0.1" % n for n in NAMES),
            "--ignore-certificate-errors-spki-list=" + ",".join(ctx.spki),
            "--dump-dom", "https://%s:%d/" % (name, port)]
    env = dict(os.environ, HOME=prof, XDG_CONFIG_HOME=prof, XDG_CACHE_HOME=prof)
    out_path, err_path = os.path.join(prof, "stdout"), os.path.join(prof, "stderr")
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # Its own session, so its own process group: the browser's helpers go with it.
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                             start_new_session=True)
    status = None
    try:
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            # Exited? Not reaped yet (WNOWAIT), so the group's id cannot be anyone else's
            # when it is killed below.
            if os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
            time.sleep(0.05)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        status = p.wait(timeout=10)
    secs = time.monotonic() - t0
    with open(out_path, "rb") as f:
        dom = harness.txt(f.read())
    if status == -signal.SIGKILL and secs >= timeout:
        with open(err_path, "rb") as f:
            raise Fail("chromium did not finish loading %s within %ds; stderr: %s"
                       % (name, timeout, harness.short(f.read()[-600:], 600)))
    return status, dom, secs


def expect_page(ctx, name, port):
    status, dom, secs = chromium_load(ctx, name, port)
    want = "backend %s, served over HTTP/3" % name
    check(status == 0 and want in dom, "chromium, https://%s:%d/: exit %s, DOM %s (want %r)"
          % (name, port, status, harness.short(dom, 300), want))
    for other in NAMES:
        check(other == name or "backend %s" % other not in dom,
              "https://%s/ showed %s's page" % (name, other))
    return secs


class UdpTap:
    """A UDP relay on 127.0.0.1 in front of 127.0.0.1:<upstream>: each client address gets
    a socket of its own towards the upstream, and every datagram is forwarded unmodified
    both ways. It records what the first client sent before the first reply came back:
    its first flight."""

    def __init__(self, upstream, max_record=16):
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.upstream = ("127.0.0.1", upstream)
        self.max_record = max_record
        self.backs = {}  # client address -> socket towards the upstream
        self.first_client = None
        self.first_flight = []
        self.replied = False
        self.relayed = [0, 0]  # datagrams client -> upstream, upstream -> client
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.done.is_set():
            socks = [self.front] + list(self.backs.values())
            ready, _, _ = select.select(socks, [], [], 0.1)
            for s in ready:
                if s is self.front:
                    data, addr = s.recvfrom(65535)
                    back = self.backs.get(addr)
                    if back is None:
                        if len(self.backs) >= 8:
                            continue  # bounded: a browser uses one or two
                        back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        back.bind(("127.0.0.1", 0))
                        back.connect(self.upstream)
                        self.backs[addr] = back
                    with self.lock:
                        if self.first_client is None:
                            self.first_client = addr
                        if (addr == self.first_client and not self.replied and
                                len(self.first_flight) < self.max_record):
                            self.first_flight.append(data)
                        self.relayed[0] += 1
                    back.send(data)
                else:
                    try:
                        data = s.recv(65535)
                    except ConnectionRefusedError:
                        continue
                    addr = next(a for a, b in self.backs.items() if b is s)
                    with self.lock:
                        if addr == self.first_client:
                            self.replied = True
                        self.relayed[1] += 1
                    self.front.sendto(data, addr)

    def recording(self):
        """The first flight in the fixture format: 2-byte big-endian length, then bytes."""
        with self.lock:
            return b"".join(len(d).to_bytes(2, "big") + d for d in self.first_flight)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=2)
        for s in list(self.backs.values()) + [self.front]:
            s.close()


# ---------------------------------------------------------------------------------------


def case_two_names_one_port(ctx):
    """a.test and b.test through one QUIC port, each to its own gtlsserver, each load one
    flow with the right SNI and upstream; then a load through the tap, whose recording
    `sniroute peek --quic` reads: two Initials, CRYPTO frames out of order."""
    backends = {n: QuicBackend(ctx, n, files={"index.html": page(n)}) for n in NAMES}
    # QuicBackend issued each its leaf as <pki dir>/<name>.pem.
    ctx.spki = [spki_sha256(os.path.join(ctx.pki.dir, n + ".pem")) for n in NAMES]
    routes = "".join("%s = 127.0.0.1:%d\n" % (n, b.port) for n, b in backends.items())
    d = harness.Sniroute(ctx.binary, ctx.tmp, "browser",
                         quic_conf("127.0.0.1:0", routes,
                                   "access_log = stdout\nquic_idle_timeout = %s\n"
                                   "hello_timeout = 5s\nconnect_timeout = 5s" % IDLE,
                                   no_sni="reject"))
    port = d.port("h3")
    times = [expect_page(ctx, n, port) for n in NAMES]

    d.wait_log_count(len(NAMES), timeout=15)
    time.sleep(0.5)  # a second flow from the same load would be logged by now too
    lines = d.logs()
    check(len(lines) == len(NAMES), "%d flows for %d page loads: %s"
          % (len(lines), len(NAMES), [e["_raw"] for e in lines]))
    check(sorted(e.get("sni") for e in lines) == NAMES, "one flow per name: %s"
          % [e["_raw"] for e in lines])
    for e in lines:
        up = "127.0.0.1:%d" % backends[e["sni"]].port
        check(e.get("upstream") == up and e.get("route") == "exact" and
              e.get("outcome") == "ok" and e.get("listener") == "h3",
              "flow for %s (want upstream %s): %s" % (e["sni"], up, e["_raw"]))
        check(int(e.get("dgrams_in", "0")) > 0 and int(e.get("dgrams_out", "0")) > 0,
              "no datagrams relayed: %s" % e["_raw"])

    # The same again through the tap: its recording of the browser's first flight.
    tap = UdpTap(port)
    mark = d.mark()
    try:
        times.append(expect_page(ctx, "a.test", tap.port))
    finally:
        tap.stop()
    e = d.wait_log(lambda e: True, "the load through the tap", start=mark, timeout=15)
    check(e.get("sni") == "a.test" and e.get("upstream") == "127.0.0.1:%d"
          % backends["a.test"].port and e.get("outcome") == "ok", "tap flow: %s" % e["_raw"])
    time.sleep(0.5)
    check(len(d.logs(mark)) == 1, "the tap load made %d flows: %s"
          % (len(d.logs(mark)), [x["_raw"] for x in d.logs(mark)]))
    rec = os.path.join(ctx.tmp, "chromium-first-flight.bin")
    with open(rec, "wb") as f:
        f.write(tap.recording())
    r = harness.run([ctx.binary, "peek", "--quic", rec])
    out = harness.txt(r.stdout)
    print("sniroute peek --quic on the tap's recording:\n  " + out.strip().replace("\n", "\n  "))
    field = {k: v for k, v in re.findall(r"^(\w+): (.*)$", out, re.M)}
    check(r.returncode == 0 and field.get("status") == "found" and
          field.get("sni") == "a.test" and field.get("alpn") == "h3",
          "peek --quic on the recording: exit %d\n%s%s" % (r.returncode, out,
                                                          harness.txt(r.stderr)))
    check(re.search(r"^datagram 1: \d+ bytes, need_more ", out, re.M),
          "the first datagram alone completed the ClientHello:\n%s" % out)
    n_initial = int(field.get("initial_packets", "0"))
    n_frames = int(field.get("crypto_frames", "0"))
    n_ooo = int(field.get("crypto_out_of_order", "0"))
    check(n_initial >= 2, "the ClientHello came in %d Initial packet(s):\n%s" % (n_initial, out))
    check(n_ooo >= 1, "no CRYPTO frame out of order:\n%s" % out)
    stop_clean(d)
    return ("pages in %s s; tap relayed %d/%d datagrams; first flight: %d datagrams, hello "
            "%s bytes in %d Initials, %d CRYPTO frames, %d out of order"
            % ("/".join("%.1f" % t for t in times), tap.relayed[0], tap.relayed[1],
               len(tap.first_flight), field.get("hello_len"), n_initial, n_frames, n_ooo))


def make_ctx(binary, tmp, args):
    ctx = type("Ctx", (), {})()
    ctx.binary, ctx.tmp = binary, tmp
    ctx.pki = harness.PKI(tmp)
    return ctx


def main():
    package = {CHROMIUM: "chromium", "gtlsserver": "ngtcp2-server"}
    missing = ["%s (Debian package %s)" % (t, p) for t, p in package.items()
               if shutil.which(t) is None]
    if missing:
        print("SKIP browser: %s not installed" % " and ".join(missing))
        sys.exit(77)
    harness.run_suite([case_two_names_one_port], make_ctx=make_ctx)


if __name__ == "__main__":
    main()
