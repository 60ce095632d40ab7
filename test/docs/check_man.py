#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Keep the manual pages right and in step with the code.

1. doc/sniroute.8 and doc/sniroute.ini.5 render with `groff -man -Tutf8 -ww -z` without a
   single warning (and with `mandoc -Tlint` too, where mandoc is installed).
2. Every key of the keyword table in src/config/config_keys.c (`keywords[]`, parsed from the source)
   has its own entry in sniroute.ini.5 under its section's heading, and appears in the
   README's config reference under its section: a key added to the code without docs
   fails here.
3. With --sniroute, the example configuration in sniroute.ini.5 passes `sniroute -t`.
4. The check itself can fail: it is run again on a copy of the keyword table with an extra
   key, and on a copy of the manual page with a key taken out; both must be refused.

Usage: check_man.py --source-dir DIR [--sniroute PATH]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

PAGES = ("doc/sniroute.8", "doc/sniroute.ini.5")
KEYWORDS_SRC = "src/config/config_keys.c"  # the config loader's keyword table


def render_warnings(path):
    """Every warning groff (and mandoc, if installed) has about <path>, as lines."""
    problems = []
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", path],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or proc.stderr.strip():
        problems.append("groff (exit %d): %s" % (proc.returncode, proc.stderr.strip()))
    if shutil.which("mandoc"):
        proc = subprocess.run(
            ["mandoc", "-Tlint", "-W", "warning", path], capture_output=True, text=True
        )
        out = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or out:
            problems.append("mandoc -Tlint (exit %d): %s" % (proc.returncode, out))
    return problems


def parse_keywords(config_c):
    """[(section, key)] from `keywords[]` in config_keys.c; section is the SEC_ suffix in lower
    case ("sniroute", "listener", ...). Catch-all entries (key NULL) are skipped."""
    m = re.search(r"struct\s+keyword\s+keywords\s*\[\s*\]\s*=\s*\{(.*?)\n\};", config_c, re.S)
    if m is None:
        raise SystemExit("check_man: cannot find `keywords[]` in %s" % KEYWORDS_SRC)
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    entries = re.findall(r"\{\s*SEC_([A-Z_]+)\s*,\s*(\"[^\"]*\"|NULL)\s*,", body)
    keys = [(sec.lower(), key.strip('"')) for sec, key in entries if key != "NULL"]
    if len(keys) < 10:
        raise SystemExit("check_man: found only %d keys in keywords[]; parser out of date?"
                         % len(keys))
    return keys


def man_entries(page_text):
    """{section: set of keys} for sniroute.ini.5: a key is documented when a tagged
    paragraph (.TP) under `.SH THE [section ...] SECTION` starts with it."""
    entries = {}
    section = None
    lines = page_text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\.SH\s+\"?THE \[(\w+)[^\]]*\] SECTION", line)
        if m:
            section = m.group(1)
            entries.setdefault(section, set())
            continue
        if line.startswith(".SH"):
            section = None
            continue
        if section and line.startswith(".TP") and i + 1 < len(lines):
            m = re.match(r"\.B[IR]?\s+(\w+)", lines[i + 1])
            if m:
                entries[section].add(m.group(1))
    return entries


def readme_entries(readme_text):
    """{section: set of keys} from the README's "Config reference" example block."""
    m = re.search(r"^Config reference\n-+\n(.*?)(?=^\S[^\n]*\n-{3,}\n)", readme_text, re.S | re.M)
    if m is None:
        raise SystemExit("check_man: no 'Config reference' section in README")
    entries = {}
    section = None
    for line in m.group(1).splitlines():
        s = re.match(r"\s+\[(\w+)[^\]]*\]", line)
        if s:
            section = s.group(1)
            entries.setdefault(section, set())
            continue
        k = re.match(r"\s+([\w*.-]+)\s*=", line)
        if section and k:
            entries[section].add(k.group(1))
    return entries


def missing_keys(keys, entries, where):
    return [
        "%s: key '%s' of [%s] (%s keywords[]) is not documented" % (where, key, sec, KEYWORDS_SRC)
        for sec, key in keys
        if key not in entries.get(sec, set())
    ]


def man_example(page_text):
    """The INI text of the first .EX block under .SH EXAMPLES, groff escapes undone."""
    m = re.search(r"^\.SH EXAMPLES\n.*?^\.EX\n(.*?)^\.EE", page_text, re.S | re.M)
    if m is None:
        raise SystemExit("check_man: no example configuration in sniroute.ini.5")
    return m.group(1).replace("\\-", "-").replace("\\(aq", "'").replace("\\e", "\\")


def check_example(sniroute, text):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "example.ini")
        with open(path, "w") as f:
            f.write(text)
        proc = subprocess.run([sniroute, "-t", "-c", path], capture_output=True, text=True)
        if proc.returncode != 0:
            return ["sniroute.ini.5 EXAMPLES: sniroute -t says:\n" + proc.stderr]
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--sniroute")
    args = ap.parse_args()
    src = args.source_dir

    def read(rel):
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            return f.read()

    problems = []
    for page in PAGES:
        problems += ["%s: %s" % (page, p) for p in render_warnings(os.path.join(src, page))]

    config_c = read(KEYWORDS_SRC)
    ini5 = read("doc/sniroute.ini.5")
    readme = read("README")
    keys = parse_keywords(config_c)
    man = man_entries(ini5)
    doc = readme_entries(readme)
    problems += missing_keys(keys, man, "doc/sniroute.ini.5")
    problems += missing_keys(keys, doc, "README config reference")
    if args.sniroute:
        problems += check_example(args.sniroute, man_example(ini5))

    # The check must be able to fail: a key the docs do not know, and a key taken out of
    # the manual page, must both be caught.
    extra = config_c.replace(
        "static const struct keyword keywords[] = {",
        "static const struct keyword keywords[] = {\n"
        '    {SEC_SNIROUTE, "frobnicate_timeout", set_duration, 0, false},',
        1,
    )
    if not missing_keys(parse_keywords(extra), man, "self-test"):
        problems.append("self-test: an undocumented key in keywords[] was not caught")
    sec, key = keys[0]
    cut = re.sub(r"^\.TP\n\.B[IR]? %s\b.*$" % re.escape(key), ".TP\n.B gone", ini5, flags=re.M)
    if cut == ini5 or not missing_keys(keys, man_entries(cut), "self-test"):
        problems.append("self-test: removing '%s' from sniroute.ini.5 was not caught" % key)

    for p in problems:
        print(p)
    print("%d keys checked in sniroute.ini.5 and README; %d problem(s)" % (len(keys), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
