/* SPDX-License-Identifier: MIT */
/* One client connection: peek the ClientHello without consuming anything we will not
 * forward, route by its server_name, connect to the upstream, send the peeked bytes first
 * and relay both ways with backpressure, half-close and reset propagation. Memory per
 * connection is constant: relay buffers come from the server's pool only while a read or a
 * write is in flight, and the peek buffer lives only until the hello has been forwarded. */
#include "sniroute/conn.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uv.h>

#include "sniroute/hello.h"
#include "sniroute/http.h"
#include "sniroute/log.h"
#include "sniroute/proxyproto.h"

static void on_timer(uv_timer_t *timer);
static void connect_start(struct sr_conn *conn);
static void conn_refuse_with(struct sr_conn *conn, size_t len, const char *outcome);
static void conn_connect_upstream(struct sr_conn *conn, size_t index);
static void conn_fallback(struct sr_conn *conn);
static void pool_pick(struct sr_conn *conn);
static void target_failed(struct sr_conn *conn, const char *outcome);
static void connect_next(struct sr_conn *conn);
static void relay_start(struct sr_conn *conn);

/* A connection is freed when the last thing that will call back into it has done so: each
 * open handle, plus a resolver request (not tied to a handle, so libuv does not cancel it
 * for us). Write, connect and shutdown requests need no count: libuv runs their callbacks,
 * with UV_ECANCELED if need be, before the close callback of their handle. */
static struct sr_metrics *
conn_metrics(struct sr_conn *conn)
{
    return &conn->server->metrics;
}

static void
conn_hello_metric(struct sr_conn *conn, enum sr_metrics_hello result, enum sr_hello_reason reason)
{
    sr_metrics_hello(conn_metrics(conn), result, reason);
}

static void
conn_release(struct sr_conn *conn)
{
    assert(conn->n_pending > 0);
    if (--conn->n_pending > 0) {
        return;
    }
    if (conn->addrs != NULL) {
        uv_freeaddrinfo(conn->addrs);
    }
    sr__relay_release(conn);
    if (conn->is_pool_counted) {
        sr_pool_conn_end(conn->pool, conn->pool_index);
    }
    free(conn->proxy_header);
    if (conn->http_track != NULL) {
        sr_http_track_fini(conn->http_track);
        free(conn->http_track);
    }
    free(conn->http_out.p);
    free(conn->peek);
    sr_generation_unref(conn->gen);
    sr__server_conn_gone(conn->server, conn);
    free(conn);
}

void
sr__conn_on_handle_close(uv_handle_t *handle)
{
    conn_release(handle->data);
}

static const char *
route_name(enum sr_route_kind kind)
{
    switch (kind) {
    case SR_ROUTE_EXACT:
        return "exact";
    case SR_ROUTE_WILDCARD:
        return "wildcard";
    case SR_ROUTE_DEFAULT:
        return "default";
    case SR_ROUTE_MISS:
        break;
    }
    return "none";
}

static void
conn_log(struct sr_conn *conn)
{
    struct sr_access_record rec;
    char upstream[SR_ADDR_HOST_MAX + 16];
    char line[1024];
    uv_timeval64_t tv;
    size_t len;

    if (!atomic_load_explicit(&conn->server->shared->is_logging, memory_order_relaxed) ||
        conn->is_quiet) {
        return;
    }
    upstream[0] = '\0';
    if (conn->pool != NULL) {
        /* "pool/server": which pool, and which of its servers was tried last. */
        int n = snprintf(upstream, sizeof(upstream), "%s/",
                         conn->gen->cfg.pools[conn->upstream->pool - 1].name);

        if (n > 0 && (size_t)n < sizeof(upstream)) {
            sr_addr_format(conn->target, upstream + n, sizeof(upstream) - (size_t)n);
        }
    } else if (conn->upstream != NULL) {
        sr_addr_format(&conn->upstream->addr, upstream, sizeof(upstream));
    }
    if (uv_gettimeofday(&tv) != 0) {
        memset(&tv, 0, sizeof(tv));
    }
    memset(&rec, 0, sizeof(rec));
    rec.time_ms = tv.tv_sec * 1000 + tv.tv_usec / 1000;
    rec.listener = conn->lcfg->name;
    rec.client = conn->client_text;
    rec.sni = conn->sni;
    rec.route = conn->is_fallback ? "fallback" : route_name(conn->route);
    rec.upstream = upstream;
    rec.bytes_in = conn->up.n_bytes;
    rec.bytes_out = conn->down.n_bytes;
    rec.duration_ms = uv_now(conn->server->loop) - conn->start_ms;
    rec.outcome = conn->outcome;
    rec.detail = conn->detail;
    rec.has_ech = conn->has_ech;
    rec.alpn_route = conn->alpn_route;
    len = conn->gen->cfg.log_format == SR_LOG_FORMAT_JSON
              ? sr_log_format_access_json(line, sizeof(line), &rec)
              : sr_log_format_access(line, sizeof(line), &rec);
    sr_shared_log(conn->server->shared, line, len);
}

