/* SPDX-License-Identifier: MIT */
/* A worker's resources, which its connections borrow: the reactor every socket is watched
 * in, the deadline heap with its one timer, relay buffers and kernel pipes taken only while
 * bytes are in flight, the scratch buffer first bytes are read into, and a cache of
 * connection setups. One per server (worker), used on its loop's thread only. It knows
 * nothing of a connection: a setup is a block of bytes, a deadline is found by its owner
 * (on_deadline). */
#ifndef SR_RESOURCES_H
#define SR_RESOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sniroute/core/deadline.h"
#include "sniroute/core/reactor.h"

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

/* A deadline is due (it is no longer set): its owner sets it again or lets it be. */
typedef void (*sr_deadline_fn)(struct sr_deadline *d);

struct sr_resources {
    uv_loop_t *loop;
    /* Every socket of the connections and the listeners is watched here. */
    struct sr_reactor reactor;
    /* The connections' timeouts, and one timer set for the earliest. */
    struct sr_deadline_heap deadlines;
    uv_timer_t deadline_timer;
    uint64_t deadline_armed_ms; /* what the timer is set for; UINT64_MAX: not set */
    sr_deadline_fn on_deadline;
    struct sr_buf_pool pool;
    struct sr_pipe_pool pipes;
    /* Where first bytes are read into: one buffer per worker, used and done with within
     * one callback. */
    uint8_t *scratch;
    size_t scratch_cap;
    /* Connection setups kept for reuse (singly linked through their first bytes). */
    void *setup_free;
    size_t n_setup_free;
    uv_timer_t trim_timer; /* returns freed heap to the kernel after a burst */
    size_t n_closed_since_trim;
    bool is_closed; /* sr_resources_close was called: no timer starts again */
};

/* Set up <res> on <loop>: its timers, and the reactor's epoll set. Due deadlines go to
 * <on_deadline>. Returns 0 or a UV_E* code (the reactor could not be made); either way,
 * close it with sr_resources_close and, once the loop has run the close callbacks,
 * sr_resources_fini. */
int sr_resources_init(struct sr_resources *res, uv_loop_t *loop, sr_deadline_fn on_deadline);

/* Close the timers and the reactor (every watch must be cleared or closed before). */
void sr_resources_close(struct sr_resources *res);

/* Free what is kept for reuse; every buffer must be back and every deadline cleared. */
void sr_resources_fini(struct sr_resources *res);

/* A relay buffer of SR_RELAY_BUF_SIZE bytes, or NULL when out of memory; give it back
 * with sr_resources_buf_put. */
void *sr_resources_buf_get(struct sr_resources *res);
void sr_resources_buf_put(struct sr_resources *res, void *buf);

/* An empty non-blocking pipe in <fds> (read end, write end): 0, or a UV_E* code when none
 * can be had (descriptors exhausted). sr_resources_pipe_put takes back an empty one. */
int sr_resources_pipe_get(struct sr_resources *res, int fds[2]);
void sr_resources_pipe_put(struct sr_resources *res, const int fds[2]);

/* The worker's scratch buffer, at least <len> bytes (res->scratch_cap says how many);
 * NULL when out of memory. Valid until the next call. */
uint8_t *sr_resources_scratch(struct sr_resources *res, size_t len);

/* A zeroed block of <size> bytes (always the same size: the cache keeps one kind), from
 * the cache or the heap; NULL when out of memory. sr_resources_setup_put takes it back. */
void *sr_resources_setup_get(struct sr_resources *res, size_t size);
void sr_resources_setup_put(struct sr_resources *res, void *setup);

/* Set or clear a deadline (absolute, in uv_now() milliseconds); the timer follows the
 * earliest. Out of memory for the heap, a deadline is not set (logged). */
void sr_resources_deadline_set(struct sr_resources *res, struct sr_deadline *d, uint64_t due_ms);
void sr_resources_deadline_clear(struct sr_resources *res, struct sr_deadline *d);

/* A connection's memory went back to the heap: after a burst of them, once frees stop
 * coming for a moment, freed heap goes back to the kernel. */
void sr_resources_note_freed(struct sr_resources *res);

#endif
