/* SPDX-License-Identifier: MIT */
/* Log lines: the access log (one line per connection, written when it ends) and the
 * daemon's own notices on stderr. Formatting is kept apart from the proxy so it can be
 * tested alone; values reaching a line are already validated (host names are LDH only). */
#ifndef SR_LOG_H
#define SR_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Everything one access-log line says. Strings are NUL-terminated and borrowed for the
 * duration of the call; NULL or "" prints as "-". */
struct sr_access_record {
    int64_t time_ms;       /* wall clock at the end, ms since the epoch */
    const char *listener;  /* listener section name */
    const char *client;    /* "ip:port" or "[ip6]:port" */
    const char *sni;       /* normalized server name, or NULL when the hello had none */
    const char *route;     /* "exact", "wildcard", "default" or "none" */
    const char *upstream;  /* as configured, "host:port" */
    uint64_t bytes_in;     /* client to upstream, the hello included */
    uint64_t bytes_out;    /* upstream to client */
    uint64_t duration_ms;
    const char *outcome;   /* "ok", "no_route", ... (see README) */
    const char *detail;    /* optional: a parser reason or a libuv error name */
    bool has_ech;          /* the hello carried Encrypted Client Hello: "ech=1" */
    const char *alpn_route; /* the ALPN condition of the route taken, or NULL: "alpn=..." */
    /* The access rule that refused the client (outcome "denied"), or NULL: "rule=..." after
     * alpn, e.g. "rule=listener:https:deny:203.0.113.0/24" (access.h's labels). */
    const char *rule;
    /* A QUIC flow: datagrams each way, "dgrams_in=N dgrams_out=M" after bytes_out. */
    bool has_dgrams;
    uint64_t dgrams_in;  /* client to upstream */
    uint64_t dgrams_out; /* upstream to client */
};

/* Format <rec> as one line, newline included, into <out> of <cap> bytes. Returns the length
 * written; a line that would not fit is cut short and still ends with a newline. */
size_t
sr_log_format_access(char *out, size_t cap, const struct sr_access_record *rec);

/* Format <rec> as one JSON object (RFC 8259) and a newline into <out> of <cap> bytes, with the
 * keys of the text line in the same order: time, listener, client, sni, route, upstream,
 * bytes_in, bytes_out, (for a QUIC flow) dgrams_in, dgrams_out, duration_ms, outcome, detail
 * (then "ech", "alpn" and "rule" only when set). Every key is always there; a missing
 * string (NULL or "") is null, never "-"; numbers are JSON integers. Strings are escaped per
 * RFC 8259 section 7: '"', '\\' and control bytes (as \n, \t... or \u00XX); a byte that is
 * not part of valid UTF-8 becomes \ufffd, so the line is valid JSON whatever the input.
 *
 * Returns the length written (newline included, NUL not counted). When the object would not
 * fit, the string values are cut (never inside an escape or a UTF-8 sequence) so that it does
 * and it stays valid JSON; if even the object with empty strings does not fit, nothing is
 * written and 0 is returned (<out> is then "" when <cap> > 0). A record of validated values
 * (LDH names, addresses, the README's outcomes) always fits in 1024 bytes. */
size_t
sr_log_format_access_json(char *out, size_t cap, const struct sr_access_record *rec);

/* Write an ISO 8601 UTC timestamp with milliseconds ("2026-11-22T11:00:00.123Z") for
 * <time_ms> into <out> (at least 25 bytes). Returns its length. */
size_t
sr_log_format_time(char *out, size_t cap, int64_t time_ms);

/* How many of the <len> bytes of whole lines at <buf> to write next so that a write of at
 * most <max> bytes never ends inside a line: the longest prefix of at most <max> bytes that
 * ends with '\n'; if the first line alone is longer than <max>, that line whole (the caller
 * writes it by itself); if no '\n' at all, <len>. 0 only when <len> is 0. Pure. */
size_t
sr_log_cut(const char *buf, size_t len, size_t max);

/* The daemon's notices: "sniroute: " + the message + newline, to stderr, in one write(2)
 * (no stdio lock, and at most 1024 bytes, so lines from several threads never mix). */
void
sr_log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
