/* SPDX-License-Identifier: MIT */
/* The HTTP/1.x request-head reader: from the first bytes a client sends on a plain-HTTP
 * listener, find the host to route by and how the request body is framed, without answering
 * or rewriting anything. Pure functions over caller-owned bytes: no allocation, no I/O, no
 * globals; what a head read in pieces keeps between calls is a small struct the caller owns
 * (struct sr_http_reader), so that each byte is read once however the head is cut. It does
 * not normalize the host (see sniroute/name.h) and never looks past the blank line that
 * ends the head. */
#ifndef SR_HTTP_H
#define SR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/hello.h" /* struct sr_view only: sr_http does not link sr_hello */
#include "sniroute/wire/name.h"

/* Longest request line or header line, CRLF not counted. Apache's LimitRequestLine and
 * LimitRequestFieldSize (8190) and nginx's large_client_header_buffers (8k) refuse longer
 * lines, so a longer one would only be refused by the backend after we had routed it; and
 * refusing here names the real problem instead of "head does not fit the buffer". The head
 * as a whole is bounded by the caller's buffer (see <need>), not here. */
#define SR_HTTP_LINE_MAX 8192
/* Header lines in one head: Apache's LimitRequestFields default. */
#define SR_HTTP_HEADERS_MAX 100
/* Longest method token; the longest registered method (UPDATEREDIRECTREF) has 17. A longer
 * "method" means the bytes are not HTTP. */
#define SR_HTTP_METHOD_MAX 32

enum sr_http_status {
    SR_HTTP_NEED_MORE, /* everything so far is a valid start; wait for <need> more bytes */
    SR_HTTP_OK,        /* a complete, valid request head of <head_len> bytes */
    SR_HTTP_NOT_HTTP,  /* the first line cannot be an HTTP/1.x request line */
    SR_HTTP_BAD,       /* an HTTP/1.x request that breaks a rule; <reason> says which */
};

enum sr_http_reason {
    SR_HTTP_REASON_NONE = 0,
    /* NOT_HTTP: the request line is not `token SP 1*VCHAR SP "HTTP/"` */
    SR_HTTP_REASON_NOT_METHOD,      /* byte 0 cannot start a method token (0x16 TLS, 0x00...) */
    SR_HTTP_REASON_METHOD_TOO_LONG, /* a token over SR_HTTP_METHOD_MAX bytes */
    SR_HTTP_REASON_NO_TARGET,       /* the token is not followed by SP (an SSH banner...) */
    SR_HTTP_REASON_NO_VERSION,      /* the line ends after the target (HTTP/0.9, a banner with
                                       comments), or the version does not start "HTTP/" */
    /* BAD: request line */
    SR_HTTP_REASON_REQUEST_LINE, /* empty target, two spaces, bytes after the version */
    SR_HTTP_REASON_TARGET,       /* a byte outside VCHAR, or not origin-, absolute- (http or
                                    https), authority- (CONNECT only) or asterisk-form
                                    (OPTIONS only), or userinfo in an absolute-form target */
    SR_HTTP_REASON_VERSION,      /* "HTTP/" followed by other than 1.0 or 1.1 */
    /* BAD: lines */
    SR_HTTP_REASON_BARE_LF, /* LF without CR before it (RFC 9112 2.2; see sr_http_parse_head) */
    SR_HTTP_REASON_BARE_CR, /* CR not followed by LF */
    SR_HTTP_REASON_LINE_TOO_LONG, /* a line over SR_HTTP_LINE_MAX */
    /* BAD: header lines (RFC 9112 5) */
    SR_HTTP_REASON_OBS_FOLD,           /* a line starting with SP or HTAB: obs-fold (5.2), or
                                          whitespace before the first header (2.2) */
    SR_HTTP_REASON_HEADER_NAME,        /* empty, or a byte that is not a token character */
    SR_HTTP_REASON_HEADER_NO_COLON,    /* the line ends inside the name */
    SR_HTTP_REASON_HEADER_SPACE_COLON, /* whitespace between name and colon (5.1: MUST reject) */
    SR_HTTP_REASON_HEADER_VALUE,       /* NUL or another control byte in a value */
    SR_HTTP_REASON_TOO_MANY_HEADERS,   /* over SR_HTTP_HEADERS_MAX */
    /* BAD: routing */
    SR_HTTP_REASON_NO_HOST,        /* HTTP/1.1 without Host, or HTTP/1.0 with neither Host
                                      nor a host in the target */
    SR_HTTP_REASON_HOST_DUPLICATE, /* two Host header lines */
    SR_HTTP_REASON_HOST_INVALID,   /* not a valid name or IP literal; <name_error> says why
                                      for a name (SR_NAME_OK for a bad IPv6 literal) */
    SR_HTTP_REASON_HOST_PORT,      /* a port that is not 0..65535 in decimal */
    SR_HTTP_REASON_HOST_MISMATCH,  /* Host names another host than the target's authority */
    /* BAD: body framing (RFC 9112 6) */
    SR_HTTP_REASON_CONTENT_LENGTH,    /* not one number: a list, a second header, over 18
                                         digits, not digits */
    SR_HTTP_REASON_TRANSFER_ENCODING, /* last coding not chunked, chunked twice, an empty
                                         value, or any Transfer-Encoding in HTTP/1.0 (6.1) */
    SR_HTTP_REASON_TE_AND_CL,         /* both: 6.3 says a proxy must not forward it */
};

