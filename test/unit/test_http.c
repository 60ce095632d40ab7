/* SPDX-License-Identifier: MIT */
/* HTTP request-head reader tests: real request heads (curl, a browser, HTTP/1.0, absolute-
 * form, IPv6 and upper-case hosts) fed whole, at every strict prefix, at every split and one
 * `need` at a time, parsed afresh and resumed by a reader, all of which must agree; every
 * malformed shape with its named reason; NOT_HTTP for TLS and SSH; a dribbled head costs
 * linear work (bytes examined counted); the error responses byte for byte. */
#include "sniroute/wire/http.h"

#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

/* ---- helpers ----------------------------------------------------------------------- */

/* Everything a caller may use from a result, with the views copied out. */
struct outcome {
    enum sr_http_status status;
    enum sr_http_reason reason;
    enum sr_name_error name_error;
    size_t need;
    char host[300];
    size_t head_len;
    unsigned version_minor;
    bool is_ip_literal;
    bool is_host_from_target;
    bool has_content_length;
    uint64_t content_length;
    bool is_chunked;
    bool is_upgrade;
};

static bool
view_inside(struct sr_view v, const uint8_t *b, size_t cap)
{
    return v.len == 0 || (v.ptr >= b && v.ptr <= b + cap && v.len <= (size_t)(b + cap - v.ptr));
}

/* Check the invariants every answer keeps, and return the outcome of <res>, read from the
 * <len> bytes at <buf>. */
static struct outcome
outcome_of(const struct sr_http_head *res, const uint8_t *buf, size_t len)
{
    struct outcome o;

    memset(&o, 0, sizeof(o));
    o.status = res->status;
    o.reason = res->reason;
    o.name_error = res->name_error;
    o.need = res->need;
    if (res->status == SR_HTTP_NEED_MORE) {
        ASSERT_GE(res->need, 1);
    } else {
        ASSERT_EQ(res->need, 0);
    }
    if (res->status == SR_HTTP_NOT_HTTP || res->status == SR_HTTP_BAD) {
        ASSERT_NE(res->reason, SR_HTTP_REASON_NONE);
    } else {
        ASSERT_EQ(res->reason, SR_HTTP_REASON_NONE);
    }
    if (res->reason != SR_HTTP_REASON_HOST_INVALID) {
        ASSERT_EQ(res->name_error, SR_NAME_OK);
    }
    ASSERT(view_inside(res->method, buf, len));
    ASSERT(view_inside(res->target, buf, len));
    ASSERT(view_inside(res->host, buf, len));
    if (res->status == SR_HTTP_OK) {
        ASSERT_GE(res->head_len, 18);
        ASSERT_LE(res->head_len, len);
        ASSERT(memcmp(buf + res->head_len - 4, "\r\n\r\n", 4) == 0);
        ASSERT_GT(res->method.len, 0);
        ASSERT_GT(res->target.len, 0);
        ASSERT_GT(res->host.len, 0);
        ASSERT_LT(res->host.len, sizeof(o.host));
        ASSERT_LE(res->version_minor, 1);
        if (!res->is_ip_literal) {
            ASSERT_EQ(sr_name_validate(res->host.ptr, res->host.len), SR_NAME_OK);
        }
        memcpy(o.host, res->host.ptr, res->host.len);
        o.head_len = res->head_len;
        o.version_minor = res->version_minor;
        o.is_ip_literal = res->is_ip_literal;
        o.is_host_from_target = res->is_host_from_target;
        o.has_content_length = res->has_content_length;
        o.content_length = res->content_length;
        o.is_chunked = res->is_chunked;
        o.is_upgrade = res->is_upgrade;
    } else {
        ASSERT_EQ(res->host.len, 0);
    }
    return o;
}

/* Parse from a heap copy of exactly <len> bytes (ASan sees any read past the end), check
 * the invariants every answer keeps, and return the outcome. */
