/* SPDX-License-Identifier: MIT */
/* HTTP/1.x request boundaries (RFC 9112 section 6 for the body length, 7.1 for chunked
 * coding). Heads are gathered whole and parsed with sr_http_parse_head(): in place when a
 * head lies whole in the bytes fed, else copied into a buffer that is freed as soon as the
 * head is passed on; bodies and chunk framing are passed on byte for byte as they arrive.
 * So memory is one head at most, and none between requests, plus the bytes of one read
 * held back while an Upgrade or CONNECT awaits the backend's answer (the caller does not
 * read the client meanwhile). */
#include "sniroute/wire/httptrack.h"

#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/hex.h"

enum {
    T_HEAD,       /* gathering a request head (empty lines before it pass through) */
    T_BODY,       /* <remaining> bytes of a Content-Length body */
    T_CHUNK_SIZE, /* hex digits of a chunk size */
    T_CHUNK_EXT,  /* chunk extensions, up to CR */
    T_CHUNK_LF,   /* the LF after a chunk-size line */
    T_CHUNK_DATA, /* <remaining> bytes of chunk data */
    T_CHUNK_DATA_CR,
    T_CHUNK_DATA_LF,
    T_TRAILER, /* trailer lines after the last chunk, up to an empty line */
    T_TRAILER_LF,
    T_TUNNEL, /* the backend accepted an Upgrade or CONNECT: not HTTP any more, all passes */
};

/* A chunk-size line or trailer section longer than this is not a real client. */
#define SR_TRACK_LINE_MAX 4096

