/* SPDX-License-Identifier: MIT */
/* Request boundaries: every test feeds a stream whole and one byte at a time, and the
 * bytes forwarded must be the input itself up to where a head is refused. Then whole
 * exchanges, client and backend bytes in turn: an Upgrade or CONNECT is forwarded and the
 * bytes behind it held until the backend's answer says whether they are a tunnel's or the
 * next request; a full pipeline waits for responses; a refused upgrade leaves the next
 * head checked. */
#include "sniroute/wire/httptrack.h"

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
    struct verdicts v;

    /* Without the backend's answer, only the upgrade request goes; the rest waits. */
    v = run(ws, 0, SR_TRACK_OK, (size_t)(strstr(ws, "\x81") - ws));
    ASSERT_EQ(v.n_heads, 1);
    run("GET / HTTP/1.1\r\nHost a\r\n\r\n", 0, SR_TRACK_BAD, 0);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "GET /", 5);
    run(big, 0, SR_TRACK_TOO_LARGE, 0);
    /* CONNECT has no content (RFC 9110 9.3.6): bytes framed as its body are refused. */
    run("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\nhello", 0, SR_TRACK_BAD,
        0);
    run("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
        SR_TRACK_BAD, 0);
    run("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 0\r\n\r\n", 0, SR_TRACK_OK,
        (size_t)-1);
    /* HEAD and CONNECT in another case: a backend might take them for the real ones. */
    run("head / HTTP/1.1\r\nHost: a\r\n\r\n", 0, SR_TRACK_BAD, 0);
    run("Connect a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 0, SR_TRACK_BAD, 0);
    run("HEADX / HTTP/1.1\r\nHost: a\r\n\r\n", 0, SR_TRACK_OK, (size_t)-1);
}

/* ---- exchanges: client and backend bytes in turn -------------------------------------- */

struct exchange {
    struct sr_http_track t;
    struct sr_bytes out;
    struct verdicts v;
};

static void
ex_init(struct exchange *ex, int refuse_at)
{
    memset(ex, 0, sizeof(*ex));
    ex->v.refuse_at = refuse_at;
    sr_http_track_init(&ex->t, 8192, on_head, &ex->v);
}

static void
ex_fini(struct exchange *ex)
{
    free(ex->out.p);
    sr_http_track_fini(&ex->t);
}

/* The client sends <text> (NULL: nothing new; the caller passes on what was held): the
 * tracker must answer <want> and forward exactly <forwarded>. */
static void
ex_client(struct exchange *ex, const char *text, enum sr_track_result want, const char *forwarded)
{
    size_t n = text != NULL ? strlen(text) : 0;

    ex->out.len = 0;
    ASSERT_EQ(sr_http_track_feed(&ex->t, (const uint8_t *)text, n, &ex->out), want);
    ASSERT_EQ(ex->out.len, strlen(forwarded));
    ASSERT(ex->out.len == 0 || memcmp(ex->out.p, forwarded, ex->out.len) == 0);
}

static void
ex_backend(struct exchange *ex, const char *text, enum sr_track_result want)
{
    ASSERT_EQ(sr_http_track_response(&ex->t, (const uint8_t *)text, strlen(text)), want);
}

#define WS_HEAD                                                                                    \
    "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\n"                      \
    "Upgrade: websocket\r\n\r\n"
#define OTHER_HOST "GET /secret HTTP/1.1\r\nHost: b.test\r\n\r\n"
#define SAME_HOST  "GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n"
#define OK_EMPTY   "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
#define SWITCHED   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"

