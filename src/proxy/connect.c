/* SPDX-License-Identifier: MIT */
/* Connecting (connect.h): the pool's choice, the resolver, each address in turn, and the
 * first bytes sent right after the non-blocking connect (on loopback and fast networks it
 * is done by then; EAGAIN says when it is not), [our PROXY header] first. Only when it has
 * to wait (a name to resolve, a connect still on) are the bytes read so far copied into a
 * buffer of the connection's own (sr_intake_keep). */
#include "sniroute/proxy/connect.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <uv.h>

#include "sniroute/observe/log.h"
#include "sniroute/proxy/intake.h"
#include "sniroute/wire/proxyproto.h"

static struct sr_connect_result connect_start(struct sr_conn *conn);
static struct sr_connect_result target_failed(struct sr_conn *conn, const char *outcome);
static struct sr_connect_result connect_next(struct sr_conn *conn);
static struct sr_connect_result forward_first(struct sr_conn *conn, bool is_writable);

static struct sr_connect_result
connect_wait(void)
{
    return (struct sr_connect_result){.step = SR_CONNECT_WAIT};
}

static struct sr_connect_result
connect_relay(void)
{
    return (struct sr_connect_result){.step = SR_CONNECT_RELAY};
}

static struct sr_connect_result
connect_close(const char *outcome)
{
    return (struct sr_connect_result){.step = SR_CONNECT_CLOSE, .outcome = outcome};
}

void
sr_connect_upstream_text(const struct sr_conn *conn, char *out, size_t cap)
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

void
sr_connect_upstream_label(const struct sr_conn *conn, char *out, size_t cap)
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

/* --- Resolving and connecting --------------------------------------------------------- */

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *addrs)
{
    struct sr_conn *conn = req->data;
    struct sr_connect_result r = connect_wait();

    conn->is_resolving = false;
    conn->setup->addrs = addrs; /* freed with the setup, whatever happens next */
    if (conn->state == SR_CONN_CLOSING) {
        /* closed meanwhile: the callee frees it now */
    } else if (status != 0 || addrs == NULL) {
        conn->detail = uv_err_name(status != 0 ? status : UV_EAI_NONAME);
        sr_metrics_connect_failed(conn->set->metrics, conn->uid, SR_METRICS_CONNECT_RESOLVE);
        r = target_failed(conn, "resolve_failed");
    } else {
        conn->setup->next_addr = addrs;
        r = connect_next(conn);
    }
    conn->setup->on_resolved(conn, r);
}

/* Choose the next server of the connection's pool (one not tried yet) and connect to it;
 * none left: the connection ends. */
static struct sr_connect_result
pool_pick(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    const struct sr_pool_config *pc = &conn->gen->cfg.pools[conn->upstream->pool - 1];
    enum sr_pool_pick pick;
    size_t i;

    pick =
        sr_pool_pick(conn->pool, sr_conn_now(conn),
                     setup->has_source_key ? setup->source_key.bytes : NULL, setup->pool_tried, &i);
    if (pick == SR_POOL_NONE_LEFT) {
        if (conn->detail == NULL) {
            conn->detail = "no server available";
        }
        return connect_close("connect_failed");
    }
    conn->pool_index = i;
    setup->pool_tried |= (uint64_t)1 << i;
    conn->target = &pc->servers[i];
    sr_pool_conn_start(conn->pool, i);
    conn->is_pool_counted = true;
    return connect_start(conn);
}

/* Every address of the target failed (or its name did not resolve): a pool moves on to
 * its next server, within the same connect_timeout; a single address ends here. */
static struct sr_connect_result
target_failed(struct sr_conn *conn, const char *outcome)
{
    struct sr_conn_setup *setup = conn->setup;
    char text[SR_ADDR_HOST_MAX + 16];

    if (conn->pool == NULL) {
        return connect_close(outcome);
    }
    if (sr_pool_report_failure(conn->pool, conn->pool_index, sr_conn_now(conn))) {
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
    return pool_pick(conn);
}

/* Start with the config's literal address, or ask libuv's resolver (a thread pool) for a
 * name's addresses and try each in turn. */
static struct sr_connect_result
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
        if (!sr_intake_keep(conn)) {
            return connect_close("error"); /* other connections use the scratch buffer meanwhile */
        }
        conn->state = SR_CONN_RESOLVING;
        setup->resolve_req.data = conn;
        rc = uv_getaddrinfo(conn->set->res->loop, &setup->resolve_req, on_resolved, addr->host,
                            port, &hints);
        if (rc == 0) {
            conn->is_resolving = true;
            return connect_wait();
        }
    }
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        return target_failed(conn,
                             addr->kind == SR_ADDR_NAME ? "resolve_failed" : "connect_failed");
    }
    setup->literal_ai.ai_family = setup->literal_addr.ss_family;
    setup->literal_ai.ai_addr = (struct sockaddr *)&setup->literal_addr;
    setup->literal_ai.ai_addrlen = setup->literal_addr.ss_family == AF_INET6
                                       ? sizeof(struct sockaddr_in6)
                                       : sizeof(struct sockaddr_in);
    setup->literal_ai.ai_next = NULL;
    setup->next_addr = &setup->literal_ai;
    return connect_next(conn);
}

