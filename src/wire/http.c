/* SPDX-License-Identifier: MIT */
/* A minimal HTTP/1.x request-head reader with one purpose: say where a plain-HTTP request
 * wants to go and how its body is framed. It scans the request line byte by byte (so that
 * NOT_HTTP is known as early as possible), then header lines up to the blank line, and
 * refuses every shape that a backend could read differently from us. A head that arrives in
 * pieces is read on from where the last piece ended: the state between calls is the
 * caller's struct sr_http_reader, offsets only. It never copies. */
#include "sniroute/wire/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <string.h>

/*
 * What is read (RFC 9112; ABNF names from RFC 9110 5.6):
 *
 * request-line   method SP request-target SP HTTP-version CRLF        at most LINE_MAX
 *   method       token, 1..METHOD_MAX                                 else NOT_HTTP
 *   SP           exactly one                                          else NOT_HTTP
 *   target       1*VCHAR; CR or LF before the second SP: NOT_HTTP (HTTP/0.9, a banner)
 *   version      "HTTP/1.0" or "HTTP/1.1"; bytes before "HTTP/" differ: NOT_HTTP
 * field-line     field-name ":" OWS field-value OWS CRLF              at most LINE_MAX
 *   field-name   token, then ':' at once (whitespace first: BAD, 5.1)
 *   field-value  SP, HTAB, VCHAR, obs-text (0x80..0xff); other bytes: BAD (5.5)
 *   a line starting with SP or HTAB: obs-fold (5.2) or whitespace after the request line
 *   (2.2): BAD. At most HEADERS_MAX lines.
 * CRLF           ends the head
 *
 * Fields we read:
 *   Host                 uri-host [":" port]; exactly one (3.2)
 *   Content-Length       1*DIGIT, once (6.3 item 5)
 *   Transfer-Encoding    #transfer-coding, last one chunked, chunked once (6.3 item 4, 7)
 *   Connection           #token; "upgrade" with an Upgrade field: is_upgrade
 *   Upgrade              presence
 */

#define CL_DIGITS_MAX 18 /* 10^18 - 1 fits uint64_t with room to spare */

/* The reader's states: each names what the next byte belongs to. */
enum {
    S_METHOD,   /* the method token, up to its SP */
    S_TARGET,   /* the request-target, up to its SP */
    S_VERSION,  /* "HTTP/1." */
    S_MINOR,    /* the version's last digit */
    S_LINE_CR,  /* the CR ending the request line */
    S_LINE_LF,  /* the LF ending the request line */
    S_FIELD,    /* the first byte of a field line, or the CR of the empty line */
    S_END_LF,   /* the LF of the empty line that ends the head */
    S_NAME,     /* a field name, up to ':' */
    S_BAD_NAME, /* a byte neither token nor ':' ended the name: read on to say why */
    S_VALUE,    /* a field value, up to CR */
    S_VALUE_LF, /* the LF ending a field line */
    S_DONE,     /* decided: status and reason are final */
};

/* struct sr_http_reader's flags. */
enum {
    HAVE_HOST = 1 << 0,
    HAVE_UPGRADE = 1 << 1,
    HAVE_CONN_UPGRADE = 1 << 2,
    HAVE_TE = 1 << 3,
    TE_LAST_CHUNKED = 1 << 4,
    HAVE_CL = 1 << 5,
    HOST_IS_IP = 1 << 6,       /* the host so far is an IP literal */
    HOST_FROM_TARGET = 1 << 7, /* the host is the target's authority */
    ONLY_OWS = 1 << 8,         /* S_BAD_NAME: nothing but whitespace since the name */
};

static const struct sr_view empty_view = {NULL, 0};

