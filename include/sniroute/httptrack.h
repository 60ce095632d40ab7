/* SPDX-License-Identifier: MIT */
/* Request boundaries on the client-to-server direction of an HTTP/1.x connection: which
 * bytes belong to a request head (held back until it is complete and the caller has
 * accepted it), which to a body (passed through, Content-Length or chunked), and where the
 * stream stops being HTTP (Upgrade, CONNECT: passed through from then on). This is what
 * lets an HTTP listener refuse a keep-alive request for a host its backend was not chosen
 * for. Pure: no I/O; it allocates only the caller's growable output and its head buffer. */
#ifndef SR_HTTPTRACK_H
#define SR_HTTPTRACK_H

#include <stddef.h>
#include <stdint.h>

#include "sniroute/http.h"

/* A growable byte buffer, owned by whoever holds it (free .p). */
struct sr_bytes {
    uint8_t *p;
    size_t len;
    size_t cap;
};

/* Decides on each complete request head: 0 to forward it, anything else to stop. */
typedef int (*sr_track_head_fn)(void *ctx, const struct sr_http_head *head);

enum sr_track_result {
    SR_TRACK_OK = 0,    /* everything fed was consumed; forward what is in <out> */
    SR_TRACK_STOP,      /* the callback refused a head (out holds what came before it) */
    SR_TRACK_BAD,       /* not HTTP any more: a broken head or chunk framing */
    SR_TRACK_TOO_LARGE, /* a head (or a chunk line, or trailers) over the limit */
    SR_TRACK_NOMEM,
};

struct sr_http_track {
    int state;
    uint64_t remaining; /* body or chunk bytes still to pass */
    uint64_t chunk_size;
    size_t n_size_digits;
    size_t line_len;   /* of the chunk-size line or trailer line being read */
    size_t trailer_len;
    struct sr_bytes head; /* a head split across feeds, gathered; freed once passed on, so
                             nothing is held between requests */
    size_t head_max;
    unsigned n_crlf;   /* how much of "\r\n\r\n" ends the gathered bytes */
    struct sr_http_head last; /* the last head accepted (its views are only valid during
                                 the callback: the bytes are not kept) */
    sr_track_head_fn on_head;
    void *ctx;
};

/* Start tracking at the beginning of a request; heads longer than <head_max> are refused. */
void
sr_http_track_init(struct sr_http_track *t, size_t head_max, sr_track_head_fn on_head,
                   void *ctx);

/* Free the head buffer. */
void
sr_http_track_fini(struct sr_http_track *t);

/* Feed <n> bytes from the client; append the bytes to forward to <out>, in order. Stops at
 * the first refusal or error (the bytes before it are in <out>). A head that lies whole in
 * <in> is parsed there; only one cut by the end of <in> is copied, until its end arrives. */
enum sr_track_result
sr_http_track_feed(struct sr_http_track *t, const uint8_t *in, size_t n, struct sr_bytes *out);

#endif
