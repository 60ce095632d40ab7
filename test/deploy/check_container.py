#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""etc/container/Containerfile, checked without a container engine.

- two stages, both on debian:12-slim; every path COPY'd from the build context exists;
- the runtime stage installs only packages that exist (`apt-cache show`), and they cover
  every shared library the built binary links besides glibc (readelf + dpkg -S on this
  Debian 12 machine), so the image cannot miss one;
- it runs as a numeric non-root USER, ENTRYPOINT /usr/sbin/sniroute, CMD -c with the path
  the example config is copied to, STOPSIGNAL SIGTERM, and EXPOSEs the config's ports;
- the example config passes `sniroute -t`.

Usage: check_container.py --source-dir DIR --sniroute PATH
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# In every Debian image already (glibc, and libgcc-s1, which a sanitizer build links).
GLIBC = ("libc.so", "libm.so", "libpthread.so", "libdl.so", "ld-linux", "libgcc_s.so")


def instructions(text):
    """[(INSTRUCTION, args)] with continuation lines joined and comments dropped."""
    out = []
    text = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines()
                                            if not l.lstrip().startswith("#")))
    for line in text.splitlines():
        m = re.match(r"\s*([A-Z]+)\s+(.*)", line)
        if m:
            out.append((m.group(1), m.group(2).strip()))
    return out


def needed_packages(binary):
    """Debian packages that provide the non-glibc libraries <binary> links, or None when
    this machine cannot tell (no readelf, ldd or dpkg)."""
    if not all(shutil.which(t) for t in ("readelf", "ldd", "dpkg")):
        return None
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout
    libs = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", binary], capture_output=True, text=True).stdout, re.M))
    pkgs = {}
    for lib in libs:
        if lib.startswith(GLIBC):
            continue
        path = os.path.realpath(paths.get(lib, lib))
        out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True).stdout
        if not out:
            out = subprocess.run(["dpkg", "-S", paths.get(lib, lib)], capture_output=True,
                                 text=True).stdout
        pkgs[lib] = out.split(":", 1)[0] if out else None
    return pkgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--sniroute", required=True)
    args = ap.parse_args()
    src = args.source_dir
    problems = []

    with open(os.path.join(src, "etc/container/Containerfile")) as f:
        ins = instructions(f.read())
    froms = [i for i, (op, _) in enumerate(ins) if op == "FROM"]
    if len(froms) != 2:
        problems.append("want two stages, found %d" % len(froms))
        froms = froms[:1] + [len(ins)]
    for i in froms[:2]:
        if i < len(ins) and not ins[i][1].startswith("debian:12-slim"):
            problems.append("FROM %s: want debian:12-slim" % ins[i][1])
    runtime = ins[froms[-1]:]

    for op, arg in ins:
        if op == "COPY" and not arg.startswith("--from"):
            for path in arg.split()[:-1]:
                if not os.path.exists(os.path.join(src, path)):
                    problems.append("COPY %s: no such path in the source tree" % path)

    installed = []
    for op, arg in runtime:
        m = re.search(r"apt-get install (.*?)(?:&&|$)", arg) if op == "RUN" else None
        if m:
            installed += [w for w in m.group(1).split() if not w.startswith("-")]
    # libssl3 for libcrypto: the QUIC Initial keys (HKDF, AES); libbpf1: the kernel relay.
    if installed != ["libuv1", "libinih1", "libssl3", "libbpf1"]:
        problems.append("runtime packages %s, want libuv1 libinih1 libssl3 libbpf1" % installed)
    if shutil.which("apt-cache"):
        for pkg in installed:
            proc = subprocess.run(["apt-cache", "show", pkg], capture_output=True, text=True)
            if proc.returncode != 0 or "Package: %s" % pkg not in proc.stdout:
                problems.append("apt-cache show %s: not a Debian package here" % pkg)
    pkgs = needed_packages(args.sniroute)
    if pkgs is None:
        print("readelf/ldd/dpkg missing: library coverage not checked")
    else:
        for lib, pkg in sorted(pkgs.items()):
            if pkg not in installed:
                problems.append("the binary links %s (package %s), not installed at runtime"
                                % (lib, pkg))
        print("runtime libraries: %s" % ", ".join("%s from %s" % kv for kv in sorted(pkgs.items())))

    last = {}
    config_dest = None
    for op, arg in runtime:
        last[op] = arg
        if op == "COPY" and arg.split()[0].endswith(".ini"):
            config_src, config_dest = arg.split()
    user = last.get("USER", "0").split(":")[0]
    if not user.isdigit() or int(user) == 0:
        problems.append("USER %r: want a numeric non-root user" % last.get("USER"))
    if json.loads(last.get("ENTRYPOINT", "null")) != ["/usr/sbin/sniroute"]:
        problems.append("ENTRYPOINT %r" % last.get("ENTRYPOINT"))
    cmd = json.loads(last.get("CMD", "null"))
    if config_dest is None or cmd != ["-c", config_dest]:
        problems.append("CMD %r does not name the copied config %s" % (cmd, config_dest))
    if last.get("STOPSIGNAL") != "SIGTERM":
        problems.append("STOPSIGNAL %r" % last.get("STOPSIGNAL"))
    if config_dest is not None:
        path = os.path.join(src, config_src)
        proc = subprocess.run([args.sniroute, "-t", "-c", path], capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append("%s: sniroute -t:\n%s" % (config_src, proc.stderr))
        with open(path) as f:
            ports = set(re.findall(r"^\s*(?:listen|admin)\s*=\s*\S+:(\d+)", f.read(), re.M))
        exposed = set(last.get("EXPOSE", "").split())
        if ports != exposed:
            problems.append("EXPOSE %s, but the config uses ports %s"
                            % (sorted(exposed), sorted(ports)))

    for p in problems:
        print(p)
    print("Containerfile: %d problem(s)" % len(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
