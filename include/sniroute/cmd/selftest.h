/* SPDX-License-Identifier: MIT */
/* `sniroute selftest HOST:PORT NAME`: send real ClientHellos for NAME to a deployed TLS path
 * (cloud load balancer, sniroute, backend), one TCP connection per case, cut the hard ways
 * (see sniroute/hellogen.h), and report which ones reach a TLS server: a ServerHello or
 * HelloRetryRequest comes back. A client for operators, with blocking-style sockets and
 * poll(2) timeouts; it never completes a handshake and needs no TLS library. */
#ifndef SR_SELFTEST_H
#define SR_SELFTEST_H

#include <stdio.h>

/* Run the command: <argv>[0] is "selftest", then options (--timeout DURATION, --alpn LIST,
 * --only CASE[,CASE...]) and HOST:PORT NAME in any order. Prints one table row per case to
 * <out>, usage and setup errors to <err>. Returns 0 if every case reached a server, 1 if any
 * did not, 2 on a usage error or when HOST does not resolve. */
int sr_selftest_main(int argc, char **argv, FILE *out, FILE *err);

#endif
