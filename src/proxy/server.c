/* SPDX-License-Identifier: MIT */
/* The server of one worker: binds every listener of the config, accepts (and what to do
 * when accept cannot), hands each accepted socket to a new connection, reloads, and
 * drains (handing idle connections to a new process after an upgrade). It owns the
 * worker's resources and its set of connections; it does not parse, route or relay: that
 * is conn.c and the steps below it. */
#include "sniroute/proxy/server.h"

#include <assert.h>
#include <stddef.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sniroute/proxy/conn.h"
#include "sniroute/proxy/quicflow.h"
#include "sniroute/proxy/quicsock.h"
#include "sniroute/observe/log.h"
#include "sniroute/core/sockmap.h"
#include "sniroute/core/upgrade.h"

/* Room for a burst of connections the kernel has finished handshaking; the kernel caps it
 * at net.core.somaxconn anyway. */
#define SR_LISTEN_BACKLOG 4096

int
sr_servers_metrics(struct sr_server *const *servers, size_t n, uint64_t generation,
                   uint64_t reloads_ok, uint64_t reloads_failed, char **out, size_t *len)
{
    const struct sr_metrics *workers[SR_WORKERS_MAX];
    struct sr_metrics_info info;
    size_t i;

    for (i = 0; i < n && i < SR_WORKERS_MAX; i++) {
        workers[i] = &servers[i]->metrics;
    }
    memset(&info, 0, sizeof(info));
    info.version = SNIROUTE_VERSION;
    info.start_time_ms = servers[0]->shared->start_time_ms;
    info.config_generation = generation;
    info.reloads_ok = reloads_ok;
    info.reloads_failed = reloads_failed;
    sr_shared_lock_counts(servers[0]->shared, &info.process_locks, &info.shard_locks);
    info.rate_entries = sr_ratelimit_entries(&servers[0]->shared->rate);
    info.rate_evictions = sr_ratelimit_evictions(&servers[0]->shared->rate);
    info.listeners = &servers[0]->shared->listener_names;
    info.upstreams = &servers[0]->shared->upstream_names;
    info.rules = &servers[0]->shared->rule_names;
    info.relay_path = servers[0]->shared->sockmap != NULL ? "sockmap" : "splice";
    info.n_kernel_relayed = sr_sockmap_joined(servers[0]->shared->sockmap);
    info.n_kernel_paused = sr_sockmap_paused(servers[0]->shared->sockmap);
    info.n_kernel_split = sr_sockmap_splits(servers[0]->shared->sockmap);
    return sr_metrics_format(out, len, workers, i, &info);
}

static void
server_check_stopped(struct sr_server *server)
{
    if (!server->is_draining || server->is_stopped) {
        return;
    }
    /* QUIC hook: its flows and sockets count too, and its timers close with ours. */
    if (server->conns.n == 0 && server->n_listeners_open == 0 && sr_quic_is_stopped(server->quic)) {
        server->is_stopped = true;
        sr_quic_close(server->quic);
        if (server->n_handed_over > 0) {
            sr_log_notice("upgrade: handed %llu open connection(s) over to the new process",
                          (unsigned long long)server->n_handed_over);
        }
        uv_close((uv_handle_t *)&server->drain_timer, NULL);
        uv_close((uv_handle_t *)&server->handover_timer, NULL);
        uv_close((uv_handle_t *)&server->accept_timer, NULL);
        /* Every connection and flow has written its line: the last batch goes out. */
        sr_shared_log_stop(server->shared, server->worker);
        sr_conn_set_close(&server->conns);
        sr_resources_close(&server->res);
        if (server->on_stopped != NULL) {
            server->on_stopped(server);
        }
    }
}

/* The last connection is gone: a drain may be over. */
static void
on_conns_empty(struct sr_conn_set *set)
{
    server_check_stopped(set->data);
}

/* --- Accepting, and what happens when accept cannot ------------------------------------
 *
 * Out of descriptors (EMFILE, ENFILE) or of kernel memory (ENOBUFS, ENOMEM), accept leaves
 * the connection in the queue, and the listening socket, level-triggered, wakes the loop
 * again at once: a spin that takes a whole core and serves no one. So a wakeup that ends
 * that way either sheds (accepts and closes what waits, with the spare descriptor lent
 * for it, so those clients see a close instead of hanging) or pauses the listener: out of
 * the epoll set, watched again SR_ACCEPT_RETRY_MS later. It keeps watching only if it
 * shed and got its spare back, so each wakeup either makes progress or is the last one
 * for a while. The spare is not the listener's to keep: between its close and its reopen
 * another worker, the resolver's threads or the admin endpoint may take that descriptor
 * number; until a descriptor is free again, such a listener wakes once per
 * SR_ACCEPT_RETRY_MS and pauses again. Whatever thread takes descriptors, then, there is
 * no state in which exhaustion spins. */