/* The address being tried failed before a byte went out: try the next one. */
static struct sr_connect_result
connect_failed(struct sr_conn *conn, int err)
{
    sr_metrics_connect_failed(conn->set->metrics, conn->uid,
                              sr_metrics_connect_error_from_errno(err));
    conn->setup->last_connect_error = err;
    sr_watch_close(&conn->set->res->reactor, &conn->backend);
    return connect_next(conn);
}

static struct sr_connect_result
connect_next(struct sr_conn *conn)
{
    struct sr_conn_setup *setup = conn->setup;
    struct addrinfo *ai = setup->next_addr;
    int on = 1;
    int fd;

    if (ai == NULL) {
        conn->detail = uv_err_name(setup->last_connect_error);
        return target_failed(conn, "connect_failed");
    }
    setup->next_addr = ai->ai_next;
    conn->state = SR_CONN_CONNECTING;
    setup->sent = 0;
    setup->connect_start_ns = uv_hrtime();
    fd = socket(ai->ai_addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn->detail = uv_err_name(SR_ERRNO(errno));
        return connect_close("error");
    }
    /* The watch's callback, set at accept, stays (conn.c's). */
    sr_watch_init(&conn->backend, fd, conn->backend.cb);
    /* The hello and small records must not wait for Nagle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (connect(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        return connect_failed(conn, SR_ERRNO(errno));
    }
    /* Do not wait for the connect to be reported: on loopback and fast networks it is
     * usually done already, and the first send tells (EAGAIN while it is still on). */
    return forward_first(conn, false);
}

/* Connect to route target <index> of the generation: one address, or a pool's servers. */
struct sr_connect_result
sr_connect_upstream(struct sr_conn *conn, size_t index, sr_connect_fn on_done)
{
    const struct sr_config *cfg = &conn->gen->cfg;

    conn->upstream = &cfg->upstreams[index];
    conn->uid = conn->gen->upstream_ids[index];
    conn->setup->on_resolved = on_done;
    sr_metrics_upstream_selected(conn->set->metrics, conn->uid);

    /* Whatever the client sent so far, unparsed bytes after the hello included, goes out
     * first once connected; what it sends meanwhile waits in its socket. The
     * client socket stays watched until it says something while we connect (see
     * conn.c's on_client_event): on the fast path the connect is done before that. */
    if (conn->upstream->pool != 0) {
        /* This worker's copy of the pool: pools are not shared between threads. */
        conn->pool = &conn->gen->pools[conn->set->worker * cfg->n_pools + conn->upstream->pool - 1];
        conn->proxy_send = (uint8_t)cfg->pools[conn->upstream->pool - 1].proxy_protocol;
        return pool_pick(conn);
    }
    conn->target = &conn->upstream->addr;
    return connect_start(conn);
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
    const uint8_t *bytes = setup->peek != NULL ? setup->peek : conn->set->res->scratch;

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
    sr_metrics_connect_ok(conn->set->metrics, conn->uid,
                          (uv_hrtime() - setup->connect_start_ns) / 1000);
    if (conn->pool != NULL) {
        sr_pool_report_success(conn->pool, conn->pool_index);
    }
}

/* Send [our PROXY header][the client's first bytes] to the backend, from where the last
 * try stopped. <is_writable>: called because the socket was reported writable (the
 * connect is over one way or the other), not right after connect(). */
static struct sr_connect_result
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
            return connect_close("error");
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
            return connect_failed(conn, SR_ERRNO(err));
        }
        backend_connected(conn);
        return connect_relay();
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
            return connect_failed(conn, SR_ERRNO(errno));
        }
        conn->detail = uv_err_name(SR_ERRNO(errno));
        return (struct sr_connect_result){.step = SR_CONNECT_BACKEND_RESET};
    }
    backend_connected(conn);
    setup->sent += (size_t)n;
    if (setup->sent < total) {
        goto wait_writable;
    }
    return connect_relay();

wait_writable:
    if (!sr_intake_keep(conn)) {
        return connect_close("error");
    }
    rc = sr_watch_set(&conn->set->res->reactor, &conn->backend, EPOLLOUT);
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        return connect_close("error");
    }
    return connect_wait();
}

struct sr_connect_result
sr_connect_writable(struct sr_conn *conn)
{
    return forward_first(conn, true);
}
