/* SPDX-License-Identifier: MIT */
/* HTTP/1.x response framing, one byte at a time into a fixed state (see httpresp.h for the
 * design). Body and chunk data are skipped by count, never looked at. Strict where a lax
 * reading could place a response boundary where the client would not: anything unusual
 * makes the stream LOST, which only ever costs an upgrade refused or an answer of ours
 * replaced by a plain close. */
#include "sniroute/wire/httpresp.h"

#include <string.h>

/*
 * What is read (RFC 9112; ABNF names from RFC 9110 5.6):
 *
 * status-line   HTTP-version SP status-code [ SP reason-phrase ] CRLF
 *   version     "HTTP/1.0" or "HTTP/1.1"
 *   status-code 3DIGIT, 100..599
 *   reason      HTAB / SP / VCHAR / obs-text (the SP before an empty reason may be missing,
 *               as some servers send "HTTP/1.1 200\r\n")
 * field-line    field-name ":" field-value CRLF; the name a token, the value HTAB / SP /
 *               VCHAR / obs-text; a line starting with SP or HTAB (obs-fold) is LOST
 * CRLF          ends the head
 * body          (6.3) none for HEAD, 1xx, 204, 304; a 2xx to CONNECT or a 101 to an
 *               upgrade: tunnel; Transfer-Encoding with chunked last: chunked (7.1), any
 *               other Transfer-Encoding: to the close; else Content-Length; else to the
 *               close
 * chunked-body  *( chunk-size [ ext ] CRLF data CRLF ) "0" [ ext ] CRLF *( trailer CRLF ) CRLF
 */

enum {
    R_IDLE,          /* between responses: the next byte starts a status line */
    R_VERSION,       /* "HTTP/1.", <pos> bytes matched */
    R_MINOR,         /* '0' or '1' */
    R_SP,            /* the SP after the version */
    R_CODE,          /* three digits, <pos> read */
    R_AFTER_CODE,    /* SP before the reason, or CR */
    R_REASON,        /* reason-phrase up to CR */
    R_LINE_LF,       /* the LF ending the status line or a field line */
    R_FIELD,         /* a field line's first byte, or the CR of the empty line */
    R_NAME,          /* field-name up to ':', <pos> bytes */
    R_VALUE,         /* field-value up to CR */
    R_HEAD_LF,       /* the LF of the empty line: the head ends */
    R_BODY,          /* <remaining> bytes of a Content-Length body */
    R_CHUNK_SIZE,    /* hex digits of a chunk size */
    R_CHUNK_EXT,     /* chunk extensions up to CR */
    R_CHUNK_LF,      /* the LF after a chunk-size line */
    R_CHUNK_DATA,    /* <remaining> bytes of chunk data */
    R_CHUNK_DATA_CR, /* the CRLF after chunk data */
    R_CHUNK_DATA_LF,
    R_TRAILER,        /* a trailer line's first byte, or the CR of the empty line */
    R_TRAILER_LINE,   /* a trailer line up to CR */
    R_TRAILER_LF,     /* the LF ending a trailer line */
    R_TRAILER_END_LF, /* the LF of the empty line: the response ends */
    R_DONE,           /* TUNNEL or LOST: nothing is read any more */
};

/* <field>: the header line being read. */
enum {
    F_OTHER,
    F_CONTENT_LENGTH,
    F_TRANSFER_ENCODING,
};

/* <flags> */
enum {
    FL_FINAL = 1 << 0,      /* the response being read is final (not 1xx) */
    FL_BODILESS = 1 << 1,   /* ... and has no body (HEAD, 204, 304) */
    FL_HAVE_CL = 1 << 2,    /* a Content-Length line was read */
    FL_HAVE_TE = 1 << 3,    /* a Transfer-Encoding line was read */
    FL_TE_CHUNKED = 1 << 4, /* the last transfer coding so far is chunked */
    FL_CL_OWS = 1 << 5,     /* Content-Length: whitespace after the digits */
    FL_TE_TOKEN = 1 << 6,   /* Transfer-Encoding: inside a coding's name */
    FL_TE_REST = 1 << 7,    /* Transfer-Encoding: after a coding's name, up to ',' */
};

static const char version_text[] = "HTTP/1.";
static const char cl_name[] = "content-length";
static const char te_name[] = "transfer-encoding";
static const char chunked_name[] = "chunked";

/* The state for field-name matching: which of the two names the bytes so far can still
 * be, in <field> as a bit set (1: Content-Length, 2: Transfer-Encoding). */
