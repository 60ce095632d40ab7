/* SPDX-License-Identifier: MIT */
/* Private to the self-test (src/cmd/selftest.c, selftest_quic.c, selftest_util.c): no other
 * module includes it. The parsed command line, the helpers both transports use
 * (selftest_util.c: the clock, random bytes, --only, TLS alert names and the hints under
 * the table), and the --quic half's entry (selftest_quic.c). */
#ifndef SR_SELFTEST_INT_H
#define SR_SELFTEST_INT_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sr__selftest_opts {
    const char *target; /* HOST:PORT */
    const char *name;
    const char *alpn; /* NULL: none (TCP), h3 (QUIC) */
    const char *only; /* comma-separated case names, or NULL: all */
    int timeout_ms;
    bool is_quic;
};

/* CLOCK_MONOTONIC in milliseconds, and what is left of it until <deadline> (0 if past). */
uint64_t sr__selftest_now_ms(void);
int sr__selftest_ms_left(uint64_t deadline);

/* Fill <p>/<n> from getrandom(2); false (errno set) if it fails. */
bool sr__selftest_random(void *p, size_t n);

/* Whether case <name> is in the --only list <only> (NULL: every case is). */
bool sr__selftest_selected(const char *only, const char *name);

/* The name of TLS alert description <d> (RFC 8446 6), "unknown" for others. */
const char *sr__selftest_alert_name(uint8_t d);

/* One line per distinct hint: "  case, case: hint", naming the cases it explains, in case
 * order. <hints>[i] is the hint for case <names>[i], or NULL (reached, or not run). Hints
 * are static strings, compared by address. */
void sr__selftest_hints(FILE *out, const char *const *names, const char *const *hints, size_t n);

/* The --quic half: run the QUIC cases of <*opt> against <ai> (resolved for UDP), print the
 * table and hints to <out>, setup errors to <err>. Returns the command's exit status. */
int sr__selftest_quic(const struct sr__selftest_opts *opt, const struct addrinfo *ai, FILE *out,
                      FILE *err);

#endif
