/* SPDX-License-Identifier: MIT */
/* The first bytes of a TCP connection: read what the client sends (a PROXY header first
 * if the listener expects one, then a ClientHello or an HTTP request head), ask the
 * routing decision (config/decide.h) where it goes, and say so. It neither connects nor
 * answers nor closes: the result tells the caller (conn.c) what to do. */
#ifndef SR_INTAKE_H
#define SR_INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/proxy/conn_types.h"

enum sr_intake_step {
    SR_INTAKE_WAIT,        /* nothing to do until more bytes come */
    SR_INTAKE_CONNECT,     /* routed, or sent to the fallback: connect to upstream <target> */
    SR_INTAKE_REFUSE_TLS,  /* answer with the TLS alert <alert>, then a lingering close */
    SR_INTAKE_REFUSE_HTTP, /* answer with the HTTP error <http_code>, then a lingering close */
    /* protocol = http: the tracker refused the first request before anything could go
     * (conn->http_refused says why): answer as the relay would after responses. */
    SR_INTAKE_HTTP_REFUSED,
    SR_INTAKE_CLOSE, /* close at once with <outcome> (conn->detail may say why) */
};

struct sr_intake_result {
    enum sr_intake_step step;
    const char *outcome;     /* REFUSE_TLS, REFUSE_HTTP, CLOSE */
    size_t target;           /* CONNECT: index into the generation's upstreams */
    uint8_t alert;           /* REFUSE_TLS: SR_TLS_ALERT_* */
    uint16_t http_code;      /* REFUSE_HTTP: 400, 403 or 421 */
    uint16_t record_version; /* REFUSE_TLS: the alert record's version; 0: 0x0303 */
};

/* The first deadline of a new connection, in ms from now: hello_timeout, or
 * fallback_timeout if that is sooner (the caller moves it on for the rest of
 * hello_timeout once the client has spoken). */
uint64_t sr_intake_timeout_ms(const struct sr_conn *conn);

/* The client's socket is readable (state SR_CONN_HELLO): read what it sent and look at
 * everything so far, parsing again only once the parser's need-more count has come.
 * Counts the hello's metrics, and the routing decision's. */
struct sr_intake_result sr_intake_read(struct sr_conn *conn);

/* Not TLS or not HTTP, or silent past fallback_timeout: when the listener's decision for
 * that is its fallback, mark <conn> as sent there and return true with <*target> set (the
 * caller connects, and the bytes so far go out unmodified); false when it has none. */
bool sr_intake_fallback(struct sr_conn *conn, size_t *target);

/* The connection has to wait (for more bytes, a resolver, a connect) while the bytes
 * read so far are only in the worker's scratch buffer, which the next connection reuses:
 * copy them into a buffer of the connection's own, read into from then on. Returns false
 * when out of memory (conn->detail set: the caller closes with "error"). */
bool sr_intake_keep(struct sr_conn *conn);

#endif