/* Connections accepted per wakeup at most: the others wait for the next round, after
 * the open connections have had theirs. The same bound holds for connections shed. */
#define SR_ACCEPT_BATCH 64
/* How long a paused listener stays out of the epoll set (nginx waits 500 ms; a shorter
 * pause serves the queue sooner once descriptors are free, for a few system calls). */
#define SR_ACCEPT_RETRY_MS 100
/* At most one notice a second about shedding and pauses, for all workers. */
#define SR_ACCEPT_NOTICE_MS 1000

/* The spare descriptor, if it is missing and a descriptor is free. */
static void
spare_reserve(struct sr_server *server)
{
    if (server->spare_fd < 0) {
        server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
}

/* Errors that concern one connection, which accept has taken off the queue: go on with
 * the next. Linux also reports a new socket's pending network error this way. */
static bool
is_accept_error_per_connection(int err)
{
    switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPERM: /* a firewall rule */
    case EPROTO:
    case ENOPROTOOPT:
    case ENETDOWN:
    case ENETUNREACH:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENONET:
    case EOPNOTSUPP:
        return true;
    default:
        return false;
    }
}

static void
on_accept_retry(uv_timer_t *timer)
{
    struct sr_server *server = timer->data;
    struct sr_listener *listener;
    bool is_still_paused = false;

    spare_reserve(server);
    for (listener = server->listeners; listener != NULL; listener = listener->next) {
        if (!listener->is_paused) {
            continue;
        }
        /* Level-triggered: a queue that filled meanwhile wakes the loop at the next poll. */
        if (sr_watch_set(&server->res.reactor, &listener->watch, EPOLLIN) == 0) {
            listener->is_paused = false;
        } else {
            is_still_paused = true; /* no kernel memory for the epoll entry: later */
        }
    }
    if (is_still_paused) {
        uv_timer_start(&server->accept_timer, on_accept_retry, SR_ACCEPT_RETRY_MS, 0);
    }
}

/* Stop watching <listener> until the retry timer; the kernel goes on queueing (and, with
 * several workers, hands new connections to the others' sockets just the same). */
static void
listener_pause(struct sr_listener *listener)
{
    struct sr_server *server = listener->server;

    sr_watch_clear(&server->res.reactor, &listener->watch);
    listener->is_paused = true;
    if (!uv_is_active((uv_handle_t *)&server->accept_timer)) {
        uv_timer_start(&server->accept_timer, on_accept_retry, SR_ACCEPT_RETRY_MS, 0);
    }
}

/* Accept and close at most SR_ACCEPT_BATCH queued connections with the spare descriptor
 * closed for the moment, then take the spare back; <*n_shed> counts them. Returns the
 * errno that ended the loop (EAGAIN: the queue is empty), or 0 when the bound did. */
static int
listener_shed(struct sr_listener *listener, uint64_t *n_shed)
{
    struct sr_server *server = listener->server;
    int err = 0;
    int fd;
    int i;

    close(server->spare_fd);
    server->spare_fd = -1;
    for (i = 0; i < SR_ACCEPT_BATCH; i++) {
        fd = accept4(listener->watch.fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            (*n_shed)++;
        } else if (!is_accept_error_per_connection(errno)) {
            err = errno == EWOULDBLOCK ? EAGAIN : errno;
            break;
        }
    }
    spare_reserve(server);
    return err;
}

/* accept on <listener> failed with <err>, which is not about one connection: out of
 * descriptors or memory (or the socket is broken). Shed or pause (see above), and say so
 * in a notice at most once a second, summed over the workers like refusals. */