struct sr_http_head {
    enum sr_http_status status;
    enum sr_http_reason reason;    /* NONE unless NOT_HTTP or BAD */
    enum sr_name_error name_error; /* reason HOST_INVALID: what sr_name_validate() said */
    /* NEED_MORE: the fewest further bytes worth waiting for (>= 1). It is 1 inside the
     * request line, where each byte may reveal NOT_HTTP; after that, the bytes still needed
     * for the blank line that ends the head (plus "Host:x" and its CRLF where HTTP/1.1 still
     * lacks one). HTTP has no length prefixes, so this is small: it saves calls, not work.
     * What keeps a dribbled head linear is the reader (sr_http_read_head), which resumes
     * where the last call stopped. */
    size_t need;
    size_t head_len; /* OK: bytes up to and including the CRLF CRLF; bytes after it (a body,
                        a pipelined request) are not looked at */
    /* Views into buf, meaningful for OK only (method, target and version_minor are also set
     * for a BAD found after the request line). */
    struct sr_view method;
    struct sr_view target;
    struct sr_view host;      /* the host to route by, port stripped: the authority of an absolute-
                                 or authority-form target if there is one, else the Host header.
                                 A name passed sr_name_validate() but is NOT normalized (case,
                                 trailing dot as sent); an IPv6 literal comes without brackets */
    unsigned version_minor;   /* 0 or 1 */
    unsigned n_headers;       /* header lines */
    bool is_ip_literal;       /* <host> is an IPv6 literal or a dotted-quad IPv4 address */
    bool is_host_from_target; /* <host> came from an absolute- or authority-form target */
    /* Body framing, for a request-boundary tracker: */
    bool has_content_length;
    uint64_t content_length;
    bool is_chunked; /* Transfer-Encoding's last coding is chunked */
    bool is_upgrade; /* CONNECT, or Connection: upgrade with an Upgrade header: the request
                        asks to leave HTTP. Only the backend's answer says whether the stream
                        does (a 101, or a 2xx to CONNECT: see httpresp.h) */
};

/* Where a head read in pieces stopped. Caller-owned and plain data: it holds offsets, never
 * pointers, so the bytes may move between calls (a buffer grown with realloc). Set it up
 * with sr_http_reader_init() (an all-zero struct is the same) before the first call, and
 * use one per head. The fields are the reader's own except <n_examined>. */
struct sr_http_reader {
    size_t pos;        /* bytes scanned so far: the next call starts here */
    size_t line;       /* where the line being scanned starts */
    size_t colon;      /* in a field line: where its ':' is */
    size_t method_len; /* the method is bytes [0, method_len) */
    size_t target_len; /* the target starts at method_len + 1 */
    size_t host_off;   /* the host to route by: bytes [host_off, host_off + host_len) */
    size_t host_len;
    size_t head_len;
    uint64_t content_length;
    /* Bytes read by all calls so far: the scan reads each byte of the head once, and a line
     * is counted once more when, complete, it is interpreted (its name matched, its value
     * split). For tests and benchmarks: a head of N bytes costs at most 2N whatever the
     * pieces, where parsing each longer prefix afresh costs about N * N / (2 * piece). */
    size_t n_examined;
    unsigned n_headers;
    unsigned flags;
    uint8_t state;
    uint8_t status;     /* enum sr_http_status: NEED_MORE until decided */
    uint8_t reason;     /* enum sr_http_reason */
    uint8_t name_error; /* enum sr_name_error */
    uint8_t version_minor;
};

