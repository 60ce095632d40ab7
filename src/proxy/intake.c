/* SPDX-License-Identifier: MIT */
/* The first bytes of a TCP connection (intake.h): a PROXY header if the listener expects
 * one, then the ClientHello (or, on a protocol = http listener, the first request head),
 * read into the worker's scratch buffer and looked at whole each time the parser's
 * need-more count has come; then the routing decision. Only when the connection has to
 * wait are the bytes copied into a buffer of its own. Nothing here sends, connects or
 * closes: every function says what comes next, and conn.c does it. */
#include "sniroute/proxy/intake.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uv.h>

#include "sniroute/config/decide.h"
#include "sniroute/proxy/relay.h"
#include "sniroute/wire/hello.h"
#include "sniroute/wire/http.h"
#include "sniroute/wire/proxyproto.h"

static struct sr_intake_result
intake_wait(void)
{
    return (struct sr_intake_result){.step = SR_INTAKE_WAIT};
}

static struct sr_intake_result
intake_close(const char *outcome)
{
    return (struct sr_intake_result){.step = SR_INTAKE_CLOSE, .outcome = outcome};
}

static struct sr_intake_result
intake_connect(size_t target)
{
    return (struct sr_intake_result){.step = SR_INTAKE_CONNECT, .target = target};
}

static struct sr_intake_result
intake_refuse_tls(uint8_t alert, const char *outcome)
{
    return (struct sr_intake_result){
        .step = SR_INTAKE_REFUSE_TLS, .outcome = outcome, .alert = alert};
}

static struct sr_intake_result
intake_refuse_http(uint16_t code, const char *outcome)
{
    return (struct sr_intake_result){
        .step = SR_INTAKE_REFUSE_HTTP, .outcome = outcome, .http_code = code};
}

/* Refused by an access rule: the rule goes to the log line and the metric; a TLS client
 * gets access_denied in a record of <record_version> (0: 0x0303), an HTTP one a 403. */
static struct sr_intake_result
intake_denied(struct sr_conn *conn, const char *label, uint32_t id, uint16_t record_version)
{
    struct sr_intake_result r;

    conn->denied_by = label;
    conn->denied_id = id;
    sr_metrics_denied(conn->set->metrics, id);
    if (conn->lcfg->is_http) {
        return intake_refuse_http(403, "denied");
    }
    r = intake_refuse_tls(SR_TLS_ALERT_ACCESS_DENIED, "denied");
    r.record_version = record_version;
    return r;
}

static struct sr_intake_result
intake_http_refused(void)
{
    return (struct sr_intake_result){.step = SR_INTAKE_HTTP_REFUSED};
}

/* Wait for more, the bytes so far kept (sr_intake_keep); out of memory, close. */
static struct sr_intake_result
intake_wait_kept(struct sr_conn *conn)
{
    return sr_intake_keep(conn) ? intake_wait() : intake_close("error");
}

static void
hello_metric(struct sr_conn *conn, enum sr_metrics_hello result, enum sr_hello_reason reason)
{
    sr_metrics_hello(conn->set->metrics, result, reason);
}

uint64_t
sr_intake_timeout_ms(const struct sr_conn *conn)
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

bool
sr_intake_keep(struct sr_conn *conn)
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
        return false;
    }
    setup->peek_cap = cap;
    memcpy(setup->peek, conn->set->res->scratch, setup->peek_len);
    return true;
}

/* Not TLS or not HTTP (or silent past fallback_timeout): the decision may be the
 * listener's fallback, which gets the connection and whatever it sent so far, unmodified;
 * when there is none the caller refuses in its protocol. */
bool
sr_intake_fallback(struct sr_conn *conn, size_t *target)
{
    struct sr_first_bytes said = {.said = SR_SAID_OTHER, .from = &conn->client_addr.sa};
    struct sr_decision d;

    sr_decide(&conn->gen->cfg, conn->lcfg, &said, &d);
    if (d.refusal == SR_REFUSAL_DENIED) {
        /* The fallback's [upstream] refuses this client: no bytes go there. */
        conn->denied_by = d.denied_by;
        conn->denied_id = d.denied_id;
        sr_metrics_denied(conn->set->metrics, d.denied_id);
        return false;
    }
    if (d.verdict != SR_VERDICT_FALLBACK) {
        return false;
    }
    conn->is_fallback = true;
    *target = d.target;
    return true;
}