static void
listener_stuck(struct sr_listener *listener, int err)
{
    struct sr_server *server = listener->server;
    struct sr_shared *shared = server->shared;
    uint64_t now = uv_hrtime() / 1000000;
    uint64_t n_shed = 0;
    uint64_t n_paused = 0;
    uint64_t d[3];
    int end = err;

    if ((err == EMFILE || err == ENFILE) && server->spare_fd >= 0) {
        end = listener_shed(listener, &n_shed);
    }
    if (end != EAGAIN && (end != 0 || server->spare_fd < 0)) {
        listener_pause(listener);
        n_paused = 1;
    }
    sr_notice_rate_count(&shared->accept_stuck, 0, n_shed);
    sr_notice_rate_count(&shared->accept_stuck, 1, n_paused);
    if (sr_notice_rate_due(&shared->accept_stuck, now, SR_ACCEPT_NOTICE_MS, d)) {
        sr_log_notice("listener %s: accept on %s failed: %s; since the last notice %llu "
                      "queued connection(s) closed unread, accepting paused %llu time(s) "
                      "for %d ms",
                      listener->cfg->name, listener->addr_text, strerror(err),
                      (unsigned long long)d[0], (unsigned long long)d[1], SR_ACCEPT_RETRY_MS);
    }
}

/* max_new_connections_per_ip, at accept: before a byte is read or anything is allocated for
 * the connection. Behind proxy_protocol = accept the peer is the load balancer, whose
 * address is not limited: the client is, once its PROXY header names it (intake.c). True
 * if the connection may go on; false: counted, summarized in a notice, to be closed. */
static bool
listener_rate_admit(struct sr_listener *listener, const struct sockaddr *peer)
{
    struct sr_server *server = listener->server;
    const struct sr_listener_config *lcfg = listener->cfg;
    size_t i = (size_t)(lcfg - server->gen->cfg.listeners);

    if (lcfg->max_new_conns == 0 || lcfg->is_proxy_accepted ||
        sr_shared_admit_rate(server->shared, &server->gen->cfg, lcfg,
                             server->gen->listener_slots[i], peer, false)) {
        return true;
    }
    sr_metrics_limit_rejected(&server->metrics, server->gen->listener_ids[i],
                              SR_METRICS_LIMIT_RATE);
    return false;
}

static void
on_listener_ready(struct sr_watch *watch, uint32_t events)
{
    struct sr_listener *listener = (struct sr_listener *)watch; /* the first member */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    int i;
    int fd;

    (void)events;
    /* The spare first: lost to another thread, it is taken back before any client. */
    spare_reserve(listener->server);
    for (i = 0; i < SR_ACCEPT_BATCH; i++) {
        peer_len = sizeof(peer);
        fd = accept4(watch->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            if (!is_accept_error_per_connection(errno)) {
                listener_stuck(listener, errno);
                return;
            }
            continue;
        }
        if (peer_len > sizeof(peer)) {
            memset(&peer, 0, sizeof(peer));
        }
        if (!listener_rate_admit(listener, (const struct sockaddr *)&peer)) {
            /* Over the rate: closed unread, like a refusal over the other limits (no
             * alert: nothing says yet that the client speaks TLS). */
            close(fd);
            continue;
        }
        if (sr_conn_accept(&listener->server->conns, listener->server->gen, listener->cfg, fd,
                           (const struct sockaddr *)&peer) != 0) {
            /* Out of memory (logged; this one closed): the rest wait for the retry. */
            listener_stuck(listener, ENOMEM);
            return;
        }
    }
}

/* Take <listener> out of the server's list and close its socket. Never called from
 * inside a batch of reactor events, so nothing of this round can still point at it. */
static void
listener_close(struct sr_listener *listener)
{
    struct sr_server *server = listener->server;
    struct sr_listener **link = &server->listeners;

    while (*link != NULL && *link != listener) {
        link = &(*link)->next;
    }
    if (*link != NULL) {
        *link = listener->next;
    }
    sr_watch_clear(&server->res.reactor, &listener->watch);
    close(listener->watch.fd);
    free(listener);
    server->n_listeners_open--;
}

/* A non-blocking listening socket for <sa>. Several workers: each binds its own socket to
 * the same address with SO_REUSEPORT, and the kernel spreads new connections over them.
 * Returns the descriptor or a negative errno. */
