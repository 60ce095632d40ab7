/* SPDX-License-Identifier: MIT */
/* The HTTP/1.x response reader: on the backend-to-client direction of an HTTP listener's
 * connection, say which response answers which request, so that a connection becomes a
 * tunnel only when the backend agreed to an Upgrade (101) or a CONNECT (2xx), and so that
 * an answer of our own can be placed after the last response. Pure and resumable: the
 * bytes are scanned once, in pieces of any size, into a fixed-size state; no allocation,
 * no I/O, no copy, nothing kept from the bytes. It frames responses and reads nothing else
 * of them: the status line, the end of each head, Content-Length, Transfer-Encoding and
 * chunk sizes.
 *
 * Why the framing and not just the status line: requests may be pipelined, and the
 * response to an upgrade request is the one after the responses to every request sent
 * before it. Only where each response ends tells where the next begins; a body of an
 * earlier response may hold the bytes "HTTP/1.1 101" (a file a client uploaded, say), and
 * reading those as the answer would switch off host checking. The design:
 *   - The caller announces each request it forwards (sr_http_resp_expect(): is it HEAD,
 *     may it switch protocols) and stops forwarding client bytes while an Upgrade or
 *     CONNECT awaits its answer (so that request is always the newest one announced), or
 *     while SR_HTTP_RESP_PENDING_MAX requests await theirs (constant memory: one bit per
 *     pending request says HEAD).
 *   - Responses are matched in order (RFC 9112 9.3.2). A 1xx other than 101 is interim
 *     (100 Continue, 103 Early Hints...): it ends at its empty line and answers nothing.
 *     A 101 to the Upgrade or a 2xx to the CONNECT makes the stream a tunnel (TUNNEL).
 *     Any other final status answers its request; a refused upgrade is a normal response.
 *   - Bodies are framed as RFC 9112 6.3 says for a response: none after HEAD, 1xx, 204
 *     and 304; chunked when it is the last transfer coding; else Content-Length.
 *   - Whatever cannot be placed with certainty makes the stream LOST for good: a body
 *     that runs to the close, a response nobody asked for, a 101 to a request that did not
 *     ask to switch, bare CR or LF, obs-fold, two Content-Lengths, both Content-Length and
 *     Transfer-Encoding, broken chunk framing. A LOST stream is passed on opaque and no
 *     answer is ever matched on it again: the caller refuses an Upgrade or CONNECT it can
 *     no longer decide, rather than guess. */
#ifndef SR_HTTPRESP_H
#define SR_HTTPRESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Requests awaiting their response, at most: one bit each of head_bits. A client
 * pipelining more waits (its bytes stay in the kernel) until responses come back. */
#define SR_HTTP_RESP_PENDING_MAX 64

/* What a request's answer may do to the connection. */
enum sr_http_switch {
    SR_HTTP_SWITCH_NONE,
    SR_HTTP_SWITCH_UPGRADE, /* Connection: upgrade and Upgrade: a 101 makes a tunnel */
    SR_HTTP_SWITCH_CONNECT, /* CONNECT: a 2xx makes a tunnel (RFC 9110 9.3.6) */
};

enum sr_http_resp_status {
    SR_HTTP_RESP_FOLLOWING, /* every byte so far is placed: responses are being matched */
    SR_HTTP_RESP_TUNNEL,    /* the backend accepted an Upgrade or CONNECT: not HTTP any more */
    SR_HTTP_RESP_LOST,      /* a response that cannot be placed; <reason> says why. Opaque
                               from here: nothing is matched any more */
};

