#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The layers of src/ and include/sniroute/, checked (ARCHITECTURE.md says what they are).

Every source file lives in a layer folder: src/LAYER/NAME.c, include/sniroute/LAYER/NAME.h.
A module NAME is its .c and its .h. This fails when:
- a file includes the header of a higher layer (wire < config < observe < core < proxy
  < cmd: calls go only to the same or a lower row);
- a wire or config file includes libuv or a socket header (they stay pure);
- the modules of one layer include each other in a cycle (the connection path had one);
- a file lies outside the layer folders.

  check_layers.py [--root DIR]            check; exit 1 with one line per problem
  check_layers.py --graph                 also print the module include graph
  check_layers.py --stats                 also print the largest files and the sr__ names
                                          used outside the file that defines them
"""
import argparse
import os
import re
import sys

LAYERS = ["wire", "config", "observe", "core", "proxy", "cmd"]
PURE = {"wire", "config"}
# Types such as sockaddr_storage are fine in a pure module; calls into the event loop, the
# kernel's file descriptors or the resolver are not.
IMPURE_HEADERS = re.compile(r"#include <(uv\.h|netdb\.h|sys/epoll\.h|unistd\.h|fcntl\.h)>")
INCLUDE = re.compile(r'#include "sniroute/([a-z]+)/([a-z_0-9]+)\.h"')


def files(root):
    for top in ("src", "include/sniroute"):
        for dp, _, fn in os.walk(os.path.join(root, top)):
            for f in sorted(fn):
                if f.endswith((".c", ".h")):
                    yield os.path.join(dp, f)


def layer_of(root, path):
    rel = os.path.relpath(path, root).split(os.sep)
    parts = rel[2:] if rel[0] == "include" else rel[1:]
    return parts[0] if len(parts) == 2 and parts[0] in LAYERS else None


def find_cycles(edges):
    """Every elementary cycle's first appearance in a depth-first walk, as a list."""
    cycles, state, stack = [], {}, []

    def walk(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                walk(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            walk(n)
    return cycles


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--graph", action="store_true")
    ap.add_argument("--stats", action="store_true")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    problems = []
    edges = {}  # (layer, module) -> {(layer, module)}
    sizes = []
    defined, used = {}, {}
    for path in files(root):
        rel = os.path.relpath(path, root)
        layer = layer_of(root, path)
        text = open(path, encoding="utf-8").read()
        sizes.append((text.count("\n"), rel))
        if layer is None:
            problems.append("%s: not in a layer folder (%s)" % (rel, ", ".join(LAYERS)))
            continue
        module = (layer, os.path.splitext(os.path.basename(path))[0])
        for lineno, line in enumerate(text.split("\n"), 1):
            m = INCLUDE.search(line)
            if m:
                to_layer, to_module = m.group(1), m.group(2)
                if to_layer not in LAYERS:
                    problems.append("%s:%d: no layer '%s'" % (rel, lineno, to_layer))
                elif LAYERS.index(to_layer) > LAYERS.index(layer):
                    problems.append("%s:%d: %s includes %s/%s.h, a higher layer" %
                                    (rel, lineno, layer, to_layer, to_module))
                if (to_layer, to_module) != module:
                    edges.setdefault(module, set()).add((to_layer, to_module))
            if layer in PURE and IMPURE_HEADERS.search(line):
                problems.append("%s:%d: the %s layer stays pure: %s" %
                                (rel, lineno, layer, line.strip()))
        if path.endswith(".c"):
            for name in set(re.findall(r"^(sr__\w+)\(", text, re.M)):
                defined[name] = rel
            for name in set(re.findall(r"\b(sr__\w+)\b", text)):
                used.setdefault(name, set()).add(rel)
    for layer in LAYERS:
        same = {n: {m for m in e if m[0] == layer} for n, e in edges.items() if n[0] == layer}
        for c in find_cycles(same):
            problems.append("cycle among %s modules: %s" %
                            (layer, " -> ".join(m[1] for m in c)))
    if args.graph:
        for n in sorted(edges, key=lambda m: (LAYERS.index(m[0]), m[1])):
            print("%s/%s -> %s" % (n[0], n[1], " ".join(
                "%s/%s" % m for m in sorted(edges[n], key=lambda m: (LAYERS.index(m[0]), m[1])))))
    if args.stats:
        sizes.sort(reverse=True)
        print("largest files: %s" % ", ".join("%s %d" % (p, n) for n, p in sizes[:5]))
        cross = sorted(n for n, where in used.items()
                       if n in defined and where - {defined[n]})
        print("sr__ names used outside the file that defines them: %d" % len(cross))
        for n in cross:
            print("  %s (%s; used in %s)" % (n, defined[n],
                                              ", ".join(sorted(used[n] - {defined[n]}))))
    for p in problems:
        print(p)
    if problems:
        print("%d problems" % len(problems))
        return 1
    print("layers: ok (%d modules)" % len(edges))
    return 0


if __name__ == "__main__":
    sys.exit(main())