static void
close_tcp(uv_tcp_t *tcp, bool is_reset)
{
    /* uv_tcp_close_reset refuses a handle with a shutdown in flight; a FIN is then the
     * best we can pass on. */
    if (is_reset && uv_tcp_close_reset(tcp, sr__conn_on_handle_close) == 0) {
        return;
    }
    uv_close((uv_handle_t *)tcp, sr__conn_on_handle_close);
}

/* Close everything. <reset_client>/<reset_backend> end that side with an RST instead of a
 * FIN, which is how a reset on one side is passed on to the other. */
void
sr__conn_close_ex(struct sr_conn *conn, const char *outcome, bool reset_client, bool reset_backend)
{
    if (conn->state == SR_CONN_CLOSING) {
        return;
    }
    if (conn->outcome == NULL) {
        conn->outcome = outcome;
    }
    if (conn->state == SR_CONN_RESOLVING) {
        /* The callback still comes, with UV_ECANCELED unless the lookup already runs. */
        uv_cancel((uv_req_t *)&conn->resolve_req);
    }
    conn->state = SR_CONN_CLOSING;
    conn_log(conn);
    if (conn->is_counted) {
        sr_metrics_conn_closed(conn_metrics(conn), conn->lid,
                               sr_metrics_outcome_parse(conn->outcome));
        sr_metrics_bytes(conn_metrics(conn), conn->lid,
                         conn->upstream != NULL ? conn->uid : UINT32_MAX, conn->up.n_bytes,
                         conn->down.n_bytes);
    }

    uv_close((uv_handle_t *)&conn->timer, sr__conn_on_handle_close);
    sr__relay_close(conn); /* stop watching the sockets before they are closed */
    close_tcp(&conn->client, reset_client);
    if (conn->is_backend_open) {
        conn->is_backend_open = false;
        close_tcp(&conn->backend, reset_backend);
    }
}

void
sr_conn_close(struct sr_conn *conn, const char *outcome)
{
    sr__conn_close_ex(conn, outcome, false, false);
}

static void
on_timer(uv_timer_t *timer)
{
    struct sr_conn *conn = timer->data;
    uint64_t idle_ms = conn->gen->cfg.idle_timeout_ms;
    uint64_t quiet_ms;

    switch (conn->state) {
    case SR_CONN_HELLO:
        quiet_ms = uv_now(conn->server->loop) - conn->start_ms;
        if (conn->peek_len == 0 && conn->lcfg->fallback != 0 &&
            conn->lcfg->fallback_timeout_ms != 0 && quiet_ms >= conn->lcfg->fallback_timeout_ms) {
            conn_fallback(conn); /* the client waits for the server to speak first */
            return;
        }
        if (quiet_ms < conn->gen->cfg.hello_timeout_ms) {
            uv_timer_start(&conn->timer, on_timer, conn->gen->cfg.hello_timeout_ms - quiet_ms, 0);
            return;
        }
        conn_hello_metric(conn, SR_METRICS_HELLO_TIMEOUT, SR_HELLO_REASON_NONE);
        sr_conn_close(conn, "hello_timeout");
        return;
    case SR_CONN_RESOLVING:
    case SR_CONN_CONNECTING:
        sr_metrics_connect_failed(conn_metrics(conn), conn->uid, SR_METRICS_CONNECT_TIMEOUT);
        sr_conn_close(conn, "connect_timeout");
        return;
    case SR_CONN_REFUSING:
        sr_conn_close(conn, NULL);
        return;
    case SR_CONN_RELAYING:
        /* Reads only note the time; the timer re-arms itself here for what is left, so the
         * hot path never touches the timer heap. */
        quiet_ms = uv_now(conn->server->loop) - conn->last_active_ms;
        if (quiet_ms >= idle_ms) {
            sr_conn_close(conn, "idle_timeout");
        } else {
            uv_timer_start(&conn->timer, on_timer, idle_ms - quiet_ms, 0);
        }
        return;
    case SR_CONN_CLOSING:
        return;
    }
}

/* --- Refusing: a TLS alert, then close ------------------------------------------------ */

/* How long a refused client may take to read the alert and close. Closing a socket with
 * unread input sends an RST, which can destroy the alert before the client reads it; so
 * after the alert we send a FIN and drain what the client still sends, for at most this
 * long (nginx calls it a lingering close). */
#define SR_LINGER_MS 2000

static void
on_linger_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct sr_conn *conn = handle->data;

    (void)suggested;
    /* The peek buffer holds nothing we need any more: discard into it. */
    buf->base = (char *)conn->peek;
    buf->len = conn->peek_cap;
}

static void
on_linger_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0) {
        sr_conn_close(stream->data, NULL); /* EOF or error: the client is done */
    }
}

static void
on_linger_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* reading on until EOF or the linger timer ends it either way */
}

static void
on_alert_written(uv_write_t *req, int status)
{
    struct sr_conn *conn = req->data;

    if (conn->state == SR_CONN_CLOSING) {
        return;
    }
    conn->shutdown_req.data = conn;
    if (status != 0 ||
        uv_shutdown(&conn->shutdown_req, (uv_stream_t *)&conn->client, on_linger_shutdown) != 0 ||
        uv_read_start((uv_stream_t *)&conn->client, on_linger_alloc, on_linger_read) != 0) {
        sr_conn_close(conn, NULL);
    }
}

