/* SPDX-License-Identifier: MIT */
/* The admin endpoint: the request-head parser by tables (every prefix of a good head needs
 * more, bad bytes are refused at once, 8 KiB is the limit), then the server in one process
 * in libuv's manner: real requests over loopback TCP, responses checked byte for byte,
 * callbacks counted, everything closed and uv_loop_close required to succeed.
 *
 * `test_admin --serve` instead serves a small registry on 127.0.0.1 (port chosen by the OS,
 * printed as "port N") until SIGTERM: test/e2e/run_admin.py scrapes it with curl. */
#include "sniroute/observe/admin.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sniroute/observe/metrics.h"
#include "support/assert.h"

/* --- Parser tables ---------------------------------------------------------------------- */

struct parse_case {
    const char *in;
    enum sr_admin_parse_status want;
    enum sr_admin_method method; /* OK only */
    const char *path;            /* OK only */
};

static const struct parse_case parse_cases[] = {
    {"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nUser-Agent: Prometheus/2.45\r\n"
     "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\r\n",
     SR_ADMIN_PARSE_OK, SR_ADMIN_GET, "/metrics"},
    {"GET /metrics HTTP/1.0\r\n\r\n", SR_ADMIN_PARSE_OK, SR_ADMIN_GET, "/metrics"},
    {"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_OK, SR_ADMIN_GET, "/metrics"},
    {"HEAD /readyz HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_OK, SR_ADMIN_HEAD, "/readyz"},
    {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", SR_ADMIN_PARSE_OK, SR_ADMIN_OTHER,
     "/metrics"},
    {"get /healthz HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_OK, SR_ADMIN_OTHER, "/healthz"}, /* case */
    {"GET / HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_OK, SR_ADMIN_GET, "/"},
    {"\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_OK, SR_ADMIN_GET, "/healthz"},
    {"GET /healthz HTTP/1.1\nHost: a\n\n", SR_ADMIN_PARSE_OK, SR_ADMIN_GET, "/healthz"}, /* LF */
    {"GET /healthz HTTP/1.1\r\nX-Empty:\r\nX-Tab:\ta\tb\r\nX-Utf8: caf\xc3\xa9\r\n\r\n",
     SR_ADMIN_PARSE_OK, SR_ADMIN_GET, "/healthz"},
    /* Need more: nothing wrong yet. */
    {"", SR_ADMIN_PARSE_NEED_MORE, 0, NULL},
    {"GET /met", SR_ADMIN_PARSE_NEED_MORE, 0, NULL},
    {"GET /metrics HTTP/1.1\r", SR_ADMIN_PARSE_NEED_MORE, 0, NULL},
    {"GET /metrics HTTP/1.1\r\nHost: x\r\n", SR_ADMIN_PARSE_NEED_MORE, 0, NULL},
    {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r", SR_ADMIN_PARSE_NEED_MORE, 0, NULL},
    /* Malformed request lines. */
    {"GET  /metrics HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET metrics HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET http://x/metrics HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL}, /* absolute-form */
    {"GET /metrics HTTP/2.0\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET /metrics HTTP/1.1 \r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET /metrics\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL}, /* HTTP/0.9 */
    {"G(T /metrics HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {" GET /metrics HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    /* Malformed header lines. */
    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET / HTTP/1.1\r\nno colon\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET / HTTP/1.1\r\n: empty name\r\n\r\n", SR_ADMIN_PARSE_BAD, 0, NULL},
    /* Bad bytes are refused as they arrive, before their line ends. */
    {"GET / HTTP/1.1\rX", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET /\x7f", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"GET / HTTP/1.1\r\nX: a\x01", SR_ADMIN_PARSE_BAD, 0, NULL},
    {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", SR_ADMIN_PARSE_BAD, 0, NULL}, /* TLS */
};

static void
test_parse_table(void)
{
    struct sr_admin_request req;
    size_t i;

    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        enum sr_admin_parse_status got = sr_admin_parse_request(c->in, strlen(c->in), &req);

        if (got != c->want) {
            SR_FAIL("case %zu \"%s\": status %d, want %d", i, c->in, (int)got, (int)c->want);
        }
        if (c->want == SR_ADMIN_PARSE_OK) {
            ASSERT_EQ(req.method, c->method);
            ASSERT_VIEW_EQ(req.path, req.path_len, c->path);
            ASSERT_EQ(req.head_len, strlen(c->in));
        }
    }
}

/* The query string: after the first '?', up to the space; absent without a '?'. */
static void
test_parse_query(void)
{
    static const struct {
        const char *in;
        const char *path;
        const char *query; /* NULL: no '?' */
    } cases[] = {
        {"GET /explain?name=a.test&alpn=h2 HTTP/1.1\r\n\r\n", "/explain", "name=a.test&alpn=h2"},
        {"GET /explain? HTTP/1.1\r\n\r\n", "/explain", ""},
        {"GET /explain?a?b HTTP/1.1\r\n\r\n", "/explain", "a?b"},
        {"GET /explain HTTP/1.1\r\n\r\n", "/explain", NULL},
    };
    struct sr_admin_request req;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ASSERT_EQ(sr_admin_parse_request(cases[i].in, strlen(cases[i].in), &req),
                  SR_ADMIN_PARSE_OK);
        ASSERT_VIEW_EQ(req.path, req.path_len, cases[i].path);
        if (cases[i].query == NULL) {
            ASSERT(req.query == NULL);
        } else {
            ASSERT(req.query != NULL);
            ASSERT_VIEW_EQ(req.query, req.query_len, cases[i].query);
        }
    }
}

/* A good head: every strict prefix needs more, and bytes after the head (a pipelined request,
 * a body) are not part of it. */
static void
test_parse_prefixes(void)
{
    static const char head[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char buf[sizeof(head) + 32];
    struct sr_admin_request req;
    size_t n;

    for (n = 0; n < sizeof(head) - 1; n++) {
        ASSERT_EQ(sr_admin_parse_request(head, n, &req), SR_ADMIN_PARSE_NEED_MORE);
    }
    memcpy(buf, head, sizeof(head) - 1);
    memcpy(buf + sizeof(head) - 1, "GET /x HTTP/1.1\r\n\r\n", 19);
    ASSERT_EQ(sr_admin_parse_request(buf, sizeof(head) - 1 + 19, &req), SR_ADMIN_PARSE_OK);
    ASSERT_EQ(req.head_len, sizeof(head) - 1);
}

/* A head of exactly SR_ADMIN_HEAD_MAX bytes is parsed; one byte more, or that many bytes with
 * no end in sight, is TOO_LARGE. */
static void
test_parse_limits(void)
{
    static const char start[] = "GET /metrics HTTP/1.1\r\nX-Pad: ";
    struct sr_admin_request req;
    size_t pad;
    char *buf;

    buf = malloc(SR_ADMIN_HEAD_MAX + 64);
    ASSERT(buf != NULL);
    pad = SR_ADMIN_HEAD_MAX - (sizeof(start) - 1) - 4;
    memcpy(buf, start, sizeof(start) - 1);
    memset(buf + sizeof(start) - 1, 'a', pad);
    memcpy(buf + sizeof(start) - 1 + pad, "\r\n\r\n", 4);
    ASSERT_EQ(sr_admin_parse_request(buf, SR_ADMIN_HEAD_MAX, &req), SR_ADMIN_PARSE_OK);
    ASSERT_EQ(req.head_len, SR_ADMIN_HEAD_MAX);

    memset(buf + sizeof(start) - 1, 'a', pad + 1);
    memcpy(buf + sizeof(start) - 1 + pad + 1, "\r\n\r\n", 4);
    ASSERT_EQ(sr_admin_parse_request(buf, SR_ADMIN_HEAD_MAX, &req), SR_ADMIN_PARSE_TOO_LARGE);
    ASSERT_EQ(sr_admin_parse_request(buf, SR_ADMIN_HEAD_MAX + 1, &req), SR_ADMIN_PARSE_TOO_LARGE);
    ASSERT_EQ(sr_admin_parse_request(buf, SR_ADMIN_HEAD_MAX - 1, &req), SR_ADMIN_PARSE_NEED_MORE);

    /* Many short header lines: the total counts, not the line. */
    memcpy(buf, "GET / HTTP/1.1\r\n", 16);
    for (pad = 16; pad + 6 <= SR_ADMIN_HEAD_MAX + 6; pad += 6) {
        memcpy(buf + pad, "A: b\r\n", 6);
    }
    ASSERT_EQ(sr_admin_parse_request(buf, SR_ADMIN_HEAD_MAX, &req), SR_ADMIN_PARSE_TOO_LARGE);
    free(buf);
}

/* --- The server, in process ----------------------------------------------------------------- */

struct server_ctx {
    struct sr_metrics metrics;
    struct sr_metrics_names listeners;
    struct sr_metrics_names upstreams;
    struct sr_metrics_info info;
    const char *not_ready; /* what ready_cb answers */
    int n_metrics_cb;
    int n_ready_cb;
};

static int
on_metrics(void *ctx, char **out, size_t *len)
{
    struct server_ctx *s = ctx;
    const struct sr_metrics *workers[1] = {&s->metrics};

    s->n_metrics_cb++;
    return sr_metrics_format(out, len, workers, 1, &s->info);
}

static const char *
on_ready(void *ctx)
{
    struct server_ctx *s = ctx;

    s->n_ready_cb++;
    return s->not_ready;
}

static void
server_ctx_init(struct server_ctx *s)
{
    memset(s, 0, sizeof(*s));
    ASSERT_EQ(sr_metrics_init(&s->metrics, 4, 4), 0);
    ASSERT_EQ(sr_metrics_names_init(&s->listeners, 4), 0);
    ASSERT_EQ(sr_metrics_names_init(&s->upstreams, 4), 0);
    sr_metrics_names_intern(&s->listeners, "https");
    sr_metrics_names_intern(&s->upstreams, "127.0.0.1:9001");
    sr_metrics_conn_accepted(&s->metrics, 0);
    sr_metrics_hello(&s->metrics, SR_METRICS_HELLO_FOUND, SR_HELLO_REASON_NONE);
    sr_metrics_route(&s->metrics, 0, SR_ROUTE_EXACT);
    sr_metrics_upstream_selected(&s->metrics, 0);
    sr_metrics_connect_ok(&s->metrics, 0, 800);
    s->info.version = "test";
    s->info.start_time_ms = 1795345200123;
    s->info.config_generation = 1;
    s->info.listeners = &s->listeners;
    s->info.upstreams = &s->upstreams;
}

static void
server_ctx_fini(struct server_ctx *s)
{
    sr_metrics_fini(&s->metrics);
    sr_metrics_names_fini(&s->listeners);
    sr_metrics_names_fini(&s->upstreams);
}

#define RESP_PLAIN(status, len)                                                                    \
    "HTTP/1.1 " status "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " len       \
    "\r\nConnection: close\r\n\r\n"

/* One request and the exact response; "METRICS" stands for the registry's current text. */
struct http_case {
    const char *request;
    size_t request_len; /* 0: strlen(request) */
    const char *not_ready;
    const char *want;
};

static char big_request[SR_ADMIN_HEAD_MAX + 1000];

static const struct http_case http_cases[] = {
    {"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0, NULL, RESP_PLAIN("200 OK", "3") "ok\n"},
    {"GET /readyz HTTP/1.1\r\n\r\n", 0, NULL, RESP_PLAIN("200 OK", "6") "ready\n"},
    {"GET /readyz HTTP/1.1\r\n\r\n", 0, "draining",
     RESP_PLAIN("503 Service Unavailable", "20") "not ready: draining\n"},
    {"HEAD /readyz HTTP/1.1\r\n\r\n", 0, "listeners not bound",
     RESP_PLAIN("503 Service Unavailable", "31")},
    {"GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n", 0, NULL, "METRICS"},
    {"HEAD /metrics HTTP/1.1\r\n\r\n", 0, NULL, "METRICS-HEAD"},
    {"GET /nope HTTP/1.1\r\n\r\n", 0, NULL, RESP_PLAIN("404 Not Found", "10") "not found\n"},
    {"POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", 0, NULL,
     "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
     "Content-Length: 19\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\nmethod not allowed\n"},
    {"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 0, NULL,
     RESP_PLAIN("400 Bad Request", "12") "bad request\n"},
    {"\x16\x03\x01\x00\x05hello", 10, NULL, RESP_PLAIN("400 Bad Request", "12") "bad request\n"},
    {big_request, sizeof(big_request), NULL,
     RESP_PLAIN("431 Request Header Fields Too Large", "23") "request head too large\n"},
};

#define N_HTTP_CASES (sizeof(http_cases) / sizeof(http_cases[0]))

struct client {
    uv_loop_t *loop;
    struct sr_admin *admin;
    struct server_ctx *server;
    size_t i; /* the case in progress; N_HTTP_CASES: the final stop-while-open check */
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    char resp[65536];
    size_t resp_len;
    int n_connect_cb;
    int n_write_cb;
    int n_eof;
    int n_close_cb;
};

static void client_start(struct client *c);

/* The exact response the case wants, in <out>. */
static size_t
expected_response(struct client *c, const struct http_case *hc, char *out, size_t cap)
{
    const struct sr_metrics *workers[1] = {&c->server->metrics};
    size_t len, n;
    char *text;
    int m;

    if (strncmp(hc->want, "METRICS", 7) != 0) {
        n = strlen(hc->want);
        ASSERT_LT(n, cap);
        memcpy(out, hc->want, n);
        return n;
    }
    ASSERT_EQ(sr_metrics_format(&text, &len, workers, 1, &c->server->info), 0);
    m = snprintf(out, cap,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 len, strcmp(hc->want, "METRICS-HEAD") == 0 ? "" : text);
    ASSERT_GT(m, 0);
    ASSERT_LT(m, (int)cap);
    free(text);
    return (size_t)m;
}

static void
on_client_close(uv_handle_t *handle)
{
    struct client *c = handle->data;

    c->n_close_cb++;
    if (c->i < N_HTTP_CASES) {
        c->i++;
        client_start(c);
    }
}

static void
on_client_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct client *c = handle->data;

    (void)suggested;
    buf->base = c->resp + c->resp_len;
    buf->len = sizeof(c->resp) - c->resp_len;
}

static void
on_client_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = stream->data;
    static char want[70000];
    size_t want_len;

    (void)buf;
    if (nread >= 0) {
        c->resp_len += (size_t)nread;
        ASSERT_LT(c->resp_len, sizeof(c->resp));
        return;
    }
    /* Cut by sr_admin_stop, the last connection may see a reset: its request may still be
     * unread in the server's socket when that closes. Every answered one ends with a FIN. */
    if (c->i < N_HTTP_CASES || nread != UV_ECONNRESET) {
        ASSERT_EQ(nread, UV_EOF);
    }
    c->n_eof++;
    if (c->i < N_HTTP_CASES) {
        want_len = expected_response(c, &http_cases[c->i], want, sizeof(want));
        c->resp[c->resp_len] = '\0';
        want[want_len] = '\0';
        if (c->resp_len != want_len || memcmp(c->resp, want, want_len) != 0) {
            SR_FAIL("case %zu: got\n%s\n--- want\n%s", c->i, c->resp, want);
        }
    } else {
        ASSERT_EQ(c->resp_len, 0); /* cut by sr_admin_stop: EOF, nothing else */
    }
    uv_close((uv_handle_t *)&c->tcp, on_client_close);
}

static void
on_client_write(uv_write_t *req, int status)
{
    struct client *c = req->data;

    ASSERT_EQ(status, 0);
    c->n_write_cb++;
    if (c->i == N_HTTP_CASES) {
        /* Half a request is in: stop the server with this connection open. */
        sr_admin_stop(c->admin);
    }
}

static void
on_client_connect(uv_connect_t *req, int status)
{
    struct client *c = req->data;
    const struct http_case *hc;
    uv_buf_t buf;

    ASSERT_EQ(status, 0);
    c->n_connect_cb++;
    if (c->i < N_HTTP_CASES) {
        hc = &http_cases[c->i];
        c->server->not_ready = hc->not_ready;
        buf = uv_buf_init((char *)hc->request,
                          (unsigned)(hc->request_len != 0 ? hc->request_len : strlen(hc->request)));
    } else {
        buf = uv_buf_init("GET /metr", 9);
    }
    c->write_req.data = c;
    ASSERT_EQ(uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_client_write), 0);
    ASSERT_EQ(uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read), 0);
}

static void
client_start(struct client *c)
{
    struct sockaddr_in sa;

    if (c->i > N_HTTP_CASES) {
        return;
    }
    c->resp_len = 0;
    ASSERT_EQ(uv_ip4_addr("127.0.0.1", (int)sr_admin_port(c->admin), &sa), 0);
    ASSERT_EQ(uv_tcp_init(c->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->connect_req.data = c;
    ASSERT_EQ(
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&sa, on_client_connect),
        0);
}

static void
test_server(void)
{
    static struct client c; /* its 64 KiB buffer is better off the stack */
    struct server_ctx server;
    struct sr_admin admin;
    struct sockaddr_in sa;
    uv_loop_t loop;

    memcpy(big_request, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
    memset(big_request + 30, 'a', sizeof(big_request) - 30);

    server_ctx_init(&server);
    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    ASSERT_EQ(
        sr_admin_start(&admin, &loop, (const struct sockaddr *)&sa, on_metrics, on_ready, &server),
        0);
    ASSERT_NE(sr_admin_port(&admin), 0);
    ASSERT_EQ(admin.n_open, 2); /* the listener and the tick */

    memset(&c, 0, sizeof(c));
    c.loop = &loop;
    c.admin = &admin;
    c.server = &server;
    client_start(&c);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);

    ASSERT_EQ(c.n_connect_cb, N_HTTP_CASES + 1);
    ASSERT_EQ(c.n_write_cb, N_HTTP_CASES + 1);
    ASSERT_EQ(c.n_eof, N_HTTP_CASES + 1);
    ASSERT_EQ(c.n_close_cb, N_HTTP_CASES + 1);
    ASSERT_EQ(server.n_metrics_cb, 2); /* GET and HEAD /metrics */
    ASSERT_EQ(server.n_ready_cb, 3);
    ASSERT_EQ(admin.n_requests, N_HTTP_CASES);
    ASSERT_EQ(admin.n_open, 0);
    ASSERT_EQ(admin.n_conns, 0);
    sr_admin_stop(&admin); /* idempotent */
    ASSERT_EQ(uv_loop_close(&loop), 0);
    server_ctx_fini(&server);
}

/* A port in use: an error code, and the loop still closes cleanly. */
static void
test_bind_error(void)
{
    struct server_ctx server;
    struct sr_admin a, b;
    uv_loop_t loop;

    server_ctx_init(&server);
    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(sr_admin_start(&a, &loop,
                             (const struct sockaddr *)&(struct sockaddr_in){
                                 .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)},
                             on_metrics, on_ready, &server),
              0);
    ASSERT_EQ(
        sr_admin_start(&b, &loop, (const struct sockaddr *)&a.addr, on_metrics, on_ready, &server),
        UV_EADDRINUSE);
    sr_admin_stop(&b);
    sr_admin_stop(&a);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(a.n_open, 0);
    ASSERT_EQ(b.n_open, 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    server_ctx_fini(&server);
}

/* --- Caps and eviction, in process ------------------------------------------------------ */

/* Clients bound to chosen loopback addresses; each sends <request> (NULL: nothing) once
 * connected and reads what comes back until the server closes. The steps run the loop until
 * a condition holds, within 5 s (a repeating timer keeps UV_RUN_ONCE from blocking). The
 * connections are made one after another and every step ends well inside
 * SR_ADMIN_FIRST_BYTE_MS, so no deadline interferes with the counts. */

#define N_CAP_CLIENTS (SR_ADMIN_CONNS_PER_ADDR + 1 + SR_ADMIN_CONNS_MAX + 2)
#define BIG_BODY      (8u << 20)

struct cap_client {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    const char *request;
    bool is_reading; /* false: a slow reader that never reads */
    bool is_connected;
    bool is_closed; /* EOF or reset seen, or never read */
    char resp[256];
    size_t resp_len;
};

struct cap_test {
    uv_loop_t loop;
    uv_timer_t tick;
    struct sr_admin admin;
    struct server_ctx server;
    struct cap_client clients[N_CAP_CLIENTS];
    size_t n_clients;
    int n_big_bodies;
};

static void
on_cap_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct cap_client *c = handle->data;

    (void)suggested;
    buf->base = c->resp + c->resp_len;
    buf->len = sizeof(c->resp) - 1 - c->resp_len;
}

static void
on_cap_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct cap_client *c = stream->data;

    (void)buf;
    if (nread > 0) {
        c->resp_len += (size_t)nread;
        ASSERT_LT(c->resp_len, sizeof(c->resp) - 1);
    } else if (nread < 0) {
        ASSERT(nread == UV_EOF || nread == UV_ECONNRESET);
        c->is_closed = true;
        uv_read_stop(stream);
    }
}

static void
on_cap_write(uv_write_t *req, int status)
{
    (void)req;
    ASSERT_EQ(status, 0);
}

static void
cap_send(struct cap_client *c, const char *request)
{
    uv_buf_t buf = uv_buf_init((char *)request, (unsigned)strlen(request));

    c->write_req.data = c;
    ASSERT_EQ(uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_cap_write), 0);
}

static void
on_cap_connect(uv_connect_t *req, int status)
{
    struct cap_client *c = req->data;

    ASSERT_EQ(status, 0);
    c->is_connected = true;
    if (c->request != NULL) {
        cap_send(c, c->request);
    }
    if (c->is_reading) {
        ASSERT_EQ(uv_read_start((uv_stream_t *)&c->tcp, on_cap_alloc, on_cap_read), 0);
    }
}

static void
on_cap_tick(uv_timer_t *timer)
{
    (void)timer;
}

typedef bool (*cap_cond_fn)(struct cap_test *t, size_t arg);

static void
run_until(struct cap_test *t, cap_cond_fn cond, size_t arg, const char *what)
{
    uint64_t deadline;

    uv_update_time(&t->loop);
    deadline = uv_now(&t->loop) + 5000;
    while (!cond(t, arg)) {
        if (uv_now(&t->loop) > deadline) {
            SR_FAIL("no %s (%zu) within 5 s: accepted %ju, live %zu, evicted %ju, bodies %zu", what,
                    arg, (uintmax_t)t->admin.n_accepted, t->admin.n_live,
                    (uintmax_t)t->admin.n_evicted, t->admin.n_bodies);
        }
        uv_run(&t->loop, UV_RUN_ONCE);
    }
}

static bool
has_accepted(struct cap_test *t, size_t n)
{
    return t->admin.n_accepted >= n && t->clients[n - 1].is_connected;
}

static bool
is_closed(struct cap_test *t, size_t i)
{
    return t->clients[i].is_closed;
}

static bool
has_requests(struct cap_test *t, size_t n)
{
    return t->admin.n_requests >= n;
}

/* Client number t->n_clients, from <src>, connected and accepted before this returns. A slow
 * reader (<is_reading> false) gets a 2 KiB receive buffer and a small MSS, so that not even
 * loopback's send buffer takes a big body whole. */
static struct cap_client *
cap_connect(struct cap_test *t, const char *src, const char *request, bool is_reading)
{
    struct cap_client *c = &t->clients[t->n_clients];
    struct sockaddr_in from, to;
    uv_os_fd_t fd;
    int size = 2048, mss = 536;

    ASSERT_LT(t->n_clients, N_CAP_CLIENTS);
    c->request = request;
    c->is_reading = is_reading;
    ASSERT_EQ(uv_ip4_addr(src, 0, &from), 0);
    ASSERT_EQ(uv_ip4_addr("127.0.0.1", (int)sr_admin_port(&t->admin), &to), 0);
    ASSERT_EQ(uv_tcp_init(&t->loop, &c->tcp), 0);
    c->tcp.data = c;
    ASSERT_EQ(uv_tcp_bind(&c->tcp, (const struct sockaddr *)&from, 0), 0);
    if (!is_reading) {
        ASSERT_EQ(uv_fileno((uv_handle_t *)&c->tcp, &fd), 0);
        ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
        ASSERT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss)), 0);
    }
    c->connect_req.data = c;
    ASSERT_EQ(
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&to, on_cap_connect), 0);
    t->n_clients++;
    run_until(t, has_accepted, t->n_clients, "accept");
    return c;
}

static int
on_big_metrics(void *ctx, char **out, size_t *len)
{
    struct cap_test *t = ctx;

    t->n_big_bodies++;
    *out = malloc(BIG_BODY);
    if (*out == NULL) {
        return -1;
    }
    memset(*out, '#', BIG_BODY);
    *len = BIG_BODY;
    return 0;
}

static void
cap_start(struct cap_test *t, sr_admin_metrics_fn metrics_cb, void *ctx)
{
    struct sockaddr_in sa;

    memset(t, 0, sizeof(*t));
    server_ctx_init(&t->server);
    ASSERT_EQ(uv_loop_init(&t->loop), 0);
    ASSERT_EQ(uv_timer_init(&t->loop, &t->tick), 0);
    ASSERT_EQ(uv_timer_start(&t->tick, on_cap_tick, 5, 5), 0);
    ASSERT_EQ(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    ASSERT_EQ(sr_admin_start(&t->admin, &t->loop, (const struct sockaddr *)&sa, metrics_cb,
                             on_ready, ctx),
              0);
}

static void
cap_finish(struct cap_test *t)
{
    size_t i;

    for (i = 0; i < t->n_clients; i++) {
        uv_close((uv_handle_t *)&t->clients[i].tcp, NULL);
    }
    uv_close((uv_handle_t *)&t->tick, NULL);
    sr_admin_stop(&t->admin);
    ASSERT_EQ(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(t->admin.n_open, 0);
    ASSERT_EQ(t->admin.n_conns, 0);
    ASSERT_EQ(t->admin.n_bodies, 0);
    ASSERT_EQ(uv_loop_close(&t->loop), 0);
    server_ctx_fini(&t->server);
}

/* The per-address cap: the 9th connection from one address closes that address's oldest.
 * The total cap: 64 more from 8 other addresses close the oldest 8 without a whole head.
 * Then a probe from a fresh address gets in, and its arrival closes the oldest of the rest;
 * one more connection arrives before the probe has sent a byte, and closes the next oldest,
 * not the probe (every connection is silent at first). The probe is answered. Exact counts
 * and exactly which connections went. */
static void
test_caps(void)
{
    static struct cap_test t;
    struct cap_client *probe;
    char src[32];
    size_t i;

    cap_start(&t, on_metrics, &t.server);
    for (i = 0; i < SR_ADMIN_CONNS_PER_ADDR; i++) {
        cap_connect(&t, "127.0.0.2", NULL, true);
    }
    ASSERT_EQ(t.admin.n_live, SR_ADMIN_CONNS_PER_ADDR);
    ASSERT_EQ(t.admin.n_evicted, 0);
    cap_connect(&t, "127.0.0.2", NULL, true);
    ASSERT_EQ(t.admin.n_evicted, 1);
    ASSERT_EQ(t.admin.n_live, SR_ADMIN_CONNS_PER_ADDR);
    run_until(&t, is_closed, 0, "close of the oldest from 127.0.0.2");

    /* 8 addresses with 8 connections each, a head begun on each: 8 + 64 > 64. */
    for (i = 0; i < SR_ADMIN_CONNS_MAX; i++) {
        snprintf(src, sizeof(src), "127.0.0.%zu", 4 + i / SR_ADMIN_CONNS_PER_ADDR);
        cap_connect(&t, src, "GET /", true);
    }
    ASSERT_EQ(t.admin.n_live, SR_ADMIN_CONNS_MAX);
    ASSERT_EQ(t.admin.n_evicted, 1 + SR_ADMIN_CONNS_PER_ADDR);
    for (i = 1; i <= SR_ADMIN_CONNS_PER_ADDR; i++) {
        run_until(&t, is_closed, i, "close of a connection from 127.0.0.2");
    }

    probe = cap_connect(&t, "127.0.0.3", NULL, true);
    ASSERT_EQ(t.admin.n_evicted, 2 + SR_ADMIN_CONNS_PER_ADDR);
    cap_connect(&t, "127.0.0.12", "GET /", true);
    ASSERT_EQ(t.admin.n_evicted, 3 + SR_ADMIN_CONNS_PER_ADDR);
    cap_send(probe, "GET /healthz HTTP/1.1\r\n\r\n");
    run_until(&t, is_closed, t.n_clients - 2, "the probe's response");
    if (strncmp(probe->resp, "HTTP/1.1 200 OK\r\n", 17) != 0) {
        SR_FAIL("probe answered: %s", probe->resp);
    }
    run_until(&t, is_closed, SR_ADMIN_CONNS_PER_ADDR + 1, "close of the oldest from 127.0.0.4");
    run_until(&t, is_closed, SR_ADMIN_CONNS_PER_ADDR + 2, "close of the next oldest");
    for (i = SR_ADMIN_CONNS_PER_ADDR + 3; i < t.n_clients; i++) {
        ASSERT(i == t.n_clients - 2 || !t.clients[i].is_closed);
    }
    cap_finish(&t);
}

/* Slow readers of a big /metrics: at most SR_ADMIN_BODIES_MAX bodies once each iteration is
 * over; the 5th request closes the oldest slow reader. A probe is still answered. */
static void
test_bodies(void)
{
    static struct cap_test t;
    struct cap_client *probe;
    char src[32];
    size_t i, n;

    cap_start(&t, on_big_metrics, &t);
    for (i = 0; i < SR_ADMIN_BODIES_MAX + 2; i++) {
        snprintf(src, sizeof(src), "127.0.0.%zu", 20 + i);
        cap_connect(&t, src, "GET /metrics HTTP/1.1\r\n\r\n", false);
        run_until(&t, has_requests, i + 1, "response");
        n = i + 1 < SR_ADMIN_BODIES_MAX ? i + 1 : SR_ADMIN_BODIES_MAX;
        uv_run(&t.loop, UV_RUN_NOWAIT); /* the closed connection's body is freed */
        ASSERT_EQ(t.admin.n_bodies, n);
        ASSERT_EQ(t.admin.n_evicted, i + 1 - n);
        ASSERT_EQ(t.n_big_bodies, i + 1);
    }
    probe = cap_connect(&t, "127.0.0.3", "GET /readyz HTTP/1.1\r\n\r\n", true);
    run_until(&t, is_closed, t.n_clients - 1, "the probe's response");
    if (strncmp(probe->resp, "HTTP/1.1 200 OK\r\n", 17) != 0) {
        SR_FAIL("probe answered: %s", probe->resp);
    }
    ASSERT_EQ(t.admin.n_bodies, SR_ADMIN_BODIES_MAX);
    cap_finish(&t);
}

/* --- --serve ----------------------------------------------------------------------------- */

static void
on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    sr_admin_stop(sig->data);
    uv_close((uv_handle_t *)sig, NULL);
}

static int
serve(void)
{
    struct server_ctx server;
    struct sr_admin admin;
    struct sockaddr_in sa;
    uv_signal_t sig;
    uv_loop_t loop;

    server_ctx_init(&server);
    /* Something in every family, and label values that need escaping. */
    sr_metrics_names_intern(&server.listeners, "quote\"back\\slash\nnewline");
    sr_metrics_names_intern(&server.upstreams, "[::1]:8443");
    sr_metrics_conn_accepted(&server.metrics, 1);
    sr_metrics_conn_closed(&server.metrics, 1, SR_METRICS_OUTCOME_NOT_TLS);
    sr_metrics_hello(&server.metrics, SR_METRICS_HELLO_NOT_TLS, SR_HELLO_REASON_NOT_HANDSHAKE);
    sr_metrics_connect_failed(&server.metrics, 1, SR_METRICS_CONNECT_REFUSED);
    sr_metrics_connect_ok(&server.metrics, 1, 3000000);
    sr_metrics_bytes(&server.metrics, 0, 0, 517, 4096);
    sr_metrics_limit_rejected(&server.metrics, 0, SR_METRICS_LIMIT_PER_IP);
    sr_metrics_conn_accepted(&server.metrics, 9); /* "_other" */
    server.info.reloads_ok = 2;
    server.info.reloads_failed = 1;
    server.info.config_generation = 3;

    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    ASSERT_EQ(
        sr_admin_start(&admin, &loop, (const struct sockaddr *)&sa, on_metrics, on_ready, &server),
        0);
    ASSERT_EQ(uv_signal_init(&loop, &sig), 0);
    sig.data = &admin;
    ASSERT_EQ(uv_signal_start(&sig, on_signal, SIGTERM), 0);
    printf("port %u\n", sr_admin_port(&admin));
    fflush(stdout);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    server_ctx_fini(&server);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--serve") == 0) {
        return serve();
    }
    test_parse_table();
    test_parse_query();
    test_parse_prefixes();
    test_parse_limits();
    test_server();
    test_bind_error();
    test_caps();
    test_bodies();
    return 0;
}
