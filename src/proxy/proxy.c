/* SPDX-License-Identifier: MIT */
/* The server: binds every listener of the config, hands each accepted socket to a new
 * connection, keeps the list of open connections for the drain, and owns the relay buffer
 * pool. It does not parse, route or relay: that is conn.c. */
#include "sniroute/proxy/proxy.h"

#include <assert.h>
#include <stddef.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sniroute/proxy/conn.h"
#include "sniroute/proxy/quicflow.h"
#include "sniroute/observe/log.h"
#include "sniroute/core/upgrade.h"

/* Room for a burst of connections the kernel has finished handshaking; the kernel caps it
 * at net.core.somaxconn anyway. */
#define SR_LISTEN_BACKLOG 4096

struct sr_generation *
sr_generation_load(const char *path, sr_config_error_fn on_error, void *ctx, size_t *n_errors)
{
    struct sr_generation *gen = calloc(1, sizeof(*gen));

    if (gen == NULL) {
        *n_errors = 1;
        on_error(ctx, "out of memory loading the config");
        return NULL;
    }
    *n_errors = sr_config_load(&gen->cfg, path, on_error, ctx);
    if (*n_errors > 0) {
        sr_config_fini(&gen->cfg);
        free(gen);
        return NULL;
    }
    gen->id = 1;
    gen->n_refs = 1;
    return gen;
}

struct sr_generation *
sr_generation_ref(struct sr_generation *gen)
{
    atomic_fetch_add_explicit(&gen->n_refs, 1, memory_order_relaxed);
    return gen;
}

void
sr_generation_unref(struct sr_generation *gen)
{
    /* acq_rel: whatever a worker did with the config happens before another frees it. */
    if (gen == NULL || atomic_fetch_sub_explicit(&gen->n_refs, 1, memory_order_acq_rel) > 1) {
        return;
    }
    sr_config_fini(&gen->cfg);
    free(gen->listener_ids);
    free(gen->upstream_ids);
    free(gen->pools);
    free(gen);
}

int
sr_generation_prepare(struct sr_generation *gen, struct sr_shared *shared)
{
    const struct sr_config *cfg = &gen->cfg;
    char text[SR_ADDR_HOST_MAX + 16];
    size_t i;

    gen->listener_ids = calloc(cfg->n_listeners + 1, sizeof(uint32_t));
    gen->upstream_ids = calloc(cfg->n_upstreams + 1, sizeof(uint32_t));
    if (gen->listener_ids == NULL || gen->upstream_ids == NULL) {
        return UV_ENOMEM;
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        gen->listener_ids[i] =
            sr_metrics_names_intern(&shared->listener_names, cfg->listeners[i].name);
    }
    for (i = 0; i < cfg->n_upstreams; i++) {
        if (cfg->upstreams[i].pool != 0) {
            snprintf(text, sizeof(text), "%s", cfg->pools[cfg->upstreams[i].pool - 1].name);
        } else {
            sr_addr_format(&cfg->upstreams[i].addr, text, sizeof(text));
        }
        gen->upstream_ids[i] = sr_metrics_names_intern(&shared->upstream_names, text);
    }
    gen->pools = calloc(cfg->n_pools * shared->n_workers + 1, sizeof(*gen->pools));
    if (gen->pools == NULL) {
        return UV_ENOMEM;
    }
    for (i = 0; i < cfg->n_pools * shared->n_workers; i++) {
        const struct sr_pool_config *pc = &cfg->pools[i % cfg->n_pools];
        char ids[SR_POOL_MAX_SERVERS][SR_ADDR_HOST_MAX + 16];
        const char *id_ptrs[SR_POOL_MAX_SERVERS];
        struct sr_pool_params params;
        size_t j;

        for (j = 0; j < pc->n_servers; j++) {
            sr_addr_format(&pc->servers[j], ids[j], sizeof(ids[j]));
            id_ptrs[j] = ids[j];
        }
        memset(&params, 0, sizeof(params));
        params.balance = pc->balance;
        params.fail_max = SR_POOL_FAIL_MAX_DEFAULT;
        params.fail_timeout_ms = SR_POOL_FAIL_TIMEOUT_MS_DEFAULT;
        params.seed = uv_hrtime() ^ (uint64_t)(uintptr_t)gen ^ ((uint64_t)i << 32);
        if (sr_pool_init(&gen->pools[i], &params, id_ptrs, pc->n_servers) != SR_POOL_OK) {
            return UV_EINVAL;
        }
    }
    return 0;
}

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
    info.listeners = &servers[0]->shared->listener_names;
    info.upstreams = &servers[0]->shared->upstream_names;
    return sr_metrics_format(out, len, workers, i, &info);
}