static struct outcome
parse_exact(const void *data, size_t len, struct sr_http_head *res_out)
{
    uint8_t *buf = malloc(len ? len : 1);
    struct sr_http_head res;
    struct outcome o;

    ASSERT(buf != NULL);
    memcpy(buf, data, len);
    memset(&res, 0xa5, sizeof(res));
    sr_http_parse_head(buf, len, &res);
    o = outcome_of(&res, buf, len);
    if (res_out != NULL) {
        *res_out = res;
    }
    free(buf);
    return o;
}

/* The same through reader <r>, which has read a prefix of <data> before (or nothing): a new
 * heap copy each call, so the bytes move between calls as a growing buffer's do. */
static struct outcome
read_exact(struct sr_http_reader *r, const void *data, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    struct sr_http_head res;
    struct outcome o;

    ASSERT(buf != NULL);
    memcpy(buf, data, len);
    memset(&res, 0xa5, sizeof(res));
    sr_http_read_head(r, buf, len, &res);
    o = outcome_of(&res, buf, len);
    free(buf);
    return o;
}

static void
assert_same(const struct outcome *a, const struct outcome *b, const char *what, size_t at)
{
    if (memcmp(a, b, sizeof(*a)) != 0) {
        SR_FAIL("%s at %zu: %s/%s host=%s len=%zu vs %s/%s host=%s len=%zu", what, at,
                sr_http_status_str(a->status), sr_http_reason_str(a->reason), a->host, a->head_len,
                sr_http_status_str(b->status), sr_http_reason_str(b->reason), b->host, b->head_len);
    }
}

/* Every prefix either waits or gives the whole input's answer; for a good head every strict
 * prefix of the head waits; a caller following <need> parses to the same answer, and for a
 * good head never waits past its end. A reader fed one more byte per call answers each
 * prefix as a fresh parse does (need included), and one that read any prefix first reads
 * the whole to the same answer, after the same count of examined bytes. */
static struct outcome
parse_all_ways(const char *req, size_t len)
{
    struct outcome whole = parse_exact(req, len, NULL);
    struct sr_http_reader r;
    struct sr_http_head res;
    struct outcome o;
    size_t examined;
    size_t have = 0;
    size_t i;

    sr_http_reader_init(&r);
    for (i = 0; i <= len; i++) {
        struct outcome fresh = parse_exact(req, i, NULL);

        o = read_exact(&r, req, i);
        assert_same(&o, &fresh, "resumed one byte at a time", i);
    }
    examined = r.n_examined;
    ASSERT_LE(examined, 2 * len);
    for (i = 0; i <= len; i++) {
        sr_http_reader_init(&r);
        read_exact(&r, req, i);
        o = read_exact(&r, req, len);
        assert_same(&o, &whole, "resumed after a split", i);
        ASSERT_EQ(r.n_examined, examined);
    }

    for (i = 0; i < len; i++) {
        o = parse_exact(req, i, NULL);
        if (whole.status == SR_HTTP_OK && i < whole.head_len) {
            if (o.status != SR_HTTP_NEED_MORE) {
                SR_FAIL("prefix %zu of a good head: %s/%s", i, sr_http_status_str(o.status),
                        sr_http_reason_str(o.reason));
            }
        } else if (o.status != SR_HTTP_NEED_MORE) {
            assert_same(&o, &whole, "prefix", i);
        }
    }
    for (;;) {
        o = parse_exact(req, have, &res);
        if (o.status != SR_HTTP_NEED_MORE || have == len) {
            break;
        }
        if (whole.status == SR_HTTP_OK) {
            ASSERT_LE(have + res.need, whole.head_len);
        }
        have = have + res.need < len ? have + res.need : len;
    }
    assert_same(&o, &whole, "following need", have);
    return whole;
}

#define S(lit) lit, sizeof(lit) - 1

/* ---- good heads ---------------------------------------------------------------------- */

struct good {
    const char *name;
    const char *req;
    size_t len;
    const char *host;
    unsigned minor;
    bool is_ip;
    bool from_target;
    bool has_cl;
    uint64_t cl;
    bool chunked;
    bool upgrade;
    size_t trailing; /* bytes after the head (a body) */
};

