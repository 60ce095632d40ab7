/* SPDX-License-Identifier: MIT */
/* One client connection: read the ClientHello, route by its server_name, connect to the
 * upstream, hand the hello over unmodified and relay both ways with backpressure,
 * half-close and reset propagation.
 *
 * The common case costs no allocation beyond the connection itself and one system call
 * per step: the hello is read into the worker's scratch buffer and sent to the backend
 * from there right after the non-blocking connect (on loopback and fast networks it is
 * done by then; EAGAIN says when it is not). Only when the connection has to wait (a
 * hello in pieces, a name to resolve, a connect still on) are the bytes copied into a
 * buffer of its own. Everything the way to the relay needs lives in a setup freed when
 * the relay starts, so an established connection holds only what relaying needs. */
#include "sniroute/proxy/conn.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/config/decide.h"
#include "sniroute/wire/hello.h"
#include "sniroute/wire/http.h"
#include "sniroute/observe/log.h"
#include "sniroute/wire/proxyproto.h"

/* A handed-over connection's texts fit the message (upgrade.h): a listener name, a server
 * name, "pool/host:port" as the log writes it, an ALPN condition. */
_Static_assert(SR_UPGRADE_TEXT_MAX > SR_CONFIG_NAME_MAX + 1 + SR_ADDR_HOST_MAX + 16 &&
                   SR_UPGRADE_TEXT_MAX > SR_NAME_MAX + 1 &&
                   SR_UPGRADE_TEXT_MAX > SR_CONFIG_ALPN_MAX + 1,
               "SR_UPGRADE_TEXT_MAX too small");

static void connect_start(struct sr_conn *conn);
static void conn_refuse_with(struct sr_conn *conn, const void *bytes, size_t len,
                             const char *outcome);
static void conn_connect_upstream(struct sr_conn *conn, size_t index);
static bool conn_fallback(struct sr_conn *conn);
static void pool_pick(struct sr_conn *conn);
static void target_failed(struct sr_conn *conn, const char *outcome);
static void connect_next(struct sr_conn *conn);
static void forward_first(struct sr_conn *conn, bool is_writable);

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

static uint64_t
conn_now(const struct sr_conn *conn)
{
    return uv_now(conn->server->loop);
}

static void
conn_deadline(struct sr_conn *conn, uint64_t after_ms)
{
    sr_resources_deadline_set(&conn->server->res, &conn->deadline, conn_now(conn) + after_ms);
}

static void
setup_free(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;

    if (setup == NULL) {
        return;
    }
    conn->setup = NULL;
    if (setup->addrs != NULL) {
        uv_freeaddrinfo(setup->addrs);
    }
    free(setup->peek);
    free(setup->proxy_header);
    sr_resources_setup_put(&conn->server->res, setup);
}

void
sr__conn_free(struct sr_conn *conn)
{
    setup_free(conn);
    sr__relay_release(conn);
    if (conn->is_pool_counted) {
        sr_pool_conn_end(conn->pool, conn->pool_index);
    }
    if (conn->http_track != NULL) {
        sr_http_track_fini(conn->http_track);
        free(conn->http_track);
    }
    free(conn->http_out.p);
    free(conn->sni);
    free(conn->adopted);
    sr_generation_unref(conn->gen);
    sr__server_conn_gone(conn->server, conn);
    free(conn);
}