int
sr_shared_init(struct sr_shared *shared, size_t n_workers, FILE *access_log)
{
    uv_timeval64_t tv;

    memset(shared, 0, sizeof(*shared));
    atomic_store(&shared->handover_fd, -1);
    shared->n_workers = n_workers;
    shared->access_log = access_log;
    atomic_store(&shared->is_logging, access_log != NULL);
    if (uv_gettimeofday(&tv) == 0) {
        shared->start_time_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    }
    if (uv_mutex_init(&shared->lock) != 0) {
        return UV_ENOMEM;
    }
    shared->per_ip = sr_ipcount_new();
    shared->quic = sr_quic_shared_new(); /* QUIC hook: the flow limits */
    if (shared->per_ip == NULL || shared->quic == NULL ||
        sr_metrics_names_init(&shared->listener_names, SR_METRICS_LISTENERS_MAX) != 0 ||
        sr_metrics_names_init(&shared->upstream_names, SR_METRICS_UPSTREAMS_MAX) != 0) {
        return UV_ENOMEM;
    }
    return 0;
}

void
sr_shared_fini(struct sr_shared *shared)
{
    sr_ipcount_free(shared->per_ip);
    sr_quic_shared_free(shared->quic); /* QUIC hook */
    free(shared->lcounts);
    sr_metrics_names_fini(&shared->listener_names);
    sr_metrics_names_fini(&shared->upstream_names);
    uv_mutex_destroy(&shared->lock);
    memset(shared, 0, sizeof(*shared));
}

void
sr_shared_log(struct sr_shared *shared, const char *line, size_t len)
{
    uv_mutex_lock(&shared->lock);
    if (shared->access_log != NULL) {
        fwrite(line, 1, len, shared->access_log);
        fflush(shared->access_log);
    }
    uv_mutex_unlock(&shared->lock);
}

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
    /* QUIC hook: its flows and sockets count too, and its timers close with ours. */
    if (server->n_conns == 0 && server->n_listeners_open == 0 && sr_quic_is_stopped(server->quic)) {
        server->is_stopped = true;
        sr_quic_close(server->quic);
        if (server->n_handed_over > 0) {
            sr_log_notice("upgrade: handed %llu open connection(s) over to the new process",
                          (unsigned long long)server->n_handed_over);
        }
        uv_close((uv_handle_t *)&server->drain_timer, NULL);
        uv_close((uv_handle_t *)&server->handover_timer, NULL);
        uv_close((uv_handle_t *)&server->trim_timer, NULL);
        uv_close((uv_handle_t *)&server->accept_timer, NULL);
        uv_close((uv_handle_t *)&server->deadline_timer, NULL);
        uv_close((uv_handle_t *)&server->reaper, NULL);
        sr_reactor_close(&server->reactor, NULL);
        if (server->on_stopped != NULL) {
            server->on_stopped(server);
        }
    }
}

/* --- Timeouts, the reaper, the peek buffer, setups ------------------------------------ */

static void on_deadline_timer(uv_timer_t *timer);

