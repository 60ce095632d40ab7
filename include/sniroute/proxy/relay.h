/* SPDX-License-Identifier: MIT */
/* The relay: once the first bytes have reached the backend, bytes both ways between the
 * two sockets, with backpressure, half-close and, on an HTTP listener, the request tracker
 * and the response reader in the way. It never closes the connection: each call reports
 * what happened, and the caller (conn.c) acts on it. */
#ifndef SR_RELAY_H
#define SR_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "sniroute/proxy/conn_types.h"
#include "sniroute/wire/httptrack.h"

/* What a relay call saw. Anything but SR_RELAY_GOING ends the relay: the caller closes. */
enum sr_relay_result {
    SR_RELAY_GOING,         /* bytes moved or wait: nothing to do */
    SR_RELAY_DONE,          /* both directions passed their FIN on: close ("ok") */
    SR_RELAY_CLIENT_RESET,  /* the client's socket failed (conn->detail says how): close
                               with "client_reset", passing the reset on to the backend */
    SR_RELAY_BACKEND_RESET, /* the backend's socket failed: "backend_reset", passing the
                               reset on to the client */
    SR_RELAY_ERROR,         /* out of memory, or the sockets cannot be watched
                               (conn->detail): close with "error" */
    /* protocol = http: a refused request's turn has come (everything owed to the client
     * before it is written, or nothing more can come): close the backend and end with a
     * lingering close after the answer (conn->http_refusal, already sent if not 0). */
    SR_RELAY_HTTP_REFUSED,
};

/* Start relaying <conn> (state SR_CONN_RELAYING, both sockets connected, the first bytes
 * sent): watch each socket for what its direction waits for. */
enum sr_relay_result sr_relay_start(struct sr_conn *conn);

/* <events> (epoll's) on the client socket (<is_client>) or the backend's: move what the
 * sockets allow, then watch them for what each direction waits for. */
enum sr_relay_result sr_relay_event(struct sr_conn *conn, bool is_client, uint32_t events);

/* The deadline of a relaying connection: a kernel-relayed one (krelay.h) notes the time of
 * its last byte in conn->last_active_ms and may pass on a FIN that waited; <*recheck_ms>
 * (0: none) is when to call again, sooner than the idle timeout. */
enum sr_relay_result sr_relay_tick(struct sr_conn *conn, uint64_t *recheck_ms);

/* Before the log line: a kernel-relayed connection's counts go into the flows' n_bytes. */
void sr_relay_settle(struct sr_conn *conn);

/* Give back the pipes and buffers <conn>'s directions hold (a pipe with bytes in it is
 * closed, not reused), and the tracker's output. Idempotent. */
void sr_relay_release(struct sr_conn *conn);

/* A tracked HTTP connection met a request it must not pass on (<r>: a head for a host
 * routed elsewhere, broken framing, an upgrade that cannot be decided): note why and the
 * answer owed (conn->http_refused, http_refusal) and stop after what came before it
 * (http_stop): the relay drains the responses still owed, answers, and reports
 * SR_RELAY_HTTP_REFUSED. Returns false when <r> is SR_TRACK_NOMEM (conn->detail set: the
 * caller closes with "error"). */
bool sr_relay_http_refuse(struct sr_conn *conn, enum sr_track_result r);

#endif