/* Answer with a fatal TLS alert so the client learns why, instead of a bare reset. The
 * alert goes out through the peek buffer, which holds nothing we still need. */
static void
conn_refuse(struct sr_conn *conn, uint8_t alert, const char *outcome)
{
    sr_hello_alert(conn->peek, alert);
    conn_refuse_with(conn, SR_HELLO_ALERT_LEN, outcome);
}

/* Send the first <len> bytes of the peek buffer (an alert, an HTTP error response) to the
 * client, then close with a lingering FIN. The peek buffer holds nothing we still need. */
static void
conn_refuse_with(struct sr_conn *conn, size_t len, const char *outcome)
{
    uv_buf_t buf;

    conn->outcome = outcome;
    conn->state = SR_CONN_REFUSING;
    uv_read_stop((uv_stream_t *)&conn->client);
    uv_timer_start(&conn->timer, on_timer, SR_LINGER_MS, 0);
    buf = uv_buf_init((char *)conn->peek, (unsigned)len);
    conn->write_req.data = conn;
    if (uv_write(&conn->write_req, (uv_stream_t *)&conn->client, &buf, 1, on_alert_written) != 0) {
        sr_conn_close(conn, NULL);
        return;
    }
    conn->down.n_bytes += len; /* bytes_out tells what the client was sent */
}

/* An HTTP listener's answer to a request it cannot route (400 or 421). */
static void
conn_refuse_http(struct sr_conn *conn, int code, const char *outcome)
{
    size_t len = sr_http_error_response((char *)conn->peek, conn->peek_cap, code);

    if (len == 0) {
        sr_conn_close(conn, outcome);
        return;
    }
    conn_refuse_with(conn, len, outcome);
}

/* --- Peeking the ClientHello ------------------------------------------------------------ */

/* The first wakeup of a new connection: hello_timeout, or fallback_timeout if that is
 * sooner (on_timer re-arms for the rest of hello_timeout if the client has spoken). */
static uint64_t
hello_timer_ms(const struct sr_conn *conn)
{
    uint64_t t = conn->gen->cfg.hello_timeout_ms;
    uint64_t f = conn->lcfg->fallback != 0 ? conn->lcfg->fallback_timeout_ms : 0;

    return f != 0 && f < t ? f : t;
}

/* The most the peek buffer may hold: the hello, and a PROXY header before it if one is
 * expected. */
static size_t
peek_max(const struct sr_conn *conn)
{
    return conn->gen->cfg.max_hello_size + (conn->is_proxy_expected ? SR_PROXYPROTO_PARSE_MAX : 0);
}

/* The pending error of <tcp>'s socket as a UV_E* code, or <otherwise> if there is none. */
static int
socket_error(uv_tcp_t *tcp, int otherwise)
{
    uv_os_fd_t fd;
    socklen_t len = sizeof(int);
    int err = 0;

    if (uv_fileno((uv_handle_t *)tcp, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) {
        return otherwise;
    }
    return -err; /* libuv's codes are negated errno values on Unix */
}

static void
on_hello_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct sr_conn *conn = handle->data;
    size_t max = peek_max(conn);
    size_t want = conn->parse_at > conn->peek_len ? conn->parse_at : conn->peek_len + 1;
    size_t cap;
    uint8_t *peek;

    (void)suggested;
    /* Taken at the first byte, not at accept, and small at first: most hellos fit in
     * SR_PEEK_INITIAL, and one byte from a client must not cost max_hello_size. It grows
     * to what the parser says the hello needs; no view into it is held between reads. */
    if (conn->peek_cap < want) {
        cap = conn->peek_cap == 0 ? SR_PEEK_INITIAL : conn->peek_cap * 2;
        cap = cap < want ? want : cap;
        cap = cap > max ? max : cap;
        peek = realloc(conn->peek, cap);
        if (peek == NULL) {
            buf->base = NULL;
            buf->len = 0; /* read_cb gets UV_ENOBUFS */
            return;
        }
        conn->peek = peek;
        conn->peek_cap = cap;
    }
    buf->base = (char *)conn->peek + conn->peek_len;
    buf->len = conn->peek_cap - conn->peek_len;
}

/* Not TLS (or silent past fallback_timeout): hand the connection, and whatever it sent so
 * far, unmodified, to the listener's fallback. */
static void
conn_fallback(struct sr_conn *conn)
{
    conn->is_fallback = true;
    conn_connect_upstream(conn, conn->lcfg->fallback - 1);
}

/* ALPN-conditioned routes ("NAME[PROTO]") beat every route without a condition: for each
 * protocol the client offers, in its order of preference, the table of that protocol is
 * searched like the main one (exact, longest wildcard, default). <res>'s ALPN view is
 * only read here, while it is valid. */
static bool
route_by_alpn(struct sr_conn *conn, const struct sr_hello_result *res, size_t sni_len,
              struct sr_route_hit *hit)
{
    const struct sr_routes *routes = conn->routes;
    struct sr_view cursor = res->alpn;
    struct sr_view proto;
    size_t i;

