/* SPDX-License-Identifier: MIT */
/* Request boundaries on the client-to-server direction of an HTTP/1.x connection: which
 * bytes belong to a request head (held back until it is complete and the caller has
 * accepted it), which to a body (passed through, Content-Length or chunked), and where the
 * stream stops being HTTP. That last one is the backend's to say, not the client's: an
 * Upgrade or CONNECT request is forwarded, then nothing more until the response reader
 * (httpresp.h, fed the backend's bytes through sr_http_track_response()) has seen its
 * answer; only a 101 to the Upgrade or a 2xx to the CONNECT makes the connection a
 * tunnel (passed through from then on), anything else leaves the next head checked. This
 * is what lets an HTTP listener refuse a keep-alive request for a host its backend was not
 * chosen for. Pure: no I/O; it allocates only the caller's growable output, its head
 * buffer, and the client bytes it holds back while it waits for an answer. */
#ifndef SR_HTTPTRACK_H
#define SR_HTTPTRACK_H

#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/http.h"
#include "sniroute/wire/httpresp.h"

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
    /* An Upgrade or CONNECT whose answer cannot be told: the backend's responses could not
     * be followed (httpresp.h's LOST) before it, or up to its answer. */
    SR_TRACK_UNDECIDABLE,
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
    /* Client bytes fed while holding (see sr_http_track_is_holding), passed on first once
     * the answer has come; freed when they have gone. */
    struct sr_bytes held;
    struct sr_http_resp resp; /* the backend's responses, matched to the requests */
};

/* Start tracking at the beginning of a request; heads longer than <head_max> are refused. */
void
sr_http_track_init(struct sr_http_track *t, size_t head_max, sr_track_head_fn on_head,
                   void *ctx);

/* Free the head buffer and the bytes held. */
void
sr_http_track_fini(struct sr_http_track *t);

/* Feed <n> bytes from the client (<in> may be NULL when <n> is 0: pass on what was held);
 * append the bytes to forward to <out>, in order. Stops at the first refusal or error (the
 * bytes before it are in <out>). A head that lies whole in <in> is parsed there; only one
 * cut by the end of <in> is copied, until its end arrives. Bytes that come while holding
 * are kept, not forwarded: they go out, or are checked, on a later call once the answer
 * has come. A CONNECT with a body is BAD (RFC 9110 9.3.6: CONNECT has no content, so a
 * backend could read those bytes as the next request), and an Upgrade or CONNECT after the
 * responses were LOST is UNDECIDABLE. */
enum sr_track_result
sr_http_track_feed(struct sr_http_track *t, const uint8_t *in, size_t n, struct sr_bytes *out);

/* True while the tracker waits for the backend: an Upgrade or CONNECT has been forwarded
 * whole and its final status not read yet, or SR_HTTP_RESP_PENDING_MAX requests await
 * their responses. The caller stops reading the client meanwhile (what it feeds anyway is
 * held), and feeds again, with <n> 0 if it has nothing new, once this turns false. */
bool
sr_http_track_is_holding(const struct sr_http_track *t);

/* Scan <n> bytes the backend sent (all of them, in order; they are forwarded unchanged)
 * with the response reader. Returns UNDECIDABLE if the responses could not be followed
 * while an Upgrade or CONNECT awaited its answer (refuse the connection), else OK. */
enum sr_track_result
sr_http_track_response(struct sr_http_track *t, const uint8_t *in, size_t n);

/* Still reading responses: the backend's bytes must go through sr_http_track_response().
 * False once the connection is a tunnel or the responses are LOST: nothing is matched any
 * more, and the bytes may pass unread. */
bool
sr_http_track_reads_responses(const struct sr_http_track *t);

/* Every request forwarded has had its whole response and the responses are still
 * followed: an answer of the caller's own (a 421) can go to the client now. */
bool
sr_http_track_is_answered(const struct sr_http_track *t);

#endif