static void
test_upgrade_ignored(void)
{
    struct exchange ex;

    /* The backend answers 200: the held request is a request, checked and refused. */
    ex_init(&ex, 2);
    ex_client(&ex, WS_HEAD OTHER_HOST, SR_TRACK_OK, WS_HEAD);
    ASSERT(sr_http_track_is_holding(&ex.t));
    ex_client(&ex, "more", SR_TRACK_OK, ""); /* fed while holding: held too */
    ex_backend(&ex, "HTTP/1.1 100 Continue\r\n\r\n", SR_TRACK_OK);
    ASSERT(sr_http_track_is_holding(&ex.t)); /* an interim response is no answer */
    ex_backend(&ex, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", SR_TRACK_OK);
    ASSERT(!sr_http_track_is_holding(&ex.t));
    ASSERT(!sr_http_track_is_answered(&ex.t)); /* its body is still to come */
    ex_client(&ex, NULL, SR_TRACK_STOP, "");
    ASSERT_EQ(ex.v.n_heads, 2);
    ASSERT_STR_EQ(ex.v.hosts[1], "b.test");
    ex_backend(&ex, "ok", SR_TRACK_OK);
    ASSERT(sr_http_track_is_answered(&ex.t));
    ex_fini(&ex);

    /* ... and one for the same host goes on, as does keep-alive after it. */
    ex_init(&ex, 0);
    ex_client(&ex, WS_HEAD SAME_HOST, SR_TRACK_OK, WS_HEAD);
    ex_backend(&ex, OK_EMPTY, SR_TRACK_OK);
    ex_client(&ex, NULL, SR_TRACK_OK, SAME_HOST);
    ex_client(&ex, SAME_HOST, SR_TRACK_OK, SAME_HOST);
    ASSERT(!sr_http_track_is_holding(&ex.t));
    ASSERT_EQ(ex.v.n_heads, 3);
    ex_fini(&ex);
}

static void
test_upgrade_accepted(void)
{
    static const char post[] = "POST /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\n"
                               "Upgrade: websocket\r\nExpect: 100-continue\r\n"
                               "Content-Length: 5\r\n\r\n";
    struct exchange ex;

    ex_init(&ex, 0);
    ex_client(&ex, WS_HEAD "\x81\x05hello" OTHER_HOST, SR_TRACK_OK, WS_HEAD);
    ex_backend(&ex, SWITCHED "\x81\x02hi", SR_TRACK_OK);
    ASSERT(!sr_http_track_reads_responses(&ex.t));
    ex_client(&ex, NULL, SR_TRACK_OK, "\x81\x05hello" OTHER_HOST);
    ex_client(&ex, OTHER_HOST, SR_TRACK_OK, OTHER_HOST); /* a tunnel: nothing is checked */
    ASSERT_EQ(ex.v.n_heads, 1);
    ex_fini(&ex);

    /* With Expect: 100-continue the body goes after the 100; the wait starts after it. */
    ex_init(&ex, 0);
    ex_client(&ex, post, SR_TRACK_OK, post);
    ASSERT(!sr_http_track_is_holding(&ex.t));
    ex_backend(&ex, "HTTP/1.1 100 Continue\r\n\r\n", SR_TRACK_OK);
    ex_client(&ex, "hel", SR_TRACK_OK, "hel");
    ex_client(&ex, "lo\x81\x00", SR_TRACK_OK, "lo");
    ASSERT(sr_http_track_is_holding(&ex.t));
    ex_backend(&ex, SWITCHED, SR_TRACK_OK);
    ex_client(&ex, NULL, SR_TRACK_OK, "\x81");
    ex_fini(&ex);
}

static void
test_connect(void)
{
    static const char connect[] = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
    struct exchange ex;

    ex_init(&ex, 0);
    ex_client(&ex, connect, SR_TRACK_OK, connect);
    ASSERT(sr_http_track_is_holding(&ex.t));
    ex_backend(&ex, "HTTP/1.1 200 Connection Established\r\n\r\n", SR_TRACK_OK);
    ex_client(&ex, "\x16\x03\x01" OTHER_HOST, SR_TRACK_OK, "\x16\x03\x01" OTHER_HOST);
    ex_fini(&ex);

    ex_init(&ex, 2);
    ex_client(&ex, connect, SR_TRACK_OK, connect);
    ex_backend(&ex, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", SR_TRACK_OK);
    ex_client(&ex, OTHER_HOST, SR_TRACK_STOP, "");
    ex_fini(&ex);
}

static void
test_pipeline_limit(void)
{
    struct exchange ex;
    struct sr_bytes all = {NULL, 0, 0};
    size_t one = strlen(SAME_HOST);
    int i;

    ex_init(&ex, 0);
    for (i = 0; i < SR_HTTP_RESP_PENDING_MAX + 6; i++) {
        all.p = realloc(all.p, all.len + one + 1);
        ASSERT(all.p != NULL);
        memcpy(all.p + all.len, SAME_HOST, one + 1);
        all.len += one;
    }
    ex.out.len = 0;
    ASSERT_EQ(sr_http_track_feed(&ex.t, all.p, all.len, &ex.out), SR_TRACK_OK);
    ASSERT_EQ(ex.out.len, one * SR_HTTP_RESP_PENDING_MAX);
    ASSERT(sr_http_track_is_holding(&ex.t));
    for (i = 0; i < 6; i++) {
        ex_backend(&ex, OK_EMPTY, SR_TRACK_OK);
        ASSERT(!sr_http_track_is_holding(&ex.t));
        ex_client(&ex, NULL, SR_TRACK_OK, SAME_HOST); /* one answered, one more goes */
        ASSERT(sr_http_track_is_holding(&ex.t));      /* the queue is full again */
    }
    ASSERT_EQ(ex.v.n_heads, SR_HTTP_RESP_PENDING_MAX + 6);
    ex_backend(&ex, OK_EMPTY, SR_TRACK_OK);
    ASSERT(!sr_http_track_is_holding(&ex.t));
    ex_client(&ex, SAME_HOST, SR_TRACK_OK, SAME_HOST);
    free(all.p);
    ex_fini(&ex);
}

static void
test_undecidable(void)
{
    struct exchange ex;

    /* After a body that runs to the close nothing is matched: requests go on, checked,
     * but an upgrade could not be told apart and is refused. */
    ex_init(&ex, 0);
    ex_client(&ex, SAME_HOST, SR_TRACK_OK, SAME_HOST);
    ex_backend(&ex, "HTTP/1.0 200 OK\r\n\r\nto the close", SR_TRACK_OK);
    ASSERT(!sr_http_track_reads_responses(&ex.t));
    ASSERT(!sr_http_track_is_answered(&ex.t));
    ex_client(&ex, SAME_HOST, SR_TRACK_OK, SAME_HOST);
    ex_client(&ex, WS_HEAD, SR_TRACK_UNDECIDABLE, "");
    ex_fini(&ex);

    /* Lost while an upgrade waits for its answer: the response side says so. */
    ex_init(&ex, 0);
    ex_client(&ex, SAME_HOST WS_HEAD "\x81", SR_TRACK_OK, SAME_HOST WS_HEAD);
    ex_backend(&ex, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", SR_TRACK_OK);
    ex_backend(&ex, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
               SR_TRACK_UNDECIDABLE);
    ex_fini(&ex);
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
    test_upgrade_ignored();
    test_upgrade_accepted();
    test_connect();
    test_pipeline_limit();
    test_undecidable();
    return 0;
}