/* Keep the one timer set for the earliest deadline; libuv's timer start is a heap
 * operation, no system call, but skip it when nothing changed. */
static void
deadline_rearm(struct sr_server *server)
{
    struct sr_deadline *first = sr_deadline_first(&server->deadlines);
    uint64_t now;

    if (server->is_stopped) {
        return;
    }
    if (first == NULL) {
        if (server->deadline_armed_ms != UINT64_MAX) {
            uv_timer_stop(&server->deadline_timer);
            server->deadline_armed_ms = UINT64_MAX;
        }
        return;
    }
    if (first->due_ms == server->deadline_armed_ms) {
        return;
    }
    now = uv_now(server->loop);
    server->deadline_armed_ms = first->due_ms;
    uv_timer_start(&server->deadline_timer, on_deadline_timer,
                   first->due_ms > now ? first->due_ms - now : 0, 0);
}

static void
on_deadline_timer(uv_timer_t *timer)
{
    struct sr_server *server = timer->data;
    uint64_t now = uv_now(server->loop);
    struct sr_deadline *d;

    server->deadline_armed_ms = UINT64_MAX;
    while ((d = sr_deadline_first(&server->deadlines)) != NULL && d->due_ms <= now) {
        sr_deadline_clear(&server->deadlines, d);
        /* The connection sets a new deadline or closes. */
        sr__conn_on_deadline((struct sr_conn *)((char *)d - offsetof(struct sr_conn, deadline)));
    }
    deadline_rearm(server);
}

void
sr__server_deadline_set(struct sr_server *server, struct sr_deadline *d, uint64_t due_ms)
{
    if (sr_deadline_set(&server->deadlines, d, due_ms) != 0) {
        /* Out of memory for the heap: a connection without a timeout would be a leak;
         * the drain timer is our last line, so just say it. */
        sr_log_notice("out of memory for a timeout");
        return;
    }
    deadline_rearm(server);
}

void
sr__server_deadline_clear(struct sr_server *server, struct sr_deadline *d)
{
    if (d->index != SR_DEADLINE_NONE) {
        sr_deadline_clear(&server->deadlines, d);
        deadline_rearm(server);
    }
}

static void
on_reap(uv_idle_t *idle)
{
    struct sr_server *server = idle->data;
    struct sr_conn *conn;

    uv_idle_stop(idle);
    while ((conn = server->dead) != NULL) {
        server->dead = conn->next_dead;
        sr__conn_free(conn); /* may stop the server: the last use of it here */
    }
}

void
sr__server_conn_dead(struct sr_server *server, struct sr_conn *conn)
{
    if (server->dead == NULL) {
        uv_idle_start(&server->reaper, on_reap);
    }
    conn->next_dead = server->dead;
    server->dead = conn;
}

uint8_t *
sr__server_scratch(struct sr_server *server, size_t len)
{
    uint8_t *p;

    if (len > server->scratch_cap) {
        p = realloc(server->scratch, len);
        if (p == NULL) {
            return NULL;
        }
        server->scratch = p;
        server->scratch_cap = len;
    }
    return server->scratch;
}

#define SR_SETUP_KEEP_MAX 64

struct sr_conn_setup *
sr__setup_get(struct sr_server *server)
{
    struct sr_conn_setup *setup = server->setup_free;

    if (setup == NULL) {
        return calloc(1, sizeof(*setup));
    }
    server->setup_free = *(void **)setup;
    server->n_setup_free--;
    memset(setup, 0, sizeof(*setup));
    return setup;
}

