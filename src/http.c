/* SPDX-License-Identifier: MIT */
/* A minimal HTTP/1.x request-head reader with one purpose: say where a plain-HTTP request
 * wants to go and how its body is framed. It scans the request line byte by byte (so that
 * NOT_HTTP is known as early as possible), then header lines up to the blank line, and
 * refuses every shape that a backend could read differently from us. It keeps no state
 * between calls and never copies. */
#include "sniroute/http.h"

#include <arpa/inet.h>
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

enum {
    HAVE_HOST = 1 << 0,
    HAVE_UPGRADE = 1 << 1,
    HAVE_CONN_UPGRADE = 1 << 2,
    HAVE_TE = 1 << 3,
    TE_LAST_CHUNKED = 1 << 4,
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
 * NONE. */
static enum sr_http_reason
split_host(const uint8_t *p, size_t n, bool port_required, struct sr_http_head *out,
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
            out->name_error = SR_NAME_OK;
            return SR_HTTP_REASON_HOST_INVALID;
        }
        memcpy(text, p + 1, in_len);
        text[in_len] = '\0';
        if (inet_pton(AF_INET6, text, bin) != 1) {
            out->name_error = SR_NAME_OK;
            return SR_HTTP_REASON_HOST_INVALID;
        }
        host->ptr = p + 1;
        host->len = in_len;
        *is_ip = true;
        i = in_len + 2;
        if (i < n && p[i] != ':') {
            out->name_error = SR_NAME_OK;
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
            out->name_error = err;
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

/* Check the target's form and, for absolute- and authority-form, take the host from it. */
static enum sr_http_reason
read_target(struct sr_http_head *out)
{
    const uint8_t *t = out->target.ptr;
    size_t n = out->target.len;
    const uint8_t *auth;
    size_t auth_len = 0;
    size_t skip;

    if (t[0] == '/') {
        return SR_HTTP_REASON_NONE; /* origin-form */
    }
    if (out->method.len == 7 && memcmp(out->method.ptr, "CONNECT", 7) == 0) {
        /* authority-form (3.2.3): host ":" port, nothing else */
        if (memchr(t, '@', n) != NULL || memchr(t, '/', n) != NULL) {
            return SR_HTTP_REASON_TARGET;
        }
        out->is_host_from_target = true;
        return split_host(t, n, true, out, &out->host, &out->is_ip_literal);
    }
    if (n == 1 && t[0] == '*') {
        /* asterisk-form (3.2.4) */
        return out->method.len == 7 && memcmp(out->method.ptr, "OPTIONS", 7) == 0
                   ? SR_HTTP_REASON_NONE
                   : SR_HTTP_REASON_TARGET;
    }
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
    out->is_host_from_target = true;
    return split_host(auth, auth_len, false, out, &out->host, &out->is_ip_literal);
}

/* One field line's name and trimmed value: update <*flags> and <*out>. */
static enum sr_http_reason
read_field(const uint8_t *name, size_t name_len, const uint8_t *val, size_t val_len,
           unsigned *flags, struct sr_http_head *out)
{
    struct sr_view elem;

    if (eq_nocase(name, name_len, "host")) {
        struct sr_view h;
        bool is_ip;
        enum sr_http_reason r;

        if (*flags & HAVE_HOST) {
            return SR_HTTP_REASON_HOST_DUPLICATE;
        }
        *flags |= HAVE_HOST;
        r = split_host(val, val_len, false, out, &h, &is_ip);
        if (r != SR_HTTP_REASON_NONE) {
            return r;
        }
        if (out->is_host_from_target) {
            return same_host(h, out->host) ? SR_HTTP_REASON_NONE : SR_HTTP_REASON_HOST_MISMATCH;
        }
        out->host = h;
        out->is_ip_literal = is_ip;
        return SR_HTTP_REASON_NONE;
    }
    if (eq_nocase(name, name_len, "content-length")) {
        uint64_t v = 0;

        if (out->has_content_length || val_len == 0 || val_len > CL_DIGITS_MAX) {
            return SR_HTTP_REASON_CONTENT_LENGTH;
        }
        for (size_t i = 0; i < val_len; i++) {
            if (val[i] < '0' || val[i] > '9') {
                return SR_HTTP_REASON_CONTENT_LENGTH;
            }
            v = v * 10 + (uint64_t)(val[i] - '0');
        }
        if (*flags & HAVE_TE) {
            return SR_HTTP_REASON_TE_AND_CL;
        }
        out->has_content_length = true;
        out->content_length = v;
        return SR_HTTP_REASON_NONE;
    }
    if (eq_nocase(name, name_len, "transfer-encoding")) {
        bool any = false;

        if (out->version_minor == 0) {
            return SR_HTTP_REASON_TRANSFER_ENCODING;
        }
        if (out->has_content_length) {
            return SR_HTTP_REASON_TE_AND_CL;
        }
        *flags |= HAVE_TE;
        while (list_next(&val, &val_len, &elem)) {
            size_t k = 0;

            /* transfer-coding = token *( OWS ";" OWS transfer-parameter ) */
            while (k < elem.len && is_tchar(elem.ptr[k])) {
                k++;
            }
            if (k == 0 || (k < elem.len && !is_ows(elem.ptr[k]) && elem.ptr[k] != ';')) {
                return SR_HTTP_REASON_TRANSFER_ENCODING;
            }
            if (*flags & TE_LAST_CHUNKED) {
                return SR_HTTP_REASON_TRANSFER_ENCODING; /* something after chunked */
            }
            if (eq_nocase(elem.ptr, k, "chunked")) {
                *flags |= TE_LAST_CHUNKED;
            }
            any = true;
        }
        return any ? SR_HTTP_REASON_NONE : SR_HTTP_REASON_TRANSFER_ENCODING;
    }
    if (eq_nocase(name, name_len, "connection")) {
        while (list_next(&val, &val_len, &elem)) {
            if (eq_nocase(elem.ptr, elem.len, "upgrade")) {
                *flags |= HAVE_CONN_UPGRADE;
            }
        }
        return SR_HTTP_REASON_NONE;
    }
    if (eq_nocase(name, name_len, "upgrade")) {
        *flags |= HAVE_UPGRADE;
    }
    return SR_HTTP_REASON_NONE;
}

/* A field name ended at <pos> (after <start>) with a byte that is neither a token byte nor
 * ':'. Say which rule the line breaks, reading on only as far as needed; <*more> when the
 * answer lies past <len>. */
static enum sr_http_reason
bad_name(const uint8_t *buf, size_t len, size_t start, size_t pos, bool *more)
{
    bool only_ows = true;

    for (; pos < len; pos++) {
        if (pos - start >= SR_HTTP_LINE_MAX) {
            return SR_HTTP_REASON_LINE_TOO_LONG;
        }
        if (buf[pos] == ':') {
            /* "Host : x" is whitespace before the colon (5.1); "Ho st: x" a bad name */
            return only_ows ? SR_HTTP_REASON_HEADER_SPACE_COLON : SR_HTTP_REASON_HEADER_NAME;
        }
        if (buf[pos] == '\r' || buf[pos] == '\n') {
            return SR_HTTP_REASON_HEADER_NO_COLON;
        }
        if (!is_ows(buf[pos])) {
            only_ows = false;
        }
    }
    *more = true;
    return SR_HTTP_REASON_NONE;
}

static void
finish(struct sr_http_head *out, enum sr_http_status status, enum sr_http_reason reason)
{
    out->status = status;
    out->reason = reason;
    out->need = 0;
    if (status != SR_HTTP_OK) {
        out->host = empty_view;
        out->is_ip_literal = false;
        out->is_host_from_target = false;
        out->has_content_length = false;
        out->content_length = 0;
        out->is_chunked = false;
        out->is_upgrade = false;
        out->head_len = 0;
    }
    if (status != SR_HTTP_BAD || reason != SR_HTTP_REASON_HOST_INVALID) {
        out->name_error = SR_NAME_OK;
    }
}

static void
need_more(struct sr_http_head *out, size_t need)
{
    finish(out, SR_HTTP_NEED_MORE, SR_HTTP_REASON_NONE);
    out->need = need;
}

void
sr_http_parse_head(const uint8_t *buf, size_t len, struct sr_http_head *out)
{
    static const char version[] = "HTTP/1.";
    enum sr_http_reason r;
    unsigned flags = 0;
    size_t pos;
    size_t start;
    size_t i;

    memset(out, 0, sizeof(*out));
    out->method = empty_view;
    out->target = empty_view;
    out->host = empty_view;

    /* method SP: each byte may reveal NOT_HTTP, so need stays 1 through the request line */
    for (pos = 0; pos < len && is_tchar(buf[pos]); pos++) {
        if (pos == SR_HTTP_METHOD_MAX) {
            finish(out, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_METHOD_TOO_LONG);
            return;
        }
    }
    if (pos == len) {
        need_more(out, 1);
        return;
    }
    if (pos == 0) {
        finish(out, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NOT_METHOD);
        return;
    }
    if (buf[pos] != ' ') {
        finish(out, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_TARGET);
        return;
    }
    out->method.ptr = buf;
    out->method.len = pos;

    /* target SP */
    start = ++pos;
    for (; pos < len && buf[pos] != ' '; pos++) {
        /* the line would be this byte, " HTTP/1.x" and more: over the limit */
        if (pos + 10 > SR_HTTP_LINE_MAX) {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
            return;
        }
        if (buf[pos] == '\r' || buf[pos] == '\n') {
            finish(out, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION);
            return;
        }
        if (!is_vchar(buf[pos])) {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_TARGET);
            return;
        }
    }
    if (pos == len) {
        need_more(out, 1);
        return;
    }
    if (pos == start) {
        finish(out, SR_HTTP_BAD, SR_HTTP_REASON_REQUEST_LINE);
        return;
    }
    out->target.ptr = buf + start;
    out->target.len = pos - start;

    /* "HTTP/1." DIGIT CRLF; a mismatch before the '/' means this is not HTTP at all */
    pos++;
    for (i = 0; i < sizeof(version) - 1; i++, pos++) {
        if (pos == len) {
            need_more(out, 1);
            return;
        }
        if (buf[pos] != (uint8_t)version[i]) {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_VERSION);
            if (i < 5) {
                finish(out, SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION);
            }
            return;
        }
    }
    if (pos == len) {
        need_more(out, 1);
        return;
    }
    if (buf[pos] != '0' && buf[pos] != '1') {
        finish(out, SR_HTTP_BAD, SR_HTTP_REASON_VERSION);
        return;
    }
    out->version_minor = (unsigned)(buf[pos] - '0');
    pos++;
    if (pos == len) {
        need_more(out, 1);
        return;
    }
    if (buf[pos] != '\r') {
        r = buf[pos] == '\n'                     ? SR_HTTP_REASON_BARE_LF
            : buf[pos] >= '0' && buf[pos] <= '9' ? SR_HTTP_REASON_VERSION
                                                 : SR_HTTP_REASON_REQUEST_LINE;
        finish(out, SR_HTTP_BAD, r);
        return;
    }
    if (++pos == len) {
        need_more(out, 1);
        return;
    }
    if (buf[pos] != '\n') {
        finish(out, SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR);
        return;
    }
    pos++;
    r = read_target(out);
    if (r != SR_HTTP_REASON_NONE) {
        finish(out, SR_HTTP_BAD, r);
        return;
    }

