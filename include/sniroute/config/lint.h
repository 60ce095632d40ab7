/* SPDX-License-Identifier: MIT */
/* Lint for `sniroute -t`: things a valid config allows but that are almost surely not what
 * was meant. Each finding is a warning, "FILE:LINE: warning: what (hint: what to do)":
 *
 * - redundant route: removing it would change no routing decision, because the route that
 *   would take its names instead (a wider wildcard, or the default, of the same table)
 *   sends them to the same upstream. "*.example.com" and "*.b.example.com" with different
 *   upstreams is normal and not reported.
 * - redundant ALPN route: an exact "NAME[PROTO]" whose plain route goes to the same
 *   upstream, where no other conditioned route could match NAME instead.
 * - ALPN routes that never match: NAME[PROTO] in a section only protocol = http listeners
 *   use (they route by Host, without ALPN).
 * - wildcard without its apex: "*.example.com" does not match "example.com", and nothing
 *   else routes it (no exact entry, no wider wildcard, no default).
 * - a [routes] section no listener uses; an [upstream] no route or fallback names.
 * - an upstream host name that does not resolve (only with a resolver, see below).
 * - allow and deny lines (access.h) that never take effect: an allow inside a deny of the
 *   same section (deny always wins), a range listed twice, a range inside a broader one of
 *   the same kind, a deny beside allow lines none of which admits any of its addresses.
 *   Rules on an upstream no route names are no finding of their own.
 *
 * Duplicates after case folding or trailing-dot removal are load errors (config_routes.c), not
 * lint. Cost: O(n log n) in the number of routes; host names are resolved only when there
 * are at most a bound of them. Pure apart from the resolver the caller passes. */
#ifndef SR_LINT_H
#define SR_LINT_H

#include <stddef.h>
#include <stdio.h>

#include "sniroute/config/config.h"

/* Default bound on distinct upstream host names to resolve; beyond it a note says so. */
#define SR_LINT_RESOLVE_MAX 1000

enum sr_lint_severity {
    SR_LINT_WARNING = 0, /* counted; --strict makes it an error */
    SR_LINT_NOTE,        /* information about the lint itself (a check skipped) */
};

/* Receives one finding, formatted "FILE:LINE: warning: ..." or "FILE: note: ..." (no
 * newline), valid only during the call. */
typedef void (*sr_lint_fn)(void *ctx, enum sr_lint_severity severity, const char *msg);

/* Resolve <n> distinct host names; set <why>[i] to NULL when hosts[i] resolves, else to a
 * static English reason. Called at most once per run, with every name at once, so an
 * implementation may resolve them concurrently. */
typedef void (*sr_lint_resolve_fn)(void *ctx, const char *const *hosts, size_t n, const char **why);

struct sr_lint_options {
    sr_lint_resolve_fn resolve; /* NULL: host names are not checked */
    void *resolve_ctx;
    size_t max_resolve; /* 0: SR_LINT_RESOLVE_MAX */
};

/* Lint <cfg>, which loaded without problems from <path>. Findings go to <on_msg> in line
 * order. Returns the number of warnings (notes do not count). */
size_t sr_lint_run(const struct sr_config *cfg, const char *path, const struct sr_lint_options *opt,
                   sr_lint_fn on_msg, void *ctx);

/* The resolver `sniroute -t` uses waits this long in all. */
#define SR_LINT_RESOLVE_TIMEOUT_MS 5000u

/* Both below live in src/cmd/lintdns.c, outside the pure library. */

/* A resolver for sr_lint_options: getaddrinfo for all names at once (a few threads of
 * its own), waiting at most *(const unsigned *)<ctx> milliseconds in all (<ctx> NULL:
 * SR_LINT_RESOLVE_TIMEOUT_MS); a name without an answer by then is reported as such. */
void sr_lint_resolve_system(void *ctx, const char *const *hosts, size_t n, const char **why);

/* `sniroute -t`: lint <cfg> with that resolver, every finding a line on <out>. Returns the
 * number of warnings. */
size_t sr_lint_print(const struct sr_config *cfg, const char *path, FILE *out);

#endif