    if (routes->n_alpn == 0 || !res->has_alpn) {
        return false;
    }
    while (sr_hello_alpn_next(&cursor, &proto)) {
        for (i = 0; i < routes->n_alpn; i++) {
            const struct sr_alpn_routes *a = &routes->alpn[i];

            if (a->proto_len != proto.len || memcmp(a->proto, proto.ptr, proto.len) != 0) {
                continue;
            }
            if (res->status == SR_HELLO_FOUND) {
                sr_route_lookup(a->table, conn->sni, sni_len, hit);
            } else {
                sr_route_lookup_default(a->table, hit);
            }
            if (hit->kind != SR_ROUTE_MISS) {
                conn->alpn_route = a->proto; /* from the config: safe in a log line */
                return true;
            }
        }
    }
    return false;
}

static void
conn_route(struct sr_conn *conn, const struct sr_hello_result *res)
{
    struct sr_route_hit hit;
    size_t len;

    if (res->has_ech) {
        /* Routed by the outer (public) name, as ECH intends for a passthrough front. */
        conn->has_ech = true;
        sr_metrics_hello_ech(conn_metrics(conn));
    }
    if (res->status == SR_HELLO_FOUND) {
        /* The parser has validated the name, so this cannot fail; still, never route on a
         * name we could not normalize. */
        if (sr_name_normalize(res->sni.ptr, res->sni.len, conn->sni, &len) != SR_NAME_OK) {
            conn->sni[0] = '\0';
            conn->detail = "server name not normalizable";
            conn_refuse(conn, SR_TLS_ALERT_DECODE_ERROR, "malformed");
            return;
        }
    } else if (conn->lcfg->no_sni == SR_NO_SNI_REJECT) {
        conn_refuse(conn, SR_TLS_ALERT_HANDSHAKE_FAILURE, "no_sni");
        return;
    } else {
        len = 0;
    }
    if (!route_by_alpn(conn, res, len, &hit)) {
        if (res->status == SR_HELLO_FOUND) {
            sr_route_lookup(conn->routes->table, conn->sni, len, &hit);
        } else {
            sr_route_lookup_default(conn->routes->table, &hit);
        }
    }
    conn->route = hit.kind;
    sr_metrics_route(conn_metrics(conn), conn->lid, hit.kind);
    if (hit.kind == SR_ROUTE_MISS) {
        conn_refuse(conn, SR_TLS_ALERT_UNRECOGNIZED_NAME, "no_route");
        return;
    }
    assert(hit.value < conn->gen->cfg.n_upstreams);
    conn_connect_upstream(conn, hit.value);
}

/* Connect to route target <index> of the generation: one address, or a pool's servers. */
static void
conn_connect_upstream(struct sr_conn *conn, size_t index)
{
    const struct sr_config *cfg = &conn->gen->cfg;

    conn->upstream = &cfg->upstreams[index];
    conn->uid = conn->gen->upstream_ids[index];
    sr_metrics_upstream_selected(conn_metrics(conn), conn->uid);

    /* Whatever the client sent so far stays in the peek buffer, unparsed bytes after the
     * hello included; reading resumes once all of it has reached the backend. */
    uv_read_stop((uv_stream_t *)&conn->client);
    uv_timer_start(&conn->timer, on_timer, cfg->connect_timeout_ms, 0);
    if (conn->upstream->pool != 0) {
        /* This worker's copy of the pool: pools are not shared between threads. */
        conn->pool =
            &conn->gen->pools[conn->server->worker * cfg->n_pools + conn->upstream->pool - 1];
        conn->proxy_send = cfg->pools[conn->upstream->pool - 1].proxy_protocol;
        pool_pick(conn);
        return;
    }
    conn->target = &conn->upstream->addr;
    connect_start(conn);
}

/* proxy_protocol = accept: read the PROXY header at the start of the peek buffer. Returns
 * true once it is complete and valid (the hello follows it); false while more bytes are
 * needed (parse_at set) or after closing the connection for a bad header. */
static bool
proxy_header_read(struct sr_conn *conn)
{
    struct sr_proxyproto_result pp;

    sr_proxyproto_parse(conn->peek, conn->peek_len, &pp);
    switch (pp.status) {
    case SR_PROXYPROTO_NEED_MORE:
        conn->parse_at = conn->peek_len + pp.need;
        return false;
    case SR_PROXYPROTO_OK:
        conn->proxy_len = pp.header_len;
        if (pp.command == SR_PROXYPROTO_CMD_PROXY && pp.family != SR_PROXYPROTO_FAMILY_UNSPEC) {
            /* From here on the client is who the load balancer says: in the log, in the
             * PROXY header we send on, and for source_hash. */
            conn->has_proxied = true;
            conn->proxied_src = pp.src;
            conn->proxied_dst = pp.dst;
            sr__format_sockaddr((const struct sockaddr *)&pp.src, conn->client_text,
                                sizeof(conn->client_text));
            conn->has_source_key =
                sr_ipkey_from_sockaddr(&conn->source_key, (const struct sockaddr *)&pp.src) == 0;
        }
        return true;
    case SR_PROXYPROTO_NOT_PROXY:
    case SR_PROXYPROTO_INVALID:
        conn->detail = pp.status == SR_PROXYPROTO_NOT_PROXY ? "no PROXY header"
                                                            : sr_proxyproto_reason_str(pp.reason);
        sr_conn_close(conn, "proxy_invalid");
        return false;
    }
    return false;
}

