#!/bin/sh
# SPDX-License-Identifier: MIT
# Run a command in a private network namespace with only a loopback interface, so a test
# that needs fixed ports cannot collide with anything else on the machine. Exits 77 (a
# CTest skip) where namespaces are not allowed (not root, or a restricted container).
unshare -n true 2>/dev/null || { echo "in_netns: unshare -n not permitted; skipping"; exit 77; }
exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