/* What the hello said, as the routing decision takes it. <res>'s views are read only
 * during the call. */
static struct sr_intake_result
intake_route(struct sr_conn *conn, const struct sr_hello_result *res)
{
    struct sr_first_bytes said = {
        .said = res->status == SR_HELLO_FOUND ? SR_SAID_NAME : SR_SAID_NO_NAME,
        .name = res->sni.ptr,
        .name_len = res->sni.len,
        .alpn = res->alpn.ptr,
        .alpn_len = res->alpn.len,
        .has_ech = res->has_ech,
        .from = &conn->client_addr.sa,
    };
    struct sr_decision d;

    if (res->has_ech) {
        /* Routed by the outer (public) name, as ECH intends for a passthrough front. */
        conn->has_ech = true;
        sr_metrics_hello_ech(conn->set->metrics);
    }
    sr_decide(&conn->gen->cfg, conn->lcfg, &said, &d);
    memcpy(conn->setup->sni, d.name, d.name_len + 1);
    switch (d.refusal) {
    case SR_REFUSAL_BAD_NAME:
        conn->detail = "server name not normalizable";
        return intake_refuse_tls(SR_TLS_ALERT_DECODE_ERROR, sr_refusal_outcome(d.refusal, false));
    case SR_REFUSAL_NO_SNI:
        return intake_refuse_tls(SR_TLS_ALERT_HANDSHAKE_FAILURE,
                                 sr_refusal_outcome(d.refusal, false));
    default:
        break;
    }
    conn->route = (uint8_t)d.hit.kind;
    sr_metrics_route(conn->set->metrics, conn->lid, d.hit.kind);
    if (d.refusal == SR_REFUSAL_DENIED) {
        return intake_denied(conn, d.denied_by, d.denied_id, res->record_version);
    }
    if (d.verdict != SR_VERDICT_ROUTE) {
        return intake_refuse_tls(SR_TLS_ALERT_UNRECOGNIZED_NAME,
                                 sr_refusal_outcome(d.refusal, false));
    }
    if (d.alpn != NULL) {
        conn->alpn_route = d.alpn->proto; /* from the config: safe in a log line */
    }
    assert(d.target < conn->gen->cfg.n_upstreams);
    return intake_connect(d.target);
}

/* proxy_protocol = accept: read the PROXY header at the start of <bytes>. Returns true
 * once it is complete and valid (the hello follows it); false with <*r> set while more
 * bytes are needed (parse_at set: wait) or for a bad header (close). */
static bool
proxy_header_read(struct sr_conn *conn, const uint8_t *bytes, struct sr_intake_result *r)
{
    struct sr_conn_setup *setup = conn->setup;
    struct sr_proxyproto_result pp;
    struct sr_access_result access;
    enum sr_metrics_limit over;
    const char *limit;

    sr_proxyproto_parse(bytes, setup->peek_len, &pp);
    switch (pp.status) {
    case SR_PROXYPROTO_NEED_MORE:
        setup->parse_at = setup->peek_len + pp.need;
        *r = intake_wait();
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
            /* max_new_connections_per_ip: the client named, not the load balancer. */
            if (!sr_shared_admit_rate(
                    conn->set->shared, &conn->gen->cfg, conn->lcfg,
                    conn->gen->listener_slots[conn->lcfg - conn->gen->cfg.listeners],
                    (const struct sockaddr *)&pp.src, false)) {
                sr_metrics_limit_rejected(conn->set->metrics, conn->lid, SR_METRICS_LIMIT_RATE);
                conn->is_quiet = true;
                *r = intake_close("max_new_connections_per_ip");
                return false;
            }
            limit = sr_shared_admit_client(conn->set->shared, &conn->adm, &conn->gen->cfg,
                                           (const struct sockaddr *)&pp.src, &over);
            if (limit != NULL) {
                sr_metrics_limit_rejected(conn->set->metrics, conn->lid, over);
                conn->is_quiet = true; /* like a refusal at accept: counted, summarized */
                *r = intake_close(limit);
                return false;
            }
        }
        /* The listener's rules, on the client the header names (with a LOCAL header or an
         * UNSPEC family, the TCP peer: the load balancer itself). */
        if (!sr_access_check(&conn->lcfg->access, &conn->client_addr.sa, &access)) {
            *r = intake_denied(conn, access.label, access.label_id, 0);
            return false;
        }
        return true;
    case SR_PROXYPROTO_NOT_PROXY:
    case SR_PROXYPROTO_INVALID:
        conn->detail = pp.status == SR_PROXYPROTO_NOT_PROXY ? "no PROXY header"
                                                            : sr_proxyproto_reason_str(pp.reason);
        *r = intake_close("proxy_invalid");
        return false;
    }
    *r = intake_wait();
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
        .from = &conn->client_addr.sa,
    };

    sr_decide(&conn->gen->cfg, conn->lcfg, &said, d);
}