/* The host a request head names, routed like a server name: a name normalized and looked
 * up (exact, wildcard, default), an IP literal to the default. Returns the hit's kind;
 * <sni> receives the normalized name ("" for a literal). */
static enum sr_route_kind
http_route(const struct sr_conn *conn, const struct sr_http_head *head, char *sni,
           struct sr_route_hit *hit)
{
    size_t len = 0;

    sni[0] = '\0';
    if (head->is_ip_literal ||
        sr_name_normalize(head->host.ptr, head->host.len, sni, &len) != SR_NAME_OK) {
        sni[0] = '\0';
        return sr_route_lookup_default(conn->routes->table, hit);
    }
    return sr_route_lookup(conn->routes->table, sni, len, hit);
}

/* The tracker's question for every request head on the connection, the first included:
 * may it go to the backend the first request chose? Only if the map gives its host that
 * same backend; otherwise the connection ends (the client opens a new one). */
static int
on_http_head(void *ctx, const struct sr_http_head *head)
{
    struct sr_conn *conn = ctx;
    char sni[SR_NAME_MAX + 1];
    struct sr_route_hit hit;

    if (http_route(conn, head, sni, &hit) == SR_ROUTE_MISS || hit.value != conn->http_target) {
        return 1;
    }
    return 0;
}

void
sr__conn_http_refused(struct sr_conn *conn, enum sr_track_result r)
{
    conn->detail = r == SR_TRACK_STOP        ? "a later request names a host routed elsewhere"
                   : r == SR_TRACK_TOO_LARGE ? "request head too large"
                                             : "not HTTP/1.x any more";
    sr_conn_close(conn, r == SR_TRACK_STOP ? "host_changed" : "malformed");
}

/* protocol = http: route by the Host of the first request head. */
static void
http_read(struct sr_conn *conn)
{
    size_t cap = peek_max(conn);
    struct sr_http_head head;
    struct sr_route_hit hit;

    sr_http_parse_head(conn->peek + conn->proxy_len, conn->peek_len - conn->proxy_len, &head);
    switch (head.status) {
    case SR_HTTP_NEED_MORE:
        conn->parse_at = conn->peek_len + head.need;
        if (conn->parse_at > cap) {
            conn->detail = "request head larger than max_hello_size";
            conn_refuse_http(conn, 400, "too_large");
        }
        return;
    case SR_HTTP_NOT_HTTP:
        if (conn->lcfg->fallback != 0) {
            conn_fallback(conn);
            return;
        }
        conn->detail = sr_http_reason_str(head.reason);
        conn_refuse_http(conn, 400, "not_http");
        return;
    case SR_HTTP_BAD:
        conn->detail = sr_http_reason_str(head.reason);
        conn_refuse_http(conn, 400, "malformed");
        return;
    case SR_HTTP_OK:
        break;
    }
    conn->route = http_route(conn, &head, conn->sni, &hit);
    sr_metrics_route(conn_metrics(conn), conn->lid, hit.kind);
    if (hit.kind == SR_ROUTE_MISS) {
        conn_refuse_http(conn, 421, "no_route");
        return;
    }
    conn->http_track = malloc(sizeof(*conn->http_track));
    if (conn->http_track == NULL) {
        sr_conn_close(conn, "error");
        return;
    }
    conn->http_target = hit.value;
    sr_http_track_init(conn->http_track, conn->gen->cfg.max_hello_size, on_http_head, conn);
    conn_connect_upstream(conn, hit.value);
}