static int
listen_socket(const struct sockaddr *sa, bool is_reuseport)
{
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int on = 1;
    int fd;
    int rc;

    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    /* "[::]:443" and "0.0.0.0:443" may both be listed: keep the families apart. Accepted
     * sockets inherit TCP_NODELAY on Linux: hellos and small records must not wait for
     * Nagle (a peer of ours adds 40 ms per request without it), and setting it here saves
     * a system call per connection. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0 ||
        (is_reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        (sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) ||
        bind(fd, sa, len) != 0 || listen(fd, SR_LISTEN_BACKLOG) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* A new listening socket for <addr>, bound and listening, not yet in the server's list.
 * Returns NULL after logging why. */
static struct sr_listener *
listener_open(struct sr_server *server, const struct sr_listener_config *lc,
              const struct sr_addr *addr)
{
    struct sr_listener *listener;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char want[SR_ADDR_HOST_MAX + 16];
    int fd = -1;
    int rc;

    listener = calloc(1, sizeof(*listener));
    if (listener == NULL) {
        sr_log_notice("listener %s: out of memory", lc->name);
        return NULL;
    }
    listener->server = server;
    listener->addr = *addr;
    listener->cfg = lc;
    if (addr->kind == SR_ADDR_IPV6) {
        rc = uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&ss);
    } else {
        rc = uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&ss);
    }
    if (rc == 0) {
        /* Binary upgrade: a socket handed over by the old process keeps its accept queue. */
        fd = sr_inherited_take(server->shared->inherited, (const struct sockaddr *)&ss,
                               server->worker);
        if (fd >= 0 && (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int)) != 0)) {
            rc = -errno;
            close(fd);
            fd = rc;
        } else if (fd < 0) {
            fd = listen_socket((const struct sockaddr *)&ss, server->is_reuseport);
        }
        rc = fd < 0 ? fd : 0;
    }
    /* Port 0 asks the kernel for a free port; report the one we got. */
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        sr_watch_init(&listener->watch, fd, on_listener_ready);
        rc = sr_watch_set(&server->res.reactor, &listener->watch, EPOLLIN);
    }
    if (rc != 0) {
        if (fd >= 0) {
            close(fd);
        }
        free(listener);
        sr_addr_format(addr, want, sizeof(want));
        sr_log_notice("listener %s: cannot listen on %s: %s", lc->name, want, uv_strerror(rc));
        return NULL;
    }
    server->n_listeners_open++;
    sr_addr_format_sockaddr((const struct sockaddr *)&ss, listener->addr_text,
                            sizeof(listener->addr_text));
    sr_log_notice("listening on %s (listener %s)", listener->addr_text, lc->name);
    return listener;
}

size_t
sr_server_listen_fds(const struct sr_server *server, struct sr_listen_fd *out, size_t cap)
{
    const struct sr_listener *listener;
    size_t n = 0;

    for (listener = server->listeners; listener != NULL && n < cap; listener = listener->next) {
        out[n].fd = fcntl(listener->watch.fd, F_DUPFD_CLOEXEC, 0);
        if (out[n].fd >= 0) {
            snprintf(out[n].addr_text, sizeof(out[n].addr_text), "%s", listener->addr_text);
            n++;
        }
    }
    return n + sr_quic_listen_fds(server->quic, out + n, cap - n); /* QUIC hook: UDP too */
}

static bool
is_same_addr(const struct sr_addr *a, const struct sr_addr *b)
{
    /* Port 0 means "any free port": such a socket is never the one asked for again. */
    return a->port != 0 && a->kind == b->kind && a->port == b->port &&
           strcmp(a->host, b->host) == 0;
}

static void
on_drain_timeout(uv_timer_t *timer)
{
    struct sr_server *server = timer->data;

    sr_log_notice("drain timeout: closing %zu open connection(s)", server->conns.n);
    sr_server_drain(server);
}

/* Make the listening sockets match <gen>'s config: keep those whose address is still
 * there, bind the new ones, close the rest. All or nothing: if one new address cannot be
 * bound, the sockets opened here are closed again and the old set stays as it was. */
