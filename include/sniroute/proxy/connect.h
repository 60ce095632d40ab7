/* SPDX-License-Identifier: MIT */
/* Connecting a TCP connection to its upstream: a pool's server chosen (and the next one
 * on failure, within the same connect_timeout), a name resolved (libuv's resolver) and
 * each of its addresses tried in turn, then the first bytes sent ([our PROXY header][what
 * the client sent so far]) right after the non-blocking connect. It never closes the
 * connection: each call says what comes next, and conn.c does it. */
#ifndef SR_CONNECT_H
#define SR_CONNECT_H

#include <stddef.h>

#include "sniroute/proxy/conn_types.h"

/* What connecting says to do next. */
enum sr_connect_step {
    SR_CONNECT_WAIT,          /* resolving, or waiting for the socket to be writable */
    SR_CONNECT_RELAY,         /* the first bytes are out: start the relay */
    SR_CONNECT_CLOSE,         /* failed: close with <outcome> (conn->detail says why) */
    SR_CONNECT_BACKEND_RESET, /* the backend failed after some bytes went out (detail):
                                 close with "backend_reset", passing the reset on to the
                                 client */
};

struct sr_connect_result {
    enum sr_connect_step step;
    const char *outcome; /* SR_CONNECT_CLOSE */
};

/* The resolver answered, or was cancelled (conn->is_resolving is false again): if <conn>
 * closed meanwhile, <r> means nothing and the callee frees it; else <r> says what next. */
typedef void (*sr_connect_fn)(struct sr_conn *conn, struct sr_connect_result r);

/* Connect <conn> to upstream <index> of its generation (counted as selected in the
 * metrics): its one address, or a server of its pool. <on_done> gets what comes after a
 * resolver's answer. The caller has set the connect_timeout deadline. */
struct sr_connect_result sr_connect_upstream(struct sr_conn *conn, size_t index,
                                             sr_connect_fn on_done);

/* The backend's socket is writable (state SR_CONN_CONNECTING): the connect is over one way
 * or the other; send what is left of the first bytes, or try the next address. */
struct sr_connect_result sr_connect_writable(struct sr_conn *conn);

/* The upstream as the log shows it ("host:port", "pool/host:port" for the server of a
 * pool tried last; as received for an adopted connection) into <out> of <cap> bytes; ""
 * for none. */
void sr_connect_upstream_text(const struct sr_conn *conn, char *out, size_t cap);

/* The upstream's metrics label (as sr_generation_prepare names it: the pool's name, or
 * "host:port"), into <out>; "" for none. */
void sr_connect_upstream_label(const struct sr_conn *conn, char *out, size_t cap);

#endif