static const struct good goods[] = {
    {"curl",
     S("GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\n"
       "Accept: */*\r\n\r\n"),
     "example.com", 1, false, false, false, 0, false, false, 0},
    {"browser",
     S("GET /path/page.html?q=1&r=%20x HTTP/1.1\r\n"
       "Host: www.example.org\r\n"
       "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
       "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
       "Accept-Language: en-US,en;q=0.5\r\n"
       "Accept-Encoding: gzip, deflate, br, zstd\r\n"
       "Connection: keep-alive\r\n"
       "Cookie: a=b; c=\"d e\"\r\n"
       "Upgrade-Insecure-Requests: 1\r\n"
       "Sec-Fetch-Dest: document\r\n"
       "Priority: u=0, i\r\n\r\n"),
     "www.example.org", 1, false, false, false, 0, false, false, 0},
    {"1.0 with Host", S("GET /index.html HTTP/1.0\r\nHost: a.example\r\n\r\n"), "a.example", 0,
     false, false, false, 0, false, false, 0},
    {"1.0 absolute, no Host", S("GET http://legacy.example/ HTTP/1.0\r\nAccept: */*\r\n\r\n"),
     "legacy.example", 0, false, true, false, 0, false, false, 0},
    {"absolute-form with port",
     S("GET http://Example.com:8080/x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"), "Example.com",
     1, false, true, false, 0, false, false, 0},
    {"absolute https, query only",
     S("GET HTTPS://a.example?x HTTP/1.1\r\nHost: A.EXAMPLE.\r\n\r\n"), "a.example", 1, false, true,
     false, 0, false, false, 0},
    {"IPv6 Host with port", S("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), "::1", 1, true, false,
     false, 0, false, false, 0},
    {"IPv6 Host", S("GET / HTTP/1.1\r\nHost: [2001:db8::42]\r\n\r\n"), "2001:db8::42", 1, true,
     false, false, 0, false, false, 0},
    {"IPv4 Host", S("GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n"), "192.0.2.1", 1, true, false,
     false, 0, false, false, 0},
    {"trailing dot", S("GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n"), "example.com.", 1, false,
     false, false, 0, false, false, 0},
    {"upper case", S("GET / HTTP/1.1\r\nHOST: WWW.Example.COM\r\n\r\n"), "WWW.Example.COM", 1,
     false, false, false, 0, false, false, 0},
    {"OWS around Host", S("GET / HTTP/1.1\r\nhost:\t  x.example \t\r\n\r\n"), "x.example", 1, false,
     false, false, 0, false, false, 0},
    {"empty port", S("GET / HTTP/1.1\r\nHost: x.example:\r\n\r\n"), "x.example", 1, false, false,
     false, 0, false, false, 0},
    {"POST with body",
     S("POST /api HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5\r\n\r\nhello"), "api.example",
     1, false, false, true, 5, false, false, 5},
    {"chunked",
     S("POST /u HTTP/1.1\r\nHost: u.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
     "u.example", 1, false, false, false, 0, true, false, 0},
    {"chunked over two headers",
     S("POST /u HTTP/1.1\r\nTransfer-Encoding: gzip\r\nHost: u.example\r\n"
       "Transfer-Encoding: ,Chunked ; x=1\r\n\r\n"),
     "u.example", 1, false, false, false, 0, true, false, 0},
    {"websocket",
     S("GET /chat HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\n"
       "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"),
     "ws.example", 1, false, false, false, 0, false, true, 0},
    {"Connection: upgrade alone",
     S("GET / HTTP/1.1\r\nHost: ws.example\r\nConnection: upgrade\r\n\r\n"), "ws.example", 1, false,
     false, false, 0, false, false, 0},
    {"CONNECT", S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
     "example.com", 1, false, true, false, 0, false, true, 0},
    {"OPTIONS *", S("OPTIONS * HTTP/1.1\r\nHost: o.example\r\n\r\n"), "o.example", 1, false, false,
     false, 0, false, false, 0},
    {"pipelined", S("GET /a HTTP/1.1\r\nHost: p.example\r\n\r\nGET /b HTTP/1.1\r\n"), "p.example",
     1, false, false, false, 0, false, false, 17},
    {"empty value, obs-text",
     S("GET / HTTP/1.1\r\nX-Empty:\r\nX-Latin: caf\xe9\r\nHost: h.example\r\n\r\n"), "h.example", 1,
     false, false, false, 0, false, false, 0},
    {"Content-Length 0", S("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 000\r\n\r\n"), "h", 1,
     false, false, true, 0, false, false, 0},
};

static void
test_good_heads(void)
{
    size_t i;

    for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        const struct good *g = &goods[i];
        struct outcome o = parse_all_ways(g->req, g->len);

        if (o.status != SR_HTTP_OK) {
            SR_FAIL("%s: %s/%s", g->name, sr_http_status_str(o.status),
                    sr_http_reason_str(o.reason));
        }
        ASSERT_STR_EQ(o.host, g->host);
        ASSERT_EQ(o.head_len, g->len - g->trailing);
        ASSERT_EQ(o.version_minor, g->minor);
        ASSERT_EQ(o.is_ip_literal, g->is_ip);
        ASSERT_EQ(o.is_host_from_target, g->from_target);
        ASSERT_EQ(o.has_content_length, g->has_cl);
        ASSERT_EQ(o.content_length, g->cl);
        ASSERT_EQ(o.is_chunked, g->chunked);
        ASSERT_EQ(o.is_upgrade, g->upgrade);
    }
}

static void
test_views(void)
{
    static const char req[] = "PUT /x/y HTTP/1.1\r\nHost: v.example:81\r\n\r\n";
    struct sr_http_head res;

    sr_http_parse_head((const uint8_t *)req, sizeof(req) - 1, &res);
    ASSERT_EQ(res.status, SR_HTTP_OK);
    ASSERT_VIEW_EQ(res.method.ptr, res.method.len, "PUT");
    ASSERT_VIEW_EQ(res.target.ptr, res.target.len, "/x/y");
    ASSERT_VIEW_EQ(res.host.ptr, res.host.len, "v.example");
    ASSERT(res.host.ptr == (const uint8_t *)req + 25); /* a view, not a copy */
    ASSERT_EQ(res.n_headers, 1);
}

/* ---- refused ----------------------------------------------------------------------- */

struct bad {
    const char *req;
    size_t len;
    enum sr_http_status status;
    enum sr_http_reason reason;
    size_t decided_at; /* the shortest prefix that is no longer NEED_MORE; 0: not checked */
};

#define H11 "GET / HTTP/1.1\r\n"

static const struct bad bads[] = {
    /* not HTTP */
    {S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NOT_METHOD,
     1},
    {S("\x00\x2a\x38"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NOT_METHOD, 1}, /* OpenVPN over TCP */
    {S("SSH-2.0-OpenSSH_9.2p1\r\n"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_TARGET, 22},
    {S("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION,
     41},
    {S("SSH-2.0-X some comment\r\n"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION, 16},
    {S("GET /\r\n"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION, 6}, /* HTTP/0.9 */
    {S("GET / FTP/1.1\r\n"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION, 7},
    {S("GET / http/1.1\r\n"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_VERSION, 7},
    {S("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG / HTTP/1.1\r\n"), SR_HTTP_NOT_HTTP,
     SR_HTTP_REASON_METHOD_TOO_LONG, 33},
    {S("GET\t/ HTTP/1.1\r\n"), SR_HTTP_NOT_HTTP, SR_HTTP_REASON_NO_TARGET, 4},
    /* request line */
    {S("GET  / HTTP/1.1\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_REQUEST_LINE, 5},
    {S("GET / HTTP/1.1 \r\n"), SR_HTTP_BAD, SR_HTTP_REASON_REQUEST_LINE, 15},
    {S("GET / HTTP/2.0\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_VERSION, 12},
    {S("GET / HTTP/1.2\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_VERSION, 14},
    {S("GET / HTTP/1.10\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_VERSION, 15},
    {S("GET /\x7f HTTP/1.1\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TARGET, 6},
    {S("GET /caf\xc3\xa9 HTTP/1.1\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TARGET, 9},
    {S("GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TARGET, 18},
    {S("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TARGET, 0},
    {S("GET http://u:p@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_TARGET, 0},
    {S("GET http:///x HTTP/1.1\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TARGET, 0},
    {S("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TARGET, 0},
    {S("CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_HOST_PORT, 0},
    {S("CONNECT a.example:443/x HTTP/1.1\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TARGET, 0},
    /* line endings */
    {S("GET / HTTP/1.1\nHost: a\n\n"), SR_HTTP_BAD, SR_HTTP_REASON_BARE_LF, 15},
    {S(H11 "Host: a\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_BARE_LF, 24},
    {S(H11 "Host: a\r\n\n"), SR_HTTP_BAD, SR_HTTP_REASON_BARE_LF, 26},
    {S("GET / HTTP/1.1\rHost: a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR, 16},
    {S(H11 "Host: a\rX: b\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR, 25},
    {S(H11 "Host: a\r\n\rX"), SR_HTTP_BAD, SR_HTTP_REASON_BARE_CR, 27},
    /* header lines */
    {S(H11 "Host: a\r\nX-A: b\r\n c\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_OBS_FOLD, 34},
    {S(H11 " Host: a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_OBS_FOLD, 17},
    {S(H11 "Host : a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_SPACE_COLON, 22},
    {S(H11 "Host\t: a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_SPACE_COLON, 22},
    {S(H11 "Host a.example\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NO_COLON, 31},
    {S(H11 "X-Foo\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NO_COLON, 22},
    {S(H11 ": a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NAME, 17},
    {S(H11 "X@Y: 1\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NAME, 20},
    {S(H11 "Ho st: a\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_NAME, 22},
    {S(H11 "Host: a\x00.example\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_VALUE, 24},
    {S(H11 "X: \x1b[1m\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HEADER_VALUE, 20},
    /* routing */
    {S(H11 "Accept: */*\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_NO_HOST, 31},
    {S("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_NO_HOST, 31},
    {S("GET http://a.example/ HTTP/1.1\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_NO_HOST, 34},
    {S(H11 "Host: a.example\r\nHost: a.example\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_HOST_DUPLICATE, 50},
    {S(H11 "Host: a.example\r\nhost: b.example\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_HOST_DUPLICATE, 50},
    {S("GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_HOST_MISMATCH, 49},
    {S(H11 "Host: [::1\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HOST_INVALID, 0},
    {S(H11 "Host: [zz::1]:80\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HOST_INVALID, 0},
    {S(H11 "Host: [::1]x\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HOST_INVALID, 0},
    {S(H11 "Host: a.example:99999\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HOST_PORT, 0},
    {S(H11 "Host: a.example:8x\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HOST_PORT, 0},
    {S(H11 "Host: a.example:1:2\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_HOST_PORT, 0},
    /* framing */
    {S(H11 "Host: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_TE_AND_CL, 0},
    {S(H11 "Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_TE_AND_CL, 0},
    {S(H11 "Host: a\r\nContent-Length: 5, 5\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_CONTENT_LENGTH,
     0},
    {S(H11 "Host: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_CONTENT_LENGTH, 0},
    {S(H11 "Host: a\r\nContent-Length: -1\r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_CONTENT_LENGTH, 0},
    {S(H11 "Host: a\r\nContent-Length: \r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_CONTENT_LENGTH, 0},
    {S(H11 "Host: a\r\nContent-Length: 1234567890123456789\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_CONTENT_LENGTH, 0},
    {S(H11 "Host: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_TRANSFER_ENCODING, 0},
    {S(H11 "Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
     SR_HTTP_BAD, SR_HTTP_REASON_TRANSFER_ENCODING, 0},
    {S(H11 "Host: a\r\nTransfer-Encoding: gzip\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_TRANSFER_ENCODING, 0},
    {S(H11 "Host: a\r\nTransfer-Encoding: \r\n\r\n"), SR_HTTP_BAD, SR_HTTP_REASON_TRANSFER_ENCODING,
     0},
    {S(H11 "Host: a\r\nTransfer-Encoding: chunked\"\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_TRANSFER_ENCODING, 0},
    {S("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), SR_HTTP_BAD,
     SR_HTTP_REASON_TRANSFER_ENCODING, 0},
};

static void
test_bad_heads(void)
{
    size_t i;

    for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *b = &bads[i];
        struct outcome o = parse_all_ways(b->req, b->len);

        if (o.status != b->status || o.reason != b->reason) {
            SR_FAIL("bads[%zu] \"%.40s\": %s/%s, want %s/%s", i, b->req,
                    sr_http_status_str(o.status), sr_http_reason_str(o.reason),
                    sr_http_status_str(b->status), sr_http_reason_str(b->reason));
        }
        if (b->decided_at > 0) {
            ASSERT_EQ(parse_exact(b->req, b->decided_at - 1, NULL).status, SR_HTTP_NEED_MORE);
            ASSERT_EQ(parse_exact(b->req, b->decided_at, NULL).status, b->status);
        }
    }
}

static void
test_host_invalid_names(void)
{
    static const struct {
        const char *req;
        size_t len;
        enum sr_name_error err;
    } cases[] = {
        {S(H11 "Host:\r\n\r\n"), SR_NAME_EMPTY},
        {S(H11 "Host: a..b\r\n\r\n"), SR_NAME_EMPTY_LABEL},
        {S(H11 "Host: exa mple.com\r\n\r\n"), SR_NAME_BAD_CHAR},
        {S(H11 "Host: a/b\r\n\r\n"), SR_NAME_BAD_CHAR},
        {S("GET http://a*b/ HTTP/1.1\r\nHost: a\r\n\r\n"), SR_NAME_BAD_CHAR},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct outcome o = parse_all_ways(cases[i].req, cases[i].len);
        ASSERT_EQ(o.status, SR_HTTP_BAD);
        ASSERT_EQ(o.reason, SR_HTTP_REASON_HOST_INVALID);
        ASSERT_EQ(o.name_error, cases[i].err);
    }
}

/* ---- limits ------------------------------------------------------------------------ */

static void
test_limits(void)
{
    static char buf[3 * SR_HTTP_LINE_MAX];
    size_t n;
    unsigned i;
    struct outcome o;

    /* a header line of exactly LINE_MAX bytes passes, one byte more does not */
    n = (size_t)snprintf(buf, sizeof(buf), H11 "Host: a\r\nX: ");
    memset(buf + n, 'v', SR_HTTP_LINE_MAX - 3);
    memcpy(buf + n + SR_HTTP_LINE_MAX - 3, "\r\n\r\n", 4);
    o = parse_exact(buf, n + SR_HTTP_LINE_MAX + 1, NULL);
    ASSERT_EQ(o.status, SR_HTTP_OK);
    memset(buf + n, 'v', SR_HTTP_LINE_MAX - 2);
    memcpy(buf + n + SR_HTTP_LINE_MAX - 2, "\r\n\r\n", 4);
    o = parse_exact(buf, n + SR_HTTP_LINE_MAX + 2, NULL);
    ASSERT_EQ(o.status, SR_HTTP_BAD);
    ASSERT_EQ(o.reason, SR_HTTP_REASON_LINE_TOO_LONG);
    /* decided without the line's end */
    o = parse_exact(buf, n + SR_HTTP_LINE_MAX - 2, NULL);
    ASSERT_EQ(o.status, SR_HTTP_BAD);

    /* a long name and a long target too */
    memcpy(buf, H11, 16);
    memset(buf + 16, 'N', SR_HTTP_LINE_MAX + 1);
    o = parse_exact(buf, 16 + SR_HTTP_LINE_MAX + 1, NULL);
    ASSERT_EQ(o.reason, SR_HTTP_REASON_LINE_TOO_LONG);
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', SR_HTTP_LINE_MAX - 14);
    memcpy(buf + 5 + SR_HTTP_LINE_MAX - 14, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    o = parse_exact(buf, SR_HTTP_LINE_MAX - 9 + 22, NULL); /* a line of exactly LINE_MAX */
    ASSERT_EQ(o.status, SR_HTTP_OK);
    memset(buf + 5, 'a', SR_HTTP_LINE_MAX - 13);
    memcpy(buf + 5 + SR_HTTP_LINE_MAX - 13, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    o = parse_exact(buf, SR_HTTP_LINE_MAX - 8 + 22, NULL);
    ASSERT_EQ(o.reason, SR_HTTP_REASON_LINE_TOO_LONG);

    /* 100 header lines pass, 101 do not */
    n = (size_t)snprintf(buf, sizeof(buf), H11 "Host: a\r\n");
    for (i = 1; i < SR_HTTP_HEADERS_MAX; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%u: %u\r\n", i, i);
    }
    memcpy(buf + n, "\r\n", 2);
    o = parse_exact(buf, n + 2, NULL);
    ASSERT_EQ(o.status, SR_HTTP_OK);
    memcpy(buf + n, "Y: 1\r\n\r\n", 8);
    o = parse_exact(buf, n + 8, NULL);
    ASSERT_EQ(o.status, SR_HTTP_BAD);
    ASSERT_EQ(o.reason, SR_HTTP_REASON_TOO_MANY_HEADERS);
    ASSERT_EQ(parse_exact(buf, n + 1, NULL).status, SR_HTTP_BAD); /* at the 101st line */
}

/* A client dribbling one byte at a time: following need, a good head takes one parse per
 * request-line byte and then one per few bytes, never one per byte forever. */
static void
test_need(void)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    struct sr_http_head res;

    sr_http_parse_head((const uint8_t *)req, 16, &res);
    ASSERT_EQ(res.status, SR_HTTP_NEED_MORE);
    ASSERT_EQ(res.need, 10); /* "Host:x" CRLF CRLF at the least */
    sr_http_parse_head((const uint8_t *)req, 35, &res);
    ASSERT_EQ(res.need, 2);
    sr_http_parse_head((const uint8_t *)req, 36, &res);
    ASSERT_EQ(res.need, 1);
    sr_http_parse_head((const uint8_t *)req, 20, &res);
    ASSERT_EQ(res.need, 4);
    sr_http_parse_head((const uint8_t *)req, 0, &res);
    ASSERT_EQ(res.need, 1);
}

/* A head of <n_lines> header lines of 8,000 bytes after the request line and Host, into
 * <buf>; returns its length. */
static size_t
big_head(char *buf, size_t cap, unsigned n_lines)
{
    size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: big.example\r\n");
    unsigned i;

    for (i = 0; i < n_lines; i++) {
        ASSERT_LE(n + 8002 + 2, cap);
        n += (size_t)snprintf(buf + n, cap - n, "X-Pad-%03u: ", i);
        memset(buf + n, 'a' + (char)(i % 26), 8000 - 11);
        n += 8000 - 11;
        memcpy(buf + n, "\r\n", 2);
        n += 2;
    }
    memcpy(buf + n, "\r\n", 2);
    return n + 2;
}

/* The cost of a head dribbled in tiny pieces (issue 11 item 6): a reader resumes where it
 * stopped, so a 120 KB head fed one byte per call examines each byte about once, exactly
 * as many bytes as when it arrives whole, where parsing each prefix afresh (what the
 * daemon did, once per `need` bytes) examines a quadratic count. */
static void
test_dribble_is_linear(void)
{
    static char buf[130000];
    size_t n = big_head(buf, sizeof(buf), 15);
    struct sr_http_reader r;
    struct sr_http_head res;
    size_t whole;
    size_t fresh = 0;
    size_t have = 0;
    size_t i;

    ASSERT_GE(n, 120000);
    sr_http_reader_init(&r);
    sr_http_read_head(&r, (const uint8_t *)buf, n, &res);
    ASSERT_EQ(res.status, SR_HTTP_OK);
    ASSERT_EQ(res.head_len, n);
    whole = r.n_examined;
    ASSERT_GE(whole, n);     /* every byte was looked at... */
    ASSERT_LE(whole, 2 * n); /* ...and read at most once more, as part of its line */

    sr_http_reader_init(&r);
    for (i = 0; i < n; i++) {
        sr_http_read_head(&r, (const uint8_t *)buf, i, &res);
        ASSERT_EQ(res.status, SR_HTTP_NEED_MORE);
    }
    sr_http_read_head(&r, (const uint8_t *)buf, n, &res);
    ASSERT_EQ(res.status, SR_HTTP_OK);
    ASSERT_EQ(r.n_examined, whole);                       /* N calls cost what one does */
    sr_http_read_head(&r, (const uint8_t *)buf, n, &res); /* decided: nothing read again */
    ASSERT_EQ(res.status, SR_HTTP_OK);
    ASSERT_EQ(r.n_examined, whole);

    /* Parsing afresh, following need, on the first 16 KB head: a quadratic count, so the
     * counter does measure what resuming saves. */
    n = big_head(buf, sizeof(buf), 2);
    for (;;) {
        sr_http_reader_init(&r);
        sr_http_read_head(&r, (const uint8_t *)buf, have, &res);
        fresh += r.n_examined;
        if (res.status != SR_HTTP_NEED_MORE) {
            break;
        }
        have += res.need;
    }
    ASSERT_EQ(res.status, SR_HTTP_OK);
    ASSERT_GT(fresh, n * n / 16);
}

/* ---- responses ----------------------------------------------------------------------- */

static void
test_error_responses(void)
{
    static const char r400[] = "HTTP/1.1 400 Bad Request\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 12\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "bad request\n";
    static const char r421[] = "HTTP/1.1 421 Misdirected Request\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 23\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "no route for this host\n";
    char out[SR_HTTP_RESPONSE_MAX];
    size_t n;

    n = sr_http_error_response(out, sizeof(out), 400);
    ASSERT_EQ(n, sizeof(r400) - 1);
    ASSERT(memcmp(out, r400, n + 1) == 0);
    n = sr_http_error_response(out, sizeof(out), 421);
    ASSERT_EQ(n, sizeof(r421) - 1);
    ASSERT(memcmp(out, r421, n + 1) == 0);
    ASSERT_EQ(sr_http_error_response(out, sizeof(out), 200), 0);
    ASSERT_EQ(sr_http_error_response(out, sizeof(r421) - 1, 421), 0); /* no room for NUL */
    ASSERT_EQ(sr_http_error_response(out, sizeof(r421), 421), sizeof(r421) - 1);
}

static void
test_strings(void)
{
    int r;

    ASSERT_STR_EQ(sr_http_status_str(SR_HTTP_NOT_HTTP), "not_http");
    ASSERT_STR_EQ(sr_http_status_str(SR_HTTP_OK), "ok");
    for (r = SR_HTTP_REASON_NONE; r <= SR_HTTP_REASON_TE_AND_CL; r++) {
        ASSERT(strcmp(sr_http_reason_str((enum sr_http_reason)r), "unknown") != 0);
    }
}

int
main(void)
{
    test_good_heads();
    test_views();
    test_bad_heads();
    test_host_invalid_names();
    test_limits();
    test_need();
    test_dribble_is_linear();
    test_error_responses();
    test_strings();
    printf("test_http: ok\n");
    return 0;
}
