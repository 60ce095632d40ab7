#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The systemd unit, checked without booting systemd.

- `systemd-analyze verify` is clean, on a copy of etc/systemd/sniroute.service whose
  /usr/sbin/sniroute and config path point at the build tree (verify insists the
  executables exist);
- `systemd-analyze security --offline=yes` rates its exposure at most MAX_EXPOSURE, so a
  loosened sandbox fails here;
- the unit keeps what the README promises: SIGTERM to stop, a stop timeout above the
  config's drain_timeout, SIGHUP to reload after `sniroute -t`;
- etc/systemd/sniroute.ini passes `sniroute -t`.

Exit 77 (skipped) where systemd-analyze is not installed (.ci/run installs it).
Usage: check_systemd.py --source-dir DIR --sniroute PATH
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

MAX_EXPOSURE = 2.0  # 1.4 with systemd 252; what is left is network access, the job itself


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", text.strip())
    if m is None:
        raise ValueError("bad duration %r" % text)
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
    return int(m.group(1)) * scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--sniroute", required=True)
    args = ap.parse_args()
    unit_path = os.path.join(args.source_dir, "etc/systemd/sniroute.service")
    ini_path = os.path.join(args.source_dir, "etc/systemd/sniroute.ini")
    problems = []

    proc = subprocess.run([args.sniroute, "-t", "-c", ini_path], capture_output=True, text=True)
    if proc.returncode != 0:
        problems.append("etc/systemd/sniroute.ini: sniroute -t:\n" + proc.stderr)

    with open(unit_path) as f:
        unit = f.read()
    settings = {}
    for line in unit.splitlines():
        m = re.match(r"([A-Za-z]+)=(.*)", line)
        if m:
            settings.setdefault(m.group(1), []).append(m.group(2))
    want = {
        "ExecStart": ["/usr/sbin/sniroute -c /etc/sniroute/sniroute.ini"],
        "ExecStartPre": ["/usr/sbin/sniroute -t -c /etc/sniroute/sniroute.ini"],
        "ExecReload": ["/usr/sbin/sniroute -t -c /etc/sniroute/sniroute.ini",
                       "/bin/kill -HUP $MAINPID"],
        "KillSignal": ["SIGTERM"],
        "DynamicUser": ["yes"],
        "CapabilityBoundingSet": ["CAP_NET_BIND_SERVICE"],
        "AmbientCapabilities": ["CAP_NET_BIND_SERVICE"],
    }
    for key, value in want.items():
        if settings.get(key) != value:
            problems.append("unit: %s is %r, want %r" % (key, settings.get(key), value))
    drain = 30.0
    with open(ini_path) as f:
        m = re.search(r"^drain_timeout\s*=\s*(\S+)", f.read(), re.M)
        if m:
            drain = duration_s(m.group(1))
    stop = duration_s(settings.get("TimeoutStopSec", ["0"])[0])
    if stop <= drain:
        problems.append("unit: TimeoutStopSec=%ss is not above drain_timeout (%ss)" % (stop, drain))

    if shutil.which("systemd-analyze") is None:
        for p in problems:
            print(p)
        if problems:
            return 1
        print("systemd-analyze not installed: verify and security skipped")
        return 77

    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "sniroute.service")
        text = unit.replace("/usr/sbin/sniroute", os.path.abspath(args.sniroute))
        text = text.replace("/etc/sniroute/sniroute.ini", os.path.abspath(ini_path))
        if not os.path.exists("/bin/kill"):
            text = text.replace("/bin/kill", shutil.which("kill") or "/bin/true")
        with open(copy, "w") as f:
            f.write(text)
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", copy],
                              capture_output=True, text=True)
        out = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or out:
            problems.append("systemd-analyze verify (exit %d):\n%s" % (proc.returncode, out))
        proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                               copy], capture_output=True, text=True)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
        if m is None:
            problems.append("systemd-analyze security: no score (exit %d):\n%s"
                            % (proc.returncode, proc.stdout + proc.stderr))
        else:
            print("systemd-analyze security: exposure %s" % m.group(1))
            if float(m.group(1)) > MAX_EXPOSURE:
                problems.append("exposure %s is above %.1f:\n%s"
                                % (m.group(1), MAX_EXPOSURE, proc.stdout))

    for p in problems:
        print(p)
    print("systemd unit: %d problem(s)" % len(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