/* The normalized server name, wherever it is kept now ("" for none). */
static const char *
conn_sni(const struct sr_conn *conn)
{
    if (conn->setup != NULL) {
        return conn->setup->sni;
    }
    return conn->sni != NULL ? conn->sni : "";
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

/* The upstream as the log shows it, into <out>: "" for none. */
static void
conn_upstream_text(const struct sr_conn *conn, char *out, size_t cap)
{
    out[0] = '\0';
    if (conn->adopted != NULL) {
        snprintf(out, cap, "%s", conn->adopted->upstream);
    } else if (conn->pool != NULL) {
        /* "pool/server": which pool, and which of its servers was tried last. */
        int n = snprintf(out, cap, "%s/", conn->gen->cfg.pools[conn->upstream->pool - 1].name);

        if (n > 0 && (size_t)n < cap) {
            sr_addr_format(conn->target, out + n, cap - (size_t)n);
        }
    } else if (conn->upstream != NULL) {
        sr_addr_format(&conn->upstream->addr, out, cap);
    }
}

/* The upstream's metrics label (as sr_generation_prepare names it), into <out>. */
static void
conn_upstream_label(const struct sr_conn *conn, char *out, size_t cap)
{
    out[0] = '\0';
    if (conn->adopted != NULL) {
        snprintf(out, cap, "%s", conn->adopted->label);
    } else if (conn->upstream != NULL && conn->upstream->pool != 0) {
        snprintf(out, cap, "%s", conn->gen->cfg.pools[conn->upstream->pool - 1].name);
    } else if (conn->upstream != NULL) {
        sr_addr_format(&conn->upstream->addr, out, cap);
    }
}

static uint64_t
wall_clock_ms(void)
{
    uv_timeval64_t tv;

    if (uv_gettimeofday(&tv) != 0) {
        return 0;
    }
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void
conn_log(struct sr_conn *conn)
{
    struct sr_access_record rec;
    char upstream[SR_UPGRADE_TEXT_MAX];
    char client[SR_SOCKADDR_TEXT_MAX];
    char line[1024];
    uv_timeval64_t tv;
    size_t len;

    if (!atomic_load_explicit(&conn->server->shared->is_logging, memory_order_relaxed) ||
        conn->is_quiet) {
        return;
    }
    conn_upstream_text(conn, upstream, sizeof(upstream));
    sr_addr_format_sockaddr(&conn->client_addr.sa, client, sizeof(client));
    if (uv_gettimeofday(&tv) != 0) {
        memset(&tv, 0, sizeof(tv));
    }
    memset(&rec, 0, sizeof(rec));
    rec.time_ms = tv.tv_sec * 1000 + tv.tv_usec / 1000;
    rec.listener = conn->lcfg->name;
    rec.client = client;
    rec.sni = conn_sni(conn);
    rec.route = conn->is_fallback ? "fallback" : route_name((enum sr_route_kind)conn->route);
    rec.upstream = upstream;
    rec.bytes_in = conn->up.n_bytes;
    rec.bytes_out = conn->down.n_bytes;
    rec.duration_ms = conn_now(conn) - conn->start_ms;
    rec.outcome = conn->outcome;
    rec.detail = conn->detail;
    rec.has_ech = conn->has_ech;
    rec.alpn_route = conn->alpn_route;
    len = conn->gen->cfg.log_format == SR_LOG_FORMAT_JSON
              ? sr_log_format_access_json(line, sizeof(line), &rec)
              : sr_log_format_access(line, sizeof(line), &rec);
    sr_shared_log(conn->server->shared, line, len);
}

/* Close one socket, with an RST instead of a FIN if <is_reset> (SO_LINGER with a zero
 * timeout): how a reset on one side is passed on to the other. */
static void
socket_close(struct sr_conn *conn, struct sr_watch *watch, bool is_reset)
{
    if (watch->fd < 0) {
        return;
    }
    if (is_reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        (void)setsockopt(watch->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    sr_watch_close(&conn->server->res.reactor, watch);
}

/* Close everything. <reset_client>/<reset_backend> end that side with an RST instead of a
 * FIN, which is how a reset on one side is passed on to the other. The connection is freed
 * after the current batch of events (one for it may still be in the batch), or once a
 * resolver request in flight has called back. */
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
        uv_cancel((uv_req_t *)&conn->setup->resolve_req);
    }
    conn->state = SR_CONN_CLOSING;
    conn_log(conn);
    if (conn->is_counted) {
        /* An adopted connection counts only what this process relayed: the old one
         * counted the rest. */
        const struct sr_conn_adopted *ad = conn->adopted;
        bool has_uid = ad != NULL ? ad->has_uid : conn->upstream != NULL;

        sr_metrics_conn_closed(conn_metrics(conn), conn->lid,
                               sr_metrics_outcome_parse(conn->outcome));
        sr_metrics_bytes(conn_metrics(conn), conn->lid, has_uid ? conn->uid : UINT32_MAX,
                         conn->up.n_bytes - (ad != NULL ? ad->base_in : 0),
                         conn->down.n_bytes - (ad != NULL ? ad->base_out : 0));
    }
    sr_resources_deadline_clear(&conn->server->res, &conn->deadline);
    sr__relay_release(conn); /* pipes and buffers back to the pools now */
    socket_close(conn, &conn->client, reset_client);
    socket_close(conn, &conn->backend, reset_backend);
    if (!conn->is_resolving) {
        sr__server_conn_dead(conn->server, conn);
    }
}

void
sr_conn_close(struct sr_conn *conn, const char *outcome)
{
    sr__conn_close_ex(conn, outcome, false, false);
}

void
sr__conn_on_deadline(struct sr_deadline *d)
{
    struct sr_conn *conn = (struct sr_conn *)((char *)d - offsetof(struct sr_conn, deadline));
    uint64_t idle_ms = conn->gen->cfg.idle_timeout_ms;
    uint64_t quiet_ms;

    switch ((enum sr_conn_state)conn->state) {
    case SR_CONN_HELLO:
        quiet_ms = conn_now(conn) - conn->start_ms;
        if (conn->setup->peek_len == 0 && conn->lcfg->fallback != 0 &&
            conn->lcfg->fallback_timeout_ms != 0 && quiet_ms >= conn->lcfg->fallback_timeout_ms &&
            conn_fallback(conn)) {
            return; /* the client waits for the server to speak first */
        }
        if (quiet_ms < conn->gen->cfg.hello_timeout_ms) {
            conn_deadline(conn, conn->gen->cfg.hello_timeout_ms - quiet_ms);
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
        /* Reads only note the time; the deadline moves here for what is left, so the hot
         * path never touches the heap. */
        quiet_ms = conn_now(conn) - conn->last_active_ms;
        if (quiet_ms >= idle_ms) {
            sr_conn_close(conn, "idle_timeout");
        } else {
            conn_deadline(conn, idle_ms - quiet_ms);
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

/* Everything owed to the client is written: send the FIN and discard what it still sends
 * until it closes or SR_LINGER_MS pass. */
static void
conn_linger(struct sr_conn *conn)
{
    conn->state = SR_CONN_REFUSING;
    conn_deadline(conn, SR_LINGER_MS);
    if (shutdown(conn->client.fd, SHUT_WR) != 0 ||
        sr_watch_set(&conn->server->res.reactor, &conn->client, EPOLLIN) != 0) {
        sr_conn_close(conn, NULL);
    }
}

/* Answer with a fatal TLS alert so the client learns why, instead of a bare reset. */
static void
conn_refuse(struct sr_conn *conn, uint8_t alert, const char *outcome)
{
    uint8_t bytes[SR_HELLO_ALERT_LEN];

    sr_hello_alert(bytes, alert);
    conn_refuse_with(conn, bytes, sizeof(bytes), outcome);
}

/* Send <len> bytes (an alert, an HTTP error response) to the client, then close with a
 * lingering FIN. A fresh socket takes a few bytes at once; if it does not, the client
 * gets the FIN alone. */
static void
conn_refuse_with(struct sr_conn *conn, const void *bytes, size_t len, const char *outcome)
{
    ssize_t n;

    conn->outcome = outcome;
    do {
        n = send(conn->client.fd, bytes, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        sr_conn_close(conn, NULL);
        return;
    }
    conn->down.n_bytes += (uint64_t)n; /* bytes_out tells what the client was sent */
    conn_linger(conn);
}

/* Refusing: discard what the client still sends until it closes. */
static void
linger_read(struct sr_conn *conn)
{
    uint8_t *buf = sr_resources_scratch(&conn->server->res, SR_PEEK_INITIAL);
    ssize_t n;

    if (buf == NULL) {
        sr_conn_close(conn, NULL);
        return;
    }
    n = recv(conn->client.fd, buf, conn->server->res.scratch_cap, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        sr_conn_close(conn, NULL); /* EOF or error: the client is done */
    }
}

/* An HTTP listener's answer to a request it cannot route (400 or 421). */
static void
conn_refuse_http(struct sr_conn *conn, int code, const char *outcome)
{
    char text[512];
    size_t len = sr_http_error_response(text, sizeof(text), code);

    if (len == 0) {
        sr_conn_close(conn, outcome);
        return;
    }
    conn_refuse_with(conn, text, len, outcome);
}

/* --- Peeking the ClientHello ------------------------------------------------------------ */

/* The first wakeup of a new connection: hello_timeout, or fallback_timeout if that is
 * sooner (the deadline is moved on for the rest of hello_timeout if the client has
 * spoken). */
static uint64_t
hello_timer_ms(const struct sr_conn *conn)
{
    uint64_t t = conn->gen->cfg.hello_timeout_ms;
    uint64_t f = conn->lcfg->fallback != 0 ? conn->lcfg->fallback_timeout_ms : 0;

    return f != 0 && f < t ? f : t;
}

/* The most the peek may hold: the hello, and a PROXY header before it if one is
 * expected. */
static size_t
peek_max(const struct sr_conn *conn)
{
    return conn->gen->cfg.max_hello_size +
           (conn->lcfg->is_proxy_accepted ? SR_PROXYPROTO_PARSE_MAX : 0);
}

/* Not TLS or not HTTP (or silent past fallback_timeout): if the decision is the
 * listener's fallback, hand the connection, and whatever it sent so far, unmodified, to
 * it and return true; false when there is none (the caller refuses in its protocol). */
static bool
conn_fallback(struct sr_conn *conn)
{
    struct sr_first_bytes said = {.said = SR_SAID_OTHER};
    struct sr_decision d;

    sr_decide(&conn->gen->cfg, conn->lcfg, &said, &d);
    if (d.verdict != SR_VERDICT_FALLBACK) {
        return false;
    }
    conn->is_fallback = true;
    conn_connect_upstream(conn, d.target);
    return true;
}

/* What the hello said, as the routing decision takes it. <res>'s views are read only
 * during the call. */
static void
conn_route(struct sr_conn *conn, const struct sr_hello_result *res)
{
    struct sr_first_bytes said = {
        .said = res->status == SR_HELLO_FOUND ? SR_SAID_NAME : SR_SAID_NO_NAME,
        .name = res->sni.ptr,
        .name_len = res->sni.len,
        .alpn = res->alpn.ptr,
        .alpn_len = res->alpn.len,
        .has_ech = res->has_ech,
    };
    struct sr_decision d;

    if (res->has_ech) {
        /* Routed by the outer (public) name, as ECH intends for a passthrough front. */
        conn->has_ech = true;
        sr_metrics_hello_ech(conn_metrics(conn));
    }
    sr_decide(&conn->gen->cfg, conn->lcfg, &said, &d);
    memcpy(conn->setup->sni, d.name, d.name_len + 1);
    switch (d.refusal) {
    case SR_REFUSAL_BAD_NAME:
        conn->detail = "server name not normalizable";
        conn_refuse(conn, SR_TLS_ALERT_DECODE_ERROR, sr_refusal_outcome(d.refusal, false));
        return;
    case SR_REFUSAL_NO_SNI:
        conn_refuse(conn, SR_TLS_ALERT_HANDSHAKE_FAILURE, sr_refusal_outcome(d.refusal, false));
        return;
    default:
        break;
    }
    conn->route = (uint8_t)d.hit.kind;
    sr_metrics_route(conn_metrics(conn), conn->lid, d.hit.kind);
    if (d.verdict != SR_VERDICT_ROUTE) {
        conn_refuse(conn, SR_TLS_ALERT_UNRECOGNIZED_NAME, sr_refusal_outcome(d.refusal, false));
        return;
    }
    if (d.alpn != NULL) {
        conn->alpn_route = d.alpn->proto; /* from the config: safe in a log line */
    }
    assert(d.target < conn->gen->cfg.n_upstreams);
    conn_connect_upstream(conn, d.target);
}

/* Connect to route target <index> of the generation: one address, or a pool's servers. */
static void
conn_connect_upstream(struct sr_conn *conn, size_t index)
{
    const struct sr_config *cfg = &conn->gen->cfg;

    conn->upstream = &cfg->upstreams[index];
    conn->uid = conn->gen->upstream_ids[index];
    sr_metrics_upstream_selected(conn_metrics(conn), conn->uid);

    /* Whatever the client sent so far, unparsed bytes after the hello included, goes out
     * first once connected; what it sends meanwhile waits in its socket. The
     * client socket stays watched until it says something while we connect (see
     * on_client_event): on the fast path the connect is done before that. */
    conn_deadline(conn, cfg->connect_timeout_ms);
    if (conn->upstream->pool != 0) {
        /* This worker's copy of the pool: pools are not shared between threads. */
        conn->pool =
            &conn->gen->pools[conn->server->worker * cfg->n_pools + conn->upstream->pool - 1];
        conn->proxy_send = (uint8_t)cfg->pools[conn->upstream->pool - 1].proxy_protocol;
        pool_pick(conn);
        return;
    }
    conn->target = &conn->upstream->addr;
    connect_start(conn);
}

/* proxy_protocol = accept: read the PROXY header at the start of <bytes>. Returns true
 * once it is complete and valid (the hello follows it); false while more bytes are needed
 * (parse_at set) or after closing the connection for a bad header. */
static bool
proxy_header_read(struct sr_conn *conn, const uint8_t *bytes)
{
    struct sr_conn_setup *setup = conn->setup;
    struct sr_proxyproto_result pp;
    enum sr_metrics_limit over;
    const char *limit;

    sr_proxyproto_parse(bytes, setup->peek_len, &pp);
    switch (pp.status) {
    case SR_PROXYPROTO_NEED_MORE:
        setup->parse_at = setup->peek_len + pp.need;
        return false;
    case SR_PROXYPROTO_OK:
        setup->proxy_len = pp.header_len;
        if (pp.command == SR_PROXYPROTO_CMD_PROXY && pp.family != SR_PROXYPROTO_FAMILY_UNSPEC) {
            /* From here on the client is who the load balancer says: in the log, in the
             * PROXY header we send on, and for source_hash. */
            setup->has_proxied = true;
            setup->proxied_src = pp.src;
            setup->proxied_dst = pp.dst;
            memcpy(&conn->client_addr, &pp.src,
                   pp.src.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in));
            setup->has_source_key =
                sr_ipkey_from_sockaddr(&setup->source_key, (const struct sockaddr *)&pp.src) == 0;
            limit = sr_shared_admit_client(conn->server->shared, &conn->adm, &conn->gen->cfg,
                                           (const struct sockaddr *)&pp.src, &over);
            if (limit != NULL) {
                sr_metrics_limit_rejected(conn_metrics(conn), conn->lid, over);
                conn->is_quiet = true; /* like a refusal at accept: counted, summarized */
                sr_conn_close(conn, limit);
                return false;
            }
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

/* The host a request head names, as the routing decision takes it: an IP literal names
 * no host (it gets the default). */
static void
http_decide(const struct sr_conn *conn, const struct sr_http_head *head, struct sr_decision *d)
{
    struct sr_first_bytes said = {
        .said = head->is_ip_literal ? SR_SAID_NO_NAME : SR_SAID_NAME,
        .name = head->host.ptr,
        .name_len = head->host.len,
    };

    sr_decide(&conn->gen->cfg, conn->lcfg, &said, d);
}

/* The tracker's question for every request head on the connection, the first included:
 * may it go to the backend the first request chose? Only if the map gives its host that
 * same backend; otherwise the connection ends (the client opens a new one). */
static int
on_http_head(void *ctx, const struct sr_http_head *head)
{
    struct sr_conn *conn = ctx;
    struct sr_decision d;

    http_decide(conn, head, &d);
    if (d.verdict != SR_VERDICT_ROUTE || d.target != conn->http_target) {
        return 1;
    }
    return 0;
}

/* What a refused request gets, once the responses owed before it are through. */
static int
http_refusal_code(enum sr_track_result r)
{
    switch (r) {
    case SR_TRACK_STOP:
        return 421; /* RFC 9110 15.5.20: the client may retry on a new connection */
    case SR_TRACK_BAD:
    case SR_TRACK_TOO_LARGE:
        return 400;
    default:
        return 0; /* UNDECIDABLE: the responses cannot be followed, so no answer fits */
    }
}

void
sr__conn_http_refused(struct sr_conn *conn, enum sr_track_result r)
{
    if (r == SR_TRACK_NOMEM) {
        conn->detail = uv_err_name(UV_ENOMEM);
        sr_conn_close(conn, "error");
        return;
    }
    conn->http_refused = (uint8_t)r;
    conn->http_refusal = (uint16_t)http_refusal_code(r);
    conn->http_stop = SR_HTTP_STOP_DRAINING;
}

/* The outcome and detail of a refused request, set when the refusal ends the connection
 * (until then, a reset or a timeout is what the log says). */
static void
http_refused_outcome(struct sr_conn *conn)
{
    switch ((enum sr_track_result)conn->http_refused) {
    case SR_TRACK_STOP:
        conn->detail = "a later request names a host routed elsewhere";
        break;
    case SR_TRACK_TOO_LARGE:
        conn->detail = "request head too large";
        break;
    case SR_TRACK_UNDECIDABLE:
        conn->detail = "Upgrade or CONNECT after responses that cannot be followed";
        break;
    default:
        conn->detail = "not HTTP/1.x any more";
        break;
    }
    conn->outcome = conn->http_refused == SR_TRACK_STOP ? "host_changed" : "malformed";
}

void
sr__conn_http_linger(struct sr_conn *conn)
{
    http_refused_outcome(conn);
    sr__relay_release(conn);
    socket_close(conn, &conn->backend, false);
    conn_linger(conn);
}

/* The connection has to wait (for the rest of the hello, a resolver, a connect) while the
 * bytes read so far are only in the worker's scratch buffer, which the next connection
 * reuses: copy them into a buffer of the connection's own, read into from then on.
 * Returns false after closing the connection. */
static bool
hello_keep(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    size_t max = peek_max(conn);
    size_t cap = setup->parse_at > SR_PEEK_INITIAL ? setup->parse_at : SR_PEEK_INITIAL;

    if (setup->peek != NULL || setup->peek_len == 0) {
        return true;
    }
    cap = cap > max ? max : cap;
    cap = cap < setup->peek_len ? setup->peek_len : cap;
    setup->peek = malloc(cap);
    if (setup->peek == NULL) {
        conn->detail = uv_err_name(UV_ENOMEM);
        sr_conn_close(conn, "error");
        return false;
    }
    setup->peek_cap = cap;
    memcpy(setup->peek, conn->server->res.scratch, setup->peek_len);
    return true;
}

/* protocol = http: route by the Host of the first request head. */
static void
http_read(struct sr_conn *conn, const uint8_t *bytes)
{
    struct sr_conn_setup *setup = conn->setup;
    size_t cap = peek_max(conn);
    struct sr_http_head head;
    struct sr_decision d;

    /* The reader reads on from where the last call stopped: a head dribbled in tiny
     * pieces costs each byte once, not a re-parse from its start per piece. */
    sr_http_read_head(&setup->http_reader, bytes + setup->proxy_len,
                      setup->peek_len - setup->proxy_len, &head);
    switch (head.status) {
    case SR_HTTP_NEED_MORE:
        setup->parse_at = setup->peek_len + head.need;
        if (setup->parse_at > cap) {
            conn->detail = "request head larger than max_hello_size";
            conn_refuse_http(conn, 400, "too_large");
            return;
        }
        hello_keep(conn);
        return;
    case SR_HTTP_NOT_HTTP:
        if (conn_fallback(conn)) {
            return;
        }
        conn->detail = sr_http_reason_str(head.reason);
        conn_refuse_http(conn, 400, sr_refusal_outcome(SR_REFUSAL_NOT_PROTOCOL, true));
        return;
    case SR_HTTP_BAD:
        conn->detail = sr_http_reason_str(head.reason);
        conn_refuse_http(conn, 400, "malformed");
        return;
    case SR_HTTP_OK:
        break;
    }
    http_decide(conn, &head, &d);
    memcpy(setup->sni, d.name, d.name_len + 1);
    conn->route = (uint8_t)d.hit.kind;
    sr_metrics_route(conn_metrics(conn), conn->lid, d.hit.kind);
    if (d.verdict != SR_VERDICT_ROUTE) {
        conn_refuse_http(conn, 421, sr_refusal_outcome(d.refusal, true));
        return;
    }
    conn->http_track = malloc(sizeof(*conn->http_track));
    if (conn->http_track == NULL) {
        sr_conn_close(conn, "error");
        return;
    }
    conn->http_target = d.target;
    sr_http_track_init(conn->http_track, conn->gen->cfg.max_hello_size, on_http_head, conn);
    {
        /* The bytes read so far pass the tracker now: it checks the first head (which
         * routes where we connect) and any request pipelined behind it, and what it lets
         * through is what goes out first. */
        enum sr_track_result r =
            sr_http_track_feed(conn->http_track, bytes + setup->proxy_len,
                               setup->peek_len - setup->proxy_len, &conn->http_out);

        if (r != SR_TRACK_OK && conn->http_out.len == 0) {
            /* Refused before anything could go (a CONNECT with a body): answer now. */
            sr__conn_http_refused(conn, r);
            if (conn->state == SR_CONN_HELLO) {
                http_refused_outcome(conn);
                conn_refuse_http(conn, conn->http_refusal, conn->outcome);
            }
            return;
        }
        if (r != SR_TRACK_OK) {
            /* A request pipelined behind the first is refused: the ones before it still
             * go, and the relay ends the connection after their responses. */
            sr__conn_http_refused(conn, r);
            if (conn->state != SR_CONN_HELLO) {
                return;
            }
        }
    }
    conn_connect_upstream(conn, d.target);
}

/* The client spoke: look at everything it sent so far. */
static void
hello_read(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    size_t cap = peek_max(conn);
    struct sr_hello_scratch scratch;
    struct sr_hello_result res;
    const uint8_t *bytes;
    ssize_t n;

    if (setup->peek == NULL) {
        uint8_t *buf = sr_resources_scratch(&conn->server->res, cap);

        if (buf == NULL) {
            conn->detail = uv_err_name(UV_ENOMEM);
            conn_hello_metric(conn, SR_METRICS_HELLO_ERROR, SR_HELLO_REASON_NONE);
            sr_conn_close(conn, "error");
            return;
        }
        n = recv(conn->client.fd, buf, cap, 0);
        if (n > 0) {
            setup->peek_len = (size_t)n;
        }
        bytes = buf;
    } else {
        size_t want = setup->parse_at > setup->peek_len ? setup->parse_at : setup->peek_len + 1;

        /* It grows to what the parser says the hello needs, never past max_hello_size. */
        if (setup->peek_cap < want) {
            size_t grow = setup->peek_cap * 2 > want ? setup->peek_cap * 2 : want;
            uint8_t *p;

            grow = grow > cap ? cap : grow;
            p = realloc(setup->peek, grow);
            if (p == NULL) {
                conn->detail = uv_err_name(UV_ENOMEM);
                conn_hello_metric(conn, SR_METRICS_HELLO_ERROR, SR_HELLO_REASON_NONE);
                sr_conn_close(conn, "error");
                return;
            }
            setup->peek = p;
            setup->peek_cap = grow;
        }
        n = recv(conn->client.fd, setup->peek + setup->peek_len, setup->peek_cap - setup->peek_len,
                 0);
        if (n > 0) {
            setup->peek_len += (size_t)n;
        }
        bytes = setup->peek;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        conn->detail = uv_err_name(n == 0 ? UV_EOF : SR_ERRNO(errno));
        conn_hello_metric(conn,
                          n == 0 ? SR_METRICS_HELLO_INCOMPLETE : SR_METRICS_HELLO_CLIENT_RESET,
                          SR_HELLO_REASON_NONE);
        sr_conn_close(conn, n == 0 ? "incomplete" : "client_reset");
        return;
    }
    conn->up.n_bytes = setup->peek_len;
    if (setup->peek_len < setup->parse_at) {
        return; /* the parser said how much more it needs: no re-parse before that */
    }

    if (conn->lcfg->is_proxy_accepted && setup->proxy_len == 0) {
        if (!proxy_header_read(conn, bytes)) {
            if (conn->state == SR_CONN_HELLO) {
                hello_keep(conn); /* incomplete: wait for the rest */
            }
            return;
        }
    }
    if (conn->lcfg->is_http) {
        http_read(conn, bytes);
        return;
    }
    sr_hello_parse(bytes + setup->proxy_len, setup->peek_len - setup->proxy_len, &scratch, &res);
    switch (res.status) {
    case SR_HELLO_NEED_MORE:
        setup->parse_at = setup->peek_len + res.need;
        if (setup->parse_at > cap) {
            conn->detail = "hello larger than max_hello_size";
            conn_hello_metric(conn, SR_METRICS_HELLO_TOO_LARGE, SR_HELLO_REASON_NONE);
            conn_refuse(conn, SR_TLS_ALERT_HANDSHAKE_FAILURE, "too_large");
            return;
        }
        hello_keep(conn);
        return;
    case SR_HELLO_FOUND:
    case SR_HELLO_NO_SNI:
        conn_hello_metric(
            conn, res.status == SR_HELLO_FOUND ? SR_METRICS_HELLO_FOUND : SR_METRICS_HELLO_NO_SNI,
            SR_HELLO_REASON_NONE);
        conn_route(conn, &res);
        return;
    case SR_HELLO_NOT_TLS:
        conn_hello_metric(conn, SR_METRICS_HELLO_NOT_TLS, res.reason);
        if (conn_fallback(conn)) {
            return;
        }
        conn->detail = sr_hello_reason_str(res.reason);
        sr_conn_close(conn, sr_refusal_outcome(SR_REFUSAL_NOT_PROTOCOL, false));
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

    conn->is_resolving = false;
    conn->setup->addrs = addrs; /* freed with the setup, whatever happens next */
    if (conn->state == SR_CONN_CLOSING) {
        sr__server_conn_dead(conn->server, conn); /* closed meanwhile: free it now */
        return;
    }
    if (status != 0 || addrs == NULL) {
        conn->detail = uv_err_name(status != 0 ? status : UV_EAI_NONAME);
        sr_metrics_connect_failed(conn_metrics(conn), conn->uid, SR_METRICS_CONNECT_RESOLVE);
        target_failed(conn, "resolve_failed");
        return;
    }
    conn->setup->next_addr = addrs;
    connect_next(conn);
}

/* Choose the next server of the connection's pool (one not tried yet) and connect to it;
 * none left: the connection ends. */
static void
pool_pick(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    const struct sr_pool_config *pc = &conn->gen->cfg.pools[conn->upstream->pool - 1];
    enum sr_pool_pick pick;
    size_t i;

    pick =
        sr_pool_pick(conn->pool, conn_now(conn),
                     setup->has_source_key ? setup->source_key.bytes : NULL, setup->pool_tried, &i);
    if (pick == SR_POOL_NONE_LEFT) {
        if (conn->detail == NULL) {
            conn->detail = "no server available";
        }
        sr_conn_close(conn, "connect_failed");
        return;
    }
    conn->pool_index = i;
    setup->pool_tried |= (uint64_t)1 << i;
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
    struct sr_conn_setup *setup = conn->setup;
    char text[SR_ADDR_HOST_MAX + 16];

    if (conn->pool == NULL) {
        sr_conn_close(conn, outcome);
        return;
    }
    if (sr_pool_report_failure(conn->pool, conn->pool_index, conn_now(conn))) {
        sr_addr_format(conn->target, text, sizeof(text));
        sr_log_notice("upstream %s: server %s failed repeatedly; out for a while",
                      conn->gen->cfg.pools[conn->upstream->pool - 1].name, text);
    }
    sr_pool_conn_end(conn->pool, conn->pool_index);
    conn->is_pool_counted = false;
    if (setup->addrs != NULL) {
        uv_freeaddrinfo(setup->addrs);
        setup->addrs = NULL;
    }
    setup->next_addr = NULL;
    conn->state = SR_CONN_CONNECTING;
    pool_pick(conn);
}

/* Start with the config's literal address, or ask libuv's resolver (a thread pool) for a
 * name's addresses and try each in turn. */
static void
connect_start(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    const struct sr_addr *addr = conn->target;
    struct addrinfo hints;
    char port[8];
    int rc;

    if (addr->kind == SR_ADDR_IPV4) {
        rc = uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&setup->literal_addr);
    } else if (addr->kind == SR_ADDR_IPV6) {
        rc = uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&setup->literal_addr);
    } else {
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%u", (unsigned)addr->port);
        if (!hello_keep(conn)) {
            return; /* other connections use the scratch buffer meanwhile */
        }
        conn->state = SR_CONN_RESOLVING;
        setup->resolve_req.data = conn;
        rc = uv_getaddrinfo(conn->server->loop, &setup->resolve_req, on_resolved, addr->host, port,
                            &hints);
        if (rc == 0) {
            conn->is_resolving = true;
            return;
        }
    }
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        target_failed(conn, addr->kind == SR_ADDR_NAME ? "resolve_failed" : "connect_failed");
        return;
    }
    setup->literal_ai.ai_family = setup->literal_addr.ss_family;
    setup->literal_ai.ai_addr = (struct sockaddr *)&setup->literal_addr;
    setup->literal_ai.ai_addrlen = setup->literal_addr.ss_family == AF_INET6
                                       ? sizeof(struct sockaddr_in6)
                                       : sizeof(struct sockaddr_in);
    setup->literal_ai.ai_next = NULL;
    setup->next_addr = &setup->literal_ai;
    connect_next(conn);
}

/* The address being tried failed before a byte went out: try the next one. */
static void
connect_failed(struct sr_conn *conn, int err)
{
    sr_metrics_connect_failed(conn_metrics(conn), conn->uid,
                              sr_metrics_connect_error_from_errno(err));
    conn->setup->last_connect_error = err;
    socket_close(conn, &conn->backend, false);
    connect_next(conn);
}

static void on_backend_event(struct sr_watch *watch, uint32_t events);

static void
connect_next(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    struct addrinfo *ai = setup->next_addr;
    int on = 1;
    int fd;

    if (ai == NULL) {
        conn->detail = uv_err_name(setup->last_connect_error);
        target_failed(conn, "connect_failed");
        return;
    }
    setup->next_addr = ai->ai_next;
    conn->state = SR_CONN_CONNECTING;
    setup->sent = 0;
    setup->connect_start_ns = uv_hrtime();
    fd = socket(ai->ai_addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn->detail = uv_err_name(SR_ERRNO(errno));
        sr_conn_close(conn, "error");
        return;
    }
    sr_watch_init(&conn->backend, fd, on_backend_event);
    /* The hello and small records must not wait for Nagle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (connect(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        connect_failed(conn, SR_ERRNO(errno));
        return;
    }
    /* Do not wait for the connect to be reported: on loopback and fast networks it is
     * usually done already, and the first send tells (EAGAIN while it is still on). */
    forward_first(conn, false);
}

/* --- Handing over the first bytes ------------------------------------------------------ */

/* The PROXY header for this connection: the client and the address it connected to, as
 * a load balancer in front told us or as the socket says; v2 adds the server name. */
static int
proxy_header_build(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    struct sockaddr_storage local;
    const struct sockaddr *src = (const struct sockaddr *)&setup->peer;
    const struct sockaddr *dst = (const struct sockaddr *)&local;
    socklen_t local_len = sizeof(local);
    size_t len;

    if (setup->has_proxied) {
        src = (const struct sockaddr *)&setup->proxied_src;
        dst = (const struct sockaddr *)&setup->proxied_dst;
    } else if (getsockname(conn->client.fd, (struct sockaddr *)&local, &local_len) != 0) {
        memset(&local, 0, sizeof(local)); /* the builders send UNKNOWN / LOCAL then */
    }
    setup->proxy_header = malloc(SR_PROXYPROTO_V2_BUILD_MAX);
    if (setup->proxy_header == NULL) {
        return UV_ENOMEM;
    }
    if (conn->proxy_send == SR_PROXY_PROTOCOL_V1) {
        len = sr_proxyproto_build_v1((char *)setup->proxy_header, SR_PROXYPROTO_V2_BUILD_MAX, src,
                                     dst);
    } else {
        len = sr_proxyproto_build_v2(setup->proxy_header, SR_PROXYPROTO_V2_BUILD_MAX, src, dst,
                                     setup->sni, strlen(setup->sni));
    }
    setup->proxy_header_len = len;
    return len > 0 ? 0 : UV_EINVAL;
}

/* The client's bytes that go out before the relay starts, into <*p>/<*len>: those read so
 * far (in the scratch buffer, or in the connection's own once it had to wait) after a
 * PROXY header that came in, or for HTTP what the tracker let through. */
static void
first_payload(const struct sr_conn *conn, const uint8_t **p, size_t *len)
{
    const struct sr_conn_setup *setup = conn->setup;
    const uint8_t *bytes = setup->peek != NULL ? setup->peek : conn->server->res.scratch;

    *p = NULL;
    *len = 0;
    if (conn->http_track != NULL) {
        *p = conn->http_out.p;
        *len = conn->http_out.len;
    } else if (setup->peek_len > setup->proxy_len) {
        *p = bytes + setup->proxy_len;
        *len = setup->peek_len - setup->proxy_len;
    }
}

/* The backend is connected (a send went through, or the connect was reported). */
static void
backend_connected(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;

    if (setup->is_connected) {
        return;
    }
    setup->is_connected = true;
    sr_metrics_connect_ok(conn_metrics(conn), conn->uid,
                          (uv_hrtime() - setup->connect_start_ns) / 1000);
    if (conn->pool != NULL) {
        sr_pool_report_success(conn->pool, conn->pool_index);
    }
}

/* Everything before the relay is out: let go of the setup and relay. */
static void
relay_start(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;

    conn->up.n_bytes = setup->peek_len;
    if (setup->sni[0] != '\0' &&
        atomic_load_explicit(&conn->server->shared->is_logging, memory_order_relaxed)) {
        conn->sni = strdup(setup->sni); /* for the log line; none if out of memory */
    }
    setup_free(conn);
    /* HTTP: the first request, sent from http_out, is out; its copy goes too. */
    free(conn->http_out.p);
    memset(&conn->http_out, 0, sizeof(conn->http_out));
    conn->state = SR_CONN_RELAYING;
    conn->last_active_ms = conn_now(conn);
    conn_deadline(conn, conn->gen->cfg.idle_timeout_ms);
    sr__relay_start(conn);
}

/* Send [our PROXY header][the client's first bytes] to the backend, from where the last
 * try stopped. <is_writable>: called because the socket was reported writable (the
 * connect is over one way or the other), not right after connect(). */
static void
forward_first(struct sr_conn *conn, bool is_writable)
{
    struct sr_conn_setup *setup = conn->setup;
    const uint8_t *payload;
    size_t payload_len;
    struct iovec iov[2];
    struct msghdr msg;
    size_t total;
    size_t skip = setup->sent;
    int n_iov = 0;
    ssize_t n;
    int rc;

    if (conn->proxy_send != SR_PROXY_PROTOCOL_NONE && setup->proxy_header == NULL) {
        rc = proxy_header_build(conn);
        if (rc != 0) {
            conn->detail = uv_err_name(rc);
            sr_conn_close(conn, "error");
            return;
        }
    }
    first_payload(conn, &payload, &payload_len);
    total = setup->proxy_header_len + payload_len;
    if (skip < setup->proxy_header_len) {
        iov[n_iov].iov_base = setup->proxy_header + skip;
        iov[n_iov++].iov_len = setup->proxy_header_len - skip;
        skip = 0;
    } else {
        skip -= setup->proxy_header_len;
    }
    if (payload_len > skip) {
        iov[n_iov].iov_base = (void *)(payload + skip);
        iov[n_iov++].iov_len = payload_len - skip;
    }
    if (n_iov == 0) {
        /* Nothing to send: only the connect's outcome is awaited. */
        int err = 0;
        socklen_t len = sizeof(err);

        if (!is_writable && !setup->is_connected) {
            goto wait_writable;
        }
        if (getsockopt(conn->backend.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
            err = errno;
        }
        if (err != 0) {
            connect_failed(conn, SR_ERRNO(err));
            return;
        }
        backend_connected(conn);
        relay_start(conn);
        return;
    }
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n_iov;
    do {
        n = sendmsg(conn->backend.fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN) {
            goto wait_writable; /* still connecting, or (rarely) a full send buffer */
        }
        if (setup->sent == 0) {
            connect_failed(conn, SR_ERRNO(errno));
        } else {
            conn->detail = uv_err_name(SR_ERRNO(errno));
            sr__conn_close_ex(conn, "backend_reset", true, false);
        }
        return;
    }
    backend_connected(conn);
    setup->sent += (size_t)n;
    if (setup->sent < total) {
        goto wait_writable;
    }
    relay_start(conn);
    return;

wait_writable:
    if (!hello_keep(conn)) {
        return;
    }
    rc = sr_watch_set(&conn->server->res.reactor, &conn->backend, EPOLLOUT);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
    }
}

/* --- Events ----------------------------------------------------------------------------- */

static void
on_client_event(struct sr_watch *watch, uint32_t events)
{
    struct sr_conn *conn = (struct sr_conn *)((char *)watch - offsetof(struct sr_conn, client));

    switch ((enum sr_conn_state)conn->state) {
    case SR_CONN_HELLO:
        hello_read(conn);
        return;
    case SR_CONN_REFUSING:
        linger_read(conn);
        return;
    case SR_CONN_RESOLVING:
    case SR_CONN_CONNECTING:
        /* More bytes (or a hangup) while we connect: they wait for the relay. Stop
         * watching only now; on the fast path the connect is over before this. */
        (void)sr_watch_set(&conn->server->res.reactor, &conn->client, 0);
        return;
    case SR_CONN_RELAYING:
        sr__relay_event(conn, true, events);
        return;
    case SR_CONN_CLOSING:
        return;
    }
}

static void
on_backend_event(struct sr_watch *watch, uint32_t events)
{
    struct sr_conn *conn = (struct sr_conn *)((char *)watch - offsetof(struct sr_conn, backend));

    switch ((enum sr_conn_state)conn->state) {
    case SR_CONN_CONNECTING:
        forward_first(conn, true);
        return;
    case SR_CONN_RELAYING:
        sr__relay_event(conn, false, events);
        return;
    default:
        return;
    }
}

/* --- Accepting -------------------------------------------------------------------------- */

int
sr_conn_accept(struct sr_listener *listener, int fd, const struct sockaddr *peer)
{
    struct sr_server *server = listener->server;
    struct sr_conn_setup *setup;
    enum sr_metrics_limit over;
    const char *limit;
    struct sr_conn *conn;
    int rc;

    conn = calloc(1, sizeof(*conn));
    setup = conn != NULL ? sr_resources_setup_get(&server->res, sizeof(*setup)) : NULL;
    if (setup == NULL) {
        free(conn);
        close(fd);
        sr_log_notice("listener %s: out of memory for a connection", listener->cfg->name);
        return UV_ENOMEM;
    }
    conn->server = server;
    conn->setup = setup;
    conn->gen = sr_generation_ref(server->gen);
    conn->lcfg = listener->cfg;
    conn->routes = &conn->gen->cfg.routes[listener->cfg->routes];
    conn->state = SR_CONN_HELLO;
    sr_http_reader_init(&setup->http_reader);
    sr_watch_init(&conn->client, fd, on_client_event);
    sr_watch_init(&conn->backend, -1, on_backend_event);
    sr_deadline_init(&conn->deadline);
    conn->up.pipe_fds[0] = conn->up.pipe_fds[1] = -1;
    conn->down.pipe_fds[0] = conn->down.pipe_fds[1] = -1;
    conn->start_ms = conn_now(conn);
    sr__server_conn_add(server, conn);

    if (peer->sa_family == AF_INET || peer->sa_family == AF_INET6) {
        size_t len =
            peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

        memcpy(&setup->peer, peer, len);
        memcpy(&conn->client_addr, peer, len);
    }
    conn->lid = conn->gen->listener_ids[listener->cfg - conn->gen->cfg.listeners];
    limit = sr_shared_admit(server->shared, &conn->adm, &conn->gen->cfg, conn->lcfg,
                            (const struct sockaddr *)&setup->peer, &over);
    setup->source_key = conn->adm.ipkey;
    setup->has_source_key = conn->adm.has_ipkey;
    if (limit != NULL) {
        sr_metrics_limit_rejected(conn_metrics(conn), conn->lid, over);
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
                                (const struct sockaddr *)&setup->peer)) {
            conn->detail = "source not in trusted_proxies";
            sr_conn_close(conn, "untrusted_proxy");
            return 0;
        }
    }
    conn_deadline(conn, hello_timer_ms(conn));
    rc = sr_watch_set(&server->res.reactor, &conn->client, EPOLLIN);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
    }
    return 0;
}

/* --- Binary upgrade: handing over and adopting established connections ------------------ */

/* Nothing of <conn> is in flight in this process: it relays, both directions wait for
 * their source with no byte read and not yet written (so no pipe or buffer holds any), no
 * HTTP request tracker has state that could not move, and neither direction has met its
 * end (a half-closed connection is on its way out: it finishes here). Bytes still in the
 * kernel's socket buffers are fine: the new process reads them. */
static bool
is_idle_relay(const struct sr_conn *conn)
{
    return conn->state == SR_CONN_RELAYING && conn->http_track == NULL && !conn->up.is_tracked &&
           conn->up.pending == 0 && conn->down.pending == 0 && conn->up.wait == SR_FLOW_WAIT_SRC &&
           conn->down.wait == SR_FLOW_WAIT_SRC && !conn->up.is_eof && !conn->down.is_eof &&
           conn->client.fd >= 0 && conn->backend.fd >= 0;
}

/* What the new process needs to know about <conn>. */
static void
conn_record(const struct sr_conn *conn, struct sr_upgrade_conn *rec)
{
    uint64_t wall_ms = wall_clock_ms();
    uint64_t age_ms = conn_now(conn) - conn->start_ms;

    memset(rec, 0, sizeof(*rec));
    rec->start_ms = wall_ms > age_ms ? wall_ms - age_ms : 0;
    rec->bytes_in = conn->up.n_bytes;
    rec->bytes_out = conn->down.n_bytes;
    if (conn->client_addr.sa.sa_family == AF_INET) {
        memcpy(&rec->client, &conn->client_addr.in4, sizeof(conn->client_addr.in4));
    } else if (conn->client_addr.sa.sa_family == AF_INET6) {
        memcpy(&rec->client, &conn->client_addr.in6, sizeof(conn->client_addr.in6));
    }
    rec->route = conn->route;
    rec->flags = (conn->is_fallback ? SR_UPGRADE_CONN_FALLBACK : 0) |
                 (conn->has_ech ? SR_UPGRADE_CONN_ECH : 0) |
                 (conn->lcfg->is_http ? SR_UPGRADE_CONN_HTTP : 0);
    snprintf(rec->listener, sizeof(rec->listener), "%s", conn->lcfg->name);
    snprintf(rec->sni, sizeof(rec->sni), "%s", conn_sni(conn));
    conn_upstream_text(conn, rec->upstream, sizeof(rec->upstream));
    conn_upstream_label(conn, rec->label, sizeof(rec->label));
    if (conn->alpn_route != NULL) {
        snprintf(rec->alpn_route, sizeof(rec->alpn_route), "%s", conn->alpn_route);
    }
}

int
sr__conn_hand_over(struct sr_conn *conn, int sock)
{
    struct sr_reactor *reactor = &conn->server->res.reactor;
    struct sr_upgrade_conn rec;
    uint32_t client_events = conn->client.events;
    uint32_t backend_events = conn->backend.events;
    int rc;

    if (!is_idle_relay(conn)) {
        return UV_EBUSY;
    }
    conn_record(conn, &rec);
    if (sr_upgrade_conn_check(&rec, -1, -1) != NULL) {
        return UV_EBUSY; /* the new process would refuse it (a config text it cannot log) */
    }
    sr__relay_release(conn); /* an empty pipe or buffer some flow still holds */
    /* Stop watching first: from here on this process never reads these sockets again. */
    sr_watch_clear(reactor, &conn->client);
    sr_watch_clear(reactor, &conn->backend);
    rc = sr_upgrade_send_conn(sock, &rec, conn->client.fd, conn->backend.fd);
    if (rc != 0) {
        /* Not sent: watch again as before and go on relaying here. */
        int err = sr_watch_set(reactor, &conn->client, client_events);

        if (err == 0) {
            err = sr_watch_set(reactor, &conn->backend, backend_events);
        }
        if (err != 0) {
            conn->detail = uv_err_name(err);
            sr_conn_close(conn, "error");
        }
        return rc;
    }
    /* The new process holds both sockets now: closing ours sends nothing to either peer.
     * One access-log line per connection: the new process writes it, with the totals. */
    conn->outcome = "handed_over";
    conn->is_quiet = true;
    sr__conn_close_ex(conn, "handed_over", false, false);
    return 0;
}

/* The [listener] of the current config an adopted connection counts under: the one of
 * the same name, else the first of the same protocol, else the first. */
static const struct sr_listener_config *
adopt_listener(const struct sr_config *cfg, const struct sr_upgrade_conn *rec)
{
    bool is_http = (rec->flags & SR_UPGRADE_CONN_HTTP) != 0;
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        if (strcmp(cfg->listeners[i].name, rec->listener) == 0) {
            return &cfg->listeners[i];
        }
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].is_http == is_http) {
            return &cfg->listeners[i];
        }
    }
    return &cfg->listeners[0];
}

/* The texts an adopted connection keeps, in one allocation. */
static struct sr_conn_adopted *
adopted_new(const struct sr_upgrade_conn *rec)
{
    size_t up_len = strlen(rec->upstream) + 1;
    size_t label_len = strlen(rec->label) + 1;
    size_t alpn_len = strlen(rec->alpn_route) + 1;
    struct sr_conn_adopted *ad = malloc(sizeof(*ad) + up_len + label_len + alpn_len);
    char *p;

    if (ad == NULL) {
        return NULL;
    }
    memset(ad, 0, sizeof(*ad));
    p = (char *)(ad + 1);
    ad->upstream = memcpy(p, rec->upstream, up_len);
    ad->label = memcpy(p + up_len, rec->label, label_len);
    ad->alpn_route =
        alpn_len > 1 ? memcpy(p + up_len + label_len, rec->alpn_route, alpn_len) : NULL;
    ad->base_in = rec->bytes_in;
    ad->base_out = rec->bytes_out;
    return ad;
}

int
sr_conn_adopt(struct sr_server *server, const struct sr_upgrade_conn *rec, int client_fd,
              int backend_fd, uint32_t uid)
{
    struct sr_generation *gen = server->gen;
    const struct sr_listener_config *lcfg = adopt_listener(&gen->cfg, rec);
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    uint64_t wall_ms = wall_clock_ms();
    uint64_t age_ms;
    struct sr_conn *conn;

    conn = calloc(1, sizeof(*conn));
    if (conn != NULL) {
        conn->adopted = adopted_new(rec);
        if (rec->sni[0] != '\0') {
            conn->sni = strdup(rec->sni);
        }
    }
    if (conn == NULL || conn->adopted == NULL || (rec->sni[0] != '\0' && conn->sni == NULL)) {
        if (conn != NULL) {
            free(conn->adopted);
            free(conn->sni);
            free(conn);
        }
        close(client_fd);
        close(backend_fd);
        sr_log_notice("upgrade: out of memory taking over a connection");
        return UV_ENOMEM;
    }
    conn->server = server;
    conn->gen = sr_generation_ref(gen);
    conn->lcfg = lcfg;
    conn->routes = &gen->cfg.routes[lcfg->routes];
    conn->state = SR_CONN_RELAYING;
    conn->route = rec->route;
    conn->is_fallback = (rec->flags & SR_UPGRADE_CONN_FALLBACK) != 0;
    conn->has_ech = (rec->flags & SR_UPGRADE_CONN_ECH) != 0;
    conn->alpn_route = conn->adopted->alpn_route;
    sr_watch_init(&conn->client, client_fd, on_client_event);
    sr_watch_init(&conn->backend, backend_fd, on_backend_event);
    sr_deadline_init(&conn->deadline);
    conn->up.pipe_fds[0] = conn->up.pipe_fds[1] = -1;
    conn->down.pipe_fds[0] = conn->down.pipe_fds[1] = -1;
    conn->up.n_bytes = rec->bytes_in;
    conn->down.n_bytes = rec->bytes_out;
    if (rec->client.ss_family == AF_INET) {
        memcpy(&conn->client_addr, &rec->client, sizeof(conn->client_addr.in4));
    } else if (rec->client.ss_family == AF_INET6) {
        memcpy(&conn->client_addr, &rec->client, sizeof(conn->client_addr.in6));
    }
    /* The log's duration runs from the accept in the old process. */
    age_ms = wall_ms > rec->start_ms ? wall_ms - rec->start_ms : 0;
    conn->start_ms = conn_now(conn) > age_ms ? conn_now(conn) - age_ms : 0;
    conn->lid = gen->listener_ids[lcfg - gen->cfg.listeners];
    conn->uid = uid;
    conn->adopted->has_uid = uid != UINT32_MAX;
    sr__server_conn_add(server, conn);

    /* Limits count it like any other (by the TCP peer, as at accept), but never refuse
     * it: it is open already. */
    memset(&peer, 0, sizeof(peer));
    if (getpeername(client_fd, (struct sockaddr *)&peer, &peer_len) != 0) {
        memset(&peer, 0, sizeof(peer));
    }
    sr_shared_count(server->shared, &conn->adm, conn->lcfg, (const struct sockaddr *)&peer);
    sr_metrics_conn_adopted(conn_metrics(conn), conn->lid);
    conn->is_counted = true;

    /* O_NONBLOCK belongs to the open file, which the old process set; be sure. */
    if (fcntl(client_fd, F_SETFL, fcntl(client_fd, F_GETFL) | O_NONBLOCK) != 0 ||
        fcntl(backend_fd, F_SETFL, fcntl(backend_fd, F_GETFL) | O_NONBLOCK) != 0) {
        conn->detail = uv_err_name(SR_ERRNO(errno));
        sr_conn_close(conn, "error");
        return 0;
    }
    /* The idle timeout starts again: the old process saw activity we do not know of. */
    conn->last_active_ms = conn_now(conn);
    conn_deadline(conn, gen->cfg.idle_timeout_ms);
    sr__relay_start(conn);
    return 0;
}