static int
server_apply(struct sr_server *server, struct sr_generation *gen)
{
    const struct sr_config *cfg = &gen->cfg;
    struct sr_listener *opened = NULL;
    struct sr_listener *listener;
    struct sr_listener *next;
    size_t i;
    size_t j;
    int rc;

    /* QUIC hook: its UDP sockets first, so that a failure on either side changes nothing. */
    rc = sr_quic_prepare(server->quic, gen);
    if (rc != 0) {
        return rc;
    }
    for (listener = server->listeners; listener != NULL; listener = listener->next) {
        listener->is_kept = false;
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        for (j = 0; j < cfg->listeners[i].n_listen && !cfg->listeners[i].is_quic; j++) {
            const struct sr_addr *addr = &cfg->listeners[i].listen[j];

            for (listener = server->listeners; listener != NULL; listener = listener->next) {
                if (!listener->is_kept && is_same_addr(&listener->addr, addr)) {
                    listener->is_kept = true;
                    break;
                }
            }
            if (listener != NULL) {
                continue;
            }
            listener = listener_open(server, &cfg->listeners[i], addr);
            if (listener == NULL) {
                for (listener = opened; listener != NULL; listener = next) {
                    next = listener->next;
                    listener->next = NULL;
                    listener_close(listener);
                }
                sr_quic_abort(server->quic); /* QUIC hook */
                return UV_EADDRINUSE;
            }
            listener->is_kept = true;
            listener->next = opened;
            opened = listener;
        }
    }

    /* Commit: point kept sockets at their new [listener] section, close the others. */
    for (listener = server->listeners; listener != NULL; listener = next) {
        next = listener->next;
        if (!listener->is_kept) {
            sr_log_notice("no longer listening on %s (listener %s)", listener->addr_text,
                          listener->cfg->name);
            listener_close(listener);
            continue;
        }
        for (i = 0; i < cfg->n_listeners; i++) {
            for (j = 0; j < cfg->listeners[i].n_listen && !cfg->listeners[i].is_quic; j++) {
                if (is_same_addr(&listener->addr, &cfg->listeners[i].listen[j])) {
                    listener->cfg = &cfg->listeners[i];
                }
            }
        }
    }
    for (listener = opened; listener != NULL; listener = next) {
        next = listener->next;
        listener->next = server->listeners;
        server->listeners = listener;
    }
    sr_quic_commit(server->quic, gen); /* QUIC hook */
    return 0;
}

/* QUIC hook: the last flow and socket of a draining QUIC path are gone. */
static void
on_quic_idle(void *data)
{
    server_check_stopped(data);
}

int
sr_server_start(struct sr_server *server, uv_loop_t *loop, struct sr_shared *shared, size_t worker,
                struct sr_generation *gen)
{
    int rc;

    server->loop = loop;
    server->shared = shared;
    server->worker = worker;
    server->is_reuseport = shared->n_workers > 1;
    server->gen = gen;
    uv_timer_init(loop, &server->drain_timer);
    server->drain_timer.data = server;
    uv_timer_init(loop, &server->handover_timer);
    server->handover_timer.data = server;
    uv_timer_init(loop, &server->accept_timer);
    server->accept_timer.data = server;
    server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (sr_shared_log_start(shared, worker, loop, gen->alog) != 0) {
        sr_log_notice("out of memory for the access log's batch: lines are written one by one");
    }
    rc = sr_resources_init(&server->res, loop, sr_conn_on_deadline);
    sr_conn_set_init(&server->conns, &server->res, &server->metrics, shared, worker);
    server->conns.on_empty = on_conns_empty;
    server->conns.data = server;
    if (rc != 0) {
        sr_log_notice("cannot create the event set: %s", uv_strerror(rc));
        server->listeners = NULL;
        sr_server_drain(server);
        return rc;
    }
    if (sr_metrics_init(&server->metrics, SR_METRICS_LISTENERS_MAX, SR_METRICS_UPSTREAMS_MAX) !=
        0) {
        sr_log_notice("out of memory");
        server->listeners = NULL;
        sr_server_drain(server);
        return UV_ENOMEM;
    }
    /* QUIC hook: the path of protocol = quic listeners, in this worker's loop and reactor. */
    {
        struct sr_quic_host host = {.loop = loop,
                                    .shared = shared,
                                    .reactor = &server->res.reactor,
                                    .metrics = &server->metrics,
                                    .worker = worker,
                                    .is_reuseport = server->is_reuseport,
                                    .on_idle = on_quic_idle,
                                    .data = server};

        server->quic = sr_quic_new(&host);
        if (server->quic == NULL) {
            sr_log_notice("out of memory");
            server->listeners = NULL;
            sr_server_drain(server);
            return UV_ENOMEM;
        }
    }

    rc = server_apply(server, gen);
    if (rc == 0) {
        rc = sr_health_start(&server->health, loop, gen, server->worker, shared->n_workers);
    }
    if (rc != 0) {
        sr_server_drain(server);
    }
    return rc;
}

