#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every example config in etc/examples/ must pass `sniroute -t`. An account named by
`user =` may not exist on the test machine, so it is checked as `nobody`; everything
else is checked as written.

    check_examples.py --source-dir DIR --sniroute PATH
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--sniroute", required=True)
    args = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(args.source_dir, "etc", "examples", "*.ini")))
    if not paths:
        print("FAIL examples: no etc/examples/*.ini")
        sys.exit(1)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            with open(path) as f:
                text = re.sub(r"(?m)^user = \S+", "user = nobody", f.read())
            copy = os.path.join(tmp, os.path.basename(path))
            with open(copy, "w") as f:
                f.write(text)
            r = subprocess.run([args.sniroute, "-t", "-c", copy], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            name = os.path.basename(path)
            if r.returncode == 0:
                print("PASS %s" % name)
            else:
                print("FAIL %s: %s" % (name, r.stdout.decode(errors="replace").strip()))
                failed += 1
    print("%d passed, %d failed" % (len(paths) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