static void
on_hello_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sr_conn *conn = stream->data;
    size_t cap = peek_max(conn);
    struct sr_hello_scratch scratch;
    struct sr_hello_result res;

    (void)buf;
    if (nread == 0) {
        return;
    }
    if (nread == UV_EOF) {
        /* libuv reports a hangup after a short read as EOF without reading on; the socket
         * still holds the error if it was in fact a reset. */
        nread = socket_error(&conn->client, UV_EOF);
    }
    if (nread < 0) {
        conn->detail = uv_err_name((int)nread);
        conn_hello_metric(conn,
                          nread == UV_EOF       ? SR_METRICS_HELLO_INCOMPLETE
                          : nread == UV_ENOBUFS ? SR_METRICS_HELLO_ERROR
                                                : SR_METRICS_HELLO_CLIENT_RESET,
                          SR_HELLO_REASON_NONE);
        sr_conn_close(conn, nread == UV_EOF       ? "incomplete"
                            : nread == UV_ENOBUFS ? "error"
                                                  : "client_reset");
        return;
    }
    conn->peek_len += (size_t)nread;
    conn->up.n_bytes = conn->peek_len;
    if (conn->peek_len < conn->parse_at) {
        return; /* the parser said how much more it needs: no re-parse before that */
    }

    if (conn->is_proxy_expected && conn->proxy_len == 0 && !proxy_header_read(conn)) {
        return; /* incomplete (waiting for more) or refused */
    }
    if (conn->lcfg->is_http) {
        http_read(conn);
        return;
    }
    sr_hello_parse(conn->peek + conn->proxy_len, conn->peek_len - conn->proxy_len, &scratch, &res);
    switch (res.status) {
    case SR_HELLO_NEED_MORE:
        conn->parse_at = conn->peek_len + res.need;
        if (conn->parse_at > cap) {
            conn->detail = "hello larger than max_hello_size";
            conn_hello_metric(conn, SR_METRICS_HELLO_TOO_LARGE, SR_HELLO_REASON_NONE);
            conn_refuse(conn, SR_TLS_ALERT_HANDSHAKE_FAILURE, "too_large");
        }
        return;
    case SR_HELLO_FOUND:
    case SR_HELLO_NO_SNI:
        conn_hello_metric(
            conn, res.status == SR_HELLO_FOUND ? SR_METRICS_HELLO_FOUND : SR_METRICS_HELLO_NO_SNI,
            SR_HELLO_REASON_NONE);
        conn_route(conn, &res);
        return;
    case SR_HELLO_NOT_TLS:
        conn->detail = sr_hello_reason_str(res.reason);
        conn_hello_metric(conn, SR_METRICS_HELLO_NOT_TLS, res.reason);
        if (conn->lcfg->fallback != 0) {
            conn->detail = NULL;
            conn_fallback(conn);
            return;
        }
        sr_conn_close(conn, "not_tls");
        return;
    case SR_HELLO_MALFORMED:
        conn->detail = sr_hello_reason_str(res.reason);
        conn_hello_metric(conn, SR_METRICS_HELLO_MALFORMED, res.reason);
        conn_refuse(conn, SR_TLS_ALERT_DECODE_ERROR, "malformed");
        return;
    }
}

/* --- Resolving and connecting --------------------------------------------------------- */

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *addrs)
{
    struct sr_conn *conn = req->data;

    conn->addrs = addrs; /* freed with the connection, whatever happens next */
    if (conn->state != SR_CONN_CLOSING) {
        if (status != 0 || addrs == NULL) {
            conn->detail = uv_err_name(status != 0 ? status : UV_EAI_NONAME);
            sr_metrics_connect_failed(conn_metrics(conn), conn->uid, SR_METRICS_CONNECT_RESOLVE);
            target_failed(conn, "resolve_failed");
        } else {
            conn->next_addr = addrs;
            connect_next(conn);
        }
    }
    conn_release(conn);
}

/* Choose the next server of the connection's pool (one not tried yet) and connect to it;
 * none left: the connection ends. */
static void
pool_pick(struct sr_conn *conn)
{
    const struct sr_pool_config *pc = &conn->gen->cfg.pools[conn->upstream->pool - 1];
    enum sr_pool_pick pick;
    size_t i;

    pick = sr_pool_pick(conn->pool, uv_now(conn->server->loop),
                        conn->has_source_key ? conn->source_key.bytes : NULL, conn->pool_tried, &i);
    if (pick == SR_POOL_NONE_LEFT) {
        if (conn->detail == NULL) {
            conn->detail = "no server available";
        }
        sr_conn_close(conn, "connect_failed");
        return;
    }
    conn->pool_index = i;
    conn->pool_tried |= (uint64_t)1 << i;
    conn->target = &pc->servers[i];
    sr_pool_conn_start(conn->pool, i);
    conn->is_pool_counted = true;
    connect_start(conn);
}

/* Every address of the target failed (or its name did not resolve): a pool moves on to
 * its next server, within the same connect_timeout; a single address ends here. */
static void
target_failed(struct sr_conn *conn, const char *outcome)
{
    char text[SR_ADDR_HOST_MAX + 16];

    if (conn->pool == NULL) {
        sr_conn_close(conn, outcome);
        return;
    }
    if (sr_pool_report_failure(conn->pool, conn->pool_index, uv_now(conn->server->loop))) {
        sr_addr_format(conn->target, text, sizeof(text));
        sr_log_notice("upstream %s: server %s failed repeatedly; out for a while",
                      conn->gen->cfg.pools[conn->upstream->pool - 1].name, text);
    }
    sr_pool_conn_end(conn->pool, conn->pool_index);
    conn->is_pool_counted = false;
    if (conn->addrs != NULL) {
        uv_freeaddrinfo(conn->addrs);
        conn->addrs = NULL;
    }
    conn->next_addr = NULL;
    conn->state = SR_CONN_CONNECTING;
    pool_pick(conn);
}

/* Start with the config's literal address, or ask libuv's resolver (a thread pool) for a
 * name's addresses and try each in turn. */