static bool
is_tchar(uint8_t c)
{
    /* RFC 9110 5.6.2: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
     * "_" / "`" / "|" / "~" / DIGIT / ALPHA */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_vchar(uint8_t c)
{
    return c >= 0x21 && c <= 0x7e;
}

static bool
is_field_byte(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static uint8_t
lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

static bool
eq_nocase(const uint8_t *p, size_t n, const char *s)
{
    size_t i;

    if (n != strlen(s)) {
        return false;
    }
    for (i = 0; i < n; i++) {
        if (lower(p[i]) != (uint8_t)s[i]) {
            return false;
        }
    }
    return true;
}

static bool
starts_nocase(const uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    return n >= k && eq_nocase(p, k, s);
}

static bool
is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Trim OWS from both ends of <*p>/<*n>. */
static void
trim(const uint8_t **p, size_t *n)
{
    while (*n > 0 && is_ows((*p)[0])) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && is_ows((*p)[*n - 1])) {
        (*n)--;
    }
}

/* Take the next element of a comma-separated list (RFC 9110 5.6.1) from <*p>/<*n> into
 * <*elem>, trimmed; empty elements are skipped. Returns false at the end. */
static bool
list_next(const uint8_t **p, size_t *n, struct sr_view *elem)
{
    for (;;) {
        const uint8_t *s;
        size_t k = 0;

        if (*n == 0) {
            return false;
        }
        s = *p;
        while (k < *n && s[k] != ',') {
            k++;
        }
        *p += k < *n ? k + 1 : k;
        *n -= k < *n ? k + 1 : k;
        trim(&s, &k);
        if (k > 0) {
            elem->ptr = s;
            elem->len = k;
            return true;
        }
    }
}

static bool
is_ipv4(const uint8_t *p, size_t n)
{
    unsigned parts = 0;
    size_t i = 0;

    while (i < n) {
        unsigned v = 0;
        size_t d = 0;

        while (i < n && p[i] >= '0' && p[i] <= '9' && d < 4) {
            v = v * 10 + (unsigned)(p[i] - '0');
            i++;
            d++;
        }
        if (d == 0 || d > 3 || v > 255) {
            return false;
        }
        parts++;
        if (i < n) {
            if (p[i] != '.' || i + 1 == n) {
                return false;
            }
            i++;
        }
    }
    return parts == 4;
}

/* Split an authority's uri-host [":" port] (RFC 3986 3.2.2) into <*host> and check both.
 * <port_required>: authority-form (CONNECT) must carry a port. Returns a BAD reason or
 * NONE; for HOST_INVALID, r->name_error says why. */
static enum sr_http_reason
split_host(const uint8_t *p, size_t n, bool port_required, struct sr_http_reader *r,
           struct sr_view *host, bool *is_ip)
{
    const uint8_t *port;
    size_t port_len;
    size_t i;
    unsigned long v = 0;

    *is_ip = false;
    if (n > 0 && p[0] == '[') {
        char text[INET6_ADDRSTRLEN];
        uint8_t bin[16];
        const uint8_t *close = memchr(p, ']', n);
        size_t in_len;

        in_len = close == NULL ? 0 : (size_t)(close - p) - 1;
        if (close == NULL || in_len < 2 || in_len >= sizeof(text)) {
            r->name_error = SR_NAME_OK;
            return SR_HTTP_REASON_HOST_INVALID;
        }
        memcpy(text, p + 1, in_len);
        text[in_len] = '\0';
        if (inet_pton(AF_INET6, text, bin) != 1) {
            r->name_error = SR_NAME_OK;
            return SR_HTTP_REASON_HOST_INVALID;
        }
        host->ptr = p + 1;
        host->len = in_len;
        *is_ip = true;
        i = in_len + 2;
        if (i < n && p[i] != ':') {
            r->name_error = SR_NAME_OK;
            return SR_HTTP_REASON_HOST_INVALID;
        }
    } else {
        enum sr_name_error err;

        i = 0;
        while (i < n && p[i] != ':') {
            i++;
        }
        err = sr_name_validate(p, i);
        if (err != SR_NAME_OK) {
            r->name_error = (uint8_t)err;
            return SR_HTTP_REASON_HOST_INVALID;
        }
        host->ptr = p;
        host->len = i;
        *is_ip = is_ipv4(p, i);
    }
    /* i is at the end or at ':' */
    if (i == n) {
        return port_required ? SR_HTTP_REASON_HOST_PORT : SR_HTTP_REASON_NONE;
    }
    port = p + i + 1;
    port_len = n - i - 1;
    if (port_len == 0) {
        /* RFC 3986: port = *DIGIT, and an empty one means the default */
        return port_required ? SR_HTTP_REASON_HOST_PORT : SR_HTTP_REASON_NONE;
    }
    if (port_len > 5) {
        return SR_HTTP_REASON_HOST_PORT;
    }
    for (i = 0; i < port_len; i++) {
        if (port[i] < '0' || port[i] > '9') {
            return SR_HTTP_REASON_HOST_PORT;
        }
        v = v * 10 + (unsigned long)(port[i] - '0');
    }
    return v > 65535 ? SR_HTTP_REASON_HOST_PORT : SR_HTTP_REASON_NONE;
}

/* Host names equal for routing: ASCII case and one trailing dot ignored. */
static bool
same_host(struct sr_view a, struct sr_view b)
{
    if (a.len > 0 && a.ptr[a.len - 1] == '.') {
        a.len--;
    }
    if (b.len > 0 && b.ptr[b.len - 1] == '.') {
        b.len--;
    }
    if (a.len != b.len) {
        return false;
    }
    for (size_t i = 0; i < a.len; i++) {
        if (lower(a.ptr[i]) != lower(b.ptr[i])) {
            return false;
        }
    }
    return true;
}

static bool
is_connect(const uint8_t *buf, const struct sr_http_reader *r)
{
    return r->method_len == 7 && memcmp(buf, "CONNECT", 7) == 0;
}

/* The host view found so far becomes the one routed by. */
static void
set_host(struct sr_http_reader *r, const uint8_t *buf, struct sr_view host, bool is_ip)
{
    r->host_off = (size_t)(host.ptr - buf);
    r->host_len = host.len;
    r->flags = is_ip ? r->flags | HOST_IS_IP : r->flags & ~(unsigned)HOST_IS_IP;
}

/* The request line is complete: check the target's form and, for absolute- and
 * authority-form, take the host from it. */
static enum sr_http_reason
read_target(struct sr_http_reader *r, const uint8_t *buf)
{
    const uint8_t *t = buf + r->method_len + 1;
    size_t n = r->target_len;
    const uint8_t *auth;
    size_t auth_len = 0;
    size_t skip;
    struct sr_view host;
    bool is_ip;
    enum sr_http_reason reason;

    if (t[0] == '/') {
        return SR_HTTP_REASON_NONE; /* origin-form */
    }
    if (is_connect(buf, r)) {
        /* authority-form (3.2.3): host ":" port, nothing else */
        if (memchr(t, '@', n) != NULL || memchr(t, '/', n) != NULL) {
            return SR_HTTP_REASON_TARGET;
        }
        auth = t;
        auth_len = n;
    } else if (n == 1 && t[0] == '*') {
        /* asterisk-form (3.2.4) */
        return r->method_len == 7 && memcmp(buf, "OPTIONS", 7) == 0 ? SR_HTTP_REASON_NONE
                                                                    : SR_HTTP_REASON_TARGET;
    } else {
        if (starts_nocase(t, n, "http://")) {
            skip = 7;
        } else if (starts_nocase(t, n, "https://")) {
            skip = 8;
        } else {
            return SR_HTTP_REASON_TARGET;
        }
        auth = t + skip;
        while (skip + auth_len < n && auth[auth_len] != '/' && auth[auth_len] != '?' &&
               auth[auth_len] != '#') {
            auth_len++;
        }
        if (auth_len == 0 || memchr(auth, '@', auth_len) != NULL) {
            /* RFC 9110 4.2.4: userinfo in an http(s) URI is to be treated as an error */
            return SR_HTTP_REASON_TARGET;
        }
    }
    r->flags |= HOST_FROM_TARGET;
    reason = split_host(auth, auth_len, is_connect(buf, r), r, &host, &is_ip);
    if (reason == SR_HTTP_REASON_NONE) {
        set_host(r, buf, host, is_ip);
    }
    return reason;
}

/* One field line's name and trimmed value: update <*r>. */
static enum sr_http_reason
read_field(struct sr_http_reader *r, const uint8_t *buf, const uint8_t *name, size_t name_len,
           const uint8_t *val, size_t val_len)
{
    struct sr_view elem;

    if (eq_nocase(name, name_len, "host")) {
        struct sr_view h;
        bool is_ip;
        enum sr_http_reason reason;

        if (r->flags & HAVE_HOST) {
            return SR_HTTP_REASON_HOST_DUPLICATE;
        }
        r->flags |= HAVE_HOST;
        reason = split_host(val, val_len, false, r, &h, &is_ip);
        if (reason != SR_HTTP_REASON_NONE) {
            return reason;
        }
        if (r->flags & HOST_FROM_TARGET) {
            struct sr_view target_host = {buf + r->host_off, r->host_len};

            return same_host(h, target_host) ? SR_HTTP_REASON_NONE : SR_HTTP_REASON_HOST_MISMATCH;
        }
        set_host(r, buf, h, is_ip);
        return SR_HTTP_REASON_NONE;
    }
    if (eq_nocase(name, name_len, "content-length")) {
        uint64_t v = 0;

        if ((r->flags & HAVE_CL) || val_len == 0 || val_len > CL_DIGITS_MAX) {
            return SR_HTTP_REASON_CONTENT_LENGTH;
        }
        for (size_t i = 0; i < val_len; i++) {
            if (val[i] < '0' || val[i] > '9') {
                return SR_HTTP_REASON_CONTENT_LENGTH;
            }
            v = v * 10 + (uint64_t)(val[i] - '0');
        }
        if (r->flags & HAVE_TE) {
            return SR_HTTP_REASON_TE_AND_CL;
        }
        r->flags |= HAVE_CL;
        r->content_length = v;
        return SR_HTTP_REASON_NONE;
    }
    if (eq_nocase(name, name_len, "transfer-encoding")) {
        bool any = false;

        if (r->version_minor == 0) {
            return SR_HTTP_REASON_TRANSFER_ENCODING;
        }
        if (r->flags & HAVE_CL) {
            return SR_HTTP_REASON_TE_AND_CL;
        }
        r->flags |= HAVE_TE;
        while (list_next(&val, &val_len, &elem)) {
            size_t k = 0;

            /* transfer-coding = token *( OWS ";" OWS transfer-parameter ) */
            while (k < elem.len && is_tchar(elem.ptr[k])) {
                k++;
            }
            if (k == 0 || (k < elem.len && !is_ows(elem.ptr[k]) && elem.ptr[k] != ';')) {
                return SR_HTTP_REASON_TRANSFER_ENCODING;
            }
            if (r->flags & TE_LAST_CHUNKED) {
                return SR_HTTP_REASON_TRANSFER_ENCODING; /* something after chunked */
            }
            if (eq_nocase(elem.ptr, k, "chunked")) {
                r->flags |= TE_LAST_CHUNKED;
            }
            any = true;
        }
        return any ? SR_HTTP_REASON_NONE : SR_HTTP_REASON_TRANSFER_ENCODING;
    }
    if (eq_nocase(name, name_len, "connection")) {
        while (list_next(&val, &val_len, &elem)) {
            if (eq_nocase(elem.ptr, elem.len, "upgrade")) {
                r->flags |= HAVE_CONN_UPGRADE;
            }
        }
        return SR_HTTP_REASON_NONE;
    }
    if (eq_nocase(name, name_len, "upgrade")) {
        r->flags |= HAVE_UPGRADE;
    }
    return SR_HTTP_REASON_NONE;
}

/* The blank line has been read: the last checks that need the whole head. */
static enum sr_http_reason
read_end(struct sr_http_reader *r)
{
    if (!(r->flags & HAVE_HOST) && (r->version_minor == 1 || !(r->flags & HOST_FROM_TARGET))) {
        return SR_HTTP_REASON_NO_HOST;
    }
    if ((r->flags & HAVE_TE) && !(r->flags & TE_LAST_CHUNKED)) {
        return SR_HTTP_REASON_TRANSFER_ENCODING;
    }
    return SR_HTTP_REASON_NONE;
}

/* The bytes the reader asks for in <state> (see sr_http_head.need). */
static size_t
state_need(const struct sr_http_reader *r)
{
    switch (r->state) {
    case S_FIELD:
        /* "CRLF", or "Host:x CRLF CRLF" while HTTP/1.1 lacks one */
        return r->version_minor == 1 && !(r->flags & HAVE_HOST) ? 10 : 2;
    case S_NAME:
    case S_BAD_NAME:
    case S_VALUE:
        return 4;
    case S_VALUE_LF:
        return 3;
    default:
        return 1; /* the request line (each byte may say NOT_HTTP), or the final LF */
    }
}

/* The scan stops at <pos>: the bytes before it have been read. Returns whether the answer
 * is known. */
static bool
stop(struct sr_http_reader *r, size_t pos)
{
    r->n_examined += pos - r->pos;
    r->pos = pos;
    return r->state == S_DONE;
}

/* The answer is known at <pos>: <status>, for <reason>. Returns true. */
static bool
decide(struct sr_http_reader *r, size_t pos, enum sr_http_status status, enum sr_http_reason reason)
{
    r->state = S_DONE;
    r->status = (uint8_t)status;
    r->reason = (uint8_t)reason;
    if (status != SR_HTTP_BAD || reason != SR_HTTP_REASON_HOST_INVALID) {
        r->name_error = SR_NAME_OK;
    }
    return stop(r, pos);
}

/* Scan bytes [r->pos, len) from the state the last call left, until the bytes run out or
 * the answer is known; returns whether it is. Each state moves <pos> over the bytes it
 * accepts and leaves it on the byte that ends it, so that the next state (or the next
 * call) starts there. */
static bool
scan(struct sr_http_reader *r, const uint8_t *buf, size_t len)
{
    static const char version[] = "HTTP/1.";
    size_t pos = r->pos;
    size_t line_end; /* S_NAME, S_VALUE: where the line would be over SR_HTTP_LINE_MAX */
    size_t at;
    enum sr_http_reason reason;
    uint8_t c;

    while (pos < len) {
        switch (r->state) {
        case S_METHOD:
            for (; pos < len && is_tchar(buf[pos]); pos++) {
                if (pos == SR_HTTP_METHOD_MAX) {
                    return decide(r, pos, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_METHOD_TOO_LONG);
                }
            }
            if (pos == len) {
                break;
            }
            if (pos == 0) {
                return decide(r, pos, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NOT_METHOD);
            }
            if (buf[pos] != ' ') {
                return decide(r, pos, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_TARGET);
            }
            r->method_len = pos++;
            r->state = S_TARGET;
            break;
        case S_TARGET:
            for (; pos < len && buf[pos] != ' '; pos++) {
                /* the line would be this byte, " HTTP/1.x" and more: over the limit */
                if (pos + 10 > SR_HTTP_LINE_MAX) {
                    return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
                }
                if (buf[pos] == '\r' || buf[pos] == '\n') {
                    return decide(r, pos, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION);
                }
                if (!is_vchar(buf[pos])) {
                    return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_TARGET);
                }
            }
            if (pos == len) {
                break;
            }
            if (pos == r->method_len + 1) {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_REQUEST_LINE);
            }
            r->target_len = pos++ - (r->method_len + 1);
            r->state = S_VERSION;
            break;
        case S_VERSION:
            /* "HTTP/1."; a mismatch before the '/' means this is not HTTP at all */
            at = r->method_len + 1 + r->target_len + 1;
            for (; pos < len && pos - at < sizeof(version) - 1; pos++) {
                if (buf[pos] != (uint8_t)version[pos - at]) {
                    return decide(r, pos, pos - at < 5 ? SR_HTTP_NOT_HTTP : SR_HTTP_BAD,
                                  pos - at < 5 ? SR_HTTP_REASON_NO_VERSION
                                               : SR_HTTP_REASON_VERSION);
                }
            }
            if (pos - at == sizeof(version) - 1) {
                r->state = S_MINOR;
            }
            break;
        case S_MINOR:
            if (buf[pos] != '0' && buf[pos] != '1') {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_VERSION);
            }
            r->version_minor = (uint8_t)(buf[pos++] - '0');
            r->state = S_LINE_CR;
            break;
        case S_LINE_CR:
            c = buf[pos];
            if (c != '\r') {
                return decide(r, pos, SR_HTTP_BAD,
                              c == '\n'              ? SR_HTTP_REASON_BARE_LF
                              : c >= '0' && c <= '9' ? SR_HTTP_REASON_VERSION
                                                     : SR_HTTP_REASON_REQUEST_LINE);
            }
            pos++;
            r->state = S_LINE_LF;
            break;
        case S_LINE_LF:
            if (buf[pos++] != '\n') {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR);
            }
            r->n_examined += r->target_len; /* read again, whole */
            reason = read_target(r, buf);
            if (reason != SR_HTTP_REASON_NONE) {
                return decide(r, pos, SR_HTTP_BAD, reason);
            }
            r->line = pos;
            r->state = S_FIELD;
            break;
        case S_FIELD:
            c = buf[pos];
            if (c == '\r') {
                pos++;
                r->state = S_END_LF;
                break;
            }
            if (c == '\n') {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_BARE_LF);
            }
            if (is_ows(c)) {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_OBS_FOLD);
            }
            if (r->n_headers == SR_HTTP_HEADERS_MAX) {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_TOO_MANY_HEADERS);
            }
            r->state = S_NAME;
            break;
        case S_END_LF:
            if (buf[pos++] != '\n') {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR);
            }
            r->head_len = pos;
            reason = read_end(r);
            if (reason != SR_HTTP_REASON_NONE) {
                return decide(r, pos, SR_HTTP_BAD, reason);
            }
            return decide(r, pos, SR_HTTP_OK, SR_HTTP_REASON_NONE);
        case S_NAME:
            line_end = r->line + SR_HTTP_LINE_MAX;
            for (; pos < len && is_tchar(buf[pos]); pos++) {
                if (pos >= line_end) {
                    return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
                }
            }
            if (pos == len) {
                break;
            }
            if (buf[pos] != ':') {
                /* read on from this byte to say which rule the line breaks */
                r->flags |= ONLY_OWS;
                r->state = S_BAD_NAME;
                break;
            }
            if (pos == r->line) {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NAME);
            }
            if (pos - r->line >= SR_HTTP_LINE_MAX) {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
            }
            r->colon = pos++;
            r->state = S_VALUE;
            break;
        case S_BAD_NAME:
            for (; pos < len; pos++) {
                c = buf[pos];
                if (pos - r->line >= SR_HTTP_LINE_MAX) {
                    return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
                }
                if (c == ':') {
                    /* "Host : x" is whitespace before the colon (5.1); "Ho st: x" a bad name */
                    return decide(r, pos, SR_HTTP_BAD,
                                  (r->flags & ONLY_OWS) ? SR_HTTP_REASON_HEADER_SPACE_COLON
                                                        : SR_HTTP_REASON_HEADER_NAME);
                }
                if (c == '\r' || c == '\n') {
                    return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NO_COLON);
                }
                if (!is_ows(c)) {
                    r->flags &= ~(unsigned)ONLY_OWS;
                }
            }
            break;
        case S_VALUE:
            line_end = r->line + SR_HTTP_LINE_MAX;
            for (; pos < len && buf[pos] != '\r' && buf[pos] != '\n'; pos++) {
                if (pos >= line_end) {
                    return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
                }
                if (!is_field_byte(buf[pos])) {
                    return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_HEADER_VALUE);
                }
            }
            if (pos == len) {
                break;
            }
            if (buf[pos] == '\n') {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_BARE_LF);
            }
            pos++;
            r->state = S_VALUE_LF;
            break;
        case S_VALUE_LF: {
            const uint8_t *val = buf + r->colon + 1;
            size_t val_len = pos - 1 - (r->colon + 1); /* up to the CR */

            if (buf[pos++] != '\n') {
                return decide(r, pos, SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR);
            }
            r->n_headers++;
            r->n_examined += pos - r->line; /* read again, whole */
            trim(&val, &val_len);
            reason = read_field(r, buf, buf + r->line, r->colon - r->line, val, val_len);
            if (reason != SR_HTTP_REASON_NONE) {
                return decide(r, pos, SR_HTTP_BAD, reason);
            }
            r->line = pos;
            r->state = S_FIELD;
            break;
        }
        default:
            assert(r->state == S_DONE);
            return true;
        }
    }
    return stop(r, pos);
}

