/* SPDX-License-Identifier: MIT */
/* `sniroute peek [FILE]`: show what the ClientHello parser makes of raw bytes, e.g. a
 * capture from test/fixtures/hello/capture.py. A diagnostic only; it never touches a
 * socket. */
#ifndef SR_PEEK_H
#define SR_PEEK_H

#include <stdio.h>

/* Read up to 256 KiB from the file at <path> (NULL or "-": stdin), parse it as the first
 * bytes of a TLS connection and print the result to <out>, one "key: value" line each: the
 * status, SNI, ALPN protocols, record / legacy / max version, record count, hello length and
 * ECH presence; or the status and why. I/O errors go to <err>. Returns 0 for FOUND and
 * NO_SNI, 1 for any other status, 2 if the input could not be read (or was over 256 KiB). */
int sr_peek_run(const char *path, FILE *out, FILE *err);

#endif
