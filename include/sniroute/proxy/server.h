/* SPDX-License-Identifier: MIT */
/* The server of one worker: listening sockets and accept, the set of open connections,
 * the worker's resources, the reload and the drain on shutdown. One server runs on one
 * libuv loop. A config is never changed once loaded: a reload brings a new generation
 * (core/generation.h), and each connection keeps the one it was accepted under. */
#ifndef SR_SERVER_H
#define SR_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "sniroute/config/config.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/reactor.h"
#include "sniroute/core/resources.h"
#include "sniroute/core/shared.h"
#include "sniroute/core/upgrade_msg.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/proxy/conn_types.h"
#include "sniroute/proxy/health.h"

struct sr_quic;
struct sr_server;

/* While draining after an upgrade: how often connections busy at the last look are
 * looked at again. */
#define SR_HANDOVER_SWEEP_MS 100
/* ... and how soon after the handoff socket was full (the new process is reading). */
#define SR_HANDOVER_RETRY_MS 5

/* One bound, listening socket of a [listener] section. Listening sockets are kept across
 * reloads when the same address is still configured, so no connection is refused. */
struct sr_listener {
    struct sr_watch watch; /* the listening socket, in the server's reactor */
    struct sr_server *server;
    struct sr_listener *next;
    struct sr_addr addr;                  /* as configured: the key across reloads */
    const struct sr_listener_config *cfg; /* in the server's current generation */
    bool is_kept;                         /* reload bookkeeping */
    bool is_paused; /* out of the epoll set until the server's accept_timer (see server.c) */
    char addr_text[SR_SOCKADDR_TEXT_MAX]; /* as bound, port resolved ("127.0.0.1:40123") */
};

struct sr_server {
    uv_loop_t *loop;
    struct sr_shared *shared;
    size_t worker;             /* 0 .. shared->n_workers - 1 */
    bool is_reuseport;         /* several workers: SO_REUSEPORT listening sockets */
    struct sr_generation *gen; /* the current config; holds one reference */

    struct sr_listener *listeners; /* open listening sockets, not yet closing */
    size_t n_listeners_open;       /* listener handles not yet closed */

    struct sr_conn_set conns; /* every open connection, for the drain */
    uint64_t n_reloads_ok;
    uint64_t n_reloads_failed;

    /* Metrics: this server's registry (one writer: this loop); row names are in shared. */
    struct sr_metrics metrics;

    /* Called once when the server has closed everything of its own after a drain (main
     * stops the admin endpoint then, so the loop can end). */
    void (*on_stopped)(struct sr_server *server);
    void *data;

    struct sr_health health; /* active checks of the current generation's pools */

    /* The loop's reactor, deadlines, buffers and pipes, scratch buffer and setup cache:
     * what the connections borrow. */
    struct sr_resources res;
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

/* Binary upgrade, new side: relay the connection <rec> describes, taken over with its
 * two descriptors, as one of <server>'s under its current config (see sr_conn_adopt).
 * Returns 0 or a UV_E* code (logged; both descriptors closed). */
int sr_server_adopt(struct sr_server *server, const struct sr_upgrade_conn *rec, int client_fd,
                    int backend_fd, uint32_t uid);

#endif