    /* field lines, then the empty line */
    for (;;) {
        const uint8_t *name;
        const uint8_t *val;
        size_t name_len;
        size_t val_len;
        bool need_host;

        need_host = out->version_minor == 1 && !(flags & HAVE_HOST);
        start = pos;
        if (pos == len) {
            /* "CRLF", or "Host:x CRLF CRLF" while HTTP/1.1 lacks one */
            need_more(out, need_host ? 10 : 2);
            return;
        }
        if (buf[pos] == '\r') {
            if (pos + 1 == len) {
                need_more(out, 1);
                return;
            }
            if (buf[pos + 1] != '\n') {
                finish(out, SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR);
                return;
            }
            out->head_len = pos + 2;
            break;
        }
        if (buf[pos] == '\n') {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_BARE_LF);
            return;
        }
        if (is_ows(buf[pos])) {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_OBS_FOLD);
            return;
        }
        if (out->n_headers == SR_HTTP_HEADERS_MAX) {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_TOO_MANY_HEADERS);
            return;
        }

        /* field-name ":" */
        for (; pos < len && is_tchar(buf[pos]); pos++) {
            if (pos - start >= SR_HTTP_LINE_MAX) {
                finish(out, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
                return;
            }
        }
        if (pos == len) {
            need_more(out, 4);
            return;
        }
        if (pos == start && buf[pos] == ':') {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NAME);
            return;
        }
        if (buf[pos] != ':') {
            bool more = false;

            r = bad_name(buf, len, start, pos, &more);
            if (more) {
                need_more(out, 4);
            } else {
                finish(out, SR_HTTP_BAD, r);
            }
            return;
        }
        if (pos - start >= SR_HTTP_LINE_MAX) {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
            return;
        }
        name = buf + start;
        name_len = pos - start;

        /* field-value CRLF */
        val = buf + ++pos;
        for (; pos < len && buf[pos] != '\r' && buf[pos] != '\n'; pos++) {
            if (pos - start >= SR_HTTP_LINE_MAX) {
                finish(out, SR_HTTP_BAD, SR_HTTP_REASON_LINE_TOO_LONG);
                return;
            }
            if (!is_field_byte(buf[pos])) {
                finish(out, SR_HTTP_BAD, SR_HTTP_REASON_HEADER_VALUE);
                return;
            }
        }
        if (pos == len) {
            need_more(out, 4);
            return;
        }
        if (buf[pos] == '\n') {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_BARE_LF);
            return;
        }
        if (pos + 1 == len) {
            need_more(out, 3);
            return;
        }
        if (buf[pos + 1] != '\n') {
            finish(out, SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR);
            return;
        }
        val_len = (size_t)(buf + pos - val);
        pos += 2;
        out->n_headers++;
        trim(&val, &val_len);
        r = read_field(name, name_len, val, val_len, &flags, out);
        if (r != SR_HTTP_REASON_NONE) {
            finish(out, SR_HTTP_BAD, r);
            return;
        }
    }

    if (!(flags & HAVE_HOST) && (out->version_minor == 1 || !out->is_host_from_target)) {
        finish(out, SR_HTTP_BAD, SR_HTTP_REASON_NO_HOST);
        return;
    }
    if ((flags & HAVE_TE) && !(flags & TE_LAST_CHUNKED)) {
        finish(out, SR_HTTP_BAD, SR_HTTP_REASON_TRANSFER_ENCODING);
        return;
    }
    out->is_chunked = (flags & TE_LAST_CHUNKED) != 0;
    out->is_upgrade = (out->method.len == 7 && memcmp(out->method.ptr, "CONNECT", 7) == 0) ||
                      ((flags & HAVE_CONN_UPGRADE) && (flags & HAVE_UPGRADE));
    out->status = SR_HTTP_OK;
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
