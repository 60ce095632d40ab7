/* SPDX-License-Identifier: MIT */
/* Workers: N servers, each on its own libuv loop and thread (one worker runs on the main
 * loop, no thread). Each binds its own listening sockets (SO_REUSEPORT when N > 1), so a
 * connection never crosses threads. The main thread hands them new generations and drain
 * requests through a mailbox and an async handle, and learns when all have stopped. */
#ifndef SR_WORKER_H
#define SR_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sniroute/proxy/server.h"
#include "sniroute/core/upgrade_msg.h"

struct sr_workers;

/* A connection taken over from the old process of an upgrade, on its way to a worker. */
struct sr_adoption {
    struct sr_adoption *next;
    struct sr_upgrade_conn rec;
    int client_fd;
    int backend_fd;
    uint32_t uid; /* the upstream's metrics row, or UINT32_MAX */
};

struct sr_worker {
    struct sr_workers *set;
    size_t index;
    bool has_thread;
    uv_thread_t thread;
    uv_loop_t own_loop;
    uv_loop_t *loop;
    struct sr_server server;
    uv_async_t wake;              /* the mailbox has something */
    struct sr_generation *start;  /* the generation to start with (a reference) */
    struct sr_generation *pending; /* a reload waiting for this worker (set->lock) */
    unsigned n_drains_asked;       /* set->lock */
    unsigned n_drains_done;        /* this worker's own */
    bool is_open;   /* wake is initialized (set->lock) */
    bool is_closed; /* wake is closing: send nothing more (set->lock) */
    bool is_collecting; /* asked for its listening sockets (set->lock) */
    struct sr_adoption *adoptions; /* connections to take over (set->lock) */
    uv_sem_t started;
    int start_rc;
};

struct sr_workers {
    struct sr_shared *shared;
    uv_loop_t *main_loop;
    uv_mutex_t lock; /* the workers' mailboxes */
    struct sr_worker *workers;
    size_t n;
    uv_async_t finished;      /* on the main loop: a worker thread has finished */
    _Atomic size_t n_finished; /* workers whose server has stopped for good */
    bool is_all_stopped;
    /* sr_workers_listen_fds in progress (lock): where the workers put their sockets. */
    uv_cond_t collected;
    struct sr_listen_fd *fds;
    size_t fds_cap;
    size_t n_fds;
    size_t n_collecting;
    size_t next_adopt; /* round robin over the workers for taken-over connections (lock) */
    /* Called on the main loop once every worker has stopped. */
    void (*on_all_stopped)(struct sr_workers *set);
    void *data;
};

/* Start <shared>->n_workers workers on <gen> (prepared; the caller keeps its reference)
 * and wait until each has bound its sockets. Returns 0, or the first worker's UV_E* code
 * (every worker is then asked to drain: run the main loop until on_all_stopped). */
int
sr_workers_start(struct sr_workers *set, uv_loop_t *main_loop, struct sr_shared *shared,
                 struct sr_generation *gen);

/* Hand <gen> (prepared, with its id set; the caller keeps its reference) to every worker:
 * each switches its server to it on its own loop. */
void
sr_workers_reload(struct sr_workers *set, struct sr_generation *gen);

/* Ask every worker to drain (a second call: to close everything now). */
void
sr_workers_drain(struct sr_workers *set);

/* Duplicates of every worker's listening sockets (for a binary upgrade), at most <cap>
 * into <out>; each worker makes its own on its own loop, so this blocks the main thread
 * until every running worker has answered (one pass of its loop). Returns how many. */
size_t
sr_workers_listen_fds(struct sr_workers *set, struct sr_listen_fd *out, size_t cap);

/* Hand a connection taken over from the old process of an upgrade (<rec>, its two
 * descriptors, which the workers own from here, and its upstream's metrics row <uid>) to
 * the next worker in turn, through its mailbox. When no worker runs any more, or out of
 * memory, the descriptors are closed (logged). */
void
sr_workers_adopt(struct sr_workers *set, const struct sr_upgrade_conn *rec, int client_fd,
                 int backend_fd, uint32_t uid);

/* The workers' servers, for metrics (read-only from the main thread). */
size_t
sr_workers_servers(struct sr_workers *set, struct sr_server **out, size_t cap);

/* After the main loop has run out: join the threads and free everything. Returns how many
 * connections the workers accepted in all. */
uint64_t
sr_workers_fini(struct sr_workers *set);

#endif
