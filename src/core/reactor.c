/* SPDX-License-Identifier: MIT */
/* One epoll set per worker, with the libuv loop's inside it: see reactor.h for why. */
#include "sniroute/core/reactor.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Events taken from the kernel per wakeup; more wait for the next (level-triggered, so
 * nothing is lost), and libuv's descriptor is one of them when it has events. */
#define SR_REACTOR_BATCH 256

static void
run_tasks(struct sr_reactor *reactor)
{
    struct sr_reactor_task *task;

    while ((task = reactor->tasks) != NULL) {
        reactor->tasks = task->next;
        task->is_queued = false;
        task->fn(task);
    }
}

void
sr_reactor_run(uv_loop_t *loop)
{
    struct epoll_event ev[SR_REACTOR_BATCH];
    struct sr_reactor *reactor;

    while ((reactor = loop->data) != NULL && reactor->is_open) {
        bool is_uv_due = false;
        int timeout;
        int n;
        int i;

        /* Until libuv's next timer; 0 while it has work now (pending callbacks, an idle
         * handle, handles closing); no limit once nothing of libuv's is alive (its epoll
         * set stays in ours, so a handle started later still wakes us). */
        timeout = uv_loop_alive(loop) ? uv_backend_timeout(loop) : -1;
        n = epoll_wait(reactor->epfd, ev, SR_REACTOR_BATCH, timeout);
        if (n < 0 && errno != EINTR) {
            /* EBADF, EFAULT, EINVAL: our bug, and it would repeat on every turn. Spinning
             * on it would hide it behind a busy core; stop where it can be seen. */
            fprintf(stderr, "sniroute: fatal: epoll_wait on a worker's reactor (fd %d): %s\n",
                    reactor->epfd, strerror(errno));
            abort();
        }
        uv_update_time(loop);
        for (i = 0; i < n; i++) {
            struct sr_watch *watch = ev[i].data.ptr;

            if (watch == &reactor->loop_watch) {
                is_uv_due = true;
                continue;
            }
            /* A callback earlier in this batch may have cleared this watch (its owner is
             * freed only after the batch: sr_reactor_after_batch). */
            if (watch->events != 0) {
                watch->cb(watch, ev[i].events);
            }
        }
        run_tasks(reactor);
        if (is_uv_due || n <= 0 || uv_backend_timeout(loop) == 0) {
            (void)uv_run(loop, UV_RUN_NOWAIT);
            if ((reactor = loop->data) != NULL) {
                run_tasks(reactor); /* queued by libuv's callbacks (a deadline's close) */
            }
        }
    }
    (void)uv_run(loop, UV_RUN_DEFAULT); /* the rest: handles closing, what libuv still runs */
}

void
sr_reactor_after_batch(struct sr_reactor *reactor, struct sr_reactor_task *task)
{
    if (task->is_queued) {
        return;
    }
    task->is_queued = true;
    task->next = reactor->tasks;
    reactor->tasks = task;
}

void
sr_reactor_cancel(struct sr_reactor *reactor, struct sr_reactor_task *task)
{
    struct sr_reactor_task **link = &reactor->tasks;

    if (!task->is_queued) {
        return;
    }
    while (*link != NULL && *link != task) {
        link = &(*link)->next;
    }
    if (*link != NULL) {
        *link = task->next;
    }
    task->is_queued = false;
}

int
sr_reactor_init(struct sr_reactor *reactor, uv_loop_t *loop)
{
    struct epoll_event ev;
    int rc;

    if (loop->data != NULL) {
        return UV_EBUSY; /* one reactor per loop */
    }
    reactor->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (reactor->epfd < 0) {
        return -errno;
    }
    reactor->loop = loop;
    reactor->tasks = NULL;
    reactor->on_closed = NULL;
    sr_watch_init(&reactor->loop_watch, uv_backend_fd(loop), NULL);
    ev.events = EPOLLIN;
    ev.data.ptr = &reactor->loop_watch;
    if (epoll_ctl(reactor->epfd, EPOLL_CTL_ADD, reactor->loop_watch.fd, &ev) != 0) {
        rc = -errno;
        close(reactor->epfd);
        reactor->epfd = -1;
        return rc;
    }
    reactor->loop_watch.events = EPOLLIN;
    uv_idle_init(loop, &reactor->anchor); /* cannot fail on an initialized loop */
    reactor->anchor.data = reactor;
    reactor->is_open = true;
    loop->data = reactor;
    return 0;
}

static void
on_anchor_closed(uv_handle_t *handle)
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
    while (reactor->tasks != NULL) {
        reactor->tasks->is_queued = false;
        reactor->tasks = reactor->tasks->next;
    }
    if (reactor->loop->data == reactor) {
        reactor->loop->data = NULL;
    }
    uv_close((uv_handle_t *)&reactor->anchor, on_anchor_closed);
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
