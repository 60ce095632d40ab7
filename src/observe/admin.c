/* SPDX-License-Identifier: MIT */
/* The admin endpoint: read one request head (bounded in bytes and time), answer it, close.
 * The parser is a pure function of the bytes so that it is tested by tables; the server around
 * it is the connection life cycle of conn.c in miniature: a count of open handles, freed in
 * the last close callback, and a lingering close so the response is not lost to an RST. */
#include "sniroute/observe/admin.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- The request-head parser ------------------------------------------------------------ */

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
 * "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static bool
is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A control byte other than HT is never valid in a head (CR and LF are handled by the line
 * splitter before this is asked). */
static bool
is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* "METHOD SP /target SP HTTP/1.x", exactly: one space each, nothing after the version. */
static bool
parse_request_line(const char *p, size_t n, struct sr_admin_request *req)
{
    size_t i = 0, m, t;

    while (i < n && is_tchar((unsigned char)p[i])) {
        i++;
    }
    if (i == 0 || i >= n || p[i] != ' ') {
        return false;
    }
    m = i;
    req->method = (m == 3 && memcmp(p, "GET", 3) == 0)    ? SR_ADMIN_GET
                  : (m == 4 && memcmp(p, "HEAD", 4) == 0) ? SR_ADMIN_HEAD
                                                          : SR_ADMIN_OTHER;
    t = ++i;
    while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f) {
        i++;
    }
    if (i == t || p[t] != '/' || i >= n || p[i] != ' ') {
        return false;
    }
    req->path = p + t;
    req->path_len = i - t;
    req->query = NULL;
    req->query_len = 0;
    for (m = t; m < i; m++) {
        if (p[m] == '?') {
            req->path_len = m - t;
            req->query = p + m + 1;
            req->query_len = i - m - 1;
            break;
        }
    }
    i++;
    return n - i == 8 && (memcmp(p + i, "HTTP/1.1", 8) == 0 || memcmp(p + i, "HTTP/1.0", 8) == 0);
}

/* "name: value": a token name directly followed by ':' (RFC 9112 5.1 refuses whitespace
 * before the colon), not a continuation line (obs-fold, 5.2). The value is not looked at
 * beyond the control bytes the caller has already refused. */
static bool
parse_header_line(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && is_tchar((unsigned char)p[i])) {
        i++;
    }
    return i > 0 && i < n && p[i] == ':';
}

enum sr_admin_parse_status
sr_admin_parse_request(const char *buf, size_t len, struct sr_admin_request *req)
{
    bool has_request_line = false;
    size_t pos = 0, i, end, eol;
    const char *nl;

    memset(req, 0, sizeof(*req));
    for (;;) {
        nl = memchr(buf + pos, '\n', len - pos);
        end = nl != NULL ? (size_t)(nl - buf) : len;
        eol = nl != NULL ? end + 1 : len;
        /* Refuse bad bytes as soon as they arrive, not only once their line ends: a client
         * speaking TLS or binary to this port gets its 400 at once. */
        for (i = pos; i < end; i++) {
            if (buf[i] == '\r') {
                if (i + 1 == end && nl != NULL) {
                    break; /* CRLF */
                }
                if (i + 1 < len) {
                    return SR_ADMIN_PARSE_BAD; /* a CR not followed by LF */
                }
            } else if (is_ctl((unsigned char)buf[i])) {
                return SR_ADMIN_PARSE_BAD;
            }
        }
        if (eol > SR_ADMIN_HEAD_MAX || (nl == NULL && len >= SR_ADMIN_HEAD_MAX)) {
            return SR_ADMIN_PARSE_TOO_LARGE;
        }
        if (nl == NULL) {
            return SR_ADMIN_PARSE_NEED_MORE;
        }
        if (end > pos && buf[end - 1] == '\r') {
            end--;
        }
        if (!has_request_line) {
            /* RFC 9112 2.2: empty lines before the request line are to be ignored. */
            if (end > pos) {
                if (!parse_request_line(buf + pos, end - pos, req)) {
                    return SR_ADMIN_PARSE_BAD;
                }
                has_request_line = true;
            }
        } else if (end == pos) {
            req->head_len = eol;
            return SR_ADMIN_PARSE_OK;
        } else if (!parse_header_line(buf + pos, end - pos)) {
            return SR_ADMIN_PARSE_BAD;
        }
        pos = eol;
    }
}

