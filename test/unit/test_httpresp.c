/* SPDX-License-Identifier: MIT */
/* Response framing tests: each response stream is fed after announcing its requests, then
 * fed again whole, one byte at a time and at every split into two and three pieces; all
 * runs must end in the same state, and the byte at which the stream became a tunnel (or
 * lost) is pinned. The cases are what the backend of an HTTP listener may send: keep-alive
 * and pipelined responses, HEAD, 204 and 304, chunked bodies with extensions and
 * trailers, 1xx interim responses (100 Continue, 103 Early Hints) before a 101 or a final
 * status, CONNECT answered 200 and 403, a body that holds a fake "101", and every shape
 * that must make the stream LOST. */
#include "sniroute/wire/httpresp.h"

#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

/* Requests, one letter each: g GET, h HEAD, u an Upgrade, c a CONNECT. */
static void
announce(struct sr_http_resp *r, const char *reqs)
{
    sr_http_resp_init(r);
    for (const char *p = reqs; *p != '\0'; p++) {
        enum sr_http_switch sw = *p == 'u'   ? SR_HTTP_SWITCH_UPGRADE
                                 : *p == 'c' ? SR_HTTP_SWITCH_CONNECT
                                             : SR_HTTP_SWITCH_NONE;

        ASSERT(sr_http_resp_expect(r, *p == 'h', sw));
    }
}

struct result {
    enum sr_http_resp_status status;
    enum sr_http_resp_reason reason;
    unsigned n_pending;
    bool is_idle;
    bool is_switch_pending;
    size_t decided_at; /* bytes fed when the status left FOLLOWING; SIZE_MAX if it did not */
};

static struct result
result_of(const struct sr_http_resp *r, size_t decided_at)
{
    struct result res;

    res.status = (enum sr_http_resp_status)r->status;
    res.reason = (enum sr_http_resp_reason)r->reason;
    res.n_pending = r->n_pending;
    res.is_idle = sr_http_resp_is_idle(r);
    res.is_switch_pending = sr_http_resp_is_switch_pending(r);
    res.decided_at = decided_at;
    return res;
}

/* Feed <text> in pieces ending at <cuts> (ascending, the last one its length), each from
 * an exact-size heap copy. Returns the result. */
static struct result
feed_cut(const char *reqs, const char *text, const size_t *cuts, size_t n_cuts)
{
    struct sr_http_resp r;
    size_t from = 0;
    size_t decided_at = SIZE_MAX;

    announce(&r, reqs);
    for (size_t i = 0; i < n_cuts; i++) {
        size_t n = cuts[i] - from;
        uint8_t *copy = malloc(n ? n : 1);

        ASSERT(copy != NULL);
        memcpy(copy, text + from, n);
        if (sr_http_resp_feed(&r, copy, n) != SR_HTTP_RESP_FOLLOWING && decided_at == SIZE_MAX) {
            decided_at = cuts[i];
        }
        free(copy);
        from = cuts[i];
    }
    return result_of(&r, decided_at);
}

static void
assert_same(struct result a, struct result b, bool same_decided_at)
{
    ASSERT_EQ(a.status, b.status);
    ASSERT_EQ(a.reason, b.reason);
    ASSERT_EQ(a.n_pending, b.n_pending);
    ASSERT_EQ(a.is_idle, b.is_idle);
    ASSERT_EQ(a.is_switch_pending, b.is_switch_pending);
    if (same_decided_at) {
        ASSERT_EQ(a.decided_at, b.decided_at);
    }
}

/* Run every split of <text> after announcing <reqs>; all must agree with the byte-by-byte
 * run, which is returned (its decided_at is exact). */
static struct result
run_len(const char *reqs, const char *text, size_t len)
{
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    struct result one;
    size_t i;
    size_t j;

    ASSERT(cuts != NULL);
    for (i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }
    one = len > 0 ? feed_cut(reqs, text, cuts, len) : feed_cut(reqs, text, NULL, 0);
    cuts[0] = len;
    assert_same(one, feed_cut(reqs, text, cuts, 1), false);
    for (i = 0; i <= len; i++) {
        size_t two[2] = {i, len};

        assert_same(one, feed_cut(reqs, text, two, 2), false);
    }
    for (i = 0; i <= len; i += 7) {
        for (j = i; j <= len; j += 5) {
            size_t three[3] = {i, j, len};

            assert_same(one, feed_cut(reqs, text, three, 3), false);
        }
    }
    free(cuts);
    return one;
}

