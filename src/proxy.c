/* SPDX-License-Identifier: MIT */
/* The server: binds every listener of the config, hands each accepted socket to a new
 * connection, keeps the list of open connections for the drain, and owns the relay buffer
 * pool. It does not parse, route or relay: that is conn.c. */
#include "sniroute/proxy.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sniroute/conn.h"
#include "sniroute/log.h"

/* Room for a burst of connections the kernel has finished handshaking; the kernel caps it
 * at net.core.somaxconn anyway. */
#define SR_LISTEN_BACKLOG 4096

void *
sr__pool_get(struct sr_server *server)
{
    struct sr_buf_pool *pool = &server->pool;
    void *buf = pool->free_list;

    if (buf != NULL) {
        memcpy(&pool->free_list, buf, sizeof(void *));
        pool->n_free--;
    } else {
        buf = malloc(SR_RELAY_BUF_SIZE);
        if (buf == NULL) {
            return NULL;
        }
    }
    pool->n_out++;
    return buf;
}

void
sr__pool_put(struct sr_server *server, void *buf)
{
    struct sr_buf_pool *pool = &server->pool;

    assert(pool->n_out > 0);
    pool->n_out--;
    /* Keep a bounded number for reuse: a burst of traffic must not pin its peak memory. */
    if (pool->n_free >= SR_POOL_KEEP_MAX) {
        free(buf);
        return;
    }
    memcpy(buf, &pool->free_list, sizeof(void *));
    pool->free_list = buf;
    pool->n_free++;
}

int
sr__pipe_get(struct sr_server *server, int fds[2])
{
    struct sr_pipe_pool *pipes = &server->pipes;

    if (pipes->n_free > 0) {
        pipes->n_free--;
        fds[0] = pipes->fds[pipes->n_free][0];
        fds[1] = pipes->fds[pipes->n_free][1];
        return 0;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        fds[0] = -1;
        fds[1] = -1;
        return -errno; /* libuv's codes are negated errno values on Unix */
    }
    return 0;
}

void
sr__pipe_put(struct sr_server *server, const int fds[2])
{
    struct sr_pipe_pool *pipes = &server->pipes;

    if (pipes->n_free >= pipes->keep_max) {
        close(fds[0]);
        close(fds[1]);
        return;
    }
    pipes->fds[pipes->n_free][0] = fds[0];
    pipes->fds[pipes->n_free][1] = fds[1];
    pipes->n_free++;
}

static size_t
pipe_keep_max(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return SR_PIPE_KEEP_MAX;
    }
    return rl.rlim_cur / 64 < SR_PIPE_KEEP_MAX ? (size_t)(rl.rlim_cur / 64) : SR_PIPE_KEEP_MAX;
}

static void
pool_fini(struct sr_buf_pool *pool)
{
    void *buf = pool->free_list;
    void *next;

    while (buf != NULL) {
        memcpy(&next, buf, sizeof(void *));
        free(buf);
        buf = next;
    }
    pool->free_list = NULL;
    pool->n_free = 0;
}

void
sr__format_sockaddr(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        uv_ip6_name(sin6, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        uv_ip4_name(sin, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(sin->sin_port));
    } else {
        snprintf(out, cap, "-");
    }
}

static void
server_check_stopped(struct sr_server *server)
{
    if (!server->is_draining || server->is_stopped) {
        return;
    }
    if (server->n_conns == 0 && server->n_listeners_open == 0) {
        server->is_stopped = true;
        uv_close((uv_handle_t *)&server->drain_timer, NULL);
    }
}

void
sr__server_conn_add(struct sr_server *server, struct sr_conn *conn)
{
    conn->prev = NULL;
    conn->next = server->conns;
    if (server->conns != NULL) {
        server->conns->prev = conn;
    }
    server->conns = conn;
    server->n_conns++;
    server->n_accepted++;
}

void
sr__server_conn_gone(struct sr_server *server, struct sr_conn *conn)
{
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        server->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    server->n_conns--;
    server_check_stopped(server);
}

static void
on_listener_connection(uv_stream_t *stream, int status)
{
    struct sr_listener *listener = stream->data;
    int rc;

    if (status != 0) {
        /* libuv absorbs EMFILE itself (it keeps a spare descriptor to accept and drop);
         * what reaches here is rare and worth a line. */
        sr_log_notice("listener %s: accept on %s failed: %s", listener->cfg->name,
                      listener->addr_text, uv_strerror(status));
        return;
    }
    rc = sr_conn_accept(listener);
    if (rc != 0 && rc != UV_ECONNABORTED) {
        sr_log_notice("listener %s: accept on %s failed: %s", listener->cfg->name,
                      listener->addr_text, uv_strerror(rc));
    }
}

static void
on_listener_close(uv_handle_t *handle)
{
    struct sr_listener *listener = handle->data;
    struct sr_server *server = listener->server;

    server->n_listeners_open--;
    server_check_stopped(server);
}