enum sr_http_resp_reason {
    SR_HTTP_RESP_REASON_NONE = 0,
    SR_HTTP_RESP_REASON_UNSOLICITED,       /* bytes while no request awaits a response */
    SR_HTTP_RESP_REASON_STATUS_LINE,       /* not "HTTP/1.0|1 SP 3DIGIT [SP reason] CRLF", or a
                                              status outside 100..599 */
    SR_HTTP_RESP_REASON_LINE_END,          /* a bare CR or a bare LF */
    SR_HTTP_RESP_REASON_FIELD,             /* a malformed header line, or obs-fold */
    SR_HTTP_RESP_REASON_CONTENT_LENGTH,    /* not one decimal number of at most 18 digits */
    SR_HTTP_RESP_REASON_TRANSFER_ENCODING, /* a coding that is not a token */
    SR_HTTP_RESP_REASON_TE_AND_CL,         /* both: a sign of smuggling (RFC 9112 6.3) */
    SR_HTTP_RESP_REASON_CLOSE_DELIMITED,   /* neither length nor chunked last: the body runs to
                                              the close, so no response can follow */
    SR_HTTP_RESP_REASON_SWITCHED,          /* 101 to a request that did not ask to upgrade */
    SR_HTTP_RESP_REASON_CHUNK,             /* malformed chunked framing */
};

/* Fixed-size state, owned by the caller; fields are private to httpresp.c except where
 * a comment says otherwise. */
struct sr_http_resp {
    uint8_t status;      /* enum sr_http_resp_status: read it */
    uint8_t reason;      /* enum sr_http_resp_reason when LOST: read it */
    uint8_t n_pending;   /* requests announced whose final response has not begun: read it */
    uint8_t tail_switch; /* enum sr_http_switch of the newest pending request */
    uint64_t head_bits;  /* bit i: the i-th oldest pending request is HEAD */

    uint8_t state; /* where in a response the next byte is */
    uint8_t pos;   /* bytes matched of a constant ("HTTP/1.", a field name, "chunked") */
    uint8_t field; /* the header being read: none, Content-Length, Transfer-Encoding */
    uint8_t flags;
    uint16_t code; /* status code of the response being read */
    uint8_t n_digits;
    uint64_t length;    /* Content-Length, or a chunk size, as read */
    uint64_t remaining; /* body or chunk bytes still to pass */
};

/* Start at the first byte the backend sends, with no request pending. */
void sr_http_resp_init(struct sr_http_resp *r);

/* A request was forwarded: its response comes after those of the requests announced
 * before it. <is_head>: its response has no body; <sw>: what its answer may switch to.
 * Returns false and changes nothing if the request cannot be matched: the stream is not
 * FOLLOWING, SR_HTTP_RESP_PENDING_MAX requests are pending, or an Upgrade or CONNECT is
 * pending (nothing may be forwarded after one before its answer). */
bool sr_http_resp_expect(struct sr_http_resp *r, bool is_head, enum sr_http_switch sw);

/* Scan the next <n> bytes the backend sent (any split of the stream gives the same
 * result) and return the stream's status after them. Once TUNNEL or LOST it stays so and
 * further bytes are not looked at. */
enum sr_http_resp_status sr_http_resp_feed(struct sr_http_resp *r, const uint8_t *in, size_t n);

/* How many of the next bytes the reader need not see: what is left of a Content-Length
 * body or of chunk data; UINT64_MAX once TUNNEL or LOST; else 0. A relay may move that
 * many without reading them (splice) and report them with sr_http_resp_skip(). */
uint64_t sr_http_resp_opaque_len(const struct sr_http_resp *r);

/* <n> (at most sr_http_resp_opaque_len()) bytes went by unseen. */
void sr_http_resp_skip(struct sr_http_resp *r, uint64_t n);

/* FOLLOWING, between two responses, and no request pending: every request announced has
 * had its whole response, so bytes of our own can follow. */
bool sr_http_resp_is_idle(const struct sr_http_resp *r);

/* FOLLOWING and an Upgrade or CONNECT announced whose final status has not been read. */
bool sr_http_resp_is_switch_pending(const struct sr_http_resp *r);

/* A short static English phrase for <reason>, e.g. "response body runs to the close". */
const char *sr_http_resp_reason_str(enum sr_http_resp_reason reason);

#endif
