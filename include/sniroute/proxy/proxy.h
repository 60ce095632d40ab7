/* SPDX-License-Identifier: MIT */
/* The server: listening sockets, the set of open connections, the relay buffer pool, the
 * reload and the drain on shutdown. One server runs on one libuv loop. A config is never
 * changed once loaded: a reload brings a new generation, and each connection keeps the
 * one it was accepted under. */
#ifndef SR_PROXY_H
#define SR_PROXY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "sniroute/config/config.h"
#include "sniroute/proxy/health.h"
#include "sniroute/core/ipcount.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/config/pool.h"
#include "sniroute/core/deadline.h"
#include "sniroute/core/reactor.h"

struct sr_conn;
struct sr_inherited;
struct sr_quic;
struct sr_quic_shared;
struct sr_server;

/* "[" + INET6_ADDRSTRLEN (46, NUL included) + "]:65535" */
#define SR_SOCKADDR_TEXT_MAX 56

/* While draining after an upgrade: how often connections busy at the last look are
 * looked at again. */
#define SR_HANDOVER_SWEEP_MS 100
/* ... and how soon after the handoff socket was full (the new process is reading). */
#define SR_HANDOVER_RETRY_MS 5

/* workers = N: at most this many loops, one thread each. */
#define SR_WORKERS_MAX 64

/* Metric rows: listener names and upstream addresses beyond these share an "_other" row. */
#define SR_METRICS_LISTENERS_MAX 256
#define SR_METRICS_UPSTREAMS_MAX 1024

/* A loaded, valid config with a reference count: the server holds the current one and
 * each connection the one it was accepted under, so a reload never changes the rules, or
 * frees the strings, under an open connection. */
struct sr_generation {
    struct sr_config cfg;
    uint64_t id;           /* 1 for the config at start, then one more per successful reload */
    _Atomic size_t n_refs; /* workers' connections hold references from several threads */
    /* Metric row ids (sr_metrics_names) of cfg.listeners[i] and cfg.upstreams[i], set when
     * the server takes the generation. */
    uint32_t *listener_ids;
    uint32_t *upstream_ids;
    /* The runtime state of cfg.pools[i] (choice, passive health) for worker w at
     * pools[w * cfg.n_pools + i]: a pool is not shared between threads. Per generation,
     * so a reload starts every pool fresh. */
    struct sr_pool *pools;
};

/* Allocate a generation and load <path> into it; every problem goes to <on_error>.
 * Returns NULL with <*n_errors> set when the config is not valid (or memory ran out). */
struct sr_generation *sr_generation_load(const char *path, sr_config_error_fn on_error, void *ctx,
                                         size_t *n_errors);

struct sr_generation *sr_generation_ref(struct sr_generation *gen);

/* Drop a reference; the last one frees the config. NULL is accepted. */
void sr_generation_unref(struct sr_generation *gen);

/* One bound, listening socket of a [listener] section. Listening sockets are kept across
 * reloads when the same address is still configured, so no connection is refused. */
struct sr_listener {
    struct sr_watch watch; /* the listening socket, in the server's reactor */
    struct sr_server *server;
    struct sr_listener *next;
    struct sr_addr addr;                  /* as configured: the key across reloads */
    const struct sr_listener_config *cfg; /* in the server's current generation */
    bool is_kept;                         /* reload bookkeeping */
    bool is_paused; /* out of the epoll set until the server's accept_timer (see proxy.c) */
    char addr_text[SR_SOCKADDR_TEXT_MAX]; /* as bound, port resolved ("127.0.0.1:40123") */
};

/* Relay buffers are taken only while a read or write is in flight and returned after, so an
 * idle connection holds none. The pool keeps a bounded number for reuse. */
struct sr_buf_pool {
    void *free_list; /* singly linked through the first bytes of each free buffer */
    size_t n_free;
    size_t n_out; /* handed out and not yet returned */
};

#define SR_RELAY_BUF_SIZE 16384
#define SR_POOL_KEEP_MAX  256