int
sr_server_reload(struct sr_server *server, struct sr_generation *next)
{
    int rc;

    if (server->is_draining) {
        sr_generation_unref(next);
        return UV_ECANCELED;
    }
    rc = server_apply(server, next);
    if (rc != 0) {
        sr_generation_unref(next);
        server->n_reloads_failed++;
        return rc;
    }
    sr_health_stop(&server->health);
    /* Lines of connections that ended before the reload go where the log went before it. */
    sr_shared_log_switch(server->shared, server->worker, next->alog);
    sr_generation_unref(server->gen);
    server->gen = next;
    if (sr_health_start(&server->health, server->loop, next, server->worker,
                        server->shared->n_workers) != 0) {
        sr_log_notice("reload: out of memory starting health checks");
    }
    server->n_reloads_ok++;
    return 0;
}

static void on_handover_sweep(uv_timer_t *timer);

/* After an upgrade: hand every idle connection to the new process. One that is busy (or
 * not relaying yet) is looked at again at the next sweep; a full socket ends this sweep
 * (the next comes soon); a broken one ends the handover for every worker (what is left
 * drains here). */
static void
server_hand_over(struct sr_server *server)
{
    struct sr_shared *shared = server->shared;
    int sock = atomic_load(&shared->handover_fd);
    struct sr_conn *conn;
    struct sr_conn *next;
    int rc;

    if (sock < 0 || atomic_load(&shared->is_handover_broken)) {
        uv_timer_stop(&server->handover_timer);
        return;
    }
    for (conn = server->conns.head; conn != NULL; conn = next) {
        next = conn->next; /* closing does not unlink; freeing (later) does */
        rc = sr_conn_hand_over(conn, sock);
        if (rc == 0) {
            server->n_handed_over++;
        } else if (rc == UV_EAGAIN) {
            /* The new process is reading: go on in a moment rather than at the next sweep,
             * so thousands of connections move in well under a second. */
            uv_timer_start(&server->handover_timer, on_handover_sweep, SR_HANDOVER_RETRY_MS,
                           SR_HANDOVER_SWEEP_MS);
            return;
        } else if (rc != UV_EBUSY) {
            if (!atomic_exchange(&shared->is_handover_broken, true)) {
                sr_log_notice("upgrade: cannot hand connections over to the new process: %s; "
                              "the rest finish here",
                              uv_strerror(rc));
            }
            uv_timer_stop(&server->handover_timer);
            return;
        }
    }
}

static void
on_handover_sweep(uv_timer_t *timer)
{
    server_hand_over(timer->data);
}

void
sr_server_drain(struct sr_server *server)
{
    struct sr_conn *conn;
    struct sr_conn *next;

    if (server->is_draining) {
        /* Asked again, or the drain timed out: end what is left now. */
        for (conn = server->conns.head; conn != NULL; conn = next) {
            next = conn->next; /* closing does not unlink; freeing (later) does */
            sr_conn_close(conn, "drained");
        }
        sr_quic_drain(server->quic); /* QUIC hook: its flows too */
        return;
    }
    server->is_draining = true;
    sr_shared_log_flush(server->shared, server->worker);
    sr_quic_drain(server->quic); /* QUIC hook: no new flow; open ones go on (see quicflow.h) */
    sr_health_stop(&server->health);
    while (server->listeners != NULL) {
        listener_close(server->listeners);
    }
    if (server->conns.n > 0) {
        sr_log_notice("draining %zu open connection(s) for up to %llu ms", server->conns.n,
                      (unsigned long long)server->gen->cfg.drain_timeout_ms);
        uv_timer_start(&server->drain_timer, on_drain_timeout, server->gen->cfg.drain_timeout_ms,
                       0);
        if (atomic_load(&server->shared->handover_fd) >= 0) {
            uv_timer_start(&server->handover_timer, on_handover_sweep, SR_HANDOVER_SWEEP_MS,
                           SR_HANDOVER_SWEEP_MS);
            server_hand_over(server);
        }
    }
    server_check_stopped(server);
}

int
sr_server_adopt(struct sr_server *server, const struct sr_upgrade_conn *rec, int client_fd,
                int backend_fd, uint32_t uid)
{
    return sr_conn_adopt(&server->conns, server->gen, rec, client_fd, backend_fd, uid);
}

void
sr_server_fini(struct sr_server *server)
{
    assert(server->conns.n == 0);
    assert(server->listeners == NULL);
    sr_quic_free(server->quic); /* QUIC hook */
    server->quic = NULL;
    sr_generation_unref(server->gen);
    server->gen = NULL;
    sr_metrics_fini(&server->metrics);
    assert(server->conns.dead == NULL);
    sr_resources_fini(&server->res);
    if (server->spare_fd >= 0) {
        close(server->spare_fd);
        server->spare_fd = -1;
    }
}
