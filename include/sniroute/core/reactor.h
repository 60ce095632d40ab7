/* SPDX-License-Identifier: MIT */
/* The connection sockets' event source: one epoll set per worker, so each socket costs a
 * 16-byte sr_watch and one epoll_ctl per change of interest instead of a libuv handle
 * (uv_poll_t is 160 bytes, and its init alone costs two epoll_ctl calls and an ioctl per
 * socket). The worker's thread blocks in this set, with libuv's own epoll set inside it,
 * and runs the libuv loop only when that has something to do (sr_reactor_run): one
 * epoll_wait per wakeup, where the set nested the other way round took two. Level-
 * triggered, like libuv. Linux only, like splice. */
#ifndef SR_REACTOR_H
#define SR_REACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include <sys/epoll.h>
#include <uv.h>

struct sr_watch;

/* <events> is what epoll reported: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP. */
typedef void (*sr_watch_fn)(struct sr_watch *watch, uint32_t events);

/* One socket's registration. Embedded in its owner (found with container_of); <events> is
 * the mask in the epoll set, 0 when the socket is not in it. */
struct sr_watch {
    sr_watch_fn cb;
    int fd;
    uint32_t events;
};

/* Work that must wait until every callback of the current batch of events has returned:
 * freeing what a watch later in the batch may belong to. */
struct sr_reactor_task {
    void (*fn)(struct sr_reactor_task *task);
    struct sr_reactor_task *next;
    bool is_queued;
};

struct sr_reactor {
    uv_loop_t *loop;
    uv_idle_t anchor;           /* never started: closing it calls back on_closed */
    struct sr_watch loop_watch; /* libuv's epoll set, inside ours */
    struct sr_reactor_task *tasks;
    int epfd;
    bool is_open;
    void (*on_closed)(struct sr_reactor *reactor);
    void *data; /* the owner's */
};

/* Create the epoll set with <loop>'s inside it; the reactor becomes the loop's (loop->data:
 * one reactor per loop, so the loop's data must be NULL: uv_loop_init keeps whatever was
 * there), run by sr_reactor_run. Returns 0 or a UV_E* code (UV_EBUSY: data is not NULL). */
int sr_reactor_init(struct sr_reactor *reactor, uv_loop_t *loop);

/* Stop: <on_closed> (may be NULL) runs on a later turn of the loop, once the epoll set is
 * closed. Every watch must have been cleared before; queued tasks are dropped. */
void sr_reactor_close(struct sr_reactor *reactor, void (*on_closed)(struct sr_reactor *reactor));

/* Run <loop> until nothing is left in it, as uv_run(loop, UV_RUN_DEFAULT) does: blocking in
 * the epoll set of the loop's reactor while it is open, with libuv's handles run (timers,
 * signals, wakeups, the admin server) whenever libuv has something due. */
void sr_reactor_run(uv_loop_t *loop);

/* Run <task> once the current batch of events is done (or, from a libuv callback, once the
 * loop's turn is). Queuing a queued task again does nothing. */
void sr_reactor_after_batch(struct sr_reactor *reactor, struct sr_reactor_task *task);

/* Take <task> off the queue, if it is on it. */
void sr_reactor_cancel(struct sr_reactor *reactor, struct sr_reactor_task *task);

static inline void
sr_watch_init(struct sr_watch *watch, int fd, sr_watch_fn cb)
{
    watch->cb = cb;
    watch->fd = fd;
    watch->events = 0;
}

/* Watch for <events> (EPOLLIN and/or EPOLLOUT; 0 takes the socket out of the set, since
 * epoll reports a hangup even with an empty mask, which level-triggered would repeat
 * forever). No system call when the mask does not change. Returns 0 or a UV_E* code. */
int sr_watch_set(struct sr_reactor *reactor, struct sr_watch *watch, uint32_t events);

/* Take the socket out of the set, keeping it open (before handing it to someone else, or
 * while it has nothing to wait for). Events of the current batch for it are dropped. */
void sr_watch_clear(struct sr_reactor *reactor, struct sr_watch *watch);

/* Close the socket; <watch> is then unused (fd -1). Closing the last descriptor of a
 * socket takes it out of every epoll set, so no EPOLL_CTL_DEL is spent on it (two system
 * calls per connection) -- unless a child process may hold a copy of it, between the
 * fork and the exec of a binary upgrade: see sr_reactor_fork_begin. A socket whose
 * descriptor was duplicated or sent elsewhere must be cleared first instead. */
void sr_watch_close(struct sr_reactor *reactor, struct sr_watch *watch);

/* Around a fork whose child execs (uv_spawn, which returns once the child has exec'd):
 * while it runs, no worker closes a watched socket without taking it out of its set
 * first, since the child's copy would keep it in the set and its events would name freed
 * memory. Call from one thread at a time. */
void sr_reactor_fork_begin(void);
void sr_reactor_fork_end(void);

#endif