static int
listener_bind(struct sr_listener *listener, const struct sr_addr *addr)
{
    struct sr_server *server = listener->server;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    unsigned flags = 0;
    int rc;

    if (addr->kind == SR_ADDR_IPV6) {
        rc = uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&ss);
        /* "[::]:443" and "0.0.0.0:443" may both be listed: keep the families apart. */
        flags = UV_TCP_IPV6ONLY;
    } else {
        rc = uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&ss);
    }
    if (rc != 0) {
        return rc;
    }
    rc = uv_tcp_init(server->loop, &listener->handle);
    if (rc != 0) {
        return rc;
    }
    listener->handle.data = listener;
    server->n_listeners_open++;
    rc = uv_tcp_bind(&listener->handle, (const struct sockaddr *)&ss, flags);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&listener->handle, SR_LISTEN_BACKLOG, on_listener_connection);
    }
    if (rc != 0) {
        return rc;
    }
    /* Port 0 asks the kernel for a free port; report the one we got. */
    rc = uv_tcp_getsockname(&listener->handle, (struct sockaddr *)&ss, &len);
    if (rc != 0) {
        return rc;
    }
    sr__format_sockaddr((const struct sockaddr *)&ss, listener->addr_text,
                        sizeof(listener->addr_text));
    return 0;
}

static void
on_drain_timeout(uv_timer_t *timer)
{
    struct sr_server *server = timer->data;

    sr_log_notice("drain timeout: closing %zu open connection(s)", server->n_conns);
    sr_server_drain(server);
}

int
sr_server_start(struct sr_server *server, uv_loop_t *loop, const struct sr_config *cfg,
                FILE *access_log)
{
    size_t n = 0;
    size_t i;
    size_t j;
    int rc;

    memset(server, 0, sizeof(*server));
    server->loop = loop;
    server->cfg = cfg;
    server->access_log = access_log;
    uv_timer_init(loop, &server->drain_timer);
    server->drain_timer.data = server;
    server->pipes.keep_max = pipe_keep_max();

    for (i = 0; i < cfg->n_listeners; i++) {
        n += cfg->listeners[i].n_listen;
    }
    server->listeners = calloc(n, sizeof(*server->listeners));
    if (server->listeners == NULL) {
        server->is_draining = true;
        server_check_stopped(server);
        return UV_ENOMEM;
    }

    for (i = 0; i < cfg->n_listeners; i++) {
        const struct sr_listener_config *lc = &cfg->listeners[i];

        for (j = 0; j < lc->n_listen; j++) {
            struct sr_listener *listener = &server->listeners[server->n_listeners++];
            char want[SR_ADDR_HOST_MAX + 16];

            listener->server = server;
            listener->cfg = lc;
            listener->routes = &cfg->routes[lc->routes];
            rc = listener_bind(listener, &lc->listen[j]);
            if (rc != 0) {
                sr_addr_format(&lc->listen[j], want, sizeof(want));
                sr_log_notice("listener %s: cannot listen on %s: %s", lc->name, want,
                              uv_strerror(rc));
                sr_server_drain(server);
                return rc;
            }
            sr_log_notice("listening on %s (listener %s)", listener->addr_text, lc->name);
        }
    }
    return 0;
}

void
sr_server_drain(struct sr_server *server)
{
    struct sr_conn *conn;
    struct sr_conn *next;
    size_t i;

    if (server->is_draining) {
        /* Asked again, or the drain timed out: end what is left now. */
        for (conn = server->conns; conn != NULL; conn = next) {
            next = conn->next; /* closing does not unlink; freeing (later) does */
            sr_conn_close(conn, "drained");
        }
        return;
    }
    server->is_draining = true;
    for (i = 0; i < server->n_listeners; i++) {
        uv_handle_t *handle = (uv_handle_t *)&server->listeners[i].handle;

        if (handle->loop != NULL && !uv_is_closing(handle)) {
            uv_close(handle, on_listener_close);
        }
    }
    if (server->n_conns > 0) {
        sr_log_notice("draining %zu open connection(s) for up to %llu ms", server->n_conns,
                      (unsigned long long)server->cfg->drain_timeout_ms);
        uv_timer_start(&server->drain_timer, on_drain_timeout, server->cfg->drain_timeout_ms, 0);
    }
    server_check_stopped(server);
}

void
sr_server_fini(struct sr_server *server)
{
    assert(server->n_conns == 0);
    assert(server->pool.n_out == 0);
    pool_fini(&server->pool);
    while (server->pipes.n_free > 0) {
        server->pipes.n_free--;
        close(server->pipes.fds[server->pipes.n_free][0]);
        close(server->pipes.fds[server->pipes.n_free][1]);
    }
    free(server->listeners);
    server->listeners = NULL;
}
