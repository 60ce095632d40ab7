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

/* `sniroute peek --quic [FILE]`: read datagrams from <path> (NULL or "-": stdin) in the
 * fixtures' format (test/fixtures/quic: each a 2-byte big-endian length, then its bytes),
 * feed them in turn to the QUIC Initial reader as the daemon does for one client (a refused
 * datagram is dropped and the next one read; once decided, the rest are not read) and print
 * one line per datagram, then the status, the QUIC version, Destination Connection ID,
 * Initial packets and CRYPTO bytes, and for a complete ClientHello its server name, ALPN,
 * versions, length and ECH presence. Returns 0 for found and no_sni, 1 for any other
 * status, 2 if the input could not be read or is not in that format. */
int sr_peek_quic_run(const char *path, FILE *out, FILE *err);

#endif