/* --- Connections ------------------------------------------------------------------------- */

enum sr_admin_conn_state {
    SR_ADMIN_READING,   /* reading the request head */
    SR_ADMIN_WRITING,   /* the response is being written */
    SR_ADMIN_LINGERING, /* response sent and FIN too: discard input until EOF or the timer */
    SR_ADMIN_CLOSING,   /* handles closing; freed in the last close callback */
};

struct sr_admin_conn {
    struct sr_admin *admin;
    struct sr_admin_conn *prev;
    struct sr_admin_conn *next;
    enum sr_admin_conn_state state;
    int n_pending;        /* open handles; the connection is freed when it drops to zero */
    uint64_t seq;         /* admin->n_accepted at its accept: lower is older */
    uint64_t accepted_ms; /* uv_now() at its accept, for SR_ADMIN_HEAD_MS */
    uint8_t peer[16];     /* the client's address, IPv4 as ::ffff:a.b.c.d */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    char *body;     /* the /metrics or /explain text (ours to free, in n_bodies), or NULL */
    char head[160]; /* the response's status line and headers */
    char text[96];  /* a short body: "ok\n", "not ready: ...\n" */
    size_t len;     /* bytes of <buf> received */
    char buf[SR_ADMIN_HEAD_MAX];
};

static void
body_free(struct sr_admin_conn *conn)
{
    if (conn->body != NULL) {
        free(conn->body);
        conn->body = NULL;
        conn->admin->n_bodies--;
    }
}

static void
on_conn_close(uv_handle_t *handle)
{
    struct sr_admin_conn *conn = handle->data;
    struct sr_admin *admin = conn->admin;

    admin->n_open--;
    if (--conn->n_pending > 0) {
        return;
    }
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        admin->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    admin->n_conns--;
    body_free(conn);
    free(conn);
}

static void
conn_close(struct sr_admin_conn *conn)
{
    if (conn->state == SR_ADMIN_CLOSING) {
        return;
    }
    conn->state = SR_ADMIN_CLOSING;
    conn->admin->n_live--;
    uv_close((uv_handle_t *)&conn->timer, on_conn_close);
    uv_close((uv_handle_t *)&conn->tcp, on_conn_close);
}

/* What closing <conn> now would cost, lowest first. Nothing for an answered connection that
 * lingers for its client's FIN (its response is in the kernel, which still delivers it); a
 * connection without a whole head has nothing yet, and among those the oldest has had the
 * longest to send one (the newest is not preferred for being silent: every connection is
 * silent when it has just been accepted, a probe too); a response being written would be cut. */
static int
eviction_cost(const struct sr_admin_conn *conn)
{
    switch (conn->state) {
    case SR_ADMIN_LINGERING:
        return 0;
    case SR_ADMIN_READING:
        return 1;
    case SR_ADMIN_WRITING:
        return 2;
    case SR_ADMIN_CLOSING:
        break;
    }
    return 3;
}

/* Is <a> the better one to close than <b> (NULL: none yet)? The cheaper, then the older. */
static bool
is_cheaper(const struct sr_admin_conn *a, const struct sr_admin_conn *b)
{
    int cost_a, cost_b;

    if (b == NULL) {
        return true;
    }
    cost_a = eviction_cost(a);
    cost_b = eviction_cost(b);
    return cost_a < cost_b || (cost_a == cost_b && a->seq < b->seq);
}

static void
evict(struct sr_admin_conn *conn)
{
    conn->admin->n_evicted++;
    conn_close(conn); /* without a word: there is no request to answer yet */
}

/* <fresh> was just accepted: if its address now holds more than SR_ADMIN_CONNS_PER_ADDR
 * connections, close the cheapest of its others; else if the endpoint holds more than
 * SR_ADMIN_CONNS_MAX, close the cheapest of all others. One walk of the list: it holds at most
 * SR_ADMIN_CONNS_MAX live connections (and those closed in this loop iteration), so a table
 * per address would cost more than it saves. At the total cap the victim is not chosen by
 * address (say, from the address holding most): that helps only while a flood has fewer
 * addresses than SR_ADMIN_CONNS_MAX; a /24 of pods has 254, one connection each, and the age
 * decides again. */