static void
connect_start(struct sr_conn *conn)
{
    const struct sr_addr *addr = conn->target;
    struct addrinfo hints;
    char port[8];
    int rc;

    if (addr->kind == SR_ADDR_IPV4) {
        rc = uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&conn->literal_addr);
    } else if (addr->kind == SR_ADDR_IPV6) {
        rc = uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&conn->literal_addr);
    } else {
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%u", (unsigned)addr->port);
        conn->state = SR_CONN_RESOLVING;
        conn->resolve_req.data = conn;
        rc = uv_getaddrinfo(conn->server->loop, &conn->resolve_req, on_resolved, addr->host, port,
                            &hints);
        if (rc == 0) {
            conn->n_pending++;
            return;
        }
    }
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        target_failed(conn, addr->kind == SR_ADDR_NAME ? "resolve_failed" : "connect_failed");
        return;
    }
    conn->literal_ai.ai_addr = (struct sockaddr *)&conn->literal_addr;
    conn->next_addr = &conn->literal_ai;
    connect_next(conn);
}

static void
on_failed_backend_close(uv_handle_t *handle)
{
    struct sr_conn *conn = handle->data;

    if (conn->state != SR_CONN_CLOSING) {
        connect_next(conn);
    }
    conn_release(conn);
}

static void
on_backend_connect(uv_connect_t *req, int status)
{
    struct sr_conn *conn = req->data;

    if (status == UV_ECANCELED || conn->state == SR_CONN_CLOSING) {
        return;
    }
    if (status == 0) {
        sr_metrics_connect_ok(conn_metrics(conn), conn->uid,
                              (uv_hrtime() - conn->connect_start_ns) / 1000);
        if (conn->pool != NULL) {
            sr_pool_report_success(conn->pool, conn->pool_index);
        }
        relay_start(conn);
        return;
    }
    sr_metrics_connect_failed(conn_metrics(conn), conn->uid,
                              sr_metrics_connect_error_from_errno(status));
    /* A handle whose connect failed cannot connect again: close it, and only once it is
     * closed reuse its memory for the next address. */
    conn->last_connect_error = status;
    conn->is_backend_open = false;
    uv_close((uv_handle_t *)&conn->backend, on_failed_backend_close);
}

static void
connect_next(struct sr_conn *conn)
{
    struct addrinfo *ai = conn->next_addr;
    int rc;

    if (ai == NULL) {
        conn->detail = uv_err_name(conn->last_connect_error);
        target_failed(conn, "connect_failed");
        return;
    }
    conn->next_addr = ai->ai_next;
    conn->state = SR_CONN_CONNECTING;
    rc = uv_tcp_init(conn->server->loop, &conn->backend);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
        return;
    }
    conn->backend.data = conn;
    conn->is_backend_open = true;
    conn->n_pending++;
    conn->connect_req.data = conn;
    conn->connect_start_ns = uv_hrtime();
    rc = uv_tcp_connect(&conn->connect_req, &conn->backend, ai->ai_addr, on_backend_connect);
    if (rc != 0) {
        conn->last_connect_error = rc;
        conn->is_backend_open = false;
        uv_close((uv_handle_t *)&conn->backend, on_failed_backend_close);
    }
}

/* --- Relaying ------------------------------------------------------------------------- */

/* The PROXY header for this connection: the client and the address it connected to, as
 * a load balancer in front told us or as the socket says; v2 adds the server name. */
static int
proxy_header_build(struct sr_conn *conn, uv_buf_t *buf)
{
    struct sockaddr_storage local;
    const struct sockaddr *src = (const struct sockaddr *)&conn->peer;
    const struct sockaddr *dst = (const struct sockaddr *)&local;
    int local_len = sizeof(local);
    size_t len;

    if (conn->has_proxied) {
        src = (const struct sockaddr *)&conn->proxied_src;
        dst = (const struct sockaddr *)&conn->proxied_dst;
    } else if (uv_tcp_getsockname(&conn->client, (struct sockaddr *)&local, &local_len) != 0) {
        memset(&local, 0, sizeof(local)); /* the builders send UNKNOWN / LOCAL then */
    }
    conn->proxy_header = malloc(SR_PROXYPROTO_V2_BUILD_MAX);
    if (conn->proxy_header == NULL) {
        return UV_ENOMEM;
    }
    if (conn->proxy_send == SR_PROXY_PROTOCOL_V1) {
        len = sr_proxyproto_build_v1((char *)conn->proxy_header, SR_PROXYPROTO_V2_BUILD_MAX, src,
                                     dst);
    } else {
        len = sr_proxyproto_build_v2(conn->proxy_header, SR_PROXYPROTO_V2_BUILD_MAX, src, dst,
                                     conn->sni, strlen(conn->sni));
    }
    *buf = uv_buf_init((char *)conn->proxy_header, (unsigned)len);
    return len > 0 ? 0 : UV_EINVAL;
}

static void
on_peek_written(uv_write_t *req, int status)
{
    struct sr_conn *conn = req->data;
    int rc;

    free(conn->peek);
    conn->peek = NULL;
    conn->peek_cap = 0;
    free(conn->proxy_header);
    conn->proxy_header = NULL;
    if (status == UV_ECANCELED || conn->state == SR_CONN_CLOSING) {
        return;
    }
    if (status != 0) {
        conn->detail = uv_err_name(status);
        sr__conn_close_ex(conn, "backend_reset", true, false);
        return;
    }
    rc = sr__relay_start(conn);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
    }
}

