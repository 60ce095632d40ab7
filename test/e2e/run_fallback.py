#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Non-TLS fallback on a TLS port, through the real daemon:

- a real OpenSSH client logs in to a real OpenSSH server through sniroute's TLS port
  (fallback = the sshd), while TLS clients on the same port still route by name;
- fallback_timeout: a client that waits for the server to speak first (SMTP-style) is sent
  to the fallback, whose banner it then receives.

    run_fallback.py --sniroute build/sniroute
Skips (77) without root or without sshd (openssh-server).
"""

import os
import shutil
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CaptureBackend, Fail, check  # noqa: E402


class BannerBackend(harness._Acceptor):
    """Speaks first ("220 ready"), then echoes until EOF."""

    def handle(self, conn):
        conn.settimeout(10)
        conn.sendall(b"220 ready\r\n")
        while True:
            b = conn.recv(65536)
            if not b:
                break
            conn.sendall(b)
        conn.shutdown(socket.SHUT_WR)
        self.results.put(("ok",))


def start_sshd(tmp):
    """sshd on loopback with a throwaway host key; root may log in with a throwaway key."""
    for name in ("host", "client"):
        harness.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                     os.path.join(tmp, name)])
    shutil.copy(os.path.join(tmp, "client.pub"), os.path.join(tmp, "authorized_keys"))
    port = harness.free_port()
    cfg = os.path.join(tmp, "sshd_config")
    with open(cfg, "w") as f:
        f.write("ListenAddress 127.0.0.1:%d\nHostKey %s\nAuthorizedKeysFile %s\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
                "StrictModes no\nPidFile none\nLogLevel ERROR\n"
                % (port, os.path.join(tmp, "host"), os.path.join(tmp, "authorized_keys")))
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    proc = harness.Proc([shutil.which("sshd"), "-D", "-e", "-f", cfg], "sshd")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise Fail("sshd did not start: %s" % proc.tail("stderr"))


def case_ssh_and_tls_share_a_port(ctx):
    """ssh through sniroute runs a command on the sshd; a TLS hello on the same port still
    reaches its backend. Fails if either is misrouted."""
    sshd, sport = start_sshd(ctx.tmp)
    be = CaptureBackend()
    text = ("[listener shared]\nlisten = 127.0.0.1:0\nroutes = main\n"
            "fallback = 127.0.0.1:%d\n[routes main]\nsite.test = 127.0.0.1:%d\n"
            % (sport, be.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "ssh", text)
    try:
        r = harness.run(["ssh", "-F", "/dev/null", "-i", os.path.join(ctx.tmp, "client"),
                         "-p", str(d.port("shared")), "-o", "BatchMode=yes",
                         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                         "-o", "ConnectTimeout=10", "root@127.0.0.1", "echo through-sniroute"],
                        timeout=30)
        out = harness.txt(r.stdout).strip()
        check(r.returncode == 0 and out == "through-sniroute",
              "ssh exit %d, out %r, err %s" % (r.returncode, out, harness.txt(r.stderr)[-300:]))
        e = d.wait_log(lambda e: e.get("route") == "fallback", "the ssh connection")
        check(e.get("outcome") == "ok" and e.get("upstream") == "127.0.0.1:%d" % sport,
              "ssh access-log line: %s" % e["_raw"])
        hello = harness.client_hello("site.test")
        with harness.connect(d.port("shared")) as s:
            s.sendall(hello)
            s.shutdown(socket.SHUT_WR)
            reply = harness.recv_all(s, time.monotonic() + 10)
        check(reply.startswith(b"GOT"), "TLS on the shared port: %s" % harness.short(reply))
        res = be.next_result(10, "TLS backend")
        check(res[1] == hello, "the TLS backend got %s" % harness.short(res[1]))
        status = d.stop()
        check(status == 0 and d.sanitizer_report() is None, "daemon exit %s" % status)
        return "ssh printed %r" % out
    finally:
        d.stop()
        sshd.stop()
        be.stop()


def case_server_speaks_first(ctx):
    """fallback_timeout = 300ms: a silent client reaches the fallback and gets its banner;
    a TLS client that speaks in time is routed by name as usual."""
    banner = BannerBackend()
    be = CaptureBackend()
    text = ("[listener mixed]\nlisten = 127.0.0.1:0\nroutes = main\n"
            "fallback = 127.0.0.1:%d\nfallback_timeout = 300ms\n[routes main]\n"
            "default = 127.0.0.1:%d\n" % (banner.port, be.port))
    d = harness.Sniroute(ctx.binary, ctx.tmp, "banner", text)
    try:
        with harness.connect(d.port("mixed")) as s:
            t0 = time.monotonic()
            s.settimeout(5)
            got = s.recv(64)
            waited = time.monotonic() - t0
            check(got == b"220 ready\r\n", "the silent client got %s" % harness.short(got))
            check(waited >= 0.25, "the banner came after %.2fs, before fallback_timeout" % waited)
            s.sendall(b"QUIT\r\n")
            s.shutdown(socket.SHUT_WR)
            rest = harness.recv_all(s, time.monotonic() + 10)
            check(rest == b"QUIT\r\n", "echo after the banner: %s" % harness.short(rest))
        e = d.wait_log(lambda e: e.get("route") == "fallback", "the silent client")
        check(e.get("outcome") == "ok", "line: %s" % e["_raw"])
        hello = harness.client_hello("any.test")
        with harness.connect(d.port("mixed")) as s:
            s.sendall(hello)
            s.shutdown(socket.SHUT_WR)
            reply = harness.recv_all(s, time.monotonic() + 10)
        check(reply.startswith(b"GOT"), "a prompt TLS client was not routed by name")
        return "banner after %.2fs" % waited
    finally:
        d.stop()
        banner.stop()
        be.stop()


if __name__ == "__main__":
    CASES = [case_server_speaks_first]
    if os.geteuid() == 0 and shutil.which("sshd") and shutil.which("ssh"):
        CASES.insert(0, case_ssh_and_tls_share_a_port)
    else:
        print("SKIP ssh_and_tls_share_a_port: needs root, sshd and ssh (openssh-server)")
    harness.run_suite(CASES)