static void
make_room(struct sr_admin *admin, const struct sr_admin_conn *fresh)
{
    struct sr_admin_conn *conn, *cheapest = NULL, *cheapest_same = NULL;
    size_t n_same = 0;

    for (conn = admin->conns; conn != NULL; conn = conn->next) {
        if (conn == fresh || conn->state == SR_ADMIN_CLOSING) {
            continue;
        }
        if (memcmp(conn->peer, fresh->peer, sizeof(conn->peer)) == 0) {
            n_same++;
            if (is_cheaper(conn, cheapest_same)) {
                cheapest_same = conn;
            }
        }
        if (is_cheaper(conn, cheapest)) {
            cheapest = conn;
        }
    }
    if (n_same >= SR_ADMIN_CONNS_PER_ADDR) {
        evict(cheapest_same);
    } else if (admin->n_live > SR_ADMIN_CONNS_MAX) {
        assert(cheapest != NULL);
        evict(cheapest);
    }
}

static void
on_linger_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct sr_admin_conn *conn = handle->data;

    (void)suggested;
    buf->base = conn->buf; /* the request is answered: its bytes are not needed any more */
    buf->len = sizeof(conn->buf);
}

static void
on_linger_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0) {
        conn_close(stream->data); /* EOF or error: the client has what it will get */
    }
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct sr_admin_conn *conn = req->data;

    if (conn->state == SR_ADMIN_CLOSING) {
        return;
    }
    /* Closing a socket with unread input sends an RST, which may destroy the response before
     * the client has read it; so after the FIN, read and discard until the client closes. */
    conn->state = SR_ADMIN_LINGERING;
    if (status != 0 ||
        uv_read_start((uv_stream_t *)&conn->tcp, on_linger_alloc, on_linger_read) != 0) {
        conn_close(conn);
    }
}

static void
on_write(uv_write_t *req, int status)
{
    struct sr_admin_conn *conn = req->data;

    /* Written or cancelled, libuv is done with the body: a slow reader's megabytes go now,
     * not when it finally closes. */
    body_free(conn);
    if (conn->state == SR_ADMIN_CLOSING) {
        return;
    }
    conn->shutdown_req.data = conn;
    if (status != 0 ||
        uv_shutdown(&conn->shutdown_req, (uv_stream_t *)&conn->tcp, on_shutdown) != 0) {
        conn_close(conn);
    }
}

static void on_timeout(uv_timer_t *timer);

/* Send the response: <status> <reason>, then <body> of <body_len> bytes unless <is_head>.
 * <body> must live until the write completes (conn->text, conn->body or a literal). */
static void
respond(struct sr_admin_conn *conn, int status, const char *reason, const char *content_type,
        const char *body, size_t body_len, bool is_head)
{
    uv_buf_t bufs[2];
    int n;

    uv_read_stop((uv_stream_t *)&conn->tcp);
    conn->admin->n_requests++;
    conn->state = SR_ADMIN_WRITING;
    uv_timer_start(&conn->timer, on_timeout, SR_ADMIN_RESPONSE_MS, 0);
    n = snprintf(conn->head, sizeof(conn->head),
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                 "Connection: close\r\n\r\n",
                 status, reason, content_type, body_len,
                 status == 405 ? "Allow: GET, HEAD\r\n" : "");
    assert(n > 0 && (size_t)n < sizeof(conn->head));
    bufs[0] = uv_buf_init(conn->head, (unsigned)n);
    bufs[1] = uv_buf_init((char *)body, (unsigned)body_len);
    conn->write_req.data = conn;
    if (uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, bufs, is_head ? 1 : 2, on_write) !=
        0) {
        conn_close(conn);
    }
}

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"
#define RESPOND_ERROR(conn, status, reason, body)                                                  \
    respond(conn, status, reason, TEXT_PLAIN, body, sizeof(body) - 1, false)

static bool
path_is(const struct sr_admin_request *req, const char *path)
{
    return req->path_len == strlen(path) && memcmp(req->path, path, req->path_len) == 0;
}

