/* SPDX-License-Identifier: MIT */
/* Request boundaries: every test feeds a stream whole and one byte at a time, and the
 * bytes forwarded must be the input itself up to where a head is refused. */
#include "sniroute/httptrack.h"

#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

struct verdicts {
    int n_heads;
    int refuse_at; /* refuse the head with this 1-based number; 0: never */
    char hosts[4][64];
};

static int
on_head(void *ctx, const struct sr_http_head *head)
{
    struct verdicts *v = ctx;

    v->n_heads++;
    if (v->n_heads <= 4) {
        snprintf(v->hosts[v->n_heads - 1], sizeof(v->hosts[0]), "%.*s", (int)head->host.len,
                 (const char *)head->host.ptr);
    }
    return v->n_heads == v->refuse_at ? 1 : 0;
}

/* Feed <text> whole, then byte by byte; both must give <want> and forward <forwarded>
 * bytes of the input (all of it when 0 is passed as -1). Returns the verdicts. */
static struct verdicts
run(const char *text, int refuse_at, enum sr_track_result want, size_t forwarded)
{
    size_t len = strlen(text);
    struct verdicts v[2];
    int pass;

    for (pass = 0; pass < 2; pass++) {
        struct sr_http_track t;
        struct sr_bytes out = {NULL, 0, 0};
        enum sr_track_result r = SR_TRACK_OK;
        size_t i;

        memset(&v[pass], 0, sizeof(v[pass]));
        v[pass].refuse_at = refuse_at;
        sr_http_track_init(&t, 8192, on_head, &v[pass]);
        if (pass == 0) {
            r = sr_http_track_feed(&t, (const uint8_t *)text, len, &out);
        } else {
            for (i = 0; i < len && r == SR_TRACK_OK; i++) {
                r = sr_http_track_feed(&t, (const uint8_t *)text + i, 1, &out);
            }
        }
        ASSERT_EQ(r, want);
        ASSERT_EQ(out.len, forwarded == (size_t)-1 ? len : forwarded);
        ASSERT(out.len == 0 || memcmp(out.p, text, out.len) == 0);
        free(out.p);
        sr_http_track_fini(&t);
    }
    ASSERT_EQ(v[0].n_heads, v[1].n_heads);
    return v[0];
}

static void
test_keep_alive(void)
{
    static const char two[] = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"
                              "\r\nGET /x HTTP/1.1\r\nHost: b.test:8080\r\n\r\n";
    static const char post[] = "POST /f HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\n\r\n"
                               "hello world"
                               "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    struct verdicts v;

    v = run(two, 0, SR_TRACK_OK, (size_t)-1);
    ASSERT_EQ(v.n_heads, 2);
    ASSERT_STR_EQ(v.hosts[0], "a.test");
    ASSERT_STR_EQ(v.hosts[1], "b.test");
    /* The second head refused: only the first request (and the empty line) went on. */
    v = run(two, 2, SR_TRACK_STOP, strlen("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n\r\n"));
    v = run(post, 0, SR_TRACK_OK, (size_t)-1);
    ASSERT_EQ(v.n_heads, 2);
    /* A body that looks like a request is a body: it is never taken for a head. */
    v = run("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 32\r\n\r\n"
            "GET / HTTP/1.1\r\nHost: evil\r\n\r\n",
            0, SR_TRACK_OK, (size_t)-1);
    ASSERT_EQ(v.n_heads, 1);
}

static void
test_chunked(void)
{
    static const char chunked[] =
        "POST /u HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=value\r\nhello\r\n"
        "1B\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n"
        "0\r\nTrailer-Field: 1\r\n\r\n"
        "GET /next HTTP/1.1\r\nHost: c.test\r\n\r\n";
    struct verdicts v = run(chunked, 0, SR_TRACK_OK, (size_t)-1);

    ASSERT_EQ(v.n_heads, 2);
    ASSERT_STR_EQ(v.hosts[1], "c.test");
    /* Broken framing is not HTTP any more. */
    run("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, SR_TRACK_BAD,
        strlen("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz"));
    run("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX", 0,
        SR_TRACK_BAD,
        strlen("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabcX"));
}

static void
test_tunnel_and_limits(void)
{
    static const char ws[] = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\n\r\n\x81\x05hello GET / HTTP/1.1\r\n\r\n";
    char big[9000];
    struct verdicts v = run(ws, 0, SR_TRACK_OK, (size_t)-1);

    ASSERT_EQ(v.n_heads, 1); /* after Upgrade nothing is parsed any more */
    run("GET / HTTP/1.1\r\nHost a\r\n\r\n", 0, SR_TRACK_BAD, 0);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "GET /", 5);
    run(big, 0, SR_TRACK_TOO_LARGE, 0);
}

/* Between requests the tracker holds no buffer (issue 11 item 4): a head that lies whole in
 * one feed is parsed where it is, one split across feeds is gathered only until its end. A
 * head of exactly head_max bytes passes either way, one byte more does not. */
static void
test_no_buffer_between_requests(void)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    struct verdicts v = {0, 0, {""}};
    struct sr_bytes out = {NULL, 0, 0};
    struct sr_http_track t;
    char big[200];
    size_t n;

    sr_http_track_init(&t, 8192, on_head, &v);
    ASSERT_EQ(sr_http_track_feed(&t, (const uint8_t *)req, sizeof(req) - 1, &out), SR_TRACK_OK);
    ASSERT(t.head.p == NULL); /* never copied */
    ASSERT_EQ(sr_http_track_feed(&t, (const uint8_t *)req, 10, &out), SR_TRACK_OK);
    ASSERT(t.head.p != NULL); /* the start of a head: kept until its end */
    ASSERT_EQ(sr_http_track_feed(&t, (const uint8_t *)req + 10, sizeof(req) - 11, &out),
              SR_TRACK_OK);
    ASSERT(t.head.p == NULL); /* passed on, and let go */
    ASSERT_EQ(t.head.cap, 0);
    ASSERT_EQ(v.n_heads, 2);
    ASSERT_EQ(out.len, 2 * (sizeof(req) - 1));
    free(out.p);
    sr_http_track_fini(&t);

    n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a.test\r\nX: ");
    memset(big + n, 'x', sizeof(big) - n);
    memcpy(big + 100 - 4, "\r\n\r\n", 4); /* a head of exactly 100 bytes */
    big[100] = '\0';
    ASSERT_EQ(strlen(big), 100);
    for (int pass = 0; pass < 4; pass++) {
        bool is_over = pass % 2 == 1; /* head_max 99 */
        enum sr_track_result r = SR_TRACK_OK;

        out.p = NULL;
        out.len = out.cap = 0;
        sr_http_track_init(&t, is_over ? 99 : 100, on_head, &v);
        if (pass < 2) {
            r = sr_http_track_feed(&t, (const uint8_t *)big, 100, &out);
        } else {
            for (n = 0; n < 100 && r == SR_TRACK_OK; n++) {
                r = sr_http_track_feed(&t, (const uint8_t *)big + n, 1, &out);
            }
        }
        ASSERT_EQ(r, is_over ? SR_TRACK_TOO_LARGE : SR_TRACK_OK);
        ASSERT_EQ(out.len, is_over ? 0 : 100);
        free(out.p);
        sr_http_track_fini(&t);
    }
}

int
main(void)
{
    test_keep_alive();
    test_chunked();
    test_tunnel_and_limits();
    test_no_buffer_between_requests();
    return 0;
}
