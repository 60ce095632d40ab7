/* SPDX-License-Identifier: MIT */
/* One epoll set per worker inside the libuv loop: see reactor.h for why. */
#include "sniroute/core/reactor.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* Events taken from the kernel per wakeup; more wait for the next (level-triggered, so
 * nothing is lost) and libuv's own handles get their turn in between. */
#define SR_REACTOR_BATCH 256

static void
on_epoll_ready(uv_poll_t *poll, int status, int events)
{
    struct sr_reactor *reactor = poll->data;
    struct epoll_event ev[SR_REACTOR_BATCH];
    int n;
    int i;

    (void)status;
    (void)events;
    do {
        n = epoll_wait(reactor->epfd, ev, SR_REACTOR_BATCH, 0);
    } while (n < 0 && errno == EINTR);
    for (i = 0; i < n; i++) {
        struct sr_watch *watch = ev[i].data.ptr;

        /* A callback earlier in this batch may have cleared this watch (its owner is
         * freed only after the batch: see sr_watch_clear's callers). */
        if (watch->events != 0) {
            watch->cb(watch, ev[i].events);
        }
    }
}

int
sr_reactor_init(struct sr_reactor *reactor, uv_loop_t *loop)
{
    int rc;

    reactor->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (reactor->epfd < 0) {
        return -errno;
    }
    reactor->on_closed = NULL;
    rc = uv_poll_init(loop, &reactor->poll, reactor->epfd);
    if (rc != 0) {
        close(reactor->epfd);
        reactor->epfd = -1;
        return rc;
    }
    reactor->poll.data = reactor;
    reactor->is_open = true;
    rc = uv_poll_start(&reactor->poll, UV_READABLE, on_epoll_ready);
    if (rc != 0) {
        sr_reactor_close(reactor, NULL);
    }
    return rc;
}

static void
on_poll_closed(uv_handle_t *handle)
{
    struct sr_reactor *reactor = handle->data;

    close(reactor->epfd);
    reactor->epfd = -1;
    if (reactor->on_closed != NULL) {
        reactor->on_closed(reactor);
    }
}

void
sr_reactor_close(struct sr_reactor *reactor, void (*on_closed)(struct sr_reactor *reactor))
{
    if (!reactor->is_open) {
        return;
    }
    reactor->is_open = false;
    reactor->on_closed = on_closed;
    uv_close((uv_handle_t *)&reactor->poll, on_poll_closed);
}

int
sr_watch_set(struct sr_reactor *reactor, struct sr_watch *watch, uint32_t events)
{
    struct epoll_event ev;
    int op;

    if (events == watch->events) {
        return 0;
    }
    if (events == 0) {
        sr_watch_clear(reactor, watch);
        return 0;
    }
    op = watch->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    ev.events = events;
    ev.data.ptr = watch;
    if (epoll_ctl(reactor->epfd, op, watch->fd, &ev) != 0) {
        return -errno;
    }
    watch->events = events;
    return 0;
}

void
sr_watch_clear(struct sr_reactor *reactor, struct sr_watch *watch)
{
    struct epoll_event ev = {0};

    if (watch->events != 0) {
        (void)epoll_ctl(reactor->epfd, EPOLL_CTL_DEL, watch->fd, &ev);
        watch->events = 0;
    }
}

/* Workers read-lock around "is a fork on? then DEL; close", the upgrade write-locks around
 * the fork: a socket is never closed without DEL while a child may hold a copy. */
static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_INITIALIZER;
static atomic_bool is_forking;

void
sr_reactor_fork_begin(void)
{
    pthread_rwlock_wrlock(&fork_lock);
    atomic_store(&is_forking, true);
}

void
sr_reactor_fork_end(void)
{
    atomic_store(&is_forking, false);
    pthread_rwlock_unlock(&fork_lock);
}

void
sr_watch_close(struct sr_reactor *reactor, struct sr_watch *watch)
{
    if (watch->fd < 0) {
        return;
    }
    pthread_rwlock_rdlock(&fork_lock);
    if (atomic_load_explicit(&is_forking, memory_order_relaxed)) {
        sr_watch_clear(reactor, watch);
    }
    close(watch->fd);
    pthread_rwlock_unlock(&fork_lock);
    watch->events = 0;
    watch->fd = -1;
}