/* May <conn> have a body of its own? At SR_ADMIN_BODIES_MAX, the oldest response still being
 * written with one is closed to make room (a slow reader had its turn; a scraper that reads
 * at once is done long before four later requests come). Its body is freed only when libuv
 * has cancelled the write, at the end of this loop iteration: until then it still counts,
 * and beyond twice the cap (many requests in one iteration) the answer is no. */
static bool
body_allowed(struct sr_admin_conn *conn)
{
    struct sr_admin *admin = conn->admin;
    struct sr_admin_conn *c, *oldest = NULL;

    if (admin->n_bodies >= SR_ADMIN_BODIES_MAX) {
        for (c = admin->conns; c != NULL; c = c->next) {
            if (c->state == SR_ADMIN_WRITING && c->body != NULL &&
                (oldest == NULL || c->seq < oldest->seq)) {
                oldest = c;
            }
        }
        if (oldest != NULL) {
            evict(oldest);
        }
    }
    return admin->n_bodies < 2 * SR_ADMIN_BODIES_MAX;
}

/* Take the heap buffer a callback made into <conn>, where it counts against the cap. */
static void
body_take(struct sr_admin_conn *conn, char *body)
{
    if (body != NULL) {
        conn->body = body;
        conn->admin->n_bodies++;
    }
}

/* /explain: the callback writes the text; its status goes out as it says. */
static void
answer_explain(struct sr_admin_conn *conn, const struct sr_admin_request *req, bool is_head)
{
    struct sr_admin *admin = conn->admin;
    char *body = NULL;
    size_t len = 0;
    int status = admin->explain_cb(admin->ctx, req->query != NULL ? req->query : "", req->query_len,
                                   &body, &len);

    body_take(conn, body);
    if ((status != 200 && status != 400 && status != 404) || conn->body == NULL) {
        body_free(conn);
        RESPOND_ERROR(conn, 500, "Internal Server Error", "explain unavailable\n");
        return;
    }
    respond(conn, status,
            status == 200   ? "OK"
            : status == 404 ? "Not Found"
                            : "Bad Request",
            TEXT_PLAIN, conn->body, len, is_head);
}

static void
answer(struct sr_admin_conn *conn, const struct sr_admin_request *req)
{
    struct sr_admin *admin = conn->admin;
    bool is_head = req->method == SR_ADMIN_HEAD;
    const char *not_ready;
    char *body = NULL;
    size_t len = 0;
    int n;

    if (!path_is(req, "/metrics") && !path_is(req, "/healthz") && !path_is(req, "/readyz") &&
        !(path_is(req, "/explain") && admin->explain_cb != NULL)) {
        RESPOND_ERROR(conn, 404, "Not Found", "not found\n");
        return;
    }
    if (req->method == SR_ADMIN_OTHER) {
        RESPOND_ERROR(conn, 405, "Method Not Allowed", "method not allowed\n");
        return;
    }
    if (path_is(req, "/healthz")) {
        respond(conn, 200, "OK", TEXT_PLAIN, "ok\n", 3, is_head);
        return;
    }
    if (path_is(req, "/readyz")) {
        not_ready = admin->ready_cb != NULL ? admin->ready_cb(admin->ctx) : NULL;
        if (not_ready == NULL) {
            respond(conn, 200, "OK", TEXT_PLAIN, "ready\n", 6, is_head);
            return;
        }
        n = snprintf(conn->text, sizeof(conn->text), "not ready: %s\n", not_ready);
        len = n < 0 ? 0 : (size_t)n < sizeof(conn->text) ? (size_t)n : sizeof(conn->text) - 1;
        respond(conn, 503, "Service Unavailable", TEXT_PLAIN, conn->text, len, is_head);
        return;
    }
    if (!body_allowed(conn)) {
        RESPOND_ERROR(conn, 503, "Service Unavailable", "busy: too many responses in flight\n");
        return;
    }
    if (path_is(req, "/explain")) {
        answer_explain(conn, req, is_head);
        return;
    }
    if (admin->metrics_cb == NULL) {
        RESPOND_ERROR(conn, 500, "Internal Server Error", "metrics unavailable\n");
        return;
    }
    n = admin->metrics_cb(admin->ctx, &body, &len);
    body_take(conn, body);
    if (n != 0 || conn->body == NULL) {
        body_free(conn);
        RESPOND_ERROR(conn, 500, "Internal Server Error", "metrics unavailable\n");
        return;
    }
    respond(conn, 200, "OK", PROMETHEUS, conn->body, len, is_head);
}