void
sr_http_reader_init(struct sr_http_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->state = S_METHOD;
    r->status = SR_HTTP_NEED_MORE;
}

void
sr_http_read_head(struct sr_http_reader *r, const uint8_t *buf, size_t len,
                  struct sr_http_head *out)
{
    assert(len >= r->pos);
    if (r->state != S_DONE) {
        scan(r, buf, len);
    }

    memset(out, 0, sizeof(*out));
    out->status = (enum sr_http_status)r->status;
    out->reason = (enum sr_http_reason)r->reason;
    out->name_error = (enum sr_name_error)r->name_error;
    out->need = r->state == S_DONE ? 0 : state_need(r);
    out->method = empty_view;
    out->target = empty_view;
    out->host = empty_view;
    if (r->method_len > 0) {
        out->method.ptr = buf;
        out->method.len = r->method_len;
    }
    if (r->target_len > 0) {
        out->target.ptr = buf + r->method_len + 1;
        out->target.len = r->target_len;
    }
    out->version_minor = r->version_minor;
    out->n_headers = r->n_headers;
    if (out->status != SR_HTTP_OK) {
        return;
    }
    out->head_len = r->head_len;
    out->host.ptr = buf + r->host_off;
    out->host.len = r->host_len;
    out->is_ip_literal = (r->flags & HOST_IS_IP) != 0;
    out->is_host_from_target = (r->flags & HOST_FROM_TARGET) != 0;
    out->has_content_length = (r->flags & HAVE_CL) != 0;
    out->content_length = r->content_length;
    out->is_chunked = (r->flags & TE_LAST_CHUNKED) != 0;
    out->is_upgrade =
        is_connect(buf, r) || ((r->flags & HAVE_CONN_UPGRADE) && (r->flags & HAVE_UPGRADE));
}