/* A fresh reader, for the first call on a new head. */
void sr_http_reader_init(struct sr_http_reader *r);

/* Read the first <len> bytes a client sent, from byte 0, and fill <*out>. <*r> says where
 * the previous call with the same reader stopped, and this call reads on from there: call
 * again with the same bytes and more after them (the buffer may have moved, but the first
 * <len> of the last call must be unchanged, and <len> may not shrink). Once <*out> is not
 * NEED_MORE the answer is final: later calls give it again without reading anything.
 * What is accepted and refused, and the meaning of <*out>, are sr_http_parse_head()'s: the
 * two read the bytes the same way and decide at the same byte, however the bytes were cut.
 * Views in <*out> point into <buf>; nothing points into it after return. */
void sr_http_read_head(struct sr_http_reader *r, const uint8_t *buf, size_t len,
                       struct sr_http_head *out);

/* Parse the first <len> bytes a client sent (all of them, from byte 0) in one go and fill
 * <*out>: sr_http_read_head() with a fresh reader. A caller that gets the bytes in pieces
 * should keep a reader instead, or it reads the head again from its start each time.
 * Accepts an HTTP/1.0 or 1.1 request head (RFC 9112): a request line, header lines, a blank
 * line. Strict where a proxy that passes bytes on unmodified must be, so that the backend
 * frames and routes the request as we did:
 *   - every line ends in CRLF. RFC 9112 2.2 lets a recipient accept a bare LF; we do not:
 *     a bare LF or bare CR is BAD, because a backend that splits lines differently would see
 *     other headers (and another Host) than we routed by. Real clients send CRLF.
 *   - no obs-fold, no whitespace before a colon, no control bytes in values (5.1, 5.2, 5.5);
 *   - exactly one Host in HTTP/1.1 (3.2); an absolute-form target's host must match it (the
 *     host names are compared case-insensitively, one trailing dot ignored; ports are not
 *     compared, as routing ignores them);
 *   - Transfer-Encoding and Content-Length together are refused (6.3), as is any ambiguous
 *     length (see the reasons).
 * NOT_HTTP is decided at the first byte that breaks the request line's shape `token SP
 * 1*VCHAR SP "HTTP/"`: byte 0 for TLS (0x16) or OpenVPN; the CR (or SP) ending the token
 * for an SSH banner ("SSH-2.0-OpenSSH_9.6 Debian\r\n" is a token, then either CR or a
 * comment without a version): an SSH banner (RFC 4253 4.2) is always NOT_HTTP unless its
 * comment's second word starts with "HTTP/". Once "HTTP/" is seen, anything wrong is BAD.
 * An empty line before the request line (RFC 9112 2.2 says a server SHOULD ignore one) is
 * NOT_HTTP: on a new connection it is junk; a caller reading a later request on a kept-alive
 * connection skips CRLFs after the previous body before calling.
 *
 * Views in <*out> point into <buf> and live as long as it stays unmodified. Nothing is kept
 * after return. The host is not normalized: pass it to sr_name_normalize() (names) before a
 * route lookup. */
void sr_http_parse_head(const uint8_t *buf, size_t len, struct sr_http_head *out);

/* "need_more", "ok", "not_http", "bad": for logs and metrics. */
const char *sr_http_status_str(enum sr_http_status s);

/* A short static English phrase for <r>, e.g. "two Host headers". */
const char *sr_http_reason_str(enum sr_http_reason r);

/* Write a complete HTTP/1.1 response for <code> (400 Bad Request, 403 Forbidden or 421
 * Misdirected Request) with Content-Type: text/plain, Content-Length, Connection: close and a
 * one-line body, to <out>, NUL-terminated. Returns its length without the NUL, or 0 if <code> is
 * not one of those or <cap> cannot hold the response and the NUL. SR_HTTP_RESPONSE_MAX always
 * suffices. */
#define SR_HTTP_RESPONSE_MAX 160
size_t sr_http_error_response(char *out, size_t cap, int code);

#endif