static void
on_timeout(uv_timer_t *timer)
{
    struct sr_admin_conn *conn = timer->data;

    if (conn->state == SR_ADMIN_READING && conn->len > 0) {
        RESPOND_ERROR(conn, 408, "Request Timeout", "request timeout\n");
        return;
    }
    conn_close(conn); /* silent or slow to take the response: nothing more to say */
}

static void
on_head_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct sr_admin_conn *conn = handle->data;

    (void)suggested;
    /* The parser answers TOO_LARGE once the buffer is full, so room is never zero here. */
    buf->base = conn->buf + conn->len;
    buf->len = sizeof(conn->buf) - conn->len;
}

static void
on_head_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sr_admin_conn *conn = stream->data;
    struct sr_admin_request req;
    uint64_t elapsed;

    (void)buf;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        conn_close(conn); /* gone before the head ended: no one to answer */
        return;
    }
    if (conn->len == 0) {
        /* The first bytes: from now on the deadline is the one for the whole head, which
         * still counts from the accept. */
        elapsed = uv_now(conn->admin->loop) - conn->accepted_ms;
        uv_timer_start(&conn->timer, on_timeout,
                       elapsed < SR_ADMIN_HEAD_MS ? SR_ADMIN_HEAD_MS - elapsed : 0, 0);
    }
    conn->len += (size_t)nread;
    switch (sr_admin_parse_request(conn->buf, conn->len, &req)) {
    case SR_ADMIN_PARSE_NEED_MORE:
        return;
    case SR_ADMIN_PARSE_OK:
        answer(conn, &req);
        return;
    case SR_ADMIN_PARSE_BAD:
        RESPOND_ERROR(conn, 400, "Bad Request", "bad request\n");
        return;
    case SR_ADMIN_PARSE_TOO_LARGE:
        RESPOND_ERROR(conn, 431, "Request Header Fields Too Large", "request head too large\n");
        return;
    }
}

/* The client's address as the per-address cap keys it: 16 bytes, IPv4 as ::ffff:a.b.c.d
 * (the form a dual-stack socket reports it in). False for another family. */
static bool
peer_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
    if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return true;
    }
    if (ss->ss_family == AF_INET) {
        memset(key, 0, 10);
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return true;
    }
    return false;
}

/* Take the connection libuv holds for us off the listener, make room for it, start reading. */
static void
accept_one(struct sr_admin *admin)
{
    struct sockaddr_storage peer;
    int peer_len = sizeof(peer);
    struct sr_admin_conn *conn = calloc(1, sizeof(*conn));

    if (conn == NULL) {
        /* Not accepted: it stays with libuv, which stops watching the listener meanwhile;
         * the next tick tries again. */
        admin->is_accept_deferred = true;
        return;
    }
    conn->admin = admin;
    conn->state = SR_ADMIN_READING;
    conn->seq = admin->n_accepted++;
    conn->accepted_ms = uv_now(admin->loop);
    uv_tcp_init(admin->loop, &conn->tcp);
    uv_timer_init(admin->loop, &conn->timer);
    conn->tcp.data = conn;
    conn->timer.data = conn;
    conn->n_pending = 2;
    admin->n_open += 2;
    conn->next = admin->conns;
    if (admin->conns != NULL) {
        admin->conns->prev = conn;
    }
    admin->conns = conn;
    admin->n_conns++;
    admin->n_live++;

    if (uv_accept((uv_stream_t *)&admin->listener, (uv_stream_t *)&conn->tcp) != 0 ||
        uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&peer, &peer_len) != 0 ||
        !peer_key(&peer, conn->peer)) {
        conn_close(conn);
        return;
    }
    make_room(admin, conn);
    uv_timer_start(&conn->timer, on_timeout, SR_ADMIN_FIRST_BYTE_MS, 0);
    if (uv_read_start((uv_stream_t *)&conn->tcp, on_head_alloc, on_head_read) != 0) {
        conn_close(conn);
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct sr_admin *admin = server->data;

    if (status != 0 || admin->is_stopped) {
        return; /* EMFILE and the like: libuv calls again when it can accept */
    }
    if (admin->n_tick_accepts >= SR_ADMIN_ACCEPTS_PER_TICK) {
        /* Over the budget of this tick: not accepting leaves the connection with libuv,
         * which stops watching the listener until uv_accept (libuv's uv__server_io); the
         * connections already accepted get read first, then on_tick takes this one. */
        admin->is_accept_deferred = true;
        return;
    }
    admin->n_tick_accepts++;
    accept_one(admin);
}