/* Kernel pipes for splicing, kept for reuse like buffers. Each costs two descriptors, so
 * the pool keeps at most one pipe per 64 descriptors of RLIMIT_NOFILE (and never more than
 * SR_PIPE_KEEP_MAX): under a tight limit, descriptors go to clients first. */
#define SR_PIPE_KEEP_MAX 128

struct sr_pipe_pool {
    int fds[SR_PIPE_KEEP_MAX][2];
    size_t n_free;
    size_t keep_max;
};

struct sr_shared;

/* Give <gen>'s listeners and upstreams their metric row ids and set up its pools for
 * <shared>'s workers. Call on the thread that owns <shared> before any server takes <gen>.
 * Returns 0 or a UV_E* code. */
int sr_generation_prepare(struct sr_generation *gen, struct sr_shared *shared);

/* Open connections per [listener] name, kept across reloads (a name's count carries over
 * to the section of the same name in the new config). */
struct sr_listener_count {
    char name[SR_CONFIG_NAME_MAX + 1];
    size_t n_conns;
};

/* What the workers of one process share: owned by main, outlives every server. The lock
 * guards the limits and the access log (a connection takes it at accept, at its end, and
 * to write its line); the names are written only by main, between loads. */
struct sr_shared {
    uv_mutex_t lock;
    size_t n_workers;
    FILE *access_log;        /* NULL: access log off (lock) */
    _Atomic bool is_logging; /* access_log != NULL, readable without the lock */
    size_t n_conns;          /* open connections, all workers: [sniroute] max_connections */
    struct sr_listener_count *lcounts;
    size_t n_lcounts;
    struct sr_ipcount *per_ip;                       /* open connections per client address */
    uint64_t n_refused[SR_METRICS_N_LIMITS];         /* by enum sr_metrics_limit */
    uint64_t n_refused_noticed[SR_METRICS_N_LIMITS]; /* as of the last notice */
    uint64_t refusal_notice_ms;                      /* uv_hrtime() / 1e6 of the last notice */
    /* Accept stuck (out of descriptors or memory), all workers: queued connections
     * closed unread, listener pauses, and the same as of the last notice. */
    uint64_t n_shed;
    uint64_t n_accept_paused;
    uint64_t n_shed_noticed;
    uint64_t n_accept_paused_noticed;
    uint64_t accept_notice_ms; /* uv_hrtime() / 1e6 of the last notice */
    struct sr_metrics_names listener_names;
    struct sr_metrics_names upstream_names;
    uint64_t start_time_ms;
    /* Binary upgrade: sockets handed over by the old process, taken before binding
     * (owned by main; NULL when not an upgrade). */
    struct sr_inherited *inherited;
    /* Binary upgrade, old side: the socket idle connections are handed to the new process
     * over (upgrade.h), set by main before it asks the workers to drain and closed by main
     * once they have stopped; -1: none. Broken: a send failed (the new process is gone),
     * so every worker drains what it still has. */
    _Atomic int handover_fd;
    _Atomic bool is_handover_broken;
    /* QUIC flows of every worker, for their limits (quicflow.h). */
    struct sr_quic_shared *quic;
};

/* Set up (0 or a UV_E* code) and free what <shared> holds. */
int sr_shared_init(struct sr_shared *shared, size_t n_workers, FILE *access_log);
void sr_shared_fini(struct sr_shared *shared);

/* Write one access-log line, whole, under the shared lock. */
void sr_shared_log(struct sr_shared *shared, const char *line, size_t len);

struct sr_server {
    uv_loop_t *loop;
    struct sr_shared *shared;
    size_t worker;             /* 0 .. shared->n_workers - 1 */
    bool is_reuseport;         /* several workers: SO_REUSEPORT listening sockets */
    struct sr_generation *gen; /* the current config; holds one reference */

    struct sr_listener *listeners; /* open listening sockets, not yet closing */
    size_t n_listeners_open;       /* listener handles not yet closed */