#define NAME_CL 1
#define NAME_TE 2

static bool
is_tchar(uint8_t c)
{
    /* RFC 9110 5.6.2 */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* HTAB, SP, VCHAR, obs-text: what a field value or reason phrase may hold. */
static bool
is_text(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool
is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static uint8_t
lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

static int
hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void
lose(struct sr_http_resp *r, enum sr_http_resp_reason reason)
{
    r->status = SR_HTTP_RESP_LOST;
    r->reason = (uint8_t)reason;
    r->state = R_DONE;
}

static void
tunnel(struct sr_http_resp *r)
{
    r->status = SR_HTTP_RESP_TUNNEL;
    r->state = R_DONE;
}

void
sr_http_resp_init(struct sr_http_resp *r)
{
    memset(r, 0, sizeof(*r));
    r->status = SR_HTTP_RESP_FOLLOWING;
    r->state = R_IDLE;
}

bool
sr_http_resp_is_switch_pending(const struct sr_http_resp *r)
{
    return r->status == SR_HTTP_RESP_FOLLOWING && r->n_pending > 0 &&
           r->tail_switch != SR_HTTP_SWITCH_NONE;
}

bool
sr_http_resp_is_idle(const struct sr_http_resp *r)
{
    return r->status == SR_HTTP_RESP_FOLLOWING && r->state == R_IDLE && r->n_pending == 0;
}

bool
sr_http_resp_expect(struct sr_http_resp *r, bool is_head, enum sr_http_switch sw)
{
    if (r->status != SR_HTTP_RESP_FOLLOWING || r->n_pending == SR_HTTP_RESP_PENDING_MAX ||
        sr_http_resp_is_switch_pending(r)) {
        return false;
    }
    if (is_head) {
        r->head_bits |= (uint64_t)1 << r->n_pending;
    }
    r->n_pending++;
    r->tail_switch = (uint8_t)sw;
    return true;
}

/* The status line is complete: interim, a switch, or the final answer to the oldest
 * pending request. */
static void
status_done(struct sr_http_resp *r)
{
    bool is_head;
    enum sr_http_switch sw;

    if (r->code < 100 || r->code > 599) {
        lose(r, SR_HTTP_RESP_REASON_STATUS_LINE);
        return;
    }
    /* The oldest pending request; <sw> counts only if it is also the newest. */
    sw = r->n_pending == 1 ? (enum sr_http_switch)r->tail_switch : SR_HTTP_SWITCH_NONE;
    if (r->code == 101) {
        if (sw != SR_HTTP_SWITCH_UPGRADE) {
            lose(r, SR_HTTP_RESP_REASON_SWITCHED);
            return;
        }
        r->n_pending = 0;
        r->head_bits = 0;
        r->tail_switch = SR_HTTP_SWITCH_NONE;
        tunnel(r);
        return;
    }
    r->flags = 0;
    if (r->code < 200) {
        return; /* interim: answers nothing, has no body */
    }
    if (sw == SR_HTTP_SWITCH_CONNECT && r->code < 300) {
        r->n_pending = 0;
        r->head_bits = 0;
        r->tail_switch = SR_HTTP_SWITCH_NONE;
        tunnel(r);
        return;
    }
    is_head = (r->head_bits & 1) != 0;
    r->head_bits >>= 1;
    r->n_pending--;
    if (r->n_pending == 0) {
        r->tail_switch = SR_HTTP_SWITCH_NONE; /* a refused upgrade: a normal response */
    }
    r->flags = FL_FINAL;
    if (is_head || r->code == 204 || r->code == 304) {
        r->flags |= FL_BODILESS;
    }
}

/* The empty line ending a head: what follows it. */
static void
head_done(struct sr_http_resp *r)
{
    if (!(r->flags & FL_FINAL) || (r->flags & FL_BODILESS)) {
        r->state = R_IDLE;
        return;
    }
    if ((r->flags & FL_HAVE_TE) && (r->flags & FL_HAVE_CL)) {
        lose(r, SR_HTTP_RESP_REASON_TE_AND_CL);
    } else if (r->flags & FL_HAVE_TE) {
        if (r->flags & FL_TE_CHUNKED) {
            r->state = R_CHUNK_SIZE;
            r->length = 0;
            r->n_digits = 0;
        } else {
            lose(r, SR_HTTP_RESP_REASON_CLOSE_DELIMITED);
        }
    } else if (r->flags & FL_HAVE_CL) {
        r->remaining = r->length;
        r->state = r->remaining > 0 ? R_BODY : R_IDLE;
    } else {
        lose(r, SR_HTTP_RESP_REASON_CLOSE_DELIMITED);
    }
}

/* A field name ended at ':'. */
static void
name_done(struct sr_http_resp *r)
{
    unsigned cand = r->field;

    r->field = F_OTHER;
    if ((cand & NAME_CL) && r->pos == sizeof(cl_name) - 1) {
        if (r->flags & FL_HAVE_CL) {
            lose(r, SR_HTTP_RESP_REASON_CONTENT_LENGTH); /* even with the same value */
            return;
        }
        r->flags |= FL_HAVE_CL;
        r->field = F_CONTENT_LENGTH;
        r->length = 0;
        r->n_digits = 0;
    } else if ((cand & NAME_TE) && r->pos == sizeof(te_name) - 1) {
        r->flags |= FL_HAVE_TE;
        r->flags &= (uint8_t) ~(FL_TE_TOKEN | FL_TE_REST);
        r->field = F_TRANSFER_ENCODING;
    }
    r->state = R_VALUE;
}

/* One byte of a Transfer-Encoding value: a list of codings, each a token with optional
 * parameters (RFC 9112 7). Only whether the last coding is "chunked" matters: it is
 * FL_TE_CHUNKED, kept across list elements and header lines. */
static void
te_byte(struct sr_http_resp *r, uint8_t c)
{
    if (c == ',') {
        r->flags &= (uint8_t) ~(FL_TE_TOKEN | FL_TE_REST);
        return;
    }
    if (r->flags & FL_TE_REST) {
        return; /* OWS and parameters up to the next ',': not ours to check */
    }
    if (r->flags & FL_TE_TOKEN) {
        if (is_ows(c) || c == ';') {
            r->flags = (uint8_t)((r->flags & ~FL_TE_TOKEN) | FL_TE_REST);
            return;
        }
    } else if (is_ows(c)) {
        return; /* before a coding */
    } else {
        /* A new coding: chunked is the framing only if it stays the last (6.3 item 4). */
        r->flags |= FL_TE_TOKEN;
        r->pos = 0;
    }
    if (!is_tchar(c)) {
        lose(r, SR_HTTP_RESP_REASON_TRANSFER_ENCODING);
        return;
    }
    if (r->pos < sizeof(chunked_name) - 1 && lower(c) == (uint8_t)chunked_name[r->pos]) {
        r->pos++;
    } else {
        r->pos = UINT8_MAX; /* some other coding */
    }
    r->flags &= (uint8_t)~FL_TE_CHUNKED;
    if (r->pos == sizeof(chunked_name) - 1) {
        r->flags |= FL_TE_CHUNKED;
    }
}

/* One byte of a Content-Length value: OWS, 1..18 digits, OWS. */
static void
cl_byte(struct sr_http_resp *r, uint8_t c)
{
    if (c >= '0' && c <= '9' && !(r->flags & FL_CL_OWS)) {
        if (++r->n_digits > 18) {
            lose(r, SR_HTTP_RESP_REASON_CONTENT_LENGTH);
            return;
        }
        r->length = r->length * 10 + (uint64_t)(c - '0');
        return;
    }
    if (is_ows(c)) {
        if (r->n_digits > 0) {
            r->flags |= FL_CL_OWS;
        }
        return;
    }
    lose(r, SR_HTTP_RESP_REASON_CONTENT_LENGTH);
}

/* The value's CR: close the field. */
static void
value_done(struct sr_http_resp *r)
{
    if (r->field == F_CONTENT_LENGTH) {
        r->flags &= (uint8_t)~FL_CL_OWS;
        if (r->n_digits == 0) {
            lose(r, SR_HTTP_RESP_REASON_CONTENT_LENGTH);
            return;
        }
    } else if (r->field == F_TRANSFER_ENCODING) {
        r->flags &= (uint8_t) ~(FL_TE_TOKEN | FL_TE_REST);
    }
    r->field = F_OTHER;
    r->state = R_LINE_LF;
}

/* One byte in a head (status line or field lines). */
static void
head_byte(struct sr_http_resp *r, uint8_t c)
{
    switch (r->state) {
    case R_IDLE:
        if (r->n_pending == 0) {
            lose(r, SR_HTTP_RESP_REASON_UNSOLICITED);
            return;
        }
        r->state = R_VERSION;
        r->pos = 0;
        r->code = 0;
        r->flags = 0;
        /* fall through */
    case R_VERSION:
        if (c != (uint8_t)version_text[r->pos]) {
            lose(r, SR_HTTP_RESP_REASON_STATUS_LINE);
            return;
        }
        if (++r->pos == sizeof(version_text) - 1) {
            r->state = R_MINOR;
        }
        return;
    case R_MINOR:
        if (c != '0' && c != '1') {
            lose(r, SR_HTTP_RESP_REASON_STATUS_LINE);
            return;
        }
        r->state = R_SP;
        return;
    case R_SP:
        if (c != ' ') {
            lose(r, SR_HTTP_RESP_REASON_STATUS_LINE);
            return;
        }
        r->state = R_CODE;
        r->pos = 0;
        return;
    case R_CODE:
        if (c < '0' || c > '9') {
            lose(r, SR_HTTP_RESP_REASON_STATUS_LINE);
            return;
        }
        r->code = (uint16_t)(r->code * 10 + (c - '0'));
        if (++r->pos == 3) {
            r->state = R_AFTER_CODE;
        }
        return;
    case R_AFTER_CODE:
        if (c == ' ') {
            r->state = R_REASON;
            return;
        }
        if (c != '\r') {
            lose(r, SR_HTTP_RESP_REASON_STATUS_LINE);
            return;
        }
        r->state = R_LINE_LF;
        status_done(r);
        return;
    case R_REASON:
        if (c == '\r') {
            r->state = R_LINE_LF;
            status_done(r);
            return;
        }
        if (c == '\n') {
            lose(r, SR_HTTP_RESP_REASON_LINE_END);
        } else if (!is_text(c)) {
            lose(r, SR_HTTP_RESP_REASON_STATUS_LINE);
        }
        return;
    case R_LINE_LF:
        if (c != '\n') {
            lose(r, SR_HTTP_RESP_REASON_LINE_END);
            return;
        }
        r->state = R_FIELD;
        return;
    case R_FIELD:
        if (c == '\r') {
            r->state = R_HEAD_LF;
            return;
        }
        if (c == '\n') {
            lose(r, SR_HTTP_RESP_REASON_LINE_END);
            return;
        }
        if (!is_tchar(c)) {
            lose(r, SR_HTTP_RESP_REASON_FIELD); /* obs-fold, or not a name */
            return;
        }
        r->state = R_NAME;
        r->pos = 0;
        r->field = NAME_CL | NAME_TE;
        /* fall through */
    case R_NAME:
        if (c == ':' && r->pos > 0) {
            name_done(r);
            return;
        }
        if (!is_tchar(c)) {
            lose(r, SR_HTTP_RESP_REASON_FIELD);
            return;
        }
        if (r->pos >= sizeof(cl_name) - 1 || lower(c) != (uint8_t)cl_name[r->pos]) {
            r->field &= (uint8_t)~NAME_CL;
        }
        if (r->pos >= sizeof(te_name) - 1 || lower(c) != (uint8_t)te_name[r->pos]) {
            r->field &= (uint8_t)~NAME_TE;
        }
        if (r->pos < UINT8_MAX) {
            r->pos++;
        }
        return;
    case R_VALUE:
        if (c == '\r') {
            value_done(r);
            return;
        }
        if (c == '\n') {
            lose(r, SR_HTTP_RESP_REASON_LINE_END);
            return;
        }
        if (!is_text(c)) {
            lose(r, SR_HTTP_RESP_REASON_FIELD);
            return;
        }
        if (r->field == F_CONTENT_LENGTH) {
            cl_byte(r, c);
        } else if (r->field == F_TRANSFER_ENCODING) {
            te_byte(r, c);
        }
        return;
    case R_HEAD_LF:
        if (c != '\n') {
            lose(r, SR_HTTP_RESP_REASON_LINE_END);
            return;
        }
        head_done(r);
        return;
    default:
        return;
    }
}

/* One byte of chunked framing (not chunk data). */
static void
chunk_byte(struct sr_http_resp *r, uint8_t c)
{
    int v;

    switch (r->state) {
    case R_CHUNK_SIZE:
        v = hex_value(c);
        if (v >= 0) {
            /* 15 hex digits: 2^60 bytes, more than any body; refuse wrap-around. */
            if (++r->n_digits > 15) {
                lose(r, SR_HTTP_RESP_REASON_CHUNK);
                return;
            }
            r->length = r->length * 16 + (uint64_t)v;
        } else if (r->n_digits > 0 && (c == ';' || is_ows(c))) {
            r->state = R_CHUNK_EXT;
        } else if (r->n_digits > 0 && c == '\r') {
            r->state = R_CHUNK_LF;
        } else {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
        }
        return;
    case R_CHUNK_EXT:
        if (c == '\r') {
            r->state = R_CHUNK_LF;
        } else if (c == '\n') {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
        }
        return;
    case R_CHUNK_LF:
        if (c != '\n') {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
            return;
        }
        if (r->length == 0) {
            r->state = R_TRAILER;
        } else {
            r->remaining = r->length;
            r->state = R_CHUNK_DATA;
        }
        return;
    case R_CHUNK_DATA_CR:
        if (c != '\r') {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
            return;
        }
        r->state = R_CHUNK_DATA_LF;
        return;
    case R_CHUNK_DATA_LF:
        if (c != '\n') {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
            return;
        }
        r->state = R_CHUNK_SIZE;
        r->length = 0;
        r->n_digits = 0;
        return;
    case R_TRAILER:
        if (c == '\r') {
            r->state = R_TRAILER_END_LF;
        } else if (c == '\n') {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
        } else {
            r->state = R_TRAILER_LINE;
        }
        return;
    case R_TRAILER_LINE:
        if (c == '\r') {
            r->state = R_TRAILER_LF;
        } else if (c == '\n') {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
        }
        return;
    case R_TRAILER_LF:
    case R_TRAILER_END_LF:
        if (c != '\n') {
            lose(r, SR_HTTP_RESP_REASON_CHUNK);
            return;
        }
        r->state = r->state == R_TRAILER_LF ? R_TRAILER : R_IDLE;
        return;
    default:
        return;
    }
}

uint64_t
sr_http_resp_opaque_len(const struct sr_http_resp *r)
{
    if (r->status != SR_HTTP_RESP_FOLLOWING) {
        return UINT64_MAX;
    }
    return r->state == R_BODY || r->state == R_CHUNK_DATA ? r->remaining : 0;
}

void
sr_http_resp_skip(struct sr_http_resp *r, uint64_t n)
{
    if (r->status != SR_HTTP_RESP_FOLLOWING || n == 0) {
        return;
    }
    if ((r->state != R_BODY && r->state != R_CHUNK_DATA) || n > r->remaining) {
        /* Past sr_http_resp_opaque_len(): bytes of a head went unseen. */
        lose(r, SR_HTTP_RESP_REASON_UNSOLICITED);
        return;
    }
    r->remaining -= n;
    if (r->remaining == 0) {
        r->state = r->state == R_BODY ? R_IDLE : R_CHUNK_DATA_CR;
    }
}

enum sr_http_resp_status
sr_http_resp_feed(struct sr_http_resp *r, const uint8_t *in, size_t n)
{
    size_t i = 0;

    while (i < n && r->state != R_DONE) {
        if (r->state == R_BODY || r->state == R_CHUNK_DATA) {
            size_t k = n - i < r->remaining ? n - i : (size_t)r->remaining;

            i += k;
            r->remaining -= k;
            if (r->remaining == 0) {
                r->state = r->state == R_BODY ? R_IDLE : R_CHUNK_DATA_CR;
            }
            continue;
        }
        if (r->state >= R_CHUNK_SIZE) {
            chunk_byte(r, in[i]);
        } else {
            head_byte(r, in[i]);
        }
        i++;
    }
    return (enum sr_http_resp_status)r->status;
}

const char *
sr_http_resp_reason_str(enum sr_http_resp_reason reason)
{
    switch (reason) {
    case SR_HTTP_RESP_REASON_NONE:
        return "none";
    case SR_HTTP_RESP_REASON_UNSOLICITED:
        return "a response with no request pending";
    case SR_HTTP_RESP_REASON_STATUS_LINE:
        return "malformed status line";
    case SR_HTTP_RESP_REASON_LINE_END:
        return "bare CR or LF in a response head";
    case SR_HTTP_RESP_REASON_FIELD:
        return "malformed response header line";
    case SR_HTTP_RESP_REASON_CONTENT_LENGTH:
        return "invalid Content-Length in a response";
    case SR_HTTP_RESP_REASON_TRANSFER_ENCODING:
        return "invalid Transfer-Encoding in a response";
    case SR_HTTP_RESP_REASON_TE_AND_CL:
        return "both Transfer-Encoding and Content-Length in a response";
    case SR_HTTP_RESP_REASON_CLOSE_DELIMITED:
        return "response body runs to the close";
    case SR_HTTP_RESP_REASON_SWITCHED:
        return "101 to a request that did not ask to upgrade";
    case SR_HTTP_RESP_REASON_CHUNK:
        return "malformed chunked response";
    }
    return "unknown";
}
