#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""user/group: started as root, sniroute binds, then runs as the named account for good,
and still routes and reloads. Needs root (exits 77, a CTest skip, otherwise).

    run_privileges.py --sniroute build/sniroute
"""

import argparse
import os
import pwd
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CaptureBackend, Fail, check  # noqa: E402


def ids(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = value.split()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sniroute", required=True)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP privileges: needs root")
        sys.exit(77)
    nobody = pwd.getpwnam("nobody")
    binary = os.path.abspath(args.sniroute)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the config must stay readable for reloads as nobody
        be = CaptureBackend()
        text = ("[sniroute]\nuser = nobody\n[listener https]\nlisten = 127.0.0.1:0\n"
                "routes = main\n[routes main]\ndefault = 127.0.0.1:%d\n" % be.port)
        try:
            d = harness.Sniroute(binary, tmp, "drop", text)
            os.chmod(d.path, 0o644)
            hello = harness.client_hello("priv.test")
            d.proc.wait_line("stderr", r"running as user nobody", 5)
            got = ids(d.pid)
            check(all(x == str(nobody.pw_uid) for x in got["Uid"]),
                  "Uid after start: %s, want %d everywhere" % (got["Uid"], nobody.pw_uid))
            check(all(x == str(nobody.pw_gid) for x in got["Gid"]),
                  "Gid after start: %s, want %d" % (got["Gid"], nobody.pw_gid))
            check(got.get("Groups", []) in ([], [str(nobody.pw_gid)]),
                  "supplementary groups kept: %s" % got.get("Groups"))
            with harness.connect(d.port()) as s:
                s.sendall(hello)
                s.shutdown(socket.SHUT_WR)
                reply = harness.recv_all(s, time.monotonic() + 10)
            check(reply.startswith(b"GOT"), "no reply as nobody")
            os.kill(d.pid, signal.SIGHUP)
            d.proc.wait_line("stderr", r"reloaded", 5)
            check(d.stop() == 0, "exit status")
            print("PASS drop_to_nobody (uid %s)" % got["Uid"][0])
            passed += 1
        except Fail as e:
            print("FAIL drop_to_nobody: %s" % e)
            failed += 1
        finally:
            harness.Proc.stop_all()
            be.stop()
        # An account that does not exist is a config error, reported FILE:LINE by -t.
        bad = os.path.join(tmp, "bad.ini")
        with open(bad, "w") as f:
            f.write(text.replace("user = nobody", "user = no-such-user-here"))
        r = harness.run([binary, "-t", "-c", bad])
        err = harness.txt(r.stderr)
        if r.returncode == 1 and "%s:2: sniroute: user: no such user" % bad in err:
            print("PASS unknown_user")
            passed += 1
        else:
            print("FAIL unknown_user: exit %s, stderr %s" % (r.returncode, err))
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