    struct sr_conn *conns; /* every open connection, for the drain */
    size_t n_conns;
    uint64_t n_accepted;
    uint64_t n_reloads_ok;
    uint64_t n_reloads_failed;

    /* Metrics: this server's registry (one writer: this loop); row names are in shared. */
    struct sr_metrics metrics;

    /* Called once when the server has closed everything of its own after a drain (main
     * stops the admin endpoint then, so the loop can end). */
    void (*on_stopped)(struct sr_server *server);
    void *data;

    struct sr_health health; /* active checks of the current generation's pools */

    struct sr_buf_pool pool;
    struct sr_pipe_pool pipes;

    /* Every socket of the connections and the listeners is watched here. */
    struct sr_reactor reactor;
    /* The connections' timeouts, and one timer set for the earliest. */
    struct sr_deadline_heap deadlines;
    uv_timer_t deadline_timer;
    uint64_t deadline_armed_ms; /* what the timer is set for; UINT64_MAX: not set */
    /* Closed connections, freed once the current batch of events is done (an event for
     * one of them may still be in it), by an idle handle: it runs before the next poll and
     * keeps that poll from blocking while something waits to be freed. */
    struct sr_conn *dead;
    uv_idle_t reaper;
    /* Where hellos are peeked into (MSG_PEEK): one buffer per worker, used and done with
     * within one callback. */
    uint8_t *scratch;
    size_t scratch_cap;
    /* Connection setups kept for reuse (singly linked through their first bytes). */
    void *setup_free;
    size_t n_setup_free;
    /* Out of descriptors: this one is closed to accept and drop what waits, so clients
     * get a close rather than a hang (libuv's trick); -1 while another thread holds the
     * descriptor number it had. Then, or when accept fails for want of kernel memory, the
     * listener is paused instead (out of the epoll set) and watched again by accept_timer:
     * a wakeup that can take nothing from the queue is never followed by another at once. */
    int spare_fd;
    uv_timer_t accept_timer;

    /* protocol = quic listeners: their UDP sockets and flows (quicflow.h), hooked in at
     * start, reload (server_apply), drain, stop and fini. */
    struct sr_quic *quic;

    uv_timer_t drain_timer;
    /* While draining after an upgrade: hand idle connections over (busy ones later). */
    uv_timer_t handover_timer;
    uint64_t n_handed_over;
    uv_timer_t trim_timer; /* returns freed heap to the kernel after a burst */
    size_t n_closed_since_trim;
    bool is_draining;
    bool is_stopped; /* every handle of ours is closed or closing */
};

/* Bind and listen on every address of every listener in <gen>'s config (prepared with
 * sr_generation_prepare), taking over the caller's reference to <gen>, as worker
 * <worker> of <shared>. <server> must be zeroed before (with on_stopped and data set, if
 * wanted); print one "listening on ADDR (listener NAME)" notice per socket. Returns 0, or
 * a negative UV_E* code after logging which address failed (the server is then already
 * stopped: run the loop to let handles close). */
int sr_server_start(struct sr_server *server, uv_loop_t *loop, struct sr_shared *shared,
                    size_t worker, struct sr_generation *gen);

/* The Prometheus exposition of the metrics of <n> servers (summed), in a new heap buffer
 * (*<out>, *<len>) the caller frees. Call on the thread that owns the shared names.
 * Returns 0 or a negative errno. */
int sr_servers_metrics(struct sr_server *const *servers, size_t n, uint64_t generation,
                       uint64_t reloads_ok, uint64_t reloads_failed, char **out, size_t *len);

/* One listening socket of a server: a new descriptor (close-on-exec; the caller closes
 * it) and the address it is bound to. */
struct sr_listen_fd {
    int fd;
    char addr_text[SR_SOCKADDR_TEXT_MAX];
};

/* Duplicates of <server>'s listening sockets, at most <cap> into <out>; returns how many.
 * Call on the server's loop thread. */