/* After each poll: a new accept budget, and the connection left waiting, if any. */
static void
on_tick(uv_check_t *tick)
{
    struct sr_admin *admin = tick->data;

    admin->n_tick_accepts = 0;
    if (admin->is_accept_deferred && !admin->is_stopped) {
        admin->is_accept_deferred = false;
        admin->n_tick_accepts = 1;
        accept_one(admin);
    }
}

/* --- The server ---------------------------------------------------------------------------- */

/* The listener's or the tick's. */
static void
on_server_handle_close(uv_handle_t *handle)
{
    struct sr_admin *admin = handle->data;

    admin->n_open--;
}

int
sr_admin_start(struct sr_admin *admin, uv_loop_t *loop, const struct sockaddr *addr,
               sr_admin_metrics_fn metrics_cb, sr_admin_ready_fn ready_cb, void *ctx)
{
    return sr_admin_start_fd(admin, loop, addr, -1, metrics_cb, ready_cb, ctx);
}

int
sr_admin_start_fd(struct sr_admin *admin, uv_loop_t *loop, const struct sockaddr *addr, int fd,
                  sr_admin_metrics_fn metrics_cb, sr_admin_ready_fn ready_cb, void *ctx)
{
    int len = sizeof(admin->addr);
    int rc;

    memset(admin, 0, sizeof(*admin));
    admin->loop = loop;
    admin->metrics_cb = metrics_cb;
    admin->ready_cb = ready_cb;
    admin->ctx = ctx;
    rc = uv_tcp_init(loop, &admin->listener);
    if (rc != 0) {
        if (fd >= 0) {
            close(fd);
        }
        admin->is_stopped = true;
        return rc;
    }
    admin->listener.data = admin;
    admin->n_open = 1;
    if (fd >= 0) {
        rc = uv_tcp_open(&admin->listener, fd);
        if (rc != 0) {
            close(fd);
        }
    } else {
        rc = uv_tcp_bind(&admin->listener, addr, 0);
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&admin->listener, SR_ADMIN_BACKLOG, on_connection);
    }
    if (rc == 0) {
        rc = uv_tcp_getsockname(&admin->listener, (struct sockaddr *)&admin->addr, &len);
    }
    if (rc != 0) {
        admin->is_stopped = true;
        uv_close((uv_handle_t *)&admin->listener, on_server_handle_close);
        return rc;
    }
    /* uv_check_init and uv_check_start cannot fail on an initialized loop. */
    uv_check_init(loop, &admin->tick);
    admin->tick.data = admin;
    admin->n_open++;
    uv_check_start(&admin->tick, on_tick);
    admin->is_listening = true;
    return 0;
}

void
sr_admin_set_explain(struct sr_admin *admin, sr_admin_explain_fn explain_cb)
{
    admin->explain_cb = explain_cb;
}

void
sr_admin_stop(struct sr_admin *admin)
{
    struct sr_admin_conn *conn, *next;

    admin->is_stopped = true;
    if (admin->is_listening) {
        admin->is_listening = false;
        /* libuv closes with it a connection it still held for us (is_accept_deferred). */
        uv_close((uv_handle_t *)&admin->listener, on_server_handle_close);
        uv_close((uv_handle_t *)&admin->tick, on_server_handle_close);
    }
    for (conn = admin->conns; conn != NULL; conn = next) {
        next = conn->next;
        conn_close(conn);
    }
}

unsigned
sr_admin_port(const struct sr_admin *admin)
{
    const struct sockaddr *sa = (const struct sockaddr *)&admin->addr;

    if (sa->sa_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    return 0;
}