/* The tracker's question for every request head on the connection, the first included:
 * may it go to the backend the first request chose? Only if the map gives its host that
 * same backend and that backend's rules admit the client; otherwise the connection ends
 * after the responses owed (the client opens a new one, or gets a 403). */
static int
on_http_head(void *ctx, const struct sr_http_head *head)
{
    struct sr_conn *conn = ctx;
    struct sr_decision d;

    http_decide(conn, head, &d);
    if (d.refusal == SR_REFUSAL_DENIED) {
        conn->denied_by = d.denied_by; /* 403 instead of 421 (sr_relay_http_refuse) */
        conn->denied_id = d.denied_id;
        sr_metrics_denied(conn->set->metrics, d.denied_id);
        return 1;
    }
    if (d.verdict != SR_VERDICT_ROUTE || d.target != conn->http_target) {
        return 1;
    }
    return 0;
}

/* protocol = http: route by the Host of the first request head. */
static struct sr_intake_result
http_read(struct sr_conn *conn, const uint8_t *bytes)
{
    struct sr_conn_setup *setup = conn->setup;
    size_t cap = peek_max(conn);
    struct sr_http_head head;
    struct sr_decision d;
    size_t target;

    /* The reader reads on from where the last call stopped: a head dribbled in tiny
     * pieces costs each byte once, not a re-parse from its start per piece. */
    sr_http_read_head(&setup->http_reader, bytes + setup->proxy_len,
                      setup->peek_len - setup->proxy_len, &head);
    switch (head.status) {
    case SR_HTTP_NEED_MORE:
        setup->parse_at = setup->peek_len + head.need;
        if (setup->parse_at > cap) {
            conn->detail = "request head larger than max_hello_size";
            return intake_refuse_http(400, "too_large");
        }
        return intake_wait_kept(conn);
    case SR_HTTP_NOT_HTTP:
        if (sr_intake_fallback(conn, &target)) {
            return intake_connect(target);
        }
        if (conn->denied_by != NULL) {
            return intake_close("denied"); /* not HTTP: no answer in HTTP */
        }
        conn->detail = sr_http_reason_str(head.reason);
        return intake_refuse_http(400, sr_refusal_outcome(SR_REFUSAL_NOT_PROTOCOL, true));
    case SR_HTTP_BAD:
        conn->detail = sr_http_reason_str(head.reason);
        return intake_refuse_http(400, "malformed");
    case SR_HTTP_OK:
        break;
    }
    http_decide(conn, &head, &d);
    memcpy(setup->sni, d.name, d.name_len + 1);
    conn->route = (uint8_t)d.hit.kind;
    sr_metrics_route(conn->set->metrics, conn->lid, d.hit.kind);
    if (d.refusal == SR_REFUSAL_DENIED) {
        return intake_denied(conn, d.denied_by, d.denied_id, 0);
    }
    if (d.verdict != SR_VERDICT_ROUTE) {
        return intake_refuse_http(421, sr_refusal_outcome(d.refusal, true));
    }
    conn->http_track = malloc(sizeof(*conn->http_track));
    if (conn->http_track == NULL) {
        return intake_close("error");
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

        if (r != SR_TRACK_OK && !sr_relay_http_refuse(conn, r)) {
            return intake_close("error");
        }
        if (r != SR_TRACK_OK && conn->http_out.len == 0) {
            /* Refused before anything could go (a CONNECT with a body): answer now. */
            return intake_http_refused();
        }
        /* A request pipelined behind the first may be refused: the ones before it still
         * go, and the relay ends the connection after their responses. */
    }
    return intake_connect(d.target);
}