void
sr_http_parse_head(const uint8_t *buf, size_t len, struct sr_http_head *out)
{
    struct sr_http_reader r;

    sr_http_reader_init(&r);
    sr_http_read_head(&r, buf, len, out);
}

const char *
sr_http_status_str(enum sr_http_status s)
{
    switch (s) {
    case SR_HTTP_NEED_MORE:
        return "need_more";
    case SR_HTTP_OK:
        return "ok";
    case SR_HTTP_NOT_HTTP:
        return "not_http";
    case SR_HTTP_BAD:
        return "bad";
    }
    return "unknown";
}

const char *
sr_http_reason_str(enum sr_http_reason r)
{
    switch (r) {
    case SR_HTTP_REASON_NONE:
        return "none";
    case SR_HTTP_REASON_NOT_METHOD:
        return "first byte cannot start a method";
    case SR_HTTP_REASON_METHOD_TOO_LONG:
        return "method token too long";
    case SR_HTTP_REASON_NO_TARGET:
        return "method not followed by a space";
    case SR_HTTP_REASON_NO_VERSION:
        return "no HTTP version in the first line";
    case SR_HTTP_REASON_REQUEST_LINE:
        return "malformed request line";
    case SR_HTTP_REASON_TARGET:
        return "malformed request target";
    case SR_HTTP_REASON_VERSION:
        return "HTTP version not 1.0 or 1.1";
    case SR_HTTP_REASON_BARE_LF:
        return "line ends in LF without CR";
    case SR_HTTP_REASON_BARE_CR:
        return "CR not followed by LF";
    case SR_HTTP_REASON_LINE_TOO_LONG:
        return "line over 8192 bytes";
    case SR_HTTP_REASON_OBS_FOLD:
        return "header line starts with whitespace";
    case SR_HTTP_REASON_HEADER_NAME:
        return "malformed header name";
    case SR_HTTP_REASON_HEADER_NO_COLON:
        return "header line without a colon";
    case SR_HTTP_REASON_HEADER_SPACE_COLON:
        return "whitespace before a header's colon";
    case SR_HTTP_REASON_HEADER_VALUE:
        return "control byte in a header value";
    case SR_HTTP_REASON_TOO_MANY_HEADERS:
        return "more than 100 header lines";
    case SR_HTTP_REASON_NO_HOST:
        return "no Host";
    case SR_HTTP_REASON_HOST_DUPLICATE:
        return "two Host headers";
    case SR_HTTP_REASON_HOST_INVALID:
        return "invalid host";
    case SR_HTTP_REASON_HOST_PORT:
        return "invalid port in host";
    case SR_HTTP_REASON_HOST_MISMATCH:
        return "Host differs from the target's host";
    case SR_HTTP_REASON_CONTENT_LENGTH:
        return "invalid Content-Length";
    case SR_HTTP_REASON_TRANSFER_ENCODING:
        return "invalid Transfer-Encoding";
    case SR_HTTP_REASON_TE_AND_CL:
        return "both Transfer-Encoding and Content-Length";
    }
    return "unknown";
}

size_t
sr_http_error_response(char *out, size_t cap, int code)
{
    const char *status;
    const char *body;
    size_t n;
    int w;

    switch (code) {
    case 400:
        status = "400 Bad Request";
        body = "bad request\n";
        break;
    case 403:
        status = "403 Forbidden";
        body = "access denied\n";
        break;
    case 421:
        status = "421 Misdirected Request";
        body = "no route for this host\n";
        break;
    default:
        return 0;
    }
    w = snprintf(out, cap,
                 "HTTP/1.1 %s\r\n"
                 "Content-Type: text/plain\r\n"
                 "Content-Length: %zu\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "%s",
                 status, strlen(body), body);
    if (w < 0) {
        return 0;
    }
    n = (size_t)w;
    return n < cap ? n : 0;
}