static void
relay_start(struct sr_conn *conn)
{
    uv_buf_t out[2];
    unsigned n = 0;
    int rc;

    conn->state = SR_CONN_RELAYING;
    conn->last_active_ms = uv_now(conn->server->loop);
    uv_timer_start(&conn->timer, on_timer, conn->gen->cfg.idle_timeout_ms, 0);
    uv_tcp_nodelay(&conn->backend, 1);

    /* A PROXY header for the upstream first, if its pool asks for one; then the peeked
     * bytes, unmodified (minus a PROXY header that came in from a load balancer); the
     * relay starts once they are out. */
    if (conn->proxy_send != SR_PROXY_PROTOCOL_NONE) {
        rc = proxy_header_build(conn, &out[n++]);
        if (rc != 0) {
            conn->detail = uv_err_name(rc);
            sr_conn_close(conn, "error");
            return;
        }
    }
    if (conn->http_track != NULL) {
        /* HTTP: even the peeked bytes pass the tracker, which checks the first head (it
         * routes where we connected) and any request pipelined behind it. */
        enum sr_track_result r =
            sr_http_track_feed(conn->http_track, conn->peek + conn->proxy_len,
                               conn->peek_len - conn->proxy_len, &conn->http_out);

        if (r != SR_TRACK_OK) {
            sr__conn_http_refused(conn, r);
            return;
        }
        out[n++] = uv_buf_init((char *)conn->http_out.p, (unsigned)conn->http_out.len);
    } else if (conn->peek_len > conn->proxy_len) {
        out[n++] = uv_buf_init((char *)conn->peek + conn->proxy_len,
                               (unsigned)(conn->peek_len - conn->proxy_len));
    } else {
        out[n++] = uv_buf_init(NULL, 0); /* a silent client sent to its fallback */
    }
    conn->write_req.data = conn;
    rc = uv_write(&conn->write_req, (uv_stream_t *)&conn->backend, out, n, on_peek_written);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr__conn_close_ex(conn, "backend_reset", true, false);
    }
}

/* --- Accepting -------------------------------------------------------------------------- */

int
sr_conn_accept(struct sr_listener *listener)
{
    struct sr_server *server = listener->server;
    int peer_len = sizeof(struct sockaddr_storage);
    const char *limit;
    struct sr_conn *conn;
    int rc;

    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        return UV_ENOMEM;
    }
    conn->server = server;
    conn->gen = sr_generation_ref(server->gen);
    conn->lcfg = listener->cfg;
    conn->routes = &conn->gen->cfg.routes[listener->cfg->routes];
    conn->state = SR_CONN_HELLO;
    conn->up.pipe_fds[0] = conn->up.pipe_fds[1] = -1;
    conn->down.pipe_fds[0] = conn->down.pipe_fds[1] = -1;
    conn->start_ms = uv_now(server->loop);

    uv_tcp_init(server->loop, &conn->client);
    conn->client.data = conn;
    uv_timer_init(server->loop, &conn->timer);
    conn->timer.data = conn;
    conn->n_pending = 2;
    sr__server_conn_add(server, conn);

    rc = uv_accept((uv_stream_t *)&listener->handle, (uv_stream_t *)&conn->client);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
        return rc;
    }
    /* Hellos and small records must not wait for Nagle: a peer of ours adds 40 ms per
     * request without this. */
    uv_tcp_nodelay(&conn->client, 1);
    if (uv_tcp_getpeername(&conn->client, (struct sockaddr *)&conn->peer, &peer_len) == 0) {
        sr__format_sockaddr((const struct sockaddr *)&conn->peer, conn->client_text,
                            sizeof(conn->client_text));
    } else {
        /* A client that reset before we got here: still counted and logged, as "-". */
        memset(&conn->peer, 0, sizeof(conn->peer));
        snprintf(conn->client_text, sizeof(conn->client_text), "-");
    }
    conn->lid = conn->gen->listener_ids[listener->cfg - conn->gen->cfg.listeners];
    limit = sr__server_admit(server, conn, (const struct sockaddr *)&conn->peer);
    conn->source_key = conn->ipkey;
    conn->has_source_key = conn->has_ipkey;
    if (limit != NULL) {
        /* Over a limit: closed at once, counted, and not logged line by line (a flood would
         * flood the log too); the server logs a summary at most once a second. */
        conn->is_quiet = true;
        sr_conn_close(conn, limit);
        return 0;
    }
    sr_metrics_conn_accepted(conn_metrics(conn), conn->lid);
    conn->is_counted = true;
    if (conn->lcfg->is_proxy_accepted) {
        /* Only the load balancers in front may say who the client is; from anyone else a
         * PROXY header would be a spoofed address. */
        if (!sr_cidr_list_match(&conn->lcfg->trusted_proxies,
                                (const struct sockaddr *)&conn->peer)) {
            conn->detail = "source not in trusted_proxies";
            sr_conn_close(conn, "untrusted_proxy");
            return 0;
        }
        conn->is_proxy_expected = true;
    }
    uv_timer_start(&conn->timer, on_timer, hello_timer_ms(conn), 0);
    rc = uv_read_start((uv_stream_t *)&conn->client, on_hello_alloc, on_hello_read);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
        return rc;
    }
    return 0;
}