size_t sr_server_listen_fds(const struct sr_server *server, struct sr_listen_fd *out, size_t cap);

/* Switch to <next> (taking over the caller's reference): listening sockets whose address
 * is still configured are kept, new ones are bound, the rest are closed; new connections
 * use the new routes at once, open ones keep theirs. If a new address cannot be bound,
 * nothing changes and a negative UV_E* code is returned (the failure is logged). */
int sr_server_reload(struct sr_server *server, struct sr_generation *next);

/* Stop accepting and let open connections finish for the config's drain_timeout, then
 * close what is left. After a binary upgrade (shared->handover_fd set), idle connections
 * are handed to the new process at once and busy ones as soon as they are idle (checked
 * every SR_HANDOVER_SWEEP_MS), so the drain usually ends within a moment. When everything
 * is closed the loop has nothing left of ours and uv_run returns. Calling it again closes
 * all connections at once. */
void sr_server_drain(struct sr_server *server);

/* Free what the server still holds (pools, the config); call after uv_run has returned. */
void sr_server_fini(struct sr_server *server);

/* Relay buffer pool, shared with the connections. sr__pool_get returns NULL when out of
 * memory. */
void *sr__pool_get(struct sr_server *server);
void sr__pool_put(struct sr_server *server, void *buf);

/* Format an IPv4 or IPv6 socket address as "ip:port" or "[ip]:port" into <out>; room for
 * SR_SOCKADDR_TEXT_MAX bytes is always enough. */
void sr__format_sockaddr(const struct sockaddr *sa, char *out, size_t cap);

/* An empty non-blocking pipe in <fds> (read end, write end): 0, or a UV_E* code when none
 * can be had (descriptors exhausted). sr__pipe_put takes back an empty one. */
int sr__pipe_get(struct sr_server *server, int fds[2]);
void sr__pipe_put(struct sr_server *server, const int fds[2]);

/* Count a just-accepted <conn> from <peer> (zeroed if unknown) against the limits of its
 * generation. Returns NULL if it may proceed, or the name of the limit it is over (the
 * caller closes it at once; the refusal is counted and summarized in a rate-limited
 * notice). Counts are released by sr__server_conn_gone. */
const char *sr__server_admit(struct sr_server *server, struct sr_conn *conn,
                             const struct sockaddr *peer);

/* proxy_protocol = accept: count the client a trusted PROXY header names against
 * max_connections_per_ip (the load balancer's own address is not counted at accept).
 * Returns NULL, or the limit's name (the caller closes the connection). */
const char *sr__server_admit_client(struct sr_server *server, struct sr_conn *conn,
                                    const struct sockaddr *client);

/* Count <conn> (adopted from the old process of an upgrade: already open) in the limits
 * like sr__server_admit, but never refuse it. Released by sr__server_conn_gone. */
void sr__server_count(struct sr_server *server, struct sr_conn *conn, const struct sockaddr *peer);

/* A connection joins the server's list at accept and leaves it just before it is freed. */
void sr__server_conn_add(struct sr_server *server, struct sr_conn *conn);
void sr__server_conn_gone(struct sr_server *server, struct sr_conn *conn);

/* A closed connection: freed after the current batch of events. */
void sr__server_conn_dead(struct sr_server *server, struct sr_conn *conn);

/* Set or clear a connection's timeout (absolute, in uv_now() milliseconds). */
void sr__server_deadline_set(struct sr_server *server, struct sr_deadline *d, uint64_t due_ms);
void sr__server_deadline_clear(struct sr_server *server, struct sr_deadline *d);

/* The worker's peek buffer, at least <len> bytes; NULL when out of memory. */
uint8_t *sr__server_scratch(struct sr_server *server, size_t len);

/* A zeroed connection setup, from the server's cache or the heap; NULL when out of
 * memory. sr__setup_put takes it back. */
struct sr_conn_setup *sr__setup_get(struct sr_server *server);
void sr__setup_put(struct sr_server *server, struct sr_conn_setup *setup);

#endif
