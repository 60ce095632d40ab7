/* SPDX-License-Identifier: MIT */
/* The connection sockets' event source: one epoll set per worker, itself watched by a
 * single uv_poll_t, so each socket costs a 16-byte sr_watch and one epoll_ctl per change
 * of interest instead of a libuv handle (uv_poll_t is 160 bytes, and its init alone costs
 * two epoll_ctl calls and an ioctl per socket). Level-triggered, like libuv. Linux only,
 * like splice. */
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

struct sr_reactor {
    uv_poll_t poll; /* on epfd, readable when any watched socket has an event */
    int epfd;
    bool is_open;
    void (*on_closed)(struct sr_reactor *reactor);
    void *data; /* the owner's */
};

/* Create the epoll set and start watching it on <loop>. Returns 0 or a UV_E* code. */
int sr_reactor_init(struct sr_reactor *reactor, uv_loop_t *loop);

/* Stop: <on_closed> (may be NULL) runs once the poll handle is closed and the epoll set
 * with it. Every watch must have been cleared before. */
void sr_reactor_close(struct sr_reactor *reactor, void (*on_closed)(struct sr_reactor *reactor));

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