void
sr__setup_put(struct sr_server *server, struct sr_conn_setup *setup)
{
    if (server->n_setup_free >= SR_SETUP_KEEP_MAX) {
        free(setup);
        return;
    }
    *(void **)setup = server->setup_free;
    server->setup_free = setup;
    server->n_setup_free++;
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

/* The count for listener <name>, added on first use. NULL when out of memory. Called
 * with the shared lock held. */
static struct sr_listener_count *
listener_count(struct sr_shared *shared, const char *name, size_t *index)
{
    struct sr_listener_count *grown;
    size_t i;

    for (i = 0; i < shared->n_lcounts; i++) {
        if (strcmp(shared->lcounts[i].name, name) == 0) {
            *index = i;
            return &shared->lcounts[i];
        }
    }
    grown = realloc(shared->lcounts, (shared->n_lcounts + 1) * sizeof(*grown));
    if (grown == NULL) {
        return NULL;
    }
    shared->lcounts = grown;
    *index = shared->n_lcounts++;
    snprintf(grown[*index].name, sizeof(grown[*index].name), "%s", name);
    grown[*index].n_conns = 0;
    return &grown[*index];
}

/* At most one line a second, however many connections are refused: a flood must not
 * flood the log, nor slow anything else down. Called with the shared lock held. */
static const char *
server_refuse(struct sr_server *server, const struct sr_conn *conn, enum sr_metrics_limit kind)
{
    static const char *const names[SR_METRICS_N_LIMITS] = {
        "max_connections", "listener_max_connections", "max_connections_per_ip"};
    struct sr_shared *shared = server->shared;
    uint64_t now = uv_hrtime() / 1000000;
    size_t i;

    shared->n_refused[kind]++;
    sr_metrics_limit_rejected(&server->metrics, conn->lid, kind);
    if (now - shared->refusal_notice_ms >= 1000 || shared->refusal_notice_ms == 0) {
        uint64_t n[SR_METRICS_N_LIMITS];

        for (i = 0; i < SR_METRICS_N_LIMITS; i++) {
            n[i] = shared->n_refused[i] - shared->n_refused_noticed[i];
            shared->n_refused_noticed[i] = shared->n_refused[i];
        }
        shared->refusal_notice_ms = now;
        sr_log_notice("refused over limits since the last notice: %llu max_connections, "
                      "%llu listener max_connections, %llu max_connections_per_ip",
                      (unsigned long long)n[0], (unsigned long long)n[1], (unsigned long long)n[2]);
    }
    return names[kind];
}

static const char *
server_count(struct sr_server *server, struct sr_conn *conn, const struct sockaddr *peer,
             bool is_refusable)
{
    const struct sr_config *cfg = &conn->gen->cfg;
    struct sr_shared *shared = server->shared;
    struct sr_listener_count *lc;
    const char *limit = NULL;
    uint32_t n_from_ip = 0;
    size_t index;

    /* Count first, then compare: the counts are released with the connection whatever
     * happens, and they stay right across reloads that change the limits. One lock for
     * all workers: the limits are per process, not per thread. */
    uv_mutex_lock(&shared->lock);
    conn->is_shared_counted = true;
    shared->n_conns++;
    lc = listener_count(shared, conn->lcfg->name, &index);
    if (lc != NULL) {
        lc->n_conns++;
        conn->lcount = index + 1;
    }
    /* Behind proxy_protocol = accept the peer is the load balancer: the client is counted
     * once its PROXY header names it (sr__server_admit_client). A connection adopted in an
     * upgrade comes with its client's address already. */
    if ((!conn->lcfg->is_proxy_accepted || !is_refusable) &&
        sr_ipkey_from_sockaddr(&conn->ipkey, peer) == 0) {
        n_from_ip = sr_ipcount_add(shared->per_ip, &conn->ipkey);
        conn->has_ipkey = n_from_ip > 0;
    }
    if (!is_refusable) {
        /* counted only */
    } else if (cfg->max_connections != 0 && shared->n_conns > cfg->max_connections) {
        limit = server_refuse(server, conn, SR_METRICS_LIMIT_GLOBAL);
    } else if (conn->lcfg->max_connections != 0 && lc != NULL &&
               lc->n_conns > conn->lcfg->max_connections) {
        limit = server_refuse(server, conn, SR_METRICS_LIMIT_LISTENER);
    } else if (cfg->max_connections_per_ip != 0 && n_from_ip > cfg->max_connections_per_ip) {
        limit = server_refuse(server, conn, SR_METRICS_LIMIT_PER_IP);
    }
    uv_mutex_unlock(&shared->lock);
    return limit;
}

const char *
sr__server_admit(struct sr_server *server, struct sr_conn *conn, const struct sockaddr *peer)
{
    return server_count(server, conn, peer, true);
}

void
sr__server_count(struct sr_server *server, struct sr_conn *conn, const struct sockaddr *peer)
{
    (void)server_count(server, conn, peer, false);
}

const char *
sr__server_admit_client(struct sr_server *server, struct sr_conn *conn,
                        const struct sockaddr *client)
{
    const struct sr_config *cfg = &conn->gen->cfg;
    struct sr_shared *shared = server->shared;
    const char *limit = NULL;
    uint32_t n_from_ip;

    if (conn->has_ipkey || sr_ipkey_from_sockaddr(&conn->ipkey, client) != 0) {
        return NULL;
    }
    uv_mutex_lock(&shared->lock);
    n_from_ip = sr_ipcount_add(shared->per_ip, &conn->ipkey);
    conn->has_ipkey = n_from_ip > 0;
    if (cfg->max_connections_per_ip != 0 && n_from_ip > cfg->max_connections_per_ip) {
        limit = server_refuse(server, conn, SR_METRICS_LIMIT_PER_IP);
    }
    uv_mutex_unlock(&shared->lock);
    return limit;
}

/* glibc keeps freed heap pages that are not at the top of the heap: after a burst of
 * connections (a flood, a reconnect storm) the daemon would stay at its peak size although
 * the memory is free. Once closes stop coming for a moment, give it back. Under steady
 * traffic the timer keeps being pushed back and nothing is trimmed: that memory is in use. */
#define SR_TRIM_AFTER_CLOSES 256
#define SR_TRIM_QUIET_MS     250

static void
on_trim(uv_timer_t *timer)
{
    struct sr_server *server = timer->data;

    if (server->n_closed_since_trim >= SR_TRIM_AFTER_CLOSES) {
        malloc_trim(0);
    }
    server->n_closed_since_trim = 0;
}

void
sr__server_conn_gone(struct sr_server *server, struct sr_conn *conn)
{
    if (++server->n_closed_since_trim >= SR_TRIM_AFTER_CLOSES / 4 && !server->is_stopped) {
        uv_timer_start(&server->trim_timer, on_trim, SR_TRIM_QUIET_MS, 0);
    }
    if (conn->is_shared_counted) {
        uv_mutex_lock(&server->shared->lock);
        server->shared->n_conns--;
        if (conn->lcount != 0) {
            server->shared->lcounts[conn->lcount - 1].n_conns--;
        }
        if (conn->has_ipkey) {
            sr_ipcount_remove(server->shared->per_ip, &conn->ipkey);
        }
        uv_mutex_unlock(&server->shared->lock);
    }
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
        if (sr_watch_set(&server->reactor, &listener->watch, EPOLLIN) == 0) {
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

    sr_watch_clear(&server->reactor, &listener->watch);
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
    int end = err;

    if ((err == EMFILE || err == ENFILE) && server->spare_fd >= 0) {
        end = listener_shed(listener, &n_shed);
    }
    if (end != EAGAIN && (end != 0 || server->spare_fd < 0)) {
        listener_pause(listener);
        n_paused = 1;
    }
    uv_mutex_lock(&shared->lock);
    shared->n_shed += n_shed;
    shared->n_accept_paused += n_paused;
    if (shared->accept_notice_ms == 0 || now - shared->accept_notice_ms >= SR_ACCEPT_NOTICE_MS) {
        n_shed = shared->n_shed - shared->n_shed_noticed;
        n_paused = shared->n_accept_paused - shared->n_accept_paused_noticed;
        shared->n_shed_noticed = shared->n_shed;
        shared->n_accept_paused_noticed = shared->n_accept_paused;
        shared->accept_notice_ms = now;
        sr_log_notice("listener %s: accept on %s failed: %s; since the last notice %llu "
                      "queued connection(s) closed unread, accepting paused %llu time(s) "
                      "for %d ms",
                      listener->cfg->name, listener->addr_text, strerror(err),
                      (unsigned long long)n_shed, (unsigned long long)n_paused, SR_ACCEPT_RETRY_MS);
    }
    uv_mutex_unlock(&shared->lock);
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
        if (sr_conn_accept(listener, fd, (const struct sockaddr *)&peer) != 0) {
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
    sr_watch_clear(&server->reactor, &listener->watch);
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
        rc = sr_watch_set(&server->reactor, &listener->watch, EPOLLIN);
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
    sr__format_sockaddr((const struct sockaddr *)&ss, listener->addr_text,
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

    sr_log_notice("drain timeout: closing %zu open connection(s)", server->n_conns);
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
    uv_timer_init(loop, &server->trim_timer);
    server->trim_timer.data = server;
    uv_timer_init(loop, &server->accept_timer);
    server->accept_timer.data = server;
    uv_timer_init(loop, &server->deadline_timer);
    server->deadline_timer.data = server;
    server->deadline_armed_ms = UINT64_MAX;
    uv_idle_init(loop, &server->reaper);
    server->reaper.data = server;
    uv_unref((uv_handle_t *)&server->reaper);
    server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    server->pipes.keep_max = pipe_keep_max();
    rc = sr_reactor_init(&server->reactor, loop);
    if (rc != 0) {
        sr_log_notice("cannot create the event set: %s", uv_strerror(rc));
        server->listeners = NULL;
        sr_server_drain(server);
        return rc;
    }
    server->reactor.data = server;
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
                                    .reactor = &server->reactor,
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
    for (conn = server->conns; conn != NULL; conn = next) {
        next = conn->next; /* closing does not unlink; freeing (later) does */
        rc = sr__conn_hand_over(conn, sock);
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
        for (conn = server->conns; conn != NULL; conn = next) {
            next = conn->next; /* closing does not unlink; freeing (later) does */
            sr_conn_close(conn, "drained");
        }
        sr_quic_drain(server->quic); /* QUIC hook: its flows too */
        return;
    }
    server->is_draining = true;
    sr_quic_drain(server->quic); /* QUIC hook: no new flow; open ones go on (see quicflow.h) */
    sr_health_stop(&server->health);
    while (server->listeners != NULL) {
        listener_close(server->listeners);
    }
    if (server->n_conns > 0) {
        sr_log_notice("draining %zu open connection(s) for up to %llu ms", server->n_conns,
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

void
sr_server_fini(struct sr_server *server)
{
    assert(server->n_conns == 0);
    assert(server->listeners == NULL);
    sr_quic_free(server->quic); /* QUIC hook */
    server->quic = NULL;
    sr_generation_unref(server->gen);
    server->gen = NULL;
    sr_metrics_fini(&server->metrics);
    assert(server->pool.n_out == 0);
    pool_fini(&server->pool);
    assert(server->dead == NULL);
    sr_deadline_heap_fini(&server->deadlines);
    free(server->scratch);
    server->scratch = NULL;
    while (server->setup_free != NULL) {
        void *next = *(void **)server->setup_free;

        free(server->setup_free);
        server->setup_free = next;
    }
    if (server->spare_fd >= 0) {
        close(server->spare_fd);
        server->spare_fd = -1;
    }
    while (server->pipes.n_free > 0) {
        server->pipes.n_free--;
        close(server->pipes.fds[server->pipes.n_free][0]);
        close(server->pipes.fds[server->pipes.n_free][1]);
    }
}