struct sr_intake_result
sr_intake_read(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    size_t cap = peek_max(conn);
    struct sr_hello_scratch scratch;
    struct sr_hello_result res;
    struct sr_intake_result r;
    const uint8_t *bytes;
    size_t target;
    ssize_t n;

    if (setup->peek == NULL) {
        uint8_t *buf = sr_resources_scratch(conn->set->res, cap);

        if (buf == NULL) {
            conn->detail = uv_err_name(UV_ENOMEM);
            hello_metric(conn, SR_METRICS_HELLO_ERROR, SR_HELLO_REASON_NONE);
            return intake_close("error");
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
                hello_metric(conn, SR_METRICS_HELLO_ERROR, SR_HELLO_REASON_NONE);
                return intake_close("error");
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
        return intake_wait();
    }
    if (n <= 0) {
        conn->detail = uv_err_name(n == 0 ? UV_EOF : SR_ERRNO(errno));
        hello_metric(conn, n == 0 ? SR_METRICS_HELLO_INCOMPLETE : SR_METRICS_HELLO_CLIENT_RESET,
                     SR_HELLO_REASON_NONE);
        return intake_close(n == 0 ? "incomplete" : "client_reset");
    }
    conn->up.n_bytes = setup->peek_len;
    if (setup->peek_len < setup->parse_at) {
        return intake_wait(); /* the parser said how much more it needs: no re-parse before that */
    }

    if (conn->lcfg->is_proxy_accepted && setup->proxy_len == 0) {
        if (!proxy_header_read(conn, bytes, &r)) {
            /* incomplete: wait for the rest */
            return r.step == SR_INTAKE_WAIT ? intake_wait_kept(conn) : r;
        }
    }
    if (conn->lcfg->is_http) {
        return http_read(conn, bytes);
    }
    sr_hello_parse(bytes + setup->proxy_len, setup->peek_len - setup->proxy_len, &scratch, &res);
    switch (res.status) {
    case SR_HELLO_NEED_MORE:
        setup->parse_at = setup->peek_len + res.need;
        if (setup->parse_at > cap) {
            conn->detail = "hello larger than max_hello_size";
            hello_metric(conn, SR_METRICS_HELLO_TOO_LARGE, SR_HELLO_REASON_NONE);
            return intake_refuse_tls(SR_TLS_ALERT_HANDSHAKE_FAILURE, "too_large");
        }
        return intake_wait_kept(conn);
    case SR_HELLO_FOUND:
    case SR_HELLO_NO_SNI:
        hello_metric(
            conn, res.status == SR_HELLO_FOUND ? SR_METRICS_HELLO_FOUND : SR_METRICS_HELLO_NO_SNI,
            SR_HELLO_REASON_NONE);
        return intake_route(conn, &res);
    case SR_HELLO_NOT_TLS:
        hello_metric(conn, SR_METRICS_HELLO_NOT_TLS, res.reason);
        if (sr_intake_fallback(conn, &target)) {
            return intake_connect(target);
        }
        if (conn->denied_by != NULL) {
            return intake_close("denied");
        }
        conn->detail = sr_hello_reason_str(res.reason);
        return intake_close(sr_refusal_outcome(SR_REFUSAL_NOT_PROTOCOL, false));
    case SR_HELLO_MALFORMED:
        conn->detail = sr_hello_reason_str(res.reason);
        hello_metric(conn, SR_METRICS_HELLO_MALFORMED, res.reason);
        return intake_refuse_tls(SR_TLS_ALERT_DECODE_ERROR, "malformed");
    }
    return intake_wait();
}