static int
put(struct sr_bytes *b, const uint8_t *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        uint8_t *grown;

        while (cap < b->len + n) {
            cap *= 2;
        }
        grown = realloc(b->p, cap);
        if (grown == NULL) {
            return -1;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

void
sr_http_track_init(struct sr_http_track *t, size_t head_max, sr_track_head_fn on_head, void *ctx)
{
    memset(t, 0, sizeof(*t));
    t->state = T_HEAD;
    t->head_max = head_max;
    t->on_head = on_head;
    t->ctx = ctx;
    sr_http_resp_init(&t->resp);
}

/* Free the gathered head's buffer: between requests a connection holds none. */
static void
head_release(struct sr_http_track *t)
{
    free(t->head.p);
    memset(&t->head, 0, sizeof(t->head));
}

void
sr_http_track_fini(struct sr_http_track *t)
{
    head_release(t);
    free(t->held.p);
    t->held.p = NULL;
}

/* At the start of a message: wait for the backend before taking the next one? While an
 * Upgrade or CONNECT awaits its answer, the bytes after it are either the new protocol or
 * the next request, and only the answer says which; while the response reader's queue is
 * full, the next request could not be matched. Once the responses are LOST nothing is
 * matched, so nothing waits (an Upgrade is then refused instead). */
static bool
must_wait(const struct sr_http_track *t)
{
    return t->resp.status == SR_HTTP_RESP_FOLLOWING &&
           (sr_http_resp_is_switch_pending(&t->resp) ||
            t->resp.n_pending == SR_HTTP_RESP_PENDING_MAX);
}

bool
sr_http_track_is_holding(const struct sr_http_track *t)
{
    return t->state == T_HEAD && t->head.len == 0 && must_wait(t);
}

bool
sr_http_track_reads_responses(const struct sr_http_track *t)
{
    return t->resp.status == SR_HTTP_RESP_FOLLOWING;
}

bool
sr_http_track_is_answered(const struct sr_http_track *t)
{
    return sr_http_resp_is_idle(&t->resp);
}

enum sr_track_result
sr_http_track_response(struct sr_http_track *t, const uint8_t *in, size_t n)
{
    bool was_pending = sr_http_resp_is_switch_pending(&t->resp);

    if (sr_http_resp_feed(&t->resp, in, n) == SR_HTTP_RESP_LOST && was_pending) {
        return SR_TRACK_UNDECIDABLE;
    }
    return SR_TRACK_OK;
}

static bool
is_method(const struct sr_http_head *h, const char *name)
{
    return h->method.len == strlen(name) && memcmp(h->method.ptr, name, h->method.len) == 0;
}

/* <name> in another case: methods are case-sensitive (RFC 9110 9.1), but a backend that
 * took "head" for HEAD would send no body where the response reader expects one, and a
 * body could then pass for the next response (a fake 101). */
static bool
is_method_other_case(const struct sr_http_head *h, const char *name)
{
    size_t i;

    if (h->method.len != strlen(name) || is_method(h, name)) {
        return false;
    }
    for (i = 0; i < h->method.len; i++) {
        uint8_t c = h->method.ptr[i];

        if ((c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c) != (uint8_t)name[i]) {
            return false;
        }
    }
    return true;
}

/* A head of <len> bytes is complete at <head> (in the caller's bytes, or gathered in
 * t->head): parse it, ask the caller, announce it to the response reader, pass it on, set
 * up the body. */
static enum sr_track_result
head_done(struct sr_http_track *t, const uint8_t *head, size_t len, struct sr_bytes *out)
{
    enum sr_http_switch sw = SR_HTTP_SWITCH_NONE;

    sr_http_parse_head(head, len, &t->last);
    if (t->last.status != SR_HTTP_OK || t->last.head_len != len) {
        return SR_TRACK_BAD;
    }
    if (t->on_head(t->ctx, &t->last) != 0) {
        return SR_TRACK_STOP;
    }
    if (is_method_other_case(&t->last, "HEAD") || is_method_other_case(&t->last, "CONNECT")) {
        return SR_TRACK_BAD;
    }
    if (is_method(&t->last, "CONNECT")) {
        if (t->last.is_chunked || t->last.content_length > 0) {
            return SR_TRACK_BAD;
        }
        sw = SR_HTTP_SWITCH_CONNECT;
    } else if (t->last.is_upgrade) {
        sw = SR_HTTP_SWITCH_UPGRADE;
    }
    if (t->resp.status == SR_HTTP_RESP_FOLLOWING) {
        /* must_wait() kept the queue from being full and held everything after an
         * Upgrade, so the request can always be announced. */
        if (!sr_http_resp_expect(&t->resp, is_method(&t->last, "HEAD"), sw)) {
            return SR_TRACK_UNDECIDABLE;
        }
    } else if (sw != SR_HTTP_SWITCH_NONE) {
        return SR_TRACK_UNDECIDABLE; /* its answer could not be found among the responses */
    }
    if (put(out, head, len) != 0) {
        return SR_TRACK_NOMEM;
    }
    head_release(t);
    t->n_crlf = 0;
    if (t->last.is_chunked) {
        t->state = T_CHUNK_SIZE;
        t->chunk_size = 0;
        t->n_size_digits = 0;
        t->line_len = 0;
    } else if (t->last.has_content_length && t->last.content_length > 0) {
        t->state = T_BODY;
        t->remaining = t->last.content_length;
    } else {
        t->state = T_HEAD;
    }
    return SR_TRACK_OK;
}

/* Feed <n> bytes; <*used> says how many were taken (all of them unless it stops to wait
 * for the backend, or on an error). */
static enum sr_track_result
feed_bytes(struct sr_http_track *t, const uint8_t *in, size_t n, struct sr_bytes *out, size_t *used)
{
    size_t i = 0;

    *used = 0;
    while (i < n) {
        uint8_t c = in[i];
        size_t k;

        if (t->state == T_HEAD && t->head.len == 0) {
            /* Between messages: has the backend switched protocols, or must we wait? */
            if (t->resp.status == SR_HTTP_RESP_TUNNEL) {
                t->state = T_TUNNEL;
            } else if (must_wait(t)) {
                *used = i;
                return SR_TRACK_OK;
            }
        }
        switch (t->state) {
        case T_TUNNEL:
            *used = n;
            return put(out, in + i, n - i) == 0 ? SR_TRACK_OK : SR_TRACK_NOMEM;
        case T_BODY:
        case T_CHUNK_DATA:
            k = n - i < t->remaining ? n - i : (size_t)t->remaining;
            if (put(out, in + i, k) != 0) {
                return SR_TRACK_NOMEM;
            }
            i += k;
            t->remaining -= k;
            if (t->remaining == 0) {
                t->state = t->state == T_BODY ? T_HEAD : T_CHUNK_DATA_CR;
            }
            continue;
        case T_HEAD: {
            enum sr_track_result r;

            if (t->head.len == 0 && (c == '\r' || c == '\n')) {
                /* Empty lines between requests: a server ignores them (RFC 9112 2.2). */
                if (put(out, &c, 1) != 0) {
                    return SR_TRACK_NOMEM;
                }
                i++;
                continue;
            }
            /* Find the CRLF CRLF that ends the head, at most head_max bytes from its start. */
            for (k = 0; i + k < n && t->n_crlf < 4; k++) {
                if (t->head.len + k == t->head_max) {
                    return SR_TRACK_TOO_LARGE;
                }
                c = in[i + k];
                t->n_crlf = (c == (t->n_crlf % 2 == 0 ? '\r' : '\n')) ? t->n_crlf + 1
                            : (c == '\r')                             ? 1
                                                                      : 0;
            }
            if (t->n_crlf < 4 || t->head.len > 0) {
                /* It started in an earlier feed or ends in a later one: gather a copy. */
                if (put(&t->head, in + i, k) != 0) {
                    return SR_TRACK_NOMEM;
                }
            }
            i += k;
            if (t->n_crlf < 4) {
                continue;
            }
            r = t->head.len > 0 ? head_done(t, t->head.p, t->head.len, out)
                                : head_done(t, in + i - k, k, out);
            if (r != SR_TRACK_OK) {
                return r;
            }
            continue;
        }
        default:
            break;
        }

        /* Chunk framing and trailers: one byte at a time, each passed on. */
        if (put(out, &c, 1) != 0) {
            return SR_TRACK_NOMEM;
        }
        i++;
        if (++t->line_len > SR_TRACK_LINE_MAX) {
            return SR_TRACK_TOO_LARGE;
        }
        switch (t->state) {
        case T_CHUNK_SIZE:
            if (sr_hex_value(c) >= 0) {
                /* 15 hex digits: 2^60 bytes, more than any body; refuse wrap-around. */
                if (++t->n_size_digits > 15) {
                    return SR_TRACK_BAD;
                }
                t->chunk_size = t->chunk_size * 16 + (uint64_t)sr_hex_value(c);
            } else if (t->n_size_digits > 0 && (c == ';' || c == ' ' || c == '\t')) {
                t->state = T_CHUNK_EXT;
            } else if (t->n_size_digits > 0 && c == '\r') {
                t->state = T_CHUNK_LF;
            } else {
                return SR_TRACK_BAD;
            }
            break;
        case T_CHUNK_EXT:
            if (c == '\r') {
                t->state = T_CHUNK_LF;
            } else if (c == '\n') {
                return SR_TRACK_BAD;
            }
            break;
        case T_CHUNK_LF:
            if (c != '\n') {
                return SR_TRACK_BAD;
            }
            t->line_len = 0;
            if (t->chunk_size == 0) {
                t->state = T_TRAILER;
                t->trailer_len = 0;
            } else {
                t->state = T_CHUNK_DATA;
                t->remaining = t->chunk_size;
            }
            break;
        case T_CHUNK_DATA_CR:
            if (c != '\r') {
                return SR_TRACK_BAD;
            }
            t->state = T_CHUNK_DATA_LF;
            break;
        case T_CHUNK_DATA_LF:
            if (c != '\n') {
                return SR_TRACK_BAD;
            }
            t->state = T_CHUNK_SIZE;
            t->chunk_size = 0;
            t->n_size_digits = 0;
            t->line_len = 0;
            break;
        case T_TRAILER:
            if (c == '\r') {
                t->state = T_TRAILER_LF;
            } else if (c == '\n') {
                return SR_TRACK_BAD;
            } else if (++t->trailer_len > SR_TRACK_LINE_MAX) {
                return SR_TRACK_TOO_LARGE;
            }
            break;
        case T_TRAILER_LF:
            if (c != '\n') {
                return SR_TRACK_BAD;
            }
            /* An empty line (CRLF right after the previous line) ends the message. */
            t->state = t->line_len == 2 ? T_HEAD : T_TRAILER;
            t->line_len = 0;
            break;
        default:
            return SR_TRACK_BAD;
        }
    }
    *used = n;
    return SR_TRACK_OK;
}

enum sr_track_result
sr_http_track_feed(struct sr_http_track *t, const uint8_t *in, size_t n, struct sr_bytes *out)
{
    enum sr_track_result r;
    size_t used;

    if (t->held.len > 0) {
        /* What came while holding goes first, once the wait is over. */
        if (!sr_http_track_is_holding(t)) {
            r = feed_bytes(t, t->held.p, t->held.len, out, &used);
            if (r != SR_TRACK_OK) {
                return r;
            }
            t->held.len -= used;
            memmove(t->held.p, t->held.p + used, t->held.len);
        }
        if (t->held.len > 0) {
            return n == 0 || put(&t->held, in, n) == 0 ? SR_TRACK_OK : SR_TRACK_NOMEM;
        }
        free(t->held.p);
        t->held.p = NULL;
        t->held.cap = 0;
    }
    if (n == 0) {
        return SR_TRACK_OK;
    }
    r = feed_bytes(t, in, n, out, &used);
    if (r == SR_TRACK_OK && used < n && put(&t->held, in + used, n - used) != 0) {
        return SR_TRACK_NOMEM;
    }
    return r;
}