#define RUN(reqs, text)      run_len(reqs, text, sizeof(text) - 1)
#define OFFSET(text, marker) ((size_t)(strstr(text, marker) - (text)))

static void
test_keep_alive_and_pipelining(void)
{
    static const char two[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                              "HTTP/1.1 404 Not Found\r\ncontent-length:  2 \r\n\r\nno";
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                               "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"
                               "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
                               "HTTP/1.0 200\r\nContent-Length: 0\r\n\r\n";
    struct result r;

    r = RUN("gg", two);
    ASSERT_EQ(r.status, SR_HTTP_RESP_FOLLOWING);
    ASSERT(r.is_idle);
    r = RUN("ggg", two);
    ASSERT_EQ(r.n_pending, 1);
    ASSERT(!r.is_idle);
    /* Between the two: the first answered, the second not begun. */
    r = run_len("gg", two, OFFSET(two, "HTTP/1.1 404"));
    ASSERT_EQ(r.n_pending, 1);
    /* Inside a body, nothing is idle even with nothing pending. */
    r = run_len("g", two, OFFSET(two, "llo"));
    ASSERT_EQ(r.n_pending, 0);
    ASSERT(!r.is_idle);
    /* HEAD, 204 and 304 have no body whatever their Content-Length says. */
    r = RUN("hggg", head);
    ASSERT_EQ(r.status, SR_HTTP_RESP_FOLLOWING);
    ASSERT(r.is_idle);
    /* A status line without a reason phrase (and without the SP before it) is allowed. */
    r = RUN("g", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
    ASSERT(r.is_idle);
}

static void
test_chunked(void)
{
    static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                                  "5;ext=\"x\"\r\nhello\r\n"
                                  "1A\r\nHTTP/1.1 101 Switching\r\n\r\n\r\n"
                                  "0\r\nTrailer: 1\r\nOther: 2\r\n\r\n"
                                  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    struct result r = RUN("gg", chunked);

    ASSERT_EQ(r.status, SR_HTTP_RESP_FOLLOWING);
    ASSERT(r.is_idle);
    r = RUN("g",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_CLOSE_DELIMITED);
    r = RUN("g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;q=1 ,\r\n\r\n0\r\n\r\n");
    ASSERT(r.is_idle);
    r = RUN("g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_CHUNK);
    r = RUN("g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_CHUNK);
    r = RUN("g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_CHUNK);
    r = RUN("g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\nY\r\n\r\n");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_CHUNK);
}

static void
test_upgrade(void)
{
    static const char accepted[] = "HTTP/1.1 100 Continue\r\n\r\n"
                                   "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                   "\r\n\x81\x05hello"
                                   "HTTP/1.1 200 OK\r\n\x00\x01";
    static const char ignored[] = "HTTP/1.1 100 Continue\r\n\r\n"
                                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    /* An earlier response's body holds a 101: it is a body, not the answer. */
    static const char fake[] = "HTTP/1.1 200 OK\r\nContent-Length: 36\r\n\r\n"
                               "HTTP/1.1 101 Switching Protocols\r\n\r\n"
                               "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    struct result r;

    r = RUN("u", accepted);
    ASSERT_EQ(r.status, SR_HTTP_RESP_TUNNEL);
    ASSERT_EQ(r.n_pending, 0);
    ASSERT(!r.is_switch_pending);
    /* Decided on the CR that ends the 101's status line, not at the interim ones. */
    ASSERT_EQ(r.decided_at, OFFSET(accepted, "\r\nUpgrade: websocket") + 1);
    /* After the interim responses only, the answer is still to come. */
    r = run_len("u", accepted, OFFSET(accepted, "HTTP/1.1 101"));
    ASSERT_EQ(r.status, SR_HTTP_RESP_FOLLOWING);
    ASSERT(r.is_switch_pending);
    /* A final status other than 101 refuses the upgrade: HTTP goes on. */
    r = run_len("u", ignored, OFFSET(ignored, "OK\r\n") + 3); /* through the CR */
    ASSERT(!r.is_switch_pending);
    r = RUN("u", ignored);
    ASSERT_EQ(r.status, SR_HTTP_RESP_FOLLOWING);
    ASSERT(r.is_idle);
    r = RUN("gu", fake);
    ASSERT_EQ(r.status, SR_HTTP_RESP_FOLLOWING);
    ASSERT(r.is_idle);
    /* A 101 to a request that did not ask, or to one before the upgrade: LOST. */
    r = RUN("g", "HTTP/1.1 101 Switching Protocols\r\n\r\n");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_SWITCHED);
    r = RUN("gu", "HTTP/1.1 101 Switching Protocols\r\n\r\n");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_SWITCHED);
    r = RUN("c", "HTTP/1.1 101 Switching Protocols\r\n\r\n");
    ASSERT_EQ(r.reason, SR_HTTP_RESP_REASON_SWITCHED);
}

static void
test_connect(void)
{
    static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01";
    static const char denied[] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied";
    static const char next[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    struct sr_http_resp resp;
    struct result r;

    r = RUN("c", ok);
    ASSERT_EQ(r.status, SR_HTTP_RESP_TUNNEL);
    ASSERT_EQ(r.decided_at, OFFSET(ok, "\r\n\r\n") + 1);
    r = RUN("c", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    ASSERT_EQ(r.status, SR_HTTP_RESP_TUNNEL);
    r = RUN("c", denied);
    ASSERT_EQ(r.status, SR_HTTP_RESP_FOLLOWING);
    ASSERT(r.is_idle);
    /* Refused: the connection is HTTP again, and the next request is matched. */
    announce(&resp, "c");
    ASSERT(!sr_http_resp_expect(&resp, false, SR_HTTP_SWITCH_NONE));
    ASSERT_EQ(sr_http_resp_feed(&resp, (const uint8_t *)denied, sizeof(denied) - 1),
              SR_HTTP_RESP_FOLLOWING);
    ASSERT(sr_http_resp_expect(&resp, false, SR_HTTP_SWITCH_NONE));
    ASSERT_EQ(sr_http_resp_feed(&resp, (const uint8_t *)next, sizeof(next) - 1),
              SR_HTTP_RESP_FOLLOWING);
    ASSERT(sr_http_resp_is_idle(&resp));
    /* 2xx to a GET is just a response. */
    r = RUN("g", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    ASSERT(r.is_idle);
}

static void
test_lost(void)
{
    static const struct {
        const char *reqs;
        const char *text;
        enum sr_http_resp_reason reason;
    } cases[] = {
        {"", "HTTP/1.1 408 Request Timeout\r\n\r\n", SR_HTTP_RESP_REASON_UNSOLICITED},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nX", SR_HTTP_RESP_REASON_UNSOLICITED},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\r\n", SR_HTTP_RESP_REASON_UNSOLICITED},
        {"g", "HTTP/1.0 200 OK\r\n\r\nbody to the close", SR_HTTP_RESP_REASON_CLOSE_DELIMITED},
        {"g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
         SR_HTTP_RESP_REASON_CLOSE_DELIMITED},
        {"g", "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", SR_HTTP_RESP_REASON_CLOSE_DELIMITED},
        {"g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
         SR_HTTP_RESP_REASON_CLOSE_DELIMITED},
        {"g", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked/x\r\n\r\n",
         SR_HTTP_RESP_REASON_TRANSFER_ENCODING},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         SR_HTTP_RESP_REASON_TE_AND_CL},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
         SR_HTTP_RESP_REASON_CONTENT_LENGTH},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
         SR_HTTP_RESP_REASON_CONTENT_LENGTH},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n", SR_HTTP_RESP_REASON_CONTENT_LENGTH},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", SR_HTTP_RESP_REASON_CONTENT_LENGTH},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
         SR_HTTP_RESP_REASON_CONTENT_LENGTH},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", SR_HTTP_RESP_REASON_CONTENT_LENGTH},
        {"g", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", SR_HTTP_RESP_REASON_LINE_END},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", SR_HTTP_RESP_REASON_LINE_END},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", SR_HTTP_RESP_REASON_LINE_END},
        {"g", "HTTP/1.1 200 OK\r\r\n", SR_HTTP_RESP_REASON_LINE_END},
        {"g", "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n", SR_HTTP_RESP_REASON_FIELD},
        {"g", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", SR_HTTP_RESP_REASON_FIELD},
        {"g", "HTTP/1.1 200 OK\r\n: 0\r\n\r\n", SR_HTTP_RESP_REASON_FIELD},
        {"g", "HTTP/1.1 200 OK\r\nX: a\x01z\r\n\r\n", SR_HTTP_RESP_REASON_FIELD},
        {"g", "HTTP/2 200 OK\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "HTTP/1.2 200 OK\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "http/1.1 200 OK\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "HTTP/1.1 20 OK\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "HTTP/1.1 2000 OK\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "HTTP/1.1 600 Nope\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "HTTP/1.1 099 Nope\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "HTTP/1.1  200 OK\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
        {"g", "HTTP/1.1 200 O\x7fK\r\n\r\n", SR_HTTP_RESP_REASON_STATUS_LINE},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct result r = run_len(cases[i].reqs, cases[i].text, strlen(cases[i].text));

        if (r.status != SR_HTTP_RESP_LOST || r.reason != cases[i].reason) {
            SR_FAIL("case %zu (%s): status %d reason %s", i, cases[i].text, (int)r.status,
                    sr_http_resp_reason_str(r.reason));
        }
        ASSERT(!r.is_idle && !r.is_switch_pending);
        ASSERT(strcmp(sr_http_resp_reason_str(r.reason), "unknown") != 0);
    }
    /* A lost stream stays lost, and takes no request. */
    {
        struct sr_http_resp r;

        announce(&r, "g");
        ASSERT_EQ(sr_http_resp_feed(&r, (const uint8_t *)"HTTP/1.0 200 OK\r\n\r\n", 19),
                  SR_HTTP_RESP_LOST);
        ASSERT_EQ(sr_http_resp_feed(&r, (const uint8_t *)"HTTP/1.1 200 OK\r\n", 17),
                  SR_HTTP_RESP_LOST);
        ASSERT(!sr_http_resp_expect(&r, false, SR_HTTP_SWITCH_NONE));
    }
}

static void
test_queue(void)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    struct sr_http_resp r;
    unsigned i;

    /* At most SR_HTTP_RESP_PENDING_MAX pending, HEAD bits kept in order. */
    sr_http_resp_init(&r);
    for (i = 0; i < SR_HTTP_RESP_PENDING_MAX; i++) {
        ASSERT(sr_http_resp_expect(&r, i % 2 == 1, SR_HTTP_SWITCH_NONE));
    }
    ASSERT(!sr_http_resp_expect(&r, false, SR_HTTP_SWITCH_NONE));
    ASSERT_EQ(r.n_pending, SR_HTTP_RESP_PENDING_MAX);
    ASSERT_EQ(sr_http_resp_feed(&r, (const uint8_t *)resp, sizeof(resp) - 1),
              SR_HTTP_RESP_FOLLOWING);
    ASSERT(sr_http_resp_expect(&r, false, SR_HTTP_SWITCH_UPGRADE));
    /* Nothing after an Upgrade until its answer. */
    ASSERT(sr_http_resp_is_switch_pending(&r));
    ASSERT(!sr_http_resp_expect(&r, false, SR_HTTP_SWITCH_NONE));
    /* Responses 2..64 (odd ones to HEAD: a body would break the framing), then the
     * upgrade's answer. */
    for (i = 1; i < SR_HTTP_RESP_PENDING_MAX; i++) {
        static const char head_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
        static const char get_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n1234567";
        const char *t = i % 2 == 1 ? head_resp : get_resp;

        ASSERT_EQ(sr_http_resp_feed(&r, (const uint8_t *)t, strlen(t)), SR_HTTP_RESP_FOLLOWING);
        ASSERT(sr_http_resp_is_switch_pending(&r));
    }
    ASSERT_EQ(r.n_pending, 1);
    ASSERT_EQ(sr_http_resp_feed(&r, (const uint8_t *)"HTTP/1.1 101 OK\r\n", 17),
              SR_HTTP_RESP_TUNNEL);
    ASSERT(!sr_http_resp_expect(&r, false, SR_HTTP_SWITCH_NONE));
}

int
main(void)
{
    test_keep_alive_and_pipelining();
    test_chunked();
    test_upgrade();
    test_connect();
    test_lost();
    test_queue();
    return 0;
}
